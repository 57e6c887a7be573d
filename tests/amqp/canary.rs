//! The canary: a healthy amqprs client, on its own thread and runtime, that publishes a numbered
//! message to its own exclusive queue, waits for its delivery, and records the round trip,
//! while other clients misbehave. It fails if a message is lost, reordered or slower than its
//! bound. Used by robustness.rs (malformed input, floods) and by the hostile-client suite
//! (tests/hostile), which reads the recorded round trips of a load's time window.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use amqprs::channel::{
    BasicConsumeArguments, BasicGetArguments, BasicPublishArguments, QueueDeclareArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::BasicProperties;

use crate::support::*;

/// How a canary behaves.
#[derive(Debug, Clone, Copy)]
pub struct CanaryConfig {
    /// Pause between one round trip's delivery and the next publish.
    pub period: Duration,
    /// A round trip slower than this fails the canary (the message counts as lost).
    pub latency_max: Duration,
    /// Every this many round trips the canary also opens, uses and closes a fresh
    /// connection; 0 never does.
    pub reconnect_every: u64,
}

impl CanaryConfig {
    /// robustness.rs: a message every 20 ms, late after 1 s, a fresh connection every 25.
    pub const ROBUSTNESS: CanaryConfig = CanaryConfig {
        period: Duration::from_millis(20),
        latency_max: Duration::from_millis(1000),
        reconnect_every: 25,
    };
}

#[derive(Debug)]
pub struct CanaryReport {
    pub rounds: u64,
    pub reconnects: u64,
    pub max_latency: Duration,
}

/// One round trip: when its publish was sent and how long until its delivery arrived.
type Sample = (Instant, Duration);

/// The round trips of a time window: how many, and their median, 99th percentile and worst.
#[derive(Debug, Clone, Copy)]
pub struct Latencies {
    pub rounds: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latencies {
    fn of(mut v: Vec<Duration>) -> Latencies {
        v.sort_unstable();
        // Nearest-rank percentiles: p99 of 200 samples is the 198th.
        let rank = |p: usize| v[((v.len() * p).div_ceil(100)).max(1) - 1];
        Latencies {
            rounds: v.len(),
            p50: rank(50),
            p99: rank(99),
            max: *v.last().expect("at least one sample"),
        }
    }
}

impl std::fmt::Display for Latencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(
            f,
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} round trips",
            ms(self.p50),
            ms(self.p99),
            ms(self.max),
            self.rounds
        )
    }
}

/// A healthy client that must not notice what the others do; see the module doc.
pub struct Canary {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
    samples: Arc<Mutex<Vec<Sample>>>,
    failure: Arc<Mutex<Option<String>>>,
    thread: Option<JoinHandle<Option<CanaryReport>>>,
}

impl Canary {
    /// Starts a canary as robustness.rs uses it ([`CanaryConfig::ROBUSTNESS`]).
    pub fn start(b: &Broker) -> Canary {
        Canary::start_with(b, CanaryConfig::ROBUSTNESS)
    }

