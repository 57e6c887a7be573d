//! One HTTP/1.1 request head parsed from bytes (request line and headers through httparse),
//! with what the management API needs decoded: percent-decoded path segments, query
//! parameters, Basic credentials, body framing. Knows nothing of connections or routes.
//!
//! Bounds (src/limits.rs): request line 8000 bytes (414), header value 4096 bytes and 100
//! headers (431), whole head 64 KiB (431), body 20,000,000 bytes (413). Incomplete is not an
//! error: `parse_head` answers `Ok(None)` until the blank line arrives.

use super::status::Status;
use crate::limits::{
    HTTP_BODY_MAX_BYTES, HTTP_HEADERS_MAX, HTTP_HEADER_VALUE_MAX_BYTES, HTTP_HEAD_MAX_BYTES,
    HTTP_REQUEST_LINE_MAX_BYTES,
};

/// The methods cowboy_rest knows, and `Unknown` for any other token: the router answers it
/// 501 whatever the path, keeping the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Head,
    Get,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Unknown,
}

impl Method {
    fn parse(s: &str) -> Method {
        match s {
            "HEAD" => Method::Head,
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            _ => Method::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Head => "HEAD",
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Unknown => "UNKNOWN",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// The Authorization header as the management API reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Authorization {
    #[default]
    None,
    /// `Basic` (any case) with base64 of `user:password`, split at the first colon.
    Basic { user: String, pass: String },
    /// Another scheme: RabbitMQ answers it as a failed login.
    Other,
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(usize),
    Chunked,
}

/// Query parameters in order, `+` and `%XX` decoded (application/x-www-form-urlencoded).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses the part after `?`. A key without `=` has the value "true" (cowboy).
    pub fn parse(raw: &str) -> Result<Query, HeadError> {
        let mut pairs = Vec::new();
        for part in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, "true"));
            pairs.push((decode_form(k)?, decode_form(v)?));
        }
        Ok(Query { pairs })
    }

    /// The first value of `name`, as RabbitMQ's qs_val takes it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }
}

/// A parsed request head and, once it has arrived, its body.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub version: Version,
    /// The request target as sent (path and query, still encoded).
    pub target: String,
    /// Percent-decoded path segments; a trailing empty segment is dropped as cowboy does
    /// (`/api/queues/` is `/api/queues`), inner empty ones are kept.
    pub segments: Vec<String>,
    pub query: Query,
    pub host: Option<String>,
    pub authorization: Authorization,
    pub content_type: Option<String>,
    pub accept: Option<String>,
    pub if_none_match: Option<String>,
    /// `X-Reason` of a connection DELETE: the close text the client gets.
    pub x_reason: Option<String>,
    /// The connection may carry another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
    pub framing: BodyFraming,
    pub body: Vec<u8>,
    /// The head is well framed but its target or credentials do not decode: the connection
    /// answers 400 itself and stays open, as cowboy does.
    pub malformed: bool,
}

/// Why a head was refused; each maps to one status and closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Malformed request line, header, target, percent-encoding, framing or credentials.
    Malformed,
    UriTooLong,
    HeadersTooLarge,
    BodyTooLarge,
    Version,
    /// A transfer coding other than chunked (cowboy answers 400).
    UnsupportedTransferCoding,
}

impl HeadError {
    pub fn status(self) -> Status {
        match self {
            HeadError::Malformed => Status::BAD_REQUEST,
            HeadError::UriTooLong => Status::URI_TOO_LONG,
            HeadError::HeadersTooLarge => Status::HEADER_FIELDS_TOO_LARGE,
            HeadError::BodyTooLarge => Status::PAYLOAD_TOO_LARGE,
            HeadError::Version => Status::VERSION_NOT_SUPPORTED,
            HeadError::UnsupportedTransferCoding => Status::BAD_REQUEST,
        }
    }
}

