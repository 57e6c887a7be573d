//! One load run: its configuration, the run itself (setup, producers, consumers, per-second
//! reports) and the summary it prints. The AMQP client side is built on `coney::protocol`.

use crate::client::{self, Client, ClientError};
use crate::histogram::Histogram;
use crate::load::{self, Shared};
use crate::proc_stat;
use crate::topology;
use crate::uri::AmqpUri;
use std::fmt::Write as _;
use std::sync::atomic::Ordering::*;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// How often the broker's RSS is sampled during a run.
const RSS_SAMPLE_INTERVAL_MS: u64 = 100;
/// Longest a run may last whatever the flags say: every load loop is bounded.
pub const RUN_SECS_MAX: u64 = 3600;
/// Run length when neither a duration nor message counts are given.
pub const DEFAULT_RUN_SECS: u64 = 10;
/// How long connecting all producers and consumers may take.
const READY_TIMEOUT_SECS: u64 = 120;
/// Without `-z`, the run ends once no message arrived for this long after producers finished.
const DRAIN_IDLE_SECS: u64 = 2;

/// Everything a load run needs; the command line maps onto it one to one.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub uri: AmqpUri,
    pub producers: usize,
    /// Consumers per queue.
    pub consumers: usize,
    pub body_bytes: usize,
    pub queue: String,
    /// With more than one, queues are `queue-0` .. and each gets `consumers` consumers.
    pub queues: usize,
    pub exchange: String,
    pub exchange_type: String,
    pub routing_key: Option<String>,
    pub autoack: bool,
    pub prefetch: u16,
    pub multi_ack_every: u32,
    /// Unconfirmed publishes per producer; 0 disables publisher confirms.
    pub confirm_window: u32,
    pub persistent: bool,
    pub mandatory: bool,
    /// msg/s per producer; 0 is unlimited.
    pub rate_per_producer: f64,
    pub duration: Option<Duration>,
    pub producer_count: Option<u64>,
    pub consumer_count: Option<u64>,
    pub queue_durable: bool,
    /// Publish with keys drawn at random from this many topic keys (0: the fixed key).
    pub routing_keys_random: usize,
    /// Bind this many generated wildcard/exact topic keys instead of the fixed key.
    pub topic_bindings: usize,
    /// Declare the queues with x-max-priority N and publish priorities 0..=N at random.
    pub max_priority: Option<u8>,
    /// Declare the queues with x-max-length N (drop-head: the oldest messages go).
    pub max_length: Option<u64>,
    /// The TTL + dead-letter retry loop: each queue dead-letters into `QUEUE.retry`, whose
    /// x-message-ttl sends messages back after this many ms; consumers reject a message's
    /// first delivery and ack its retry.
    pub retry_ttl_ms: Option<u32>,
    pub cleanup: bool,
    /// The broker process to report CPU and RSS for.
    pub broker_pid: Option<u32>,
    /// Print only the final JSON line.
    pub json_only: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            uri: AmqpUri::default(),
            producers: 1,
            consumers: 1,
            body_bytes: 16,
            queue: "coney-perf".into(),
            queues: 1,
            exchange: String::new(),
            exchange_type: "direct".into(),
            routing_key: None,
            autoack: false,
            prefetch: 0,
            multi_ack_every: 0,
            confirm_window: 0,
            persistent: false,
            mandatory: false,
            rate_per_producer: 0.0,
            duration: None,
            producer_count: None,
            consumer_count: None,
            queue_durable: false,
            routing_keys_random: 0,
            topic_bindings: 0,
            max_priority: None,
            max_length: None,
            retry_ttl_ms: None,
            cleanup: true,
            broker_pid: None,
            json_only: false,
        }
    }
}

/// Broker resource use over the measured window.
#[derive(Debug, Clone, Default)]
pub struct BrokerUse {
    pub pid: u32,
    pub cpu_secs: f64,
    pub rss_peak_kb: u64,
    pub rss_end_kb: u64,
    /// Bytes written to storage (not sockets) during the window.
    pub disk_write_bytes: u64,
}

/// What a run measured; `to_json` is the line scripts parse.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub sent: u64,
    pub received: u64,
    pub confirmed: u64,
    pub nacked: u64,
    pub returned: u64,
    pub duration_secs: f64,
    pub latency_p50_us: f64,
    pub latency_p99_us: f64,
    pub latency_max_us: f64,
    pub client_cpu_secs: f64,
    pub broker: Option<BrokerUse>,
}

