//! A small blocking HTTP/1.1 client for the management API: one request per connection
//! (`Connection: close`), basic auth, a body with Content-Length, and a response read with
//! Content-Length, chunked encoding or until the server closes. Every read and write is bounded
//! by one deadline for the whole request, and the response's size is bounded. No TLS: the
//! management API is reached on loopback or a trusted network (as `rabbitmqadmin` without
//! `--ssl`).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The status line and headers of a response; more is not a management API answer.
pub const HEAD_BYTES_MAX: usize = 64 * 1024;
/// The largest response body accepted. A listing of 100,000 queues with every field is about
/// 200 MB; this leaves room and still stops a runaway peer before memory does.
pub const BODY_BYTES_MAX: usize = 512 * 1024 * 1024;
/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Where requests go and who makes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: String,
}

impl Target {
    /// `http://host:port`, with IPv6 addresses in brackets.
    pub fn origin(&self) -> String {
        if self.host.contains(':') {
            format!("http://[{}]:{}", self.host, self.port)
        } else {
            format!("http://{}:{}", self.host, self.port)
        }
    }
}

/// A request: method, path with query (already percent-encoded), extra headers (such as the
/// API's `X-Reason`), optional JSON body.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: Option<&'a [u8]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug)]
pub enum HttpError {
    /// No address of the host accepted a connection.
    Connect(String),
    /// The deadline passed while connecting, sending or receiving.
    Timeout,
    /// The connection failed after it was made.
    Io(io::Error),
    /// The answer is not HTTP/1.x as this client reads it.
    Malformed(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Connect(why) => f.write_str(why),
            HttpError::Timeout => f.write_str("timed out"),
            HttpError::Io(e) => write!(f, "{e}"),
            HttpError::Malformed(why) => write!(f, "not an HTTP answer: {why}"),
        }
    }
}

fn from_io(e: io::Error) -> HttpError {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => HttpError::Timeout,
        _ => HttpError::Io(e),
    }
}

/// Sends `request` to `target` and reads the whole answer before `deadline`.
pub fn send(target: &Target, request: &Request, deadline: Instant) -> Result<Response, HttpError> {
    let mut stream = DeadlineStream {
        stream: connect(target, deadline)?,
        deadline,
    };
    stream
        .write_all(&encode_request(target, request))
        .map_err(from_io)?;
    read_response(&mut stream, request.method == "HEAD")
}

fn remaining(deadline: Instant) -> Result<Duration, HttpError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(HttpError::Timeout);
    }
    Ok(left)
}

