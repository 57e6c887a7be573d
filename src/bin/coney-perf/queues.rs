//! The many-queues run: declares N queues (every K-th durable), binds each to amq.direct,
//! pipelined with a bounded window of unanswered methods, then leaves the broker idle and
//! reports its RSS per queue and the CPU it spends doing nothing.

use crate::client::{check_close, Client, Control, CHANNEL};
use crate::proc_stat;
use crate::uri::AmqpUri;
use coney::protocol::frame::{self, FrameKind};
use coney::protocol::method::{Method, QueueBind, QueueDeclare};
use coney::protocol::FieldTable;
use std::time::{Duration, Instant};

/// Declares and binds sent ahead of their replies.
const WINDOW_METHODS: usize = 1000;
/// Longest the whole declaring may take.
const DECLARE_TIMEOUT_SECS: u64 = 1800;
/// Time given to the broker after the last reply before its memory is read.
const SETTLE_MS: u64 = 1000;

/// What the run measured; `to_json` is the line scripts/bench.sh parses.
#[derive(Debug, Default)]
pub struct QueuesSummary {
    pub queues: usize,
    pub durable: usize,
    pub declare_secs: f64,
    pub rss_before_kb: Option<u64>,
    pub rss_after_kb: Option<u64>,
    pub idle_secs: f64,
    pub idle_cpu_secs: Option<f64>,
}

impl QueuesSummary {
    pub fn to_json(&self) -> String {
        let opt = |v: Option<u64>| v.map_or("null".into(), |v| v.to_string());
        let per_queue = match (self.rss_before_kb, self.rss_after_kb) {
            (Some(b), Some(a)) if self.queues > 0 => format!(
                "{:.0}",
                a.saturating_sub(b) as f64 * 1024.0 / self.queues as f64
            ),
            _ => "null".into(),
        };
        let cpu = self
            .idle_cpu_secs
            .map_or("null".into(), |c| format!("{:.3}", c * 1000.0));
        format!(
            "{{\"queues\":{},\"durable\":{},\"declare_s\":{:.3},\"pairs_per_s\":{:.0},\"rss_before_kb\":{},\"rss_after_kb\":{},\"bytes_per_queue\":{},\"idle_s\":{:.1},\"idle_cpu_ms\":{}}}",
            self.queues,
            self.durable,
            self.declare_secs,
            self.queues as f64 / self.declare_secs.max(1e-9),
            opt(self.rss_before_kb),
            opt(self.rss_after_kb),
            per_queue,
            self.idle_secs,
            cpu
        )
    }
}

/// Declares `n` queues `coney-perf-many-I` (durable when I is a multiple of `durable_every`,
/// 0 for none), each bound to amq.direct with its name as key, then measures the idle broker.
pub fn many_queues(
    uri: &AmqpUri,
    n: usize,
    durable_every: usize,
    idle: Duration,
    broker_pid: Option<u32>,
) -> Result<QueuesSummary, String> {
    let mut c = Client::connect(uri, Duration::from_secs(crate::client::CALL_TIMEOUT_SECS))
        .map_err(|e| format!("connect to {}: {e}", uri.addr()))?;
    let mut s = QueuesSummary {
        queues: n,
        rss_before_kb: broker_pid.and_then(proc_stat::rss_kb),
        ..Default::default()
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(DECLARE_TIMEOUT_SECS);
    let (mut sent, mut answered) = (0usize, 0usize);
    while answered < 2 * n {
        while sent < 2 * n && sent - answered < WINDOW_METHODS {
            let i = sent / 2;
            let name = format!("coney-perf-many-{i}");
            let durable = durable_every > 0 && i % durable_every == 0;
            let m = if sent % 2 == 0 {
                s.durable += durable as usize;
                Method::QueueDeclare(QueueDeclare {
                    queue: name.as_bytes(),
                    durable,
                    arguments: FieldTable::EMPTY,
                    ..Default::default()
                })
            } else {
                Method::QueueBind(QueueBind {
                    queue: name.as_bytes(),
                    exchange: b"amq.direct",
                    routing_key: name.as_bytes(),
                    arguments: FieldTable::EMPTY,
                    ..Default::default()
                })
            };
            frame::write_method(&mut c.out, CHANNEL, &m);
            sent += 1;
        }
        c.flush().map_err(|e| format!("declaring: {e}"))?;
        answered += replies(&mut c).map_err(|e| format!("declaring: {e}"))?;
        if Instant::now() > deadline {
            return Err(format!("only {answered} of {} replies in time", 2 * n));
        }
    }
    s.declare_secs = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(SETTLE_MS));
    s.rss_after_kb = broker_pid.and_then(proc_stat::rss_kb);
    let cpu_before = broker_pid.and_then(proc_stat::cpu_secs);
    let idle_from = Instant::now();
    std::thread::sleep(idle);
    s.idle_secs = idle_from.elapsed().as_secs_f64();
    s.idle_cpu_secs = cpu_before
        .zip(broker_pid.and_then(proc_stat::cpu_secs))
        .map(|(a, b)| b - a);
    c.close();
    Ok(s)
}

/// Reads what has arrived (waiting for at least one read) and counts declare-ok and bind-ok.
fn replies(c: &mut Client) -> crate::client::Result<usize> {
    c.reader.fill(&mut c.stream)?;
    let mut n = 0;
    while let Some(f) = c.reader.next_frame()? {
        if f.kind != FrameKind::Method {
            continue;
        }
        let m = Method::decode(f.payload).map_err(|e| {
            crate::client::ClientError::Protocol(format!("bad method from server: {e:?}"))
        })?;
        match m {
            Method::QueueDeclareOk(_) | Method::QueueBindOk(_) => n += 1,
            other => {
                if let Control::Closed(e) = check_close(&mut c.out, f.channel, &other) {
                    return Err(e);
                }
            }
        }
    }
    Ok(n)
}
