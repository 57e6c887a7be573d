//! Log-linear latency histogram for the load generator: fixed buckets (exact below 32, then 32
//! sub-buckets per power of two, so at most ~3% relative error), no allocation per record.
//! Owns percentile arithmetic only; clocks and locking belong to the callers.

/// Sub-buckets per power of two, as a bit count: 2^5 = 32 gives ≤ 1/32 relative bucket width.
const SUB_BUCKET_BITS: u32 = 5;
const SUB_BUCKETS: usize = 1 << SUB_BUCKET_BITS;
/// Values below `SUB_BUCKETS` get one bucket each; every higher power of two gets 32.
const BUCKETS: usize = (64 - SUB_BUCKET_BITS as usize + 1) * SUB_BUCKETS;

/// Counts of `u64` samples (the load generator records nanoseconds).
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

fn index_of(v: u64) -> usize {
    if v < SUB_BUCKETS as u64 {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - SUB_BUCKET_BITS;
    let sub = (v >> shift) as usize & (SUB_BUCKETS - 1);
    ((shift as usize + 1) << SUB_BUCKET_BITS) + sub
}

/// Smallest and largest value that land in bucket `i`.
fn bounds_of(i: usize) -> (u64, u64) {
    if i < SUB_BUCKETS {
        return (i as u64, i as u64);
    }
    let shift = (i >> SUB_BUCKET_BITS) as u32 - 1;
    let sub = (i & (SUB_BUCKETS - 1)) as u64;
    let low = (SUB_BUCKETS as u64 + sub) << shift;
    (low, low + ((1u64 << shift) - 1))
}

impl Histogram {
    pub fn new() -> Self {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            total: 0,
            max: 0,
        }
    }

    #[inline]
    pub fn record(&mut self, v: u64) {
        self.counts[index_of(v)] += 1;
        self.total += 1;
        if v > self.max {
            self.max = v;
        }
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn merge(&mut self, other: &Histogram) {
        if other.total == 0 {
            return;
        }
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += *b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    pub fn clear(&mut self) {
        if self.total != 0 {
            self.counts.fill(0);
        }
        self.total = 0;
        self.max = 0;
    }

    /// The value at quantile `q` (0.0..=1.0): the midpoint of its bucket, capped at the exact
    /// maximum so p100 is never above what was seen. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        if rank >= self.total {
            return self.max;
        }
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, high) = bounds_of(i);
                return (low + (high - low) / 2).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_cover_u64() {
        let mut expect_low = 0u64;
        for i in 0..BUCKETS {
            let (low, high) = bounds_of(i);
            assert_eq!(low, expect_low, "bucket {i}");
            assert_eq!(index_of(low), i);
            assert_eq!(index_of(high), i);
            expect_low = high.wrapping_add(1);
        }
        assert_eq!(expect_low, 0, "last bucket ends at u64::MAX");
    }

    #[test]
    fn quantiles_are_within_bucket_error() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v);
        }
        for (q, exact) in [(0.5, 50_000.0), (0.99, 99_000.0), (0.999, 99_900.0)] {
            let got = h.quantile(q) as f64;
            assert!((got - exact).abs() / exact < 0.04, "q{q}: {got} vs {exact}");
        }
        assert_eq!(h.quantile(1.0), 100_000);
        assert_eq!(h.max(), 100_000);
        let mut other = Histogram::new();
        other.record(7);
        h.merge(&other);
        assert_eq!(h.total, 100_001);
        h.clear();
        assert_eq!((h.total, h.quantile(0.5)), (0, 0));
    }
}