fn us(ns: u64) -> f64 {
    (ns as f64 / 100.0).round() / 10.0
}

impl Summary {
    pub fn to_json(&self) -> String {
        let d = self.duration_secs.max(1e-9);
        let mut s = format!(
            "{{\"sent\":{},\"received\":{},\"send_rate\":{:.0},\"recv_rate\":{:.0},\"latency_us\":{{\"p50\":{},\"p99\":{},\"max\":{}}},\"duration_s\":{:.3},\"confirmed\":{},\"nacked\":{},\"returned\":{},\"client_cpu_s\":{:.2}",
            self.sent,
            self.received,
            self.sent as f64 / d,
            self.received as f64 / d,
            self.latency_p50_us,
            self.latency_p99_us,
            self.latency_max_us,
            self.duration_secs,
            self.confirmed,
            self.nacked,
            self.returned,
            self.client_cpu_secs,
        );
        if let Some(b) = &self.broker {
            let _ = write!(
                s,
                ",\"broker\":{{\"pid\":{},\"cpu_s\":{:.3},\"rss_peak_kb\":{},\"rss_end_kb\":{},\"disk_write_bytes\":{}}}",
                b.pid, b.cpu_secs, b.rss_peak_kb, b.rss_end_kb, b.disk_write_bytes
            );
        }
        s.push('}');
        s
    }
}

fn broker_sample(pid: Option<u32>, peak: &mut u64) {
    if let Some(kb) = pid.and_then(proc_stat::rss_kb) {
        *peak = (*peak).max(kb);
    }
}

/// Runs a load as configured and returns its summary, or the first error of any connection.
pub fn run(cfg: RunConfig) -> Result<Summary, String> {
    let cfg = Arc::new(cfg);
    let mut setup = Client::connect(&cfg.uri, Duration::from_secs(client::CALL_TIMEOUT_SECS))
        .map_err(|e| format!("setup connection to {}: {e}", cfg.uri.addr()))?;
    topology::declare(&mut setup, &cfg).map_err(|e| format!("declaring the topology: {e}"))?;
    let queues = topology::queue_names(&cfg);
    let consumer_total = queues.len() * cfg.consumers;
    let shared = Arc::new(Shared::new(consumer_total));
    let mut threads = Vec::new();
    for (qi, q) in queues.iter().enumerate() {
        for ci in 0..cfg.consumers {
            let id = qi * cfg.consumers + ci;
            let (cfg, shared, q) = (cfg.clone(), shared.clone(), q.clone());
            threads.push(
                thread::Builder::new()
                    .name(format!("consumer-{id}"))
                    .spawn(move || load::run_consumer(cfg, shared, id, q))
                    .map_err(|e| e.to_string())?,
            );
        }
    }
    for id in 0..cfg.producers {
        let (cfg, shared) = (cfg.clone(), shared.clone());
        threads.push(
            thread::Builder::new()
                .name(format!("producer-{id}"))
                .spawn(move || load::run_producer(cfg, shared, id))
                .map_err(|e| e.to_string())?,
        );
    }
    let expected_ready = consumer_total + cfg.producers;
    let ready_deadline = Instant::now() + Duration::from_secs(READY_TIMEOUT_SECS);
    while shared.ready.load(SeqCst) < expected_ready && !shared.stopping() {
        if Instant::now() > ready_deadline {
            shared.fail(
                "setup",
                ClientError::Protocol("connections not ready in time".into()),
            );
        }
        thread::sleep(Duration::from_millis(5));
    }
    let summary = measure(&cfg, &shared, consumer_total);
    shared.stop.store(true, SeqCst);
    for t in threads {
        let _ = t.join();
    }
    let error = shared.error.lock().ok().and_then(|e| e.clone());
    if let Some(e) = error {
        return Err(e);
    }
    if cfg.cleanup {
        topology::cleanup(&mut setup, &cfg).map_err(|e| format!("cleanup: {e}"))?;
    }
    setup.close();
    Ok(summary)
}

