//! HttpConn driven as a reactor would, against a test service, with responses read back by a
//! small independent parser (status line, headers, Content-Length or chunked bodies).

use super::*;
use crate::http::request::Request;
use crate::http::response::Response;
use std::io::Write;

/// Answers `/small` with bytes, `/list?n=N` with a streamed JSON array of N items, `/echo`
/// with the request body, anything else 404.
#[derive(Default)]
struct TestService {
    produce_calls: usize,
    largest_slice: usize,
}

struct Cursor {
    next: usize,
    end: usize,
}

fn item(out: &mut Vec<u8>, i: usize) {
    let _ = write!(out, "{{\"name\":\"queue-{i:05}\",\"messages\":{i}}}");
}

impl Service for TestService {
    type Stream = Cursor;

    fn respond(&mut self, req: &Request, _peer: SocketAddr) -> Response<Cursor> {
        match req.segments.first().map(String::as_str) {
            Some("small") => Response::json(Status::OK, b"hello".to_vec()),
            Some("echo") => Response::json(Status::OK, req.body.clone()),
            Some("created") => Response::new(Status::CREATED),
            Some("nocontent") => Response::new(Status::NO_CONTENT),
            Some("list") => {
                let n = req.query.get("n").and_then(|n| n.parse().ok()).unwrap_or(0);
                Response::new(Status::OK)
                    .header("content-type", "application/json")
                    .stream(Cursor { next: 0, end: n })
            }
            _ => Response::new(Status::NOT_FOUND),
        }
    }

    fn produce(&mut self, c: &mut Cursor, out: &mut Vec<u8>, budget: usize) -> Progress {
        self.produce_calls += 1;
        let start = out.len();
        if c.next == 0 {
            out.push(b'[');
        }
        while c.next < c.end && out.len() - start < budget {
            if c.next > 0 {
                out.push(b',');
            }
            item(out, c.next);
            c.next += 1;
        }
        self.largest_slice = self.largest_slice.max(out.len() - start);
        if c.next < c.end {
            return Progress::More;
        }
        out.push(b']');
        Progress::Done
    }
}

fn expected_list(n: usize) -> Vec<u8> {
    let mut out = vec![b'['];
    for i in 0..n {
        if i > 0 {
            out.push(b',');
        }
        item(&mut out, i);
    }
    out.push(b']');
    out
}

fn peer() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

/// A parsed response: status, lower-cased headers, decoded body.
#[derive(Debug)]
struct Parsed {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Parsed {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Splits `bytes` into responses; `head_only` lists which responses answer HEAD.
fn parse_responses(mut bytes: &[u8], head_only: &[bool]) -> Vec<Parsed> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = std::str::from_utf8(&bytes[..end]).unwrap();
        bytes = &bytes[end + 4..];
        let mut lines = head.split("\r\n");
        let status: u16 = lines.next().unwrap()[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(": ").unwrap();
                (n.to_ascii_lowercase(), v.to_string())
            })
            .collect();
        let mut p = Parsed {
            status,
            headers,
            body: Vec::new(),
        };
        if status == 100 {
            out.push(p);
            continue;
        }
        let skip_body = head_only.get(out.len()).copied().unwrap_or(false);
        if skip_body {
        } else if let Some(n) = p.header("content-length") {
            let n: usize = n.parse().unwrap();
            p.body = bytes[..n].to_vec();
            bytes = &bytes[n..];
        } else if p.header("transfer-encoding") == Some("chunked") {
            loop {
                let eol = bytes.windows(2).position(|w| w == b"\r\n").unwrap();
                let size =
                    usize::from_str_radix(std::str::from_utf8(&bytes[..eol]).unwrap(), 16).unwrap();
                bytes = &bytes[eol + 2..];
                if size == 0 {
                    assert_eq!(&bytes[..2], b"\r\n");
                    bytes = &bytes[2..];
                    break;
                }
                p.body.extend_from_slice(&bytes[..size]);
                assert_eq!(&bytes[size..size + 2], b"\r\n");
                bytes = &bytes[size + 2..];
            }
        } else if !matches!(status, 204 | 304) {
            // Delimited by the end of the connection.
            p.body = bytes.to_vec();
            bytes = &[];
        }
        out.push(p);
    }
    out
}

