//! The two runs that carry no load: opening many idle connections to measure the broker's
//! memory per connection, and poll-connecting until the broker completes an AMQP handshake.

use crate::client::Client;
use crate::proc_stat;
use crate::uri::AmqpUri;
use std::sync::atomic::Ordering::*;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Threads that open idle connections in parallel (a broker accepts faster than one client
/// completes handshakes one by one).
const IDLE_OPENER_THREADS: usize = 8;
/// Time given to the broker after the last open before its memory is read.
const IDLE_SETTLE_MS: u64 = 1000;

/// Result of `idle_connections`.
#[derive(Debug, Default)]
pub struct IdleSummary {
    pub wanted: usize,
    pub opened: usize,
    pub first_error: Option<String>,
    pub open_secs: f64,
    pub rss_before_kb: Option<u64>,
    pub rss_after_kb: Option<u64>,
}

impl IdleSummary {
    pub fn to_json(&self) -> String {
        let per_conn = match (self.rss_before_kb, self.rss_after_kb) {
            (Some(b), Some(a)) if self.opened > 0 => {
                format!(
                    "{:.0}",
                    (a.saturating_sub(b) as f64 * 1024.0) / self.opened as f64
                )
            }
            _ => "null".into(),
        };
        let kb = |v: Option<u64>| v.map_or("null".into(), |v| v.to_string());
        let err = self.first_error.as_ref().map_or("null".into(), |e| {
            format!("\"{}\"", e.replace(['"', '\\'], "'"))
        });
        format!(
            "{{\"wanted\":{},\"opened\":{},\"open_s\":{:.3},\"rss_before_kb\":{},\"rss_after_kb\":{},\"bytes_per_connection\":{},\"first_error\":{}}}",
            self.wanted,
            self.opened,
            self.open_secs,
            kb(self.rss_before_kb),
            kb(self.rss_after_kb),
            per_conn,
            err
        )
    }
}

/// Opens `n` connections with one channel each, measures the broker's RSS growth, holds them
/// for `hold`, then drops them. Stops opening at the first failure (the broker's limit).
pub fn idle_connections(
    uri: &AmqpUri,
    n: usize,
    hold: Duration,
    broker_pid: Option<u32>,
) -> IdleSummary {
    let mut s = IdleSummary {
        wanted: n,
        rss_before_kb: broker_pid.and_then(proc_stat::rss_kb),
        ..Default::default()
    };
    let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..IDLE_OPENER_THREADS {
        let share = n / IDLE_OPENER_THREADS + usize::from(t < n % IDLE_OPENER_THREADS);
        let (uri, failed) = (uri.clone(), failed.clone());
        handles.push(thread::spawn(move || {
            let mut conns = Vec::with_capacity(share);
            let mut err = None;
            for _ in 0..share {
                if failed.load(Relaxed) {
                    break;
                }
                match Client::connect(&uri, Duration::from_secs(10)) {
                    Ok(c) => conns.push(c.stream),
                    Err(e) => {
                        failed.store(true, Relaxed);
                        err = Some(e.to_string());
                        break;
                    }
                }
            }
            (conns, err)
        }));
    }
    let mut all = Vec::with_capacity(n);
    for h in handles {
        if let Ok((conns, err)) = h.join() {
            all.extend(conns);
            if s.first_error.is_none() {
                s.first_error = err;
            }
        }
    }
    s.open_secs = start.elapsed().as_secs_f64();
    s.opened = all.len();
    thread::sleep(Duration::from_millis(IDLE_SETTLE_MS));
    s.rss_after_kb = broker_pid.and_then(proc_stat::rss_kb);
    thread::sleep(hold);
    drop(all);
    s
}

/// Poll-connects until a full AMQP handshake succeeds; returns (TCP accept, AMQP open) times
/// in milliseconds since `since` (a CLOCK_REALTIME instant taken before the broker started).
pub fn wait_ready(
    uri: &AmqpUri,
    since: std::time::SystemTime,
    timeout: Duration,
) -> Result<(f64, f64), String> {
    let ms = |t: std::time::SystemTime| {
        t.duration_since(since)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let deadline = Instant::now() + timeout;
    let addr = uri.addr();
    let mut tcp_ms = None;
    while Instant::now() < deadline {
        if tcp_ms.is_none() {
            if std::net::TcpStream::connect(&addr).is_ok() {
                tcp_ms = Some(ms(std::time::SystemTime::now()));
            } else {
                // Refused connects are cheap; a short pause keeps this from starving a
                // broker that shares the CPU.
                thread::sleep(Duration::from_micros(200));
                continue;
            }
        }
        match Client::connect(uri, Duration::from_secs(5)) {
            Ok(c) => {
                let open_ms = ms(std::time::SystemTime::now());
                c.close();
                return Ok((tcp_ms.unwrap_or(open_ms), open_ms));
            }
            Err(_) => thread::sleep(Duration::from_millis(1)),
        }
    }
    Err(format!(
        "{addr} did not accept an AMQP connection within {}s",
        timeout.as_secs()
    ))
}
