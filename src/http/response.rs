//! A response as a service returns it (status, headers, body) and the bytes of its head. A
//! body is either bytes or a resumable stream the service produces in slices; the connection
//! (conn.rs) frames it with Content-Length, chunked encoding, or the end of the connection.

use super::status::Status;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// A response body.
pub enum Body<S> {
    Empty,
    Bytes(Vec<u8>),
    /// Produced later, a slice per loop turn, by `Service::produce` from this state (for
    /// example a cursor into a listing); sent chunked to HTTP/1.1 clients.
    Stream(S),
}

/// Whether a stream has more to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    More,
    Done,
}

pub struct Response<S> {
    pub status: Status,
    /// Header names in lower case as cowboy sends them; the connection adds the framing
    /// (content-length or transfer-encoding) and `connection: close` itself.
    pub headers: Vec<(&'static str, String)>,
    pub body: Body<S>,
}

impl<S> Response<S> {
    pub fn new(status: Status) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Body::Empty,
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn bytes(mut self, body: Vec<u8>) -> Self {
        self.body = Body::Bytes(body);
        self
    }

    pub fn stream(mut self, state: S) -> Self {
        self.body = Body::Stream(state);
        self
    }

    /// A JSON document built in memory (small answers; listings stream instead).
    pub fn json(status: Status, body: Vec<u8>) -> Self {
        Response::new(status)
            .header("content-type", "application/json")
            .bytes(body)
    }
}

/// How the connection delimits the body it is about to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body and no length (1xx, 204, 304).
    None,
    Length(usize),
    Chunked,
    /// HTTP/1.0 stream: the body ends when the connection closes.
    UntilClose,
}

/// Writes the status line and headers, the framing header and, when the connection ends
/// after this response, `connection: close`.
pub fn write_head(
    out: &mut Vec<u8>,
    status: Status,
    headers: &[(&'static str, String)],
    framing: Framing,
    close: bool,
) {
    // Writes to a Vec cannot fail.
    let _ = write!(out, "HTTP/1.1 {} {}\r\n", status.code(), status.reason());
    for (name, value) in headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    match framing {
        Framing::None | Framing::UntilClose => {}
        Framing::Length(n) => {
            let _ = write!(out, "content-length: {n}\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// An IMF-fixdate (RFC 9110 §5.6.7) for the `date` header: `Thu, 03 Dec 2026 09:31:15 GMT`.
pub fn http_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's days_from_civil inverse).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Dates render as IMF-fixdate, checked against known instants.
    #[test]
    fn http_dates() {
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        let t = UNIX_EPOCH + Duration::from_secs(1_796_290_275);
        assert_eq!(http_date(t), "Thu, 03 Dec 2026 09:31:15 GMT");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(http_date(leap), "Tue, 29 Feb 2000 00:00:00 GMT");
    }

    /// The head carries status, headers, framing and the close marker in that order.
    #[test]
    fn head_bytes() {
        let mut out = Vec::new();
        let headers = [("allow", "HEAD, GET, OPTIONS".to_string())];
        write_head(
            &mut out,
            Status::METHOD_NOT_ALLOWED,
            &headers,
            Framing::Length(0),
            true,
        );
        assert_eq!(
            out,
            b"HTTP/1.1 405 Method Not Allowed\r\nallow: HEAD, GET, OPTIONS\r\n\
content-length: 0\r\nconnection: close\r\n\r\n"
        );
    }
}