/// Drives one connection like the reactor loop in conn.rs's module doc, with an unlimited
/// socket: each turn offers the kept input, pumps, and drains all output.
fn drive(
    conn: &mut HttpConn<Cursor>,
    svc: &mut TestService,
    input: &[u8],
    start: Instant,
) -> Vec<u8> {
    let mut kept = input.to_vec();
    let mut written = Vec::new();
    for turn in 0..10_000u64 {
        let now = start + Duration::from_millis(turn);
        if conn.reads_input() && !kept.is_empty() {
            let used = conn.handle_input(&kept, now, svc);
            kept.drain(..used);
        }
        if conn.streaming() {
            conn.pump(now, svc);
        }
        let n = conn.pending_output().len();
        written.extend_from_slice(conn.pending_output());
        conn.consume_output(n, now);
        if conn.finished() || (kept.is_empty() && !conn.streaming()) {
            break;
        }
    }
    written
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
}

/// Every proper prefix of a request is held back (nothing consumed, nothing answered); the
/// whole request is answered.
#[test]
fn every_prefix_of_a_request_is_incomplete() {
    let req = b"PUT /echo?x=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
Content-Length: 7\r\n\r\n{\"a\":1}";
    let head_len = req.len() - 7;
    let now = Instant::now();
    for cut in 0..req.len() {
        let mut conn = HttpConn::new(peer(), now);
        let mut svc = TestService::default();
        let used = conn.handle_input(&req[..cut], now, &mut svc);
        // The head is consumed only whole; body bytes are taken as they come.
        let want = if cut >= head_len { cut } else { 0 };
        assert_eq!(used, want, "cut at {cut}");
        assert!(conn.pending_output().is_empty(), "cut at {cut}");
        assert!(!conn.finished());
    }
    let mut conn = HttpConn::new(peer(), now);
    let out = drive(&mut conn, &mut TestService::default(), req, now);
    let r = parse_responses(&out, &[]);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].body, b"{\"a\":1}");
}

/// Pipelined requests are answered in request order, a streamed listing included, and the
/// requests behind the stream wait until it is done.
#[test]
fn pipelined_responses_keep_request_order() {
    let mut input = Vec::new();
    for p in ["/small", "/list?n=3000", "/nope", "/small"] {
        input.extend_from_slice(&get(p));
    }
    let now = Instant::now();
    let mut conn = HttpConn::new(peer(), now);
    let mut svc = TestService::default();
    let out = drive(&mut conn, &mut svc, &input, now);
    let r = parse_responses(&out, &[]);
    let statuses: Vec<u16> = r.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 404, 200]);
    assert_eq!(r[0].body, b"hello");
    assert_eq!(r[1].body, expected_list(3000));
    assert_eq!(r[1].header("transfer-encoding"), Some("chunked"));
    assert_eq!(r[3].body, b"hello");
    assert!(svc.produce_calls > 1, "the listing took several slices");
}

/// At most HTTP_REQUESTS_PER_TURN_MAX pipelined requests are taken per loop turn; the rest
/// stay in the caller's buffer for the next turn.
#[test]
fn pipelined_requests_are_bounded_per_turn() {
    let input: Vec<u8> = (0..40).flat_map(|_| get("/small")).collect();
    let now = Instant::now();
    let mut conn = HttpConn::new(peer(), now);
    let mut svc = TestService::default();
    let used = conn.handle_input(&input, now, &mut svc);
    assert_eq!(used, get("/small").len() * HTTP_REQUESTS_PER_TURN_MAX);
    // Same turn: nothing more is taken.
    assert_eq!(conn.handle_input(&input[used..], now, &mut svc), 0);
    let next = now + Duration::from_millis(1);
    let used2 = conn.handle_input(&input[used..], next, &mut svc);
    assert_eq!(used2, get("/small").len() * HTTP_REQUESTS_PER_TURN_MAX);
}

