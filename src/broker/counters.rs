//! Message counts since start, kept by the broker as events happen (one add each, O(1)),
//! for the management API's message_stats and the Prometheus counters. Rates are derived
//! from samples of these by the management layer (broker-wide) or from two samples the broker
//! keeps per queue and exchange (`Sampled`); nothing here reads a clock.

/// Totals of what happened to messages, broker-wide or for one queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageCounters {
    /// Messages published (to an exchange; counted once however many queues they reach).
    pub publish: u64,
    /// Delivered to consumers that must ack.
    pub deliver: u64,
    /// Delivered to no-ack consumers.
    pub deliver_no_ack: u64,
    /// basic.get answered with a message, ack required.
    pub get: u64,
    /// basic.get answered with a message, no ack.
    pub get_no_ack: u64,
    /// Deliveries that had been delivered before.
    pub redeliver: u64,
    /// Settled by basic.ack.
    pub ack: u64,
    /// Published messages no queue took.
    pub unroutable: u64,
    /// basic.get answered with get-empty.
    pub get_empty: u64,
}

/// One exchange's counts (RabbitMQ's publish_in and publish_out).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExchangeCounters {
    /// Messages published to the exchange.
    pub publish_in: u64,
    /// Messages it routed into queues, one per queue reached.
    pub publish_out: u64,
}

/// One queue's or exchange's counters, with the two samples its rates come from (the
/// broker moves them along every `RATE_SAMPLE_MS`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Sampled<T: Copy + Default> {
    pub now: T,
    last: T,
    base: T,
}

impl<T: Copy + Default> Sampled<T> {
    pub fn rotate(&mut self) {
        self.base = self.last;
        self.last = self.now;
    }

    /// The totals, and what happened between the two samples.
    pub fn view(&self, secs: f64, delta: impl Fn(&T, &T) -> T) -> StatsView<T> {
        StatsView {
            total: self.now,
            delta: delta(&self.last, &self.base),
            secs,
        }
    }
}

/// Counters as the API shows them: totals and the rate over the last sample interval.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatsView<T> {
    pub total: T,
    pub delta: T,
    /// Seconds between the two samples (0 before there are two).
    pub secs: f64,
}

impl<T> StatsView<T> {
    /// Per second, from a field of `delta`.
    pub fn rate(&self, n: u64) -> f64 {
        if self.secs > 0.0 {
            n as f64 / self.secs
        } else {
            0.0
        }
    }
}

impl MessageCounters {
    /// `self - earlier`, field by field.
    pub fn minus(&self, earlier: &MessageCounters) -> MessageCounters {
        MessageCounters {
            publish: self.publish - earlier.publish,
            deliver: self.deliver - earlier.deliver,
            deliver_no_ack: self.deliver_no_ack - earlier.deliver_no_ack,
            get: self.get - earlier.get,
            get_no_ack: self.get_no_ack - earlier.get_no_ack,
            redeliver: self.redeliver - earlier.redeliver,
            ack: self.ack - earlier.ack,
            unroutable: self.unroutable - earlier.unroutable,
            get_empty: self.get_empty - earlier.get_empty,
        }
    }
}

impl ExchangeCounters {
    pub fn minus(&self, earlier: &ExchangeCounters) -> ExchangeCounters {
        ExchangeCounters {
            publish_in: self.publish_in - earlier.publish_in,
            publish_out: self.publish_out - earlier.publish_out,
        }
    }
}

impl MessageCounters {
    /// RabbitMQ's deliver_get: every delivery and get, with or without ack.
    pub fn deliver_get(&self) -> u64 {
        self.deliver + self.deliver_no_ack + self.get + self.get_no_ack
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rate is what happened between the last two samples, per second; before two
    /// samples it is 0.
    #[test]
    fn rates_from_two_samples() {
        let mut s = Sampled::<ExchangeCounters>::default();
        s.now.publish_in = 10;
        s.rotate();
        assert_eq!(s.view(0.0, ExchangeCounters::minus).rate(10), 0.0);
        s.now.publish_in = 60;
        s.rotate();
        s.now.publish_in = 1000;
        let v = s.view(5.0, ExchangeCounters::minus);
        assert_eq!(v.total.publish_in, 1000);
        assert_eq!(v.rate(v.delta.publish_in), 10.0);
    }
}