/// Parses one request head from the start of `buf`. `Ok(None)`: not complete yet (and
/// within bounds); `Ok(Some((request, head_len)))`: the head took `head_len` bytes.
///
/// The answer depends only on the bytes up to where it is decided, so a head gets the same
/// answer however its bytes were split across reads: the first problem in the byte stream
/// wins, and nothing past the bounds is looked at.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Request, usize)>, HeadError> {
    let buf = &buf[..buf.len().min(HTTP_HEAD_MAX_BYTES + 1)];
    check_request_line(buf)?;
    let mut headers = [httparse::EMPTY_HEADER; HTTP_HEADERS_MAX];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > HTTP_HEAD_MAX_BYTES => {
            return Err(HeadError::HeadersTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(httparse_error(e, buf)),
    };
    if len > HTTP_HEAD_MAX_BYTES {
        return Err(HeadError::HeadersTooLarge);
    }
    let version = match req.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(HeadError::Version),
    };
    let method = req.method.ok_or(HeadError::Malformed)?;
    let method = Method::parse(method);
    let target = req.path.ok_or(HeadError::Malformed)?;
    // A target that does not decode is refused by the router in cowboy, after the head was
    // read whole: 400 for this request, and the connection stays usable.
    let (segments, query, malformed) = match split_target(target) {
        Ok((segments, query)) => (segments, query, false),
        Err(_) => (Vec::new(), Query::default(), true),
    };
    let mut request = Request {
        method,
        version,
        target: target.to_string(),
        segments,
        query,
        host: None,
        authorization: Authorization::None,
        content_type: None,
        accept: None,
        if_none_match: None,
        x_reason: None,
        keep_alive: version == Version::Http11,
        expect_continue: false,
        framing: BodyFraming::None,
        body: Vec::new(),
        malformed,
    };
    read_headers(&mut request, req.headers)?;
    if version == Version::Http11 && request.host.is_none() {
        return Err(HeadError::Malformed);
    }
    Ok(Some((request, len)))
}

fn httparse_error(e: httparse::Error, buf: &[u8]) -> HeadError {
    match e {
        httparse::Error::TooManyHeaders => HeadError::HeadersTooLarge,
        httparse::Error::Version => version_error(buf),
        _ => HeadError::Malformed,
    }
}

/// Where the request line starts: leading blank lines are allowed (RFC 9112 §2.2).
fn line_start(buf: &[u8]) -> usize {
    buf.iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len())
}

/// 414 as soon as the request line is known to be longer than the bound, unless its first
/// `HTTP_REQUEST_LINE_MAX_BYTES` bytes are already malformed (that came first).
fn check_request_line(buf: &[u8]) -> Result<(), HeadError> {
    let start = line_start(buf);
    let line = &buf[start..];
    let too_long = match line.iter().position(|&b| b == b'\n') {
        Some(end) => end > HTTP_REQUEST_LINE_MAX_BYTES,
        None => line.len() > HTTP_REQUEST_LINE_MAX_BYTES,
    };
    if !too_long {
        return Ok(());
    }
    let window = &buf[..start + HTTP_REQUEST_LINE_MAX_BYTES];
    let mut headers = [httparse::EMPTY_HEADER; 0];
    match httparse::Request::new(&mut headers).parse(window) {
        Err(e) => Err(httparse_error(e, window)),
        Ok(_) => Err(HeadError::UriTooLong),
    }
}

/// httparse reports any version but 1.0/1.1 as a version error, at the first byte that
/// differs, and also some garbage that merely has no version: only `HTTP/<digit>` gets 505.
fn version_error(buf: &[u8]) -> HeadError {
    let buf = &buf[line_start(buf)..];
    let line_end = buf.iter().position(|&b| b == b'\r' || b == b'\n');
    let line = &buf[..line_end.unwrap_or(buf.len())];
    // The third field, however much of it has arrived.
    let version = line.splitn(3, |&b| b == b' ').nth(2).unwrap_or(&[]);
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, ..] if major.is_ascii_digit() => HeadError::Version,
        _ => HeadError::Malformed,
    }
}

