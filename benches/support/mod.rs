//! A hand-rolled timing loop shared by the benches (harness = false, no dependencies): a short
//! calibration, then fixed-length batches until a time budget is spent; prints the median and
//! best ns/op and ops/s. `cargo bench -- WORD` runs only the benches whose name contains WORD.

use std::time::{Duration, Instant};

/// Time spent finding a batch size.
const CALIBRATE_MS: u64 = 30;
/// Each timed batch lasts about this long, so timer overhead is negligible.
const BATCH_MS: u64 = 10;
/// Measuring time per bench: all benches together stay well under a minute.
const MEASURE_MS: u64 = 300;

pub struct Bench {
    filter: Option<String>,
}

impl Bench {
    /// Reads the name filter; cargo passes `--bench` and test-harness flags, which are ignored.
    pub fn from_args() -> Self {
        let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
        Bench { filter }
    }

    pub fn enabled(&self, name: &str) -> bool {
        self.filter.as_deref().is_none_or(|f| name.contains(f))
    }

    /// Times `f`, which performs `ops` operations per call.
    pub fn run(&self, name: &str, ops: u64, mut f: impl FnMut()) {
        if !self.enabled(name) {
            return;
        }
        let start = Instant::now();
        let mut calls = 0u64;
        while start.elapsed() < Duration::from_millis(CALIBRATE_MS) {
            f();
            calls += 1;
        }
        let per_call = start.elapsed().as_secs_f64() / calls as f64;
        let batch = ((BATCH_MS as f64 / 1e3) / per_call).ceil().max(1.0) as u64;
        let mut samples = Vec::new();
        let measure = Instant::now();
        while measure.elapsed() < Duration::from_millis(MEASURE_MS) || samples.len() < 3 {
            let t = Instant::now();
            for _ in 0..batch {
                f();
            }
            samples.push(t.elapsed().as_secs_f64() * 1e9 / (batch * ops) as f64);
        }
        samples.sort_by(f64::total_cmp);
        let median = samples[samples.len() / 2];
        println!(
            "{name:<52} {median:>10.1} ns/op {:>14.0} ops/s   (best {:.1} ns/op, {} samples)",
            1e9 / median,
            samples[0],
            samples.len()
        );
    }
}
