//! The management API as coneyctl uses it: JSON in and out over `http`, paths built from
//! percent-encoded segments (the default vhost is `%2F`), one deadline for the whole command
//! (rabbitmqctl's --timeout is per operation), and the API's error answers as typed values.
//! Turning an error into a message and an exit code that depend on the command is the
//! command's job; `ApiError::failure` covers what every command says alike.

use crate::failure::{Failure, EX_SOFTWARE, EX_TEMPFAIL, EX_UNAVAILABLE};
use crate::http::{self, HttpError, Request, Target};
use serde_json::Value;
use std::time::{Duration, Instant};

/// How much of a non-JSON error answer is shown.
const ERROR_TEXT_CHARS_MAX: usize = 200;

/// A management API endpoint, the command it serves (for messages) and its deadline.
pub struct Api {
    target: Target,
    /// Prepended to `/api/...`, for an API served under a path (RabbitMQ's
    /// `management.path_prefix`); empty or starting with `/`.
    prefix: String,
    timeout: Duration,
    deadline: Instant,
    operation: String,
    /// What was noticed while finding the API, added to a failure to reach it or log in.
    notes: Vec<String>,
}

/// Why an API call failed.
#[derive(Debug)]
pub enum ApiError {
    /// No answer: could not connect, timed out, or the answer was not HTTP.
    Transport(HttpError),
    /// An HTTP error status with the API's `error` and `reason` (empty when the body had none).
    Status {
        status: u16,
        error: String,
        reason: String,
    },
    /// A success status whose body is not the JSON expected.
    BadBody(String),
}

impl ApiError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The message and exit code for failures that mean the same for every command.
    pub fn failure(self, api: &Api) -> Failure {
        let noted = matches!(
            self,
            ApiError::Transport(HttpError::Connect(_)) | ApiError::Status { status: 401, .. }
        );
        match (self.describe(api), noted && !api.notes.is_empty()) {
            (Failure::Error { code, text }, true) => Failure::Error {
                code,
                text: format!("{text}\n{}", api.notes.join("\n")),
            },
            (failure, _) => failure,
        }
    }

    fn describe(self, api: &Api) -> Failure {
        let at = api.target.origin();
        match self {
            ApiError::Transport(HttpError::Timeout) => Failure::error(
                EX_TEMPFAIL,
                format!(
                    "operation {} on the management API at {at} timed out. Timeout value used: {}",
                    api.operation,
                    api.timeout.as_millis()
                ),
            ),
            ApiError::Transport(HttpError::Connect(why)) => Failure::error(
                EX_UNAVAILABLE,
                format!(
                    "unable to connect to the management API at {at}: {why}\n\n\
                     Is the broker running with its management listener on this address?\n\
                     Use --host and --port, CONEYCTL_URL, or management.tcp.* in the config file."
                ),
            ),
            ApiError::Transport(e) => {
                Failure::error(EX_UNAVAILABLE, format!("management API at {at}: {e}"))
            }
            ApiError::Status {
                status: 401,
                reason,
                ..
            } => Failure::error(
                EX_UNAVAILABLE,
                format!(
                    "the management API at {at} refused user '{}': {}",
                    api.target.username,
                    if reason.is_empty() {
                        "Unauthorized"
                    } else {
                        &reason
                    }
                ),
            ),
            ApiError::Status {
                status,
                error,
                reason,
            } => {
                let detail: Vec<&str> = [error.trim(), reason.trim()]
                    .into_iter()
                    .filter(|t| !t.is_empty())
                    .collect();
                let detail = if detail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", detail.join(": "))
                };
                Failure::error(
                    EX_SOFTWARE,
                    format!("the management API at {at} answered {status}{detail}"),
                )
            }
            ApiError::BadBody(why) => Failure::error(
                EX_SOFTWARE,
                format!("the management API at {at} answered something unexpected: {why}"),
            ),
        }
    }
}