fn read_headers(r: &mut Request, headers: &[httparse::Header<'_>]) -> Result<(), HeadError> {
    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    for h in headers {
        if h.value.len() > HTTP_HEADER_VALUE_MAX_BYTES {
            return Err(HeadError::HeadersTooLarge);
        }
        let value = std::str::from_utf8(h.value).map_err(|_| HeadError::Malformed);
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            if r.host.is_some() {
                return Err(HeadError::Malformed);
            }
            r.host = Some(value?.to_string());
        } else if name.eq_ignore_ascii_case("content-length") {
            let n = parse_content_length(value?)?;
            if content_length.is_some_and(|old| old != n) {
                return Err(HeadError::Malformed);
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if !value?.trim().eq_ignore_ascii_case("chunked") || chunked {
                return Err(HeadError::UnsupportedTransferCoding);
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value?.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    r.keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") && r.version == Version::Http10 {
                    r.keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("expect") {
            // Other expectations are ignored, as RabbitMQ 3.10 (cowboy) does.
            r.expect_continue |=
                value?.trim().eq_ignore_ascii_case("100-continue") && r.version == Version::Http11;
        } else if name.eq_ignore_ascii_case("authorization") {
            match parse_authorization(value?) {
                Ok(a) => r.authorization = a,
                Err(_) => r.malformed = true,
            }
        } else if name.eq_ignore_ascii_case("content-type") {
            r.content_type = Some(value?.to_string());
        } else if name.eq_ignore_ascii_case("accept") {
            r.accept = Some(value?.to_string());
        } else if name.eq_ignore_ascii_case("if-none-match") {
            r.if_none_match = Some(value?.to_string());
        } else if name.eq_ignore_ascii_case("x-reason") {
            r.x_reason = Some(value?.to_string());
        }
    }
    r.framing = match (content_length, chunked) {
        // Both at once is how requests are smuggled past proxies (RFC 9112 §6.3).
        (Some(_), true) => return Err(HeadError::Malformed),
        (None, true) if r.version == Version::Http10 => return Err(HeadError::Malformed),
        (None, true) => BodyFraming::Chunked,
        (Some(0), false) | (None, false) => BodyFraming::None,
        (Some(n), false) => BodyFraming::Length(n),
    };
    Ok(())
}

fn parse_content_length(v: &str) -> Result<usize, HeadError> {
    let v = v.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HeadError::Malformed);
    }
    // A number too long to parse is certainly too large.
    let n: usize = v.parse().map_err(|_| HeadError::BodyTooLarge)?;
    if n > HTTP_BODY_MAX_BYTES {
        return Err(HeadError::BodyTooLarge);
    }
    Ok(n)
}

/// `Basic <base64(user:pass)>`, scheme in any case, any spaces after it. Undecodable
/// credentials are a malformed request (cowboy answers 400), another scheme is a login
/// failure for the caller to report.
fn parse_authorization(v: &str) -> Result<Authorization, HeadError> {
    let v = v.trim();
    let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(Authorization::Other);
    }
    let raw = base64_decode(rest.trim_start().as_bytes()).ok_or(HeadError::Malformed)?;
    let colon = raw
        .iter()
        .position(|&b| b == b':')
        .ok_or(HeadError::Malformed)?;
    let user = String::from_utf8(raw[..colon].to_vec()).map_err(|_| HeadError::Malformed)?;
    let pass = String::from_utf8(raw[colon + 1..].to_vec()).map_err(|_| HeadError::Malformed)?;
    Ok(Authorization::Basic { user, pass })
}

/// Whether a `type/subtype` response is acceptable under an Accept header, negotiated as
/// cowboy_rest does (RabbitMQ answers 406 otherwise): no header accepts anything; the most
/// specific matching range (`type/subtype`, then `type/*`, then `*/*`) decides, by its
/// q-value being above zero.
pub fn accepts(accept: Option<&str>, media: &str) -> bool {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return true;
    };
    let (ty, _) = media.split_once('/').unwrap_or((media, ""));
    let mut best: Option<(u8, bool)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let r = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let specificity = if r == media {
            3
        } else if r.strip_suffix("/*") == Some(ty) {
            2
        } else if r == "*/*" {
            1
        } else {
            continue;
        };
        let q_zero = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        if best.is_none_or(|(s, _)| specificity > s) {
            best = Some((specificity, !q_zero));
        }
    }
    best.is_some_and(|(_, ok)| ok)
}