/// The measured window: starts producers, reports every second, ends the run.
fn measure(cfg: &RunConfig, shared: &Shared, consumers: usize) -> Summary {
    let duration = cfg.duration.or_else(|| {
        (cfg.producer_count.is_none() && cfg.consumer_count.is_none())
            .then(|| Duration::from_secs(DEFAULT_RUN_SECS))
    });
    let hard_stop = Duration::from_secs(RUN_SECS_MAX);
    let cpu_before = cfg.broker_pid.and_then(proc_stat::cpu_secs);
    let disk_before = cfg.broker_pid.and_then(proc_stat::disk_write_bytes);
    let client_cpu_before = proc_stat::self_cpu_secs();
    let mut rss_peak = 0;
    broker_sample(cfg.broker_pid, &mut rss_peak);
    let mut total = Histogram::new();
    let mut interval = Histogram::new();
    let start = Instant::now();
    let start_ns = load::monotonic_ns();
    shared.go.store(true, Release);
    let (mut last_sent, mut last_received) = (0, 0);
    let mut last_report = start;
    let mut last_progress = start;
    let mut prev_received = 0;
    let duration_secs;
    loop {
        thread::sleep(Duration::from_millis(RSS_SAMPLE_INTERVAL_MS));
        broker_sample(cfg.broker_pid, &mut rss_peak);
        let elapsed = start.elapsed();
        let received = shared.received.load(Relaxed);
        if received != prev_received {
            prev_received = received;
            last_progress = Instant::now();
        }
        let producers_done = shared.producers_done.load(SeqCst) >= cfg.producers;
        let consumers_done = shared.consumers_done.load(SeqCst) >= consumers;
        let drained =
            consumers == 0 || last_progress.elapsed() >= Duration::from_secs(DRAIN_IDLE_SECS);
        let over = shared.stopping()
            || elapsed >= hard_stop
            || (producers_done && consumers_done)
            || match duration {
                Some(d) => elapsed >= d,
                // Counted runs: end when every counted side is done and nothing is moving.
                None => {
                    (cfg.consumer_count.is_some() && consumers > 0 && consumers_done)
                        || (cfg.producer_count.is_some() && producers_done && drained)
                }
            };
        if last_report.elapsed() >= Duration::from_secs(1) || over {
            for h in &shared.latency {
                if let Ok(mut h) = h.lock() {
                    interval.merge(&h);
                    h.clear();
                }
            }
            let sent = shared.sent.load(Relaxed);
            let received = shared.received.load(Relaxed);
            let secs = last_report.elapsed().as_secs_f64().max(1e-9);
            if !cfg.json_only {
                println!(
                    "time {:.1}s, sent {:.0} msg/s, received {:.0} msg/s, latency p50 {} us, p99 {} us",
                    elapsed.as_secs_f64(),
                    (sent - last_sent) as f64 / secs,
                    (received - last_received) as f64 / secs,
                    us(interval.quantile(0.5)),
                    us(interval.quantile(0.99)),
                );
            }
            total.merge(&interval);
            interval.clear();
            last_sent = sent;
            last_received = received;
            last_report = Instant::now();
        }
        if over {
            // A counted run is measured up to its last publish or delivery, not to the end of
            // the drain wait; a timed run up to now.
            duration_secs = if duration.is_none() && !shared.stopping() {
                let last = shared
                    .last_publish_ns
                    .load(SeqCst)
                    .max(shared.last_receive_ns.load(SeqCst));
                last.saturating_sub(start_ns) as f64 / 1e9
            } else {
                start.elapsed().as_secs_f64()
            };
            break;
        }
    }
    // Counters are read before stopping so the window and the counts agree.
    let sent = shared.sent.load(SeqCst);
    let received = shared.received.load(SeqCst);
    let broker = cfg.broker_pid.map(|pid| {
        broker_sample(Some(pid), &mut rss_peak);
        BrokerUse {
            pid,
            cpu_secs: proc_stat::cpu_secs(pid).unwrap_or(0.0) - cpu_before.unwrap_or(0.0),
            rss_peak_kb: rss_peak,
            rss_end_kb: proc_stat::rss_kb(pid).unwrap_or(0),
            disk_write_bytes: proc_stat::disk_write_bytes(pid)
                .unwrap_or(0)
                .saturating_sub(disk_before.unwrap_or(0)),
        }
    });
    Summary {
        sent,
        received,
        confirmed: shared.confirmed.load(SeqCst),
        nacked: shared.nacked.load(SeqCst),
        returned: shared.returned.load(SeqCst),
        duration_secs,
        latency_p50_us: us(total.quantile(0.5)),
        latency_p99_us: us(total.quantile(0.99)),
        latency_max_us: us(total.max()),
        client_cpu_secs: proc_stat::self_cpu_secs() - client_cpu_before,
        broker,
    }
}
