//! Fuzz target `http`: arbitrary bytes as the input of one HTTP connection, offered whole and
//! again in pieces (sizes from the first byte) the way a reactor would, against a service that
//! routes, parses listing parameters and answers with bytes or a streamed body. Checks: no
//! panic, never more consumed than offered, every output is a sequence of `HTTP/1.1` responses,
//! and the answer does not depend on how the input was split.
#![no_main]

use coney::http::conn::{HttpConn, Service};
use coney::http::paginate::{select, EnvelopeStyle, ListQuery, Listable};
use coney::http::router::{dispatch, Dispatch};
use coney::http::{Progress, Request, Response, Status};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

struct Item(&'static str);

impl Listable for Item {
    fn name(&self) -> &str {
        self.0
    }
    fn sort_value(&self, path: &[String]) -> Option<Value> {
        (path.first()?.as_str() == "name").then(|| Value::String(self.0.to_string()))
    }
}

const ITEMS: [Item; 4] = [Item("b"), Item("a.1"), Item("A"), Item("q")];

struct Fuzzed;

impl Service for Fuzzed {
    type Stream = usize;

    fn respond(&mut self, req: &Request, _peer: SocketAddr) -> Response<usize> {
        let route = match dispatch(req.method, &req.segments) {
            Dispatch::Route(r) => r,
            Dispatch::Options { allow } => return Response::new(Status::OK).header("allow", allow),
            Dispatch::Refuse(e) => return e.into_response(),
        };
        let lq = match ListQuery::parse(&req.query) {
            Ok(lq) => lq,
            Err(e) => return e.into_response(),
        };
        let sel = match select(&ITEMS, &lq, &["vhost", "name"]) {
            Ok(sel) => sel,
            Err(e) => return e.into_response(),
        };
        if let Some(p) = sel.page {
            let mut out = Vec::new();
            p.write_open(&mut out, EnvelopeStyle::Sorted);
            p.write_close(&mut out, EnvelopeStyle::Sorted);
            return Response::json(Status::OK, out);
        }
        if req.body.is_empty() {
            return Response::json(Status::OK, format!("{route:?}").into_bytes());
        }
        // A streamed body as long as the request body times 997 bytes.
        Response::new(Status::OK).stream(req.body.len() * 997)
    }

    fn produce(&mut self, left: &mut usize, out: &mut Vec<u8>, budget: usize) -> Progress {
        let n = (*left).min(budget + 3);
        out.extend(std::iter::repeat_n(b'x', n));
        *left -= n;
        if *left == 0 {
            Progress::Done
        } else {
            Progress::More
        }
    }
}

/// Runs the connection over `input` offered in pieces of the given sizes (cycled), turn by
/// turn, until a turn changes nothing.
fn run(input: &[u8], pieces: &[usize]) -> Vec<u8> {
    let start = Instant::now();
    let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut conn = HttpConn::new(peer, start);
    let mut svc = Fuzzed;
    let mut kept: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut written = Vec::new();
    for turn in 0..1_000_000u64 {
        // Turns are a millisecond apart: deadlines never fire, so only the split varies.
        let now = start + Duration::from_millis(turn);
        let mut progress = false;
        if fed < input.len() && conn.reads_input() {
            let n = pieces[turn as usize % pieces.len()].clamp(1, input.len() - fed);
            kept.extend_from_slice(&input[fed..fed + n]);
            fed += n;
            progress = true;
        }
        if conn.reads_input() && !kept.is_empty() {
            let used = conn.handle_input(&kept, now, &mut svc);
            assert!(used <= kept.len(), "consumed {used} of {}", kept.len());
            kept.drain(..used);
            progress |= used > 0;
        }
        if conn.streaming() {
            conn.pump(now, &mut svc);
            progress = true;
        }
        let n = conn.pending_output().len();
        written.extend_from_slice(conn.pending_output());
        conn.consume_output(n, now);
        progress |= n > 0;
        if conn.finished() || !progress {
            break;
        }
    }
    written
}

fn without_continues(out: &[u8]) -> Vec<u8> {
    const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
    let mut v = Vec::with_capacity(out.len());
    let mut i = 0;
    while i < out.len() {
        if out[i..].starts_with(CONTINUE) {
            i += CONTINUE.len();
        } else {
            v.push(out[i]);
            i += 1;
        }
    }
    v
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let whole = run(input, &[usize::MAX]);
    assert!(
        whole.is_empty() || whole.starts_with(b"HTTP/1.1 "),
        "output starts with {:?}",
        &whole[..whole.len().min(20)]
    );
    let pieces = [1 + (selector as usize & 7), 1 + (selector as usize >> 3), 3];
    let split = run(input, &pieces);
    assert_eq!(
        without_continues(&whole),
        without_continues(&split),
        "answer depends on the split"
    );
});