/// Tries each address of the host in turn, as a browser does.
fn connect(target: &Target, deadline: Instant) -> Result<TcpStream, HttpError> {
    let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| HttpError::Connect(format!("cannot resolve {}: {e}", target.host)))?
        .collect();
    let mut last = format!("{} has no address", target.host);
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, remaining(deadline)?) {
            Ok(s) => {
                // Requests are written in one piece; delaying them for coalescing gains nothing.
                s.set_nodelay(true).map_err(HttpError::Io)?;
                return Ok(s);
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(HttpError::Timeout),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(HttpError::Connect(last))
}

/// The request bytes: request line, Host, basic auth, and the body with its length. No
/// Accept header: RabbitMQ answers 406 to `Accept: application/json` on some paths (a
/// queue's /contents), and every answer is JSON anyway.
pub fn encode_request(target: &Target, request: &Request) -> Vec<u8> {
    let credentials = format!("{}:{}", target.username, target.password);
    let host = if target.host.contains(':') {
        format!("[{}]:{}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    };
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {}\r\n\
         User-Agent: coneyctl/{}\r\nConnection: close\r\n",
        request.method,
        request.path,
        coney::auth::base64::encode(credentials.as_bytes()),
        env!("CARGO_PKG_VERSION"),
    );
    for (name, value) in request.headers {
        // A value from the command line must not end the header early.
        let value: String = value
            .chars()
            .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
            .collect();
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = request.body.unwrap_or(&[]);
    if request.body.is_some() {
        head.push_str("Content-Type: application/json\r\n");
    }
    if request.body.is_some() || matches!(request.method, "PUT" | "POST" | "DELETE") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A socket whose every read and write waits at most until the request's deadline.
struct DeadlineStream {
    stream: TcpStream,
    deadline: Instant,
}

impl DeadlineStream {
    fn left(&self) -> io::Result<Duration> {
        remaining(self.deadline).map_err(|_| io::Error::from(io::ErrorKind::TimedOut))
    }
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        self.stream.read(buf)
    }
}

impl Write for DeadlineStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        self.stream.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// Reads one response from `r`. `head_only`: the request was HEAD, so no body follows.
pub fn read_response<R: Read>(r: &mut R, head_only: bool) -> Result<Response, HttpError> {
    let mut buf = Vec::with_capacity(READ_CHUNK_BYTES);
    let head_len = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > HEAD_BYTES_MAX {
            return Err(HttpError::Malformed(format!(
                "status line and headers longer than {HEAD_BYTES_MAX} bytes"
            )));
        }
        if fill(r, &mut buf)? == 0 {
            return Err(HttpError::Malformed(if buf.is_empty() {
                "the server closed the connection without answering".into()
            } else {
                "the connection closed inside the headers".into()
            }));
        }
    };
    let (status, headers) = parse_head(&buf[..head_len])?;
    let rest = buf.split_off(head_len);
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(response);
    }
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    response.body = if chunked {
        read_chunked(r, rest)?
    } else if let Some(len) = response.header("content-length") {
        let len: usize = len
            .trim()
            .parse()
            .map_err(|_| HttpError::Malformed(format!("content-length '{len}'")))?;
        read_exact_body(r, rest, len)?
    } else {
        read_to_close(r, rest)?
    };
    Ok(response)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Appends one read's worth to `buf`; 0 at end of stream.
fn fill<R: Read>(r: &mut R, buf: &mut Vec<u8>) -> Result<usize, HttpError> {
    let start = buf.len();
    buf.resize(start + READ_CHUNK_BYTES, 0);
    let n = loop {
        match r.read(&mut buf[start..]) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                buf.truncate(start);
                return Err(from_io(e));
            }
        }
    };
    buf.truncate(start + n);
    Ok(n)
}

fn parse_head(head: &[u8]) -> Result<(u16, Vec<(String, String)>), HttpError> {
    let text = std::str::from_utf8(head)
        .map_err(|_| HttpError::Malformed("headers are not UTF-8".into()))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed(format!("status line '{status_line}'")));
    }
    let status: u16 = code
        .parse()
        .ok()
        .filter(|c| (100..600).contains(c))
        .ok_or_else(|| HttpError::Malformed(format!("status line '{status_line}'")))?;
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| HttpError::Malformed(format!("header line '{line}'")))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    Ok((status, headers))
}

fn too_large() -> HttpError {
    HttpError::Malformed(format!("body larger than {BODY_BYTES_MAX} bytes"))
}

fn read_exact_body<R: Read>(
    r: &mut R,
    mut body: Vec<u8>,
    len: usize,
) -> Result<Vec<u8>, HttpError> {
    if len > BODY_BYTES_MAX {
        return Err(too_large());
    }
    while body.len() < len {
        if fill(r, &mut body)? == 0 {
            return Err(HttpError::Malformed(format!(
                "the connection closed after {} of {len} body bytes",
                body.len()
            )));
        }
    }
    body.truncate(len);
    Ok(body)
}

fn read_to_close<R: Read>(r: &mut R, mut body: Vec<u8>) -> Result<Vec<u8>, HttpError> {
    while fill(r, &mut body)? > 0 {
        if body.len() > BODY_BYTES_MAX {
            return Err(too_large());
        }
    }
    Ok(body)
}