/// Percent-encodes one path segment: everything but RFC 3986's unreserved characters, so
/// `/` in a vhost or name cannot split the path.
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Api {
    pub fn new(
        target: Target,
        prefix: String,
        notes: Vec<String>,
        timeout: Duration,
        operation: &str,
    ) -> Api {
        Api {
            target,
            prefix,
            timeout,
            deadline: Instant::now() + timeout,
            operation: operation.to_string(),
            notes,
        }
    }

    /// Sends one request; `path` starts after `/api`. Success is any 2xx status.
    fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Vec<u8>, ApiError> {
        let full = format!("{}/api{path}", self.prefix);
        let request = Request {
            method,
            path: &full,
            headers,
            body,
        };
        let response =
            http::send(&self.target, &request, self.deadline).map_err(ApiError::Transport)?;
        if (200..300).contains(&response.status) {
            return Ok(response.body);
        }
        let parsed: Option<Value> = serde_json::from_slice(&response.body).ok();
        let text = |key: &str| match parsed.as_ref().and_then(|v| v.get(key)) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        // An answer that is not the API's JSON error (a proxy's page) is shown as it came.
        let reason = match parsed {
            Some(_) => text("reason"),
            None => String::from_utf8_lossy(&response.body)
                .chars()
                .take(ERROR_TEXT_CHARS_MAX)
                .collect(),
        };
        Err(ApiError::Status {
            status: response.status,
            error: text("error"),
            reason,
        })
    }

    /// GET, parsed as JSON.
    pub fn get(&self, path: &str) -> Result<Value, ApiError> {
        let body = self.call("GET", path, &[], None)?;
        serde_json::from_slice(&body).map_err(|e| ApiError::BadBody(format!("GET {path}: {e}")))
    }

    pub fn put(&self, path: &str, body: &Value) -> Result<(), ApiError> {
        self.call("PUT", path, &[], Some(body.to_string().as_bytes()))
            .map(drop)
    }

    pub fn post_raw(&self, path: &str, body: &[u8]) -> Result<(), ApiError> {
        self.call("POST", path, &[], Some(body)).map(drop)
    }

    pub fn delete(&self, path: &str, headers: &[(&str, &str)]) -> Result<(), ApiError> {
        self.call("DELETE", path, headers, None).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Path segments are percent-encoded so that `/` and spaces stay inside the segment.
    #[test]
    fn segments_are_encoded() {
        assert_eq!(seg("/"), "%2F");
        assert_eq!(seg("q tab\there"), "q%20tab%09here");
        assert_eq!(seg("a.b-c_d~e"), "a.b-c_d~e");
        assert_eq!(seg("é"), "%C3%A9");
        assert_eq!(seg("x?y#z%"), "x%3Fy%23z%25");
    }

    fn text(f: Failure) -> String {
        match f {
            Failure::Error { text, .. } => text,
            other => panic!("not an error: {other:?}"),
        }
    }

    /// What was noticed while finding the API (an unreadable default config file) is added to
    /// a failure to connect or log in, where it may be the cause, and to nothing else.
    #[test]
    fn notes_join_connect_and_login_failures_only() {
        let target = Target {
            host: "127.0.0.1".into(),
            port: 15672,
            username: "guest".into(),
            password: "guest".into(),
        };
        let note = "(the default config file was not used: cannot read it)";
        let api = Api::new(
            target,
            String::new(),
            vec![note.into()],
            Duration::from_secs(1),
            "x",
        );
        let status = |status| ApiError::Status {
            status,
            error: "e".into(),
            reason: "r".into(),
        };
        let connect = ApiError::Transport(HttpError::Connect("refused".into()));
        assert!(text(connect.failure(&api)).ends_with(&format!("\n{note}")));
        assert!(text(status(401).failure(&api)).ends_with(&format!("\n{note}")));
        assert!(!text(status(500).failure(&api)).contains(note));
        assert!(!text(ApiError::Transport(HttpError::Timeout).failure(&api)).contains(note));
    }
}
