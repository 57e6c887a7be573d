//! How a hostile load is run and judged: one load at a time (a process-wide lock, so no other
//! test of this binary competes for the two cores), a private broker (or `CONEY_TEST_ADDR`),
//! a canary measuring its own publish→deliver round trip, and phases: each phase's time window
//! gets the canary's p50/p99/max, printed as a table row, and on coney its p99 must stay under
//! [`CANARY_P99_MAX`] (a phase too short for a percentile: its slowest round trip). Against
//! another broker (RabbitMQ) the rows are printed, not asserted. Each row also gives the
//! machine's 1-minute load average at the end of the phase: on a machine busy with other work
//! the canary waits for a CPU, whatever the broker does.
//!
//! A load fails only if two runs in a row miss (`judged_twice`): a cost the broker lets a client
//! impose comes back on every run, while a scheduler hiccup of a busy 2-core machine (another
//! process taking both CPUs for 10 ms) seldom hits the same load twice. Both runs' rows are
//! printed, so a first miss stays visible.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::canary::{Canary, CanaryConfig, Latencies};
use crate::procfs::loadavg_1min;
use crate::support::Broker;

/// The bound of the whole suite: the canary's 99th-percentile round trip during any load.
pub const CANARY_P99_MAX: Duration = Duration::from_millis(10);

/// The hostile suite's canary: a round trip every 5 ms (hundreds per phase), late only after
/// 10 s so a slow broker is measured rather than failed, and no reconnects (a fresh connection
/// would leave a gap in the measurement; connection loads measure handshakes themselves).
const CANARY: CanaryConfig = CanaryConfig {
    period: Duration::from_millis(5),
    latency_max: Duration::from_secs(10),
    reconnect_every: 0,
};

/// Fewest canary round trips for a phase's p99 to mean something: a phase with fewer (a
/// single expensive command) is judged by its slowest round trip instead. A load repeats short
/// work (e.g. declare, bind, delete) for at least [`PHASE_TIME_MIN`].
const ROUNDS_MIN: usize = 20;
/// The shortest a phase of repeated work runs: ROUNDS_MIN canary periods and then some.
pub const PHASE_TIME_MIN: Duration = Duration::from_millis(300);

static SERIAL: Mutex<()> = Mutex::new(());

/// One phase's result.
struct Row {
    phase: String,
    work: String,
    took: Duration,
    latencies: Latencies,
    /// The machine's 1-minute load average when the phase ended.
    load: Option<f64>,
}

/// A hostile load in progress; see the module doc.
pub struct Load {
    pub name: &'static str,
    pub b: Broker,
    canary: Canary,
    rows: Vec<Row>,
    _serial: MutexGuard<'static, ()>,
}

impl Load {
    /// Takes the suite's lock, starts a broker (`extra_args` for a private coney) and the
    /// canary.
    pub fn start(name: &'static str, extra_args: &[&str]) -> Load {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let b = Broker::start_with(extra_args);
        let canary = Canary::start_with(&b, CANARY);
        // Let the canary's connection settle before anything is measured.
        canary.wait_rounds(20);
        Load {
            name,
            b,
            canary,
            rows: Vec::new(),
            _serial: serial,
        }
    }

    /// Whether the broker under test is another one (RabbitMQ): rows are then only printed.
    pub fn external(&self) -> bool {
        self.b.is_external()
    }

    /// Runs one phase of the load; `f` returns a description of the work it did (e.g.
    /// "20,000 bindings"). The canary's round trips during the phase are recorded.
    pub fn phase(&mut self, phase: &str, f: impl FnOnce(&Broker) -> String) {
        let from = Instant::now();
        let work = f(&self.b);
        let mut to = Instant::now();
        // A short phase still spans a few canary periods, so some round trip overlaps it.
        let span = CANARY.period * 3;
        if to < from + span {
            std::thread::sleep(from + span - to);
            to = from + span;
        }
        // Round trips in flight at the end of the phase belong to it: wait for them.
        self.canary.wait_rounds(2);
        self.canary.check();
        let latencies = self.canary.latencies(from, to).unwrap_or(Latencies {
            rounds: 0,
            p50: Duration::ZERO,
            p99: Duration::ZERO,
            max: Duration::ZERO,
        });
        eprintln!(
            "hostile {} / {phase}: {work} in {:.2} s; canary {latencies}",
            self.name,
            (to - from).as_secs_f64()
        );
        self.rows.push(Row {
            phase: phase.to_owned(),
            work,
            took: to - from,
            latencies,
            load: loadavg_1min(),
        });
    }

    /// Prints the load's rows and, on coney, asserts every phase's canary p99.
    pub fn finish(self) {
        let external = self.external();
        let broker = if external { "other" } else { "coney" };
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let load = |r: &Row| r.load.map_or("?".to_owned(), |l| format!("{l:.1}"));
        for r in &self.rows {
            // One greppable line per phase: the table of the report is made of these.
            println!(
                "HOSTILE | {broker} | {} | {} | {} | {:.1} s | {:.2} | {:.2} | {:.2} | {} | {}",
                self.name,
                r.phase,
                r.work,
                r.took.as_secs_f64(),
                ms(r.latencies.p50),
                ms(r.latencies.p99),
                ms(r.latencies.max),
                r.latencies.rounds,
                load(r)
            );
        }
        self.canary.finish();
        if external {
            return;
        }
        for r in &self.rows {
            // Too few round trips for a percentile: then none of them may be slow.
            let (what, worst) = if r.latencies.rounds >= ROUNDS_MIN {
                ("p99", r.latencies.p99)
            } else {
                ("max", r.latencies.max)
            };
            assert!(
                r.latencies.rounds > 0,
                "{} / {}: no canary round trip",
                self.name,
                r.phase
            );
            assert!(
                worst < CANARY_P99_MAX,
                "{} / {}: canary {what} {:.2} ms ≥ {:?} ({}; machine load {})",
                self.name,
                r.phase,
                ms(worst),
                CANARY_P99_MAX,
                r.latencies,
                load(r)
            );
        }
    }
}

/// Repeats `step` until `limit` has passed (at least once, at most `max_rounds` times);
/// returns how many times it ran.
pub fn repeat_for(limit: Duration, max_rounds: usize, mut step: impl FnMut(usize)) -> usize {
    let deadline = Instant::now() + limit;
    let mut n = 0;
    while n < max_rounds {
        step(n);
        n += 1;
        if Instant::now() >= deadline {
            break;
        }
    }
    n
}

/// Runs a hostile load; if it fails (a canary bound missed, or anything else), says so and runs
/// it once more from scratch (a new broker and canary), and fails if the second run fails too.
/// See the module doc for why a single miss is not a verdict.
pub fn judged_twice(load: fn()) {
    let first = std::panic::catch_unwind(load);
    if first.is_ok() {
        return;
    }
    eprintln!(
        "hostile: the first run missed (machine load {}); running the load once more",
        loadavg_1min().map_or("?".to_owned(), |l| format!("{l:.1}"))
    );
    load();
}