/// Decodes `Transfer-Encoding: chunked` (RFC 9112 §7.1); extensions and trailers are skipped.
fn read_chunked<R: Read>(r: &mut R, mut raw: Vec<u8>) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let line_end = loop {
            if let Some(i) = find(&raw[pos..], b"\r\n") {
                break pos + i;
            }
            if raw.len() - pos > HEAD_BYTES_MAX {
                return Err(HttpError::Malformed("chunk size line too long".into()));
            }
            if fill(r, &mut raw)? == 0 {
                return Err(HttpError::Malformed(
                    "the connection closed inside a chunk".into(),
                ));
            }
        };
        let line = std::str::from_utf8(&raw[pos..line_end]).unwrap_or("");
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| HttpError::Malformed(format!("chunk size '{size_text}'")))?;
        pos = line_end + 2;
        if size == 0 {
            // Trailers, if any, end with an empty line; nothing after them is needed.
            return Ok(body);
        }
        if body.len() + size > BODY_BYTES_MAX {
            return Err(too_large());
        }
        while raw.len() < pos + size + 2 {
            if fill(r, &mut raw)? == 0 {
                return Err(HttpError::Malformed(
                    "the connection closed inside a chunk".into(),
                ));
            }
        }
        body.extend_from_slice(&raw[pos..pos + size]);
        if &raw[pos + size..pos + size + 2] != b"\r\n" {
            return Err(HttpError::Malformed("chunk not followed by CRLF".into()));
        }
        pos += size + 2;
        // Keep the buffer from growing with the whole body.
        raw.drain(..pos);
        pos = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A reader that hands out at most `step` bytes per read, to cut input everywhere.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn target() -> Target {
        Target {
            host: "127.0.0.1".into(),
            port: 15672,
            username: "guest".into(),
            password: "guest".into(),
        }
    }

    /// A request carries Host, basic auth, Connection: close and the body's length.
    #[test]
    fn request_bytes() {
        let bytes = encode_request(
            &target(),
            &Request {
                method: "PUT",
                path: "/api/vhosts/v1",
                headers: &[],
                body: Some(b"{}"),
            },
        );
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("PUT /api/vhosts/v1 HTTP/1.1\r\nHost: 127.0.0.1:15672\r\n"));
        assert!(text.contains("\r\nAuthorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\n"));
        assert!(text.contains("\r\nConnection: close\r\n"));
        assert!(text.contains("\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"));
        let get = encode_request(
            &target(),
            &Request {
                method: "GET",
                path: "/api/connections/c",
                headers: &[("X-Reason", "bye")],
                body: None,
            },
        );
        let get = String::from_utf8(get).unwrap();
        assert!(get.contains("\r\nX-Reason: bye\r\n"));
        assert!(!get.contains("Content-Length"));
    }

    /// A body with Content-Length is read whole however the bytes arrive.
    #[test]
    fn content_length_body_at_every_split() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\ncontent-type: application/json\r\n\r\n{\"a\":[1,2]}";
        for step in 1..raw.len() {
            let r = read_response(&mut Trickle { data: raw, step }, false).unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(r.body, b"{\"a\":[1,2]}");
            assert_eq!(r.header("Content-Type"), Some("application/json"));
        }
    }

    /// Chunked bodies are decoded, with chunk extensions and trailers skipped.
    #[test]
    fn chunked_body_at_every_split() {
        let raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4;x=y\r\nWiki\r\n5\r\npedia\r\n0\r\nT: v\r\n\r\n";
        for step in 1..raw.len() {
            let r = read_response(&mut Trickle { data: raw, step }, false).unwrap();
            assert_eq!(r.body, b"Wikipedia", "step {step}");
        }
    }

    /// Without a length the body runs to the end of the stream; 204 and HEAD have none.
    #[test]
    fn body_until_close_and_no_body() {
        let r = read_response(&mut Cursor::new(&b"HTTP/1.0 200 OK\r\n\r\nabc"[..]), false).unwrap();
        assert_eq!(r.body, b"abc");
        let r = read_response(
            &mut Cursor::new(&b"HTTP/1.1 204 No Content\r\n\r\n"[..]),
            false,
        )
        .unwrap();
        assert_eq!((r.status, r.body.len()), (204, 0));
        let r = read_response(
            &mut Cursor::new(&b"HTTP/1.1 200 OK\r\ncontent-length: 41\r\n\r\n"[..]),
            true,
        )
        .unwrap();
        assert_eq!(r.body.len(), 0);
    }

    /// Truncated or foreign answers are errors, never a partial success.
    #[test]
    fn malformed_answers() {
        for raw in [
            &b""[..],
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nab",
            b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        ] {
            assert!(
                read_response(&mut Cursor::new(raw), false).is_err(),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    /// A body bigger than the bound is refused before it is read.
    #[test]
    fn oversized_body_refused() {
        let raw = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
            BODY_BYTES_MAX + 1
        );
        assert!(matches!(
            read_response(&mut Cursor::new(raw.as_bytes()), false),
            Err(HttpError::Malformed(m)) if m.contains("larger")
        ));
    }

    /// IPv6 hosts are bracketed in the origin.
    #[test]
    fn origin_brackets_ipv6() {
        let mut t = target();
        t.host = "::1".into();
        assert_eq!(t.origin(), "http://[::1]:15672");
    }
}
