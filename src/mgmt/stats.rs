//! Rates for message_stats: samples of the broker's counters, one per tick, kept for
//! `SAMPLES` ticks; a rate is the difference between the newest sample and the one
//! `RATE_WINDOW_SECS` before it, per second (RabbitMQ's `*_details.rate` over its last
//! interval). Memory is fixed; sampling is one copy per second.

use crate::broker::counters::MessageCounters;
use std::time::Instant;

/// Seconds a rate is averaged over (RabbitMQ's collect_statistics_interval is 5 s).
pub const RATE_WINDOW_SECS: usize = 5;
const SAMPLES: usize = RATE_WINDOW_SECS + 1;

#[derive(Default)]
pub struct Stats {
    ring: [Option<(Instant, MessageCounters)>; SAMPLES],
    next: usize,
    /// AMQP connections accepted and closed since start (the reactor counts them).
    pub connections_opened: u64,
    pub connections_closed: u64,
}

/// Per-second rates of each counter.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    pub publish: f64,
    pub deliver_get: f64,
    pub deliver: f64,
    pub get: f64,
    pub ack: f64,
    pub redeliver: f64,
}

impl Stats {
    /// Records the counters at `now` (called once per tick).
    pub fn sample(&mut self, now: Instant, c: MessageCounters) {
        self.ring[self.next] = Some((now, c));
        self.next = (self.next + 1) % SAMPLES;
    }

    /// Rates between the oldest and the newest sample kept; zero until two exist.
    pub fn rates(&self) -> Rates {
        let newest = self.ring[(self.next + SAMPLES - 1) % SAMPLES];
        let oldest = (0..SAMPLES)
            .map(|i| self.ring[(self.next + i) % SAMPLES])
            .find(|s| s.is_some())
            .flatten();
        let (Some((t1, c1)), Some((t0, c0))) = (newest, oldest) else {
            return Rates::default();
        };
        let secs = t1.saturating_duration_since(t0).as_secs_f64();
        if secs <= 0.0 {
            return Rates::default();
        }
        let r = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
        Rates {
            publish: r(c1.publish, c0.publish),
            deliver_get: r(c1.deliver_get(), c0.deliver_get()),
            deliver: r(
                c1.deliver + c1.deliver_no_ack,
                c0.deliver + c0.deliver_no_ack,
            ),
            get: r(c1.get + c1.get_no_ack, c0.get + c0.get_no_ack),
            ack: r(c1.ack, c0.ack),
            redeliver: r(c1.redeliver, c0.redeliver),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// 100 publishes a second for six ticks is a publish rate of 100/s; before a second sample
    /// the rate is 0, not a division by zero.
    #[test]
    fn rate_is_the_difference_over_the_window() {
        let mut s = Stats::default();
        let t0 = Instant::now();
        let mut c = MessageCounters::default();
        s.sample(t0, c);
        assert_eq!(s.rates().publish, 0.0);
        for i in 1..=8u64 {
            c.publish += 100;
            c.ack += 50;
            s.sample(t0 + Duration::from_secs(i), c);
        }
        let r = s.rates();
        assert!((r.publish - 100.0).abs() < 1e-9, "{r:?}");
        assert!((r.ack - 50.0).abs() < 1e-9, "{r:?}");
    }
}