/// A head larger than the bound gets 431 and the connection closes; a declared body larger
/// than HTTP_BODY_MAX_BYTES gets 413 before any of it is read.
#[test]
fn oversized_head_and_body_are_refused() {
    let now = Instant::now();
    let mut head = b"GET /small HTTP/1.1\r\nHost: x\r\n".to_vec();
    while head.len() < crate::limits::HTTP_HEAD_MAX_BYTES + 10 {
        head.extend_from_slice(b"X-Pad: 0123456789012345678901234567890123456789\r\n");
    }
    let mut conn = HttpConn::new(peer(), now);
    let mut svc = TestService::default();
    assert_eq!(conn.handle_input(&head, now, &mut svc), head.len());
    let r = parse_responses(conn.pending_output(), &[]);
    assert_eq!(r[0].status, 431);
    assert_eq!(r[0].header("connection"), Some("close"));
    let n = conn.pending_output().len();
    conn.consume_output(n, now);
    assert!(conn.finished());

    let big = format!(
        "PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        HTTP_BODY_MAX_BYTES + 1
    );
    let mut conn = HttpConn::new(peer(), now);
    conn.handle_input(big.as_bytes(), now, &mut svc);
    let r = parse_responses(conn.pending_output(), &[]);
    assert_eq!(
        r.len(),
        1,
        "no 100 Continue for a body that will be refused"
    );
    assert_eq!(r[0].status, 413);
    assert!(!conn.reads_input());
}

/// Slowloris: a head still incomplete HTTP_REQUEST_TIMEOUT_SECS after the connection opened
/// gets 408 and the connection closes, however steadily its bytes trickle in; an idle
/// connection that sent nothing is closed without an answer.
#[test]
fn slow_request_head_times_out() {
    let start = Instant::now();
    let req = get("/small");
    let mut conn = HttpConn::new(peer(), start);
    let mut svc = TestService::default();
    let mut kept = Vec::new();
    let step = Duration::from_millis(500);
    let mut now = start;
    for &b in &req[..20] {
        now += step;
        kept.push(b);
        let used = conn.handle_input(&kept, now, &mut svc);
        kept.drain(..used);
        conn.check_deadlines(now);
        if !conn.reads_input() {
            break;
        }
    }
    assert!(now - start <= Duration::from_secs(HTTP_REQUEST_TIMEOUT_SECS) + step);
    let r = parse_responses(conn.pending_output(), &[]);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, 408);
    assert_eq!(conn.close_reason, Some(CloseReason::SlowRequestHead));

    let mut idle = HttpConn::<Cursor>::new(peer(), start);
    idle.check_deadlines(start + Duration::from_secs(HTTP_REQUEST_TIMEOUT_SECS) - step);
    assert!(!idle.finished());
    idle.check_deadlines(start + Duration::from_secs(HTTP_REQUEST_TIMEOUT_SECS));
    assert!(idle.finished());
    assert!(idle.pending_output().is_empty());
    assert_eq!(idle.close_reason, Some(CloseReason::IdleBeforeRequest));
}

/// After a response, the keep-alive wait for the next head is bounded the same way; a body
/// that stops arriving is dropped after HTTP_IDLE_TIMEOUT_SECS.
#[test]
fn keep_alive_wait_and_stalled_body_are_bounded() {
    let start = Instant::now();
    let mut conn = HttpConn::new(peer(), start);
    let mut svc = TestService::default();
    let out = drive(&mut conn, &mut svc, &get("/small"), start);
    assert_eq!(parse_responses(&out, &[])[0].status, 200);
    let later = start + Duration::from_secs(HTTP_REQUEST_TIMEOUT_SECS + 1);
    conn.check_deadlines(later);
    assert!(conn.finished());

    let mut conn = HttpConn::new(peer(), start);
    let partial = b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{}";
    conn.handle_input(partial, start, &mut svc);
    conn.check_deadlines(start + Duration::from_secs(HTTP_IDLE_TIMEOUT_SECS - 1));
    assert!(!conn.finished());
    conn.check_deadlines(start + Duration::from_secs(HTTP_IDLE_TIMEOUT_SECS));
    assert!(conn.finished());
    assert_eq!(conn.close_reason, Some(CloseReason::SlowBody));
}