/// Standard base64 with padding (RFC 4648 §4); anything else is `None`.
pub fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    if !s.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let quads = s.len() / 4;
    for (i, q) in s.chunks(4).enumerate() {
        let pad = q.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != quads) {
            return None;
        }
        let mut n = 0u32;
        for &c in &q[..4 - pad] {
            n = (n << 6) | sextet(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

/// Splits an origin-form (or absolute-form) target into decoded path segments and query.
fn split_target(target: &str) -> Result<(Vec<String>, Query), HeadError> {
    let target = target.split('#').next().unwrap_or("");
    let path_and_query = match target.find("://") {
        Some(i) if !target.starts_with('/') => {
            let after = &target[i + 3..];
            after.find('/').map_or("/", |j| &after[j..])
        }
        _ => target,
    };
    if !path_and_query.starts_with('/') {
        return Err(HeadError::Malformed);
    }
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut segments = path[1..]
        .split('/')
        .map(decode_path)
        .collect::<Result<Vec<_>, _>>()?;
    if segments.last().is_some_and(|s| s.is_empty()) {
        segments.pop();
    }
    Ok((segments, Query::parse(query)?))
}

/// Percent-decodes a path segment; `+` stays a plus (RFC 3986).
pub fn decode_path(s: &str) -> Result<String, HeadError> {
    percent_decode(s, false)
}

/// Percent-decodes a query key or value; `+` is a space (HTML forms).
pub fn decode_form(s: &str) -> Result<String, HeadError> {
    percent_decode(s, true)
}

fn percent_decode(s: &str, plus_is_space: bool) -> Result<String, HeadError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3).ok_or(HeadError::Malformed)?;
                let hi = (hex[0] as char).to_digit(16).ok_or(HeadError::Malformed)?;
                let lo = (hex[1] as char).to_digit(16).ok_or(HeadError::Malformed)?;
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| HeadError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: &[u8] = b"GET /api/queues/%2F/a%20b?page=1&name=a+b&x HTTP/1.1\r\nHost: h\r\n\
Authorization: Basic Z3Vlc3Q6Z3U6ZXN0\r\nAccept: application/json\r\n\r\n";

    /// A complete head yields its parts decoded; segments, query and credentials as RabbitMQ reads them.
    #[test]
    fn parses_a_head() {
        let (r, len) = parse_head(GET).unwrap().unwrap();
        assert_eq!(len, GET.len());
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.segments, ["api", "queues", "/", "a b"]);
        assert_eq!(r.query.get("page"), Some("1"));
        assert_eq!(r.query.get("name"), Some("a b"));
        assert_eq!(r.query.get("x"), Some("true"));
        assert_eq!(
            r.authorization,
            Authorization::Basic {
                user: "guest".into(),
                pass: "gu:est".into()
            }
        );
        assert!(r.keep_alive);
        assert_eq!(r.framing, BodyFraming::None);
    }

    /// Every proper prefix of a valid head is incomplete, never an error.
    #[test]
    fn every_prefix_is_incomplete() {
        for cut in 0..GET.len() {
            assert!(
                matches!(parse_head(&GET[..cut]), Ok(None)),
                "prefix of {cut} bytes"
            );
        }
    }

    /// The refusals RabbitMQ 3.10 gives (fixture responses.txt), each with its status.
    #[test]
    fn refusals_have_rabbitmq_statuses() {
        let long_line = [b"GET /".as_slice(), &[b'a'; 9000], b" HTTP/1.1\r\n"].concat();
        let long_value = [
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: ".as_slice(),
            &[b'a'; 5000],
            b"\r\n\r\n",
        ]
        .concat();
        let mut many = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..120 {
            many.extend_from_slice(format!("X-{i}: a\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        let cases: Vec<(&[u8], Status)> = vec![
            (b"GARBAGE\r\n\r\n", Status::BAD_REQUEST),
            (b"GET /x HTTP/2.0\r\nHost: x\r\n\r\n", Status::VERSION_NOT_SUPPORTED),
            (b"GET /x HTTP/1.1\r\n\r\n", Status::BAD_REQUEST),
            (&long_line, Status::URI_TOO_LONG),
            (&long_value, Status::HEADER_FIELDS_TOO_LARGE),
            (&many, Status::HEADER_FIELDS_TOO_LARGE),
            (
                b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 20000001\r\n\r\n",
                Status::PAYLOAD_TOO_LARGE,
            ),
            (
                b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                Status::PAYLOAD_TOO_LARGE,
            ),
            (
                b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                Status::BAD_REQUEST,
            ),
            (
                b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                Status::BAD_REQUEST,
            ),
            (
                b"PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
                Status::BAD_REQUEST,
            ),
        ];
        for (input, status) in cases {
            let got = parse_head(input).map(|r| r.map(|(_, n)| n));
            assert_eq!(
                got.map_err(HeadError::status),
                Err(status),
                "{}",
                String::from_utf8_lossy(&input[..input.len().min(60)])
            );
        }
    }

    /// Defects cowboy answers per request (400, or 501 for an unknown method) after reading the
    /// head whole: the head parses, flagged, so the connection can stay open.
    #[test]
    fn request_level_defects_are_flagged() {
        let flagged: [&[u8]; 5] = [
            b"GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /?a=%2 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET x HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic !!!\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic bm9jb2xvbg==\r\n\r\n",
        ];
        for input in flagged {
            let (r, len) = parse_head(input).unwrap().unwrap();
            assert!(r.malformed, "{}", String::from_utf8_lossy(input));
            assert_eq!(len, input.len());
        }
        let (r, _) = parse_head(b"FOO /x HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((r.method, r.malformed), (Method::Unknown, false));
    }

    /// A partial head that outgrows the head bound is refused instead of buffered forever.
    #[test]
    fn oversized_partial_head_is_refused() {
        let mut head = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        while head.len() <= HTTP_HEAD_MAX_BYTES {
            head.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        // Too many headers or too large: either way 431.
        assert_eq!(
            parse_head(&head).map(|_| ()).map_err(HeadError::status),
            Err(Status::HEADER_FIELDS_TOO_LARGE)
        );
    }

    /// A head gets the same answer whatever prefix of it decides: the fuzzer's first find was
    /// a bad version whose status depended on where the read ended.
    #[test]
    fn answer_does_not_depend_on_the_split() {
        let long_bad = [b"GET /\x01".as_slice(), &[b'a'; 9000], b" HTTP/1.1\r\n"].concat();
        let cases: [&[u8]; 3] = [
            b"OPTOINS /api/queues HTTP/1\xd2\xce\xf2\xebHost: x\r\n\r\n",
            b"\r\nGET / HTTP/2.0\r\nHost: x\r\n\r\n",
            &long_bad,
        ];
        for input in cases {
            let whole = parse_head(input).map(|r| r.map(|(_, n)| n));
            assert!(whole.is_err());
            for cut in 0..input.len() {
                match parse_head(&input[..cut]).map(|r| r.map(|(_, n)| n)) {
                    Ok(None) => {}
                    other => assert_eq!(other, whole, "cut {cut}"),
                }
            }
        }
        assert_eq!(
            parse_head(cases[0]).map(|_| ()).map_err(HeadError::status),
            Err(Status::VERSION_NOT_SUPPORTED)
        );
        assert_eq!(
            parse_head(&long_bad).map(|_| ()).map_err(HeadError::status),
            Err(Status::BAD_REQUEST)
        );
    }

    /// Content negotiation for JSON: what RabbitMQ accepts and what gets 406.
    #[test]
    fn accept_negotiation() {
        let json = "application/json";
        assert!(accepts(None, json));
        assert!(accepts(Some("*/*"), json));
        assert!(accepts(Some("application/*"), json));
        assert!(accepts(
            Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
            json
        ));
        assert!(accepts(Some("Application/JSON; charset=utf-8"), json));
        assert!(!accepts(Some("text/html"), json));
        assert!(!accepts(Some("application/xml"), json));
        assert!(!accepts(Some("*/*, application/json;q=0"), json));
    }

    /// HTTP/1.0 needs no Host, closes by default and keeps alive only when asked.
    #[test]
    fn http10_connection_rules() {
        let (r, _) = parse_head(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!r.keep_alive);
        let (r, _) = parse_head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(r.keep_alive);
        let (r, _) = parse_head(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!r.keep_alive);
    }

    /// Trailing slashes, absolute-form targets and `+` in paths follow cowboy.
    #[test]
    fn target_forms() {
        let (r, _) = parse_head(b"GET /api/whoami/ HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.segments, ["api", "whoami"]);
        let (r, _) = parse_head(b"GET http://h:1/api//q/a+b HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.segments, ["api", "", "q", "a+b"]);
        let (r, _) = parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(r.segments.is_empty());
    }

    /// Basic credentials: scheme in any case, extra spaces, other schemes flagged.
    #[test]
    fn authorization_forms() {
        assert_eq!(
            parse_authorization("basic  Z3Vlc3Q6Z3Vlc3Q=").unwrap(),
            Authorization::Basic {
                user: "guest".into(),
                pass: "guest".into()
            }
        );
        assert_eq!(
            parse_authorization("Bearer abc").unwrap(),
            Authorization::Other
        );
        assert!(parse_authorization("Basic Z3Vlc3Q6Z3Vlc3Q=x").is_err());
        assert_eq!(base64_decode(b"YQ==").unwrap(), b"a");
        assert_eq!(base64_decode(b"YWI=").unwrap(), b"ab");
        assert_eq!(base64_decode(b"YWJj").unwrap(), b"abc");
        assert!(base64_decode(b"YQ=a").is_none());
        assert!(base64_decode(b"YQ==YWJj").is_none());
    }
}
