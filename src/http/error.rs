//! One error type for the management API and its one mapping to the wire: a status, RabbitMQ's
//! `{"error":..,"reason":..}` body (or none, where RabbitMQ sends none) and the headers that go
//! with it. Texts are RabbitMQ 3.10's, recorded in tests/fixtures/rabbitmq-3.10-http.

use super::json::error_body;
use super::response::Response;
use super::status::Status;
use std::borrow::Cow;

/// RabbitMQ's Basic realm, sent with 401 for missing or failed credentials.
pub const WWW_AUTHENTICATE: &str = "Basic realm=\"RabbitMQ Management\"";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: Status,
    /// `(error, reason)` of the JSON body; None for an empty body.
    pub body: Option<(Cow<'static, str>, Cow<'static, str>)>,
    pub www_authenticate: bool,
    /// The Allow header of a 405 or an OPTIONS answer.
    pub allow: Option<String>,
}

impl ApiError {
    /// A status with an empty body (cowboy's own refusals: 400, 405, 406, 414, 431, 501...).
    pub fn empty(status: Status) -> ApiError {
        ApiError {
            status,
            body: None,
            www_authenticate: false,
            allow: None,
        }
    }

    pub fn json(
        status: Status,
        error: impl Into<Cow<'static, str>>,
        reason: impl Into<Cow<'static, str>>,
    ) -> ApiError {
        ApiError {
            body: Some((error.into(), reason.into())),
            ..ApiError::empty(status)
        }
    }

    /// 404 for an unknown path or object.
    pub fn not_found() -> ApiError {
        ApiError::json(Status::NOT_FOUND, "Object Not Found", "Not Found")
    }

    /// 400 `bad_request` with a reason (`not_json`, RabbitMQ's validation texts).
    pub fn bad_request(reason: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::json(Status::BAD_REQUEST, "bad_request", reason)
    }

    /// 405 listing what the path allows.
    pub fn method_not_allowed(allow: String) -> ApiError {
        ApiError {
            allow: Some(allow),
            ..ApiError::empty(Status::METHOD_NOT_ALLOWED)
        }
    }

    /// 401 without credentials: empty body and the realm.
    pub fn no_credentials() -> ApiError {
        ApiError {
            www_authenticate: true,
            ..ApiError::empty(Status::UNAUTHORIZED)
        }
    }

    /// 401 for a wrong user or password, or an authorization scheme other than Basic.
    pub fn login_failed() -> ApiError {
        ApiError {
            www_authenticate: true,
            ..ApiError::json(Status::UNAUTHORIZED, "not_authorized", "Login failed")
        }
    }

    /// 401 for a user who logged in but lacks a tag or permission; RabbitMQ spells this
    /// one `not_authorised` and sends no realm.
    pub fn not_authorised(reason: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::json(Status::UNAUTHORIZED, "not_authorised", reason)
    }

    pub fn into_response<S>(self) -> Response<S> {
        let mut r = Response::new(self.status);
        if let Some(allow) = self.allow {
            r = r.header("allow", allow);
        }
        if self.www_authenticate {
            r = r.header("www-authenticate", WWW_AUTHENTICATE);
        }
        match self.body {
            Some((error, reason)) => r
                .header("content-type", "application/json")
                .bytes(error_body(&error, &reason)),
            None => r,
        }
    }
}