/// A listing of 10,000 items to a peer that never reads stops at the high-water mark; as the
/// peer reads, production resumes exactly where it stopped and each turn produces one
/// bounded slice; the chunked body decodes to the whole listing.
#[test]
fn paced_stream_resumes_where_it_stopped() {
    let now = Instant::now();
    let mut conn = HttpConn::new(peer(), now);
    let mut svc = TestService::default();
    conn.handle_input(&get("/list?n=10000"), now, &mut svc);
    for _ in 0..1000 {
        conn.pump(now, &mut svc);
    }
    let stalled = conn.pending_output().len();
    let item_max = 64;
    assert!(stalled < HTTP_WRITE_BUFFER_HIGH_BYTES + HTTP_BODY_SLICE_BYTES + item_max);
    assert!(conn.streaming(), "not done while the peer does not read");
    let calls = svc.produce_calls;
    conn.pump(now, &mut svc);
    assert_eq!(
        svc.produce_calls, calls,
        "no production above the high-water mark"
    );

    // The peer now reads 16 KiB per turn.
    let mut written = Vec::new();
    let mut turns = 0;
    while conn.streaming() || !conn.pending_output().is_empty() {
        turns += 1;
        assert!(turns < 100_000);
        let t = now + Duration::from_millis(turns);
        conn.pump(t, &mut svc);
        let n = conn.pending_output().len().min(16 * 1024);
        written.extend_from_slice(&conn.pending_output()[..n]);
        conn.consume_output(n, t);
    }
    assert!(svc.largest_slice <= HTTP_BODY_SLICE_BYTES + item_max);
    let r = parse_responses(&written, &[]);
    assert_eq!(r[0].body, expected_list(10_000));
    assert!(conn.reads_input());
}

/// HEAD gets the GET's headers (length, or chunked for a stream) and no body; 201/204 carry
/// no content-length, as cowboy sends them.
#[test]
fn head_and_bodiless_statuses() {
    let now = Instant::now();
    let mut input = b"HEAD /small HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    input.extend_from_slice(b"HEAD /list?n=5 HTTP/1.1\r\nHost: x\r\n\r\n");
    input.extend_from_slice(&get("/created"));
    input.extend_from_slice(&get("/nocontent"));
    input.extend_from_slice(&get("/small"));
    let mut conn = HttpConn::new(peer(), now);
    let out = drive(&mut conn, &mut TestService::default(), &input, now);
    let r = parse_responses(&out, &[true, true]);
    assert_eq!(r[0].header("content-length"), Some("5"));
    assert!(r[0].body.is_empty());
    assert_eq!(r[1].header("transfer-encoding"), Some("chunked"));
    assert_eq!(
        (r[2].status, r[2].header("content-length")),
        (201, Some("0"))
    );
    assert_eq!((r[3].status, r[3].header("content-length")), (204, None));
    assert_eq!(r[4].body, b"hello");
}

/// `Connection: close` and HTTP/1.0 end the connection after the response; an HTTP/1.0
/// stream is delimited by the close instead of chunks.
#[test]
fn connection_close_and_http10() {
    let now = Instant::now();
    let mut input = b"GET /small HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec();
    input.extend_from_slice(&get("/small"));
    let mut conn = HttpConn::new(peer(), now);
    let out = drive(&mut conn, &mut TestService::default(), &input, now);
    let r = parse_responses(&out, &[]);
    assert_eq!(r.len(), 1, "nothing after connection: close is answered");
    assert_eq!(r[0].header("connection"), Some("close"));
    assert!(conn.finished());

    let mut conn = HttpConn::new(peer(), now);
    let out = drive(
        &mut conn,
        &mut TestService::default(),
        b"GET /list?n=100 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        now,
    );
    let r = parse_responses(&out, &[]);
    assert_eq!(r[0].header("transfer-encoding"), None);
    assert_eq!(r[0].header("connection"), Some("close"));
    assert_eq!(r[0].body, expected_list(100));
    assert!(conn.finished());
}

