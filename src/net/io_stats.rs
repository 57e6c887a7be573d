//! A connection's socket traffic as RabbitMQ's API reports it: bytes and reads received and
//! sent (recv_oct, recv_cnt, send_oct, send_cnt; plaintext bytes on a TLS connection), one
//! add per read or write, and their rates from two samples the reactor takes once a second.

use std::time::Instant;

/// Totals since the connection opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoCounters {
    pub recv_oct: u64,
    pub recv_cnt: u64,
    pub send_oct: u64,
    pub send_cnt: u64,
}

/// The totals with the two samples the rates come from.
#[derive(Debug, Clone, Default)]
pub struct IoStats {
    pub now: IoCounters,
    last: Option<(Instant, IoCounters)>,
    base: Option<(Instant, IoCounters)>,
}

impl IoStats {
    pub fn received(&mut self, n: usize) {
        self.now.recv_oct += n as u64;
        self.now.recv_cnt += 1;
    }

    pub fn sent(&mut self, n: usize) {
        self.now.send_oct += n as u64;
        self.now.send_cnt += 1;
    }

    /// Takes a sample (the reactor's once-a-second tick).
    pub fn sample(&mut self, at: Instant) {
        self.base = self.last;
        self.last = Some((at, self.now));
    }

    /// Bytes per second received and sent between the last two samples (0 before two).
    pub fn rates(&self) -> (f64, f64) {
        match (self.base, self.last) {
            (Some((t0, c0)), Some((t1, c1))) => {
                let secs = t1.saturating_duration_since(t0).as_secs_f64();
                if secs <= 0.0 {
                    return (0.0, 0.0);
                }
                (
                    (c1.recv_oct - c0.recv_oct) as f64 / secs,
                    (c1.send_oct - c0.send_oct) as f64 / secs,
                )
            }
            _ => (0.0, 0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// 1,000 bytes received between two samples a second apart is 1,000 bytes/s.
    #[test]
    fn rates_between_samples() {
        let mut s = IoStats::default();
        let t0 = Instant::now();
        s.sample(t0);
        assert_eq!(s.rates(), (0.0, 0.0));
        s.received(600);
        s.received(400);
        s.sent(10);
        s.sample(t0 + Duration::from_secs(1));
        assert_eq!(s.rates(), (1000.0, 10.0));
        assert_eq!(s.now.recv_cnt, 2);
    }
}