    /// Starts the canary and waits (bounded) until it has made three round trips.
    pub fn start_with(b: &Broker, config: CanaryConfig) -> Canary {
        let args = b.open_args("guest", "guest");
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU64::new(0));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let failure = Arc::new(Mutex::new(None));
        let shared = Shared {
            stop: stop.clone(),
            rounds: rounds.clone(),
            samples: samples.clone(),
        };
        let failure2 = failure.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            match rt.block_on(canary_loop(&args, config, &shared)) {
                Ok(report) => Some(report),
                Err(e) => {
                    *failure2.lock().unwrap() = Some(e);
                    None
                }
            }
        });
        let canary = Canary {
            stop,
            rounds,
            samples,
            failure,
            thread: Some(thread),
        };
        canary.wait_rounds(3);
        canary
    }

    /// Panics if the canary has failed.
    pub fn check(&self) {
        if let Some(e) = self.failure.lock().unwrap().as_ref() {
            panic!("canary failed: {e}");
        }
    }

    /// The failure, if the canary has failed (for reports that must not panic).
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().unwrap().clone()
    }

    /// Waits (bounded by [`TIMEOUT`]) until the canary has completed `n` more round trips.
    pub fn wait_rounds(&self, n: u64) {
        let target = self.rounds.load(Ordering::SeqCst) + n;
        let deadline = Instant::now() + TIMEOUT;
        while self.rounds.load(Ordering::SeqCst) < target {
            self.check();
            assert!(
                Instant::now() < deadline,
                "canary made no progress in {TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The round trips that were under way at some moment of `from..to`: sent in the window,
    /// or sent before it and delivered after it began. None if there were none.
    pub fn latencies(&self, from: Instant, to: Instant) -> Option<Latencies> {
        let v: Vec<Duration> = self
            .samples
            .lock()
            .unwrap()
            .iter()
            .filter(|(sent, rtt)| *sent <= to && *sent + *rtt >= from)
            .map(|(_, rtt)| *rtt)
            .collect();
        (!v.is_empty()).then(|| Latencies::of(v))
    }

    /// Stops the canary and returns its report; panics if it failed at any point.
    pub fn finish(mut self) -> CanaryReport {
        self.wait_rounds(1);
        self.stop.store(true, Ordering::SeqCst);
        let report = self.thread.take().unwrap().join();
        self.check();
        let report = report
            .expect("canary thread panicked")
            .expect("canary stopped without a report");
        eprintln!("canary: {report:?}");
        report
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// What the canary's thread shares with the test.
struct Shared {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
    samples: Arc<Mutex<Vec<Sample>>>,
}

/// Awaits `fut` for at most `limit`, naming `what` in the error.
pub async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {limit:?}")),
    }
}

async fn canary_loop(
    open_args: &OpenConnectionArguments,
    config: CanaryConfig,
    shared: &Shared,
) -> Result<CanaryReport, String> {
    let conn = bounded("canary connect", TIMEOUT, Connection::open(open_args)).await?;
    let ch = bounded("canary channel", TIMEOUT, conn.open_channel(None)).await?;
    let (queue, _, _) = bounded(
        "canary queue.declare",
        TIMEOUT,
        ch.queue_declare(QueueDeclareArguments::new("").exclusive(true).finish()),
    )
    .await?
    .ok_or("canary queue.declare: no declare-ok")?;
    let args = BasicConsumeArguments::new(&queue, "")
        .manual_ack(false)
        .finish();
    let (_, mut rx) = bounded("canary basic.consume", TIMEOUT, ch.basic_consume_rx(args)).await?;
    let mut report = CanaryReport {
        rounds: 0,
        reconnects: 0,
        max_latency: Duration::ZERO,
    };
    let latency_max = config.latency_max;
    // Bounded even if nobody stops it: a few minutes' worth of rounds.
    for seq in 0..100_000u64 {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let body = format!("canary {seq}").into_bytes();
        let sent = Instant::now();
        bounded(
            "canary basic.publish",
            latency_max,
            ch.basic_publish(
                BasicProperties::default(),
                body.clone(),
                BasicPublishArguments::new("", &queue),
            ),
        )
        .await?;
        let msg = tokio::time::timeout(latency_max, rx.recv())
            .await
            .map_err(|_| format!("canary message {seq} not delivered within {latency_max:?}"))?
            .ok_or("canary consumer stream ended")?;
        let rtt = sent.elapsed();
        let got = msg.content.unwrap_or_default();
        if got != body {
            return Err(format!(
                "canary expected {:?}, got {:?} (lost or reordered)",
                String::from_utf8_lossy(&body),
                String::from_utf8_lossy(&got)
            ));
        }
        shared.samples.lock().unwrap().push((sent, rtt));
        report.max_latency = report.max_latency.max(rtt);
        report.rounds += 1;
        shared.rounds.fetch_add(1, Ordering::SeqCst);
        let every = config.reconnect_every;
        if every != 0 && seq % every == every - 1 {
            bounded(
                "canary fresh connection",
                TIMEOUT,
                fresh_connection_round(open_args),
            )
            .await?;
            report.reconnects += 1;
        }
        tokio::time::sleep(config.period).await;
    }
    let _ = tokio::time::timeout(TIMEOUT, conn.close()).await;
    Ok(report)
}

/// Connect, declare, publish, get and close on a brand-new connection.
async fn fresh_connection_round(args: &OpenConnectionArguments) -> Result<(), String> {
    let conn = Connection::open(args)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let ch = conn.open_channel(None).await.map_err(|e| e.to_string())?;
    let (queue, _, _) = ch
        .queue_declare(QueueDeclareArguments::new("").exclusive(true).finish())
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no declare-ok")?;
    ch.basic_publish(
        BasicProperties::default(),
        b"fresh".to_vec(),
        BasicPublishArguments::new("", &queue),
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut got = None;
    for _ in 0..100 {
        got = ch
            .basic_get(BasicGetArguments::new(&queue).no_ack(true).finish())
            .await
            .map_err(|e| e.to_string())?;
        if got.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, _, body) = got.ok_or("fresh connection: message never arrived")?;
    if body != b"fresh" {
        return Err(format!("fresh connection got {body:?}"));
    }
    conn.close().await.map_err(|e| e.to_string())
}