/// The HTTP_REQUESTS_PER_CONNECTION_MAX-th response says `connection: close` (cowboy's
/// max_keepalive, seen on RabbitMQ 3.10 at the 1000th request).
#[test]
fn keep_alive_request_bound() {
    let now = Instant::now();
    let mut conn = HttpConn::new(peer(), now);
    let mut svc = TestService::default();
    let req = get("/small");
    for i in 1..=HTTP_REQUESTS_PER_CONNECTION_MAX {
        let t = now + Duration::from_millis(i as u64);
        assert_eq!(conn.handle_input(&req, t, &mut svc), req.len());
        let r = parse_responses(conn.pending_output(), &[]);
        let close = r[0].header("connection") == Some("close");
        assert_eq!(close, i == HTTP_REQUESTS_PER_CONNECTION_MAX, "request {i}");
        let n = conn.pending_output().len();
        conn.consume_output(n, t);
    }
    assert!(conn.finished());
}

/// `Expect: 100-continue` gets an interim 100 before the body is read; a chunked request
/// body split at every position decodes to the same bytes.
#[test]
fn expect_continue_and_chunked_request_bodies() {
    let now = Instant::now();
    let head =
        b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n";
    let mut conn = HttpConn::new(peer(), now);
    let mut svc = TestService::default();
    conn.handle_input(head, now, &mut svc);
    assert_eq!(conn.pending_output(), b"HTTP/1.1 100 Continue\r\n\r\n");
    conn.handle_input(b"{}", now, &mut svc);
    let r = parse_responses(conn.pending_output(), &[]);
    assert_eq!((r[1].status, r[1].body.as_slice()), (200, b"{}".as_slice()));

    let req = b"PUT /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: y\r\n\r\n";
    for cut in 0..req.len() {
        let mut conn = HttpConn::new(peer(), now);
        let mut kept = req[..cut].to_vec();
        let used = conn.handle_input(&kept, now, &mut svc);
        kept.drain(..used);
        kept.extend_from_slice(&req[cut..]);
        let used = conn.handle_input(&kept, now, &mut svc);
        assert_eq!(used, kept.len(), "cut {cut}");
        let r = parse_responses(conn.pending_output(), &[]);
        assert_eq!(r[0].body, b"hello world", "cut {cut}");
    }
    let bad = b"PUT /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
    let mut conn = HttpConn::new(peer(), now);
    conn.handle_input(bad, now, &mut svc);
    assert_eq!(parse_responses(conn.pending_output(), &[])[0].status, 400);
    let huge = b"PUT /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffff\r\n";
    let mut conn = HttpConn::new(peer(), now);
    conn.handle_input(huge, now, &mut svc);
    assert_eq!(parse_responses(conn.pending_output(), &[])[0].status, 413);
}

/// A peer that stops reading while output is pending is dropped after the idle timeout.
#[test]
fn peer_not_reading_is_dropped() {
    let now = Instant::now();
    let mut conn = HttpConn::new(peer(), now);
    let mut svc = TestService::default();
    conn.handle_input(&get("/list?n=100000"), now, &mut svc);
    conn.check_deadlines(now + Duration::from_secs(HTTP_IDLE_TIMEOUT_SECS - 1));
    assert!(!conn.finished());
    conn.check_deadlines(now + Duration::from_secs(HTTP_IDLE_TIMEOUT_SECS));
    assert!(conn.finished());
    assert_eq!(conn.close_reason, Some(CloseReason::PeerNotReading));
}
