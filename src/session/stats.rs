//! One channel's message counts (RabbitMQ's channel message_stats), kept by the session where
//! it already handles each publish, delivery and ack (one add each), with rates that need no
//! per-channel work on the loop's tick: the samples are rotated lazily, by the next event or
//! read that sees the rate epoch (`RATE_SAMPLE_MS` periods of the broker's clock) moved on.

use crate::broker::counters::StatsView;
use crate::limits::RATE_SAMPLE_MS;

/// Totals of what happened on one channel (RabbitMQ 3.10's channel message_stats keys).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelCounters {
    /// Messages published on the channel (routed or not).
    pub publish: u64,
    /// Publishes the broker confirmed (basic.ack to the publisher).
    pub confirm: u64,
    /// Mandatory publishes no queue took, returned with basic.return.
    pub return_unroutable: u64,
    /// Non-mandatory publishes no queue took, dropped.
    pub drop_unroutable: u64,
    /// Delivered to consumers that must ack.
    pub deliver: u64,
    /// Delivered to no-ack consumers.
    pub deliver_no_ack: u64,
    /// basic.get answered with a message, ack required.
    pub get: u64,
    /// basic.get answered with a message, no ack.
    pub get_no_ack: u64,
    /// basic.get answered with get-empty.
    pub get_empty: u64,
    /// Deliveries and gets of messages delivered before.
    pub redeliver: u64,
    /// Deliveries settled by basic.ack (nack and reject are not counted, as in RabbitMQ).
    pub ack: u64,
}

impl ChannelCounters {
    /// `self - earlier`, field by field.
    pub fn minus(&self, earlier: &ChannelCounters) -> ChannelCounters {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        ChannelCounters {
            publish: d(self.publish, earlier.publish),
            confirm: d(self.confirm, earlier.confirm),
            return_unroutable: d(self.return_unroutable, earlier.return_unroutable),
            drop_unroutable: d(self.drop_unroutable, earlier.drop_unroutable),
            deliver: d(self.deliver, earlier.deliver),
            deliver_no_ack: d(self.deliver_no_ack, earlier.deliver_no_ack),
            get: d(self.get, earlier.get),
            get_no_ack: d(self.get_no_ack, earlier.get_no_ack),
            get_empty: d(self.get_empty, earlier.get_empty),
            redeliver: d(self.redeliver, earlier.redeliver),
            ack: d(self.ack, earlier.ack),
        }
    }

    /// RabbitMQ's deliver_get: every delivery and get, with or without ack.
    pub fn deliver_get(&self) -> u64 {
        self.deliver + self.deliver_no_ack + self.get + self.get_no_ack
    }

    /// Whether the channel published anything: RabbitMQ shows the publish keys (publish,
    /// confirm, return_unroutable, drop_unroutable) only then.
    pub fn published(&self) -> bool {
        self.publish > 0
    }

    /// Whether the channel delivered or got anything (get-empty included): RabbitMQ shows the
    /// delivery keys only then.
    pub fn delivered(&self) -> bool {
        self.deliver_get() + self.get_empty > 0
    }
}

/// The counters with the two samples their rates come from: `last` is the totals at the end
/// of epoch `epoch - 1`, `base` at the end of `epoch - 2`. An event or read in a later epoch
/// moves them along as the tick would have; nothing happened on the channel in between, so
/// the totals at each boundary are the totals of its last event.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChannelStats {
    now: ChannelCounters,
    last: ChannelCounters,
    base: ChannelCounters,
    /// The rate epoch of the last event.
    epoch: u64,
}

impl ChannelStats {
    /// The counters to add an event of rate epoch `epoch` to. An epoch older than the last
    /// event's (a caller with a clock from an earlier turn) counts as the current one.
    #[inline]
    pub fn at(&mut self, epoch: u64) -> &mut ChannelCounters {
        if epoch > self.epoch {
            self.advance(epoch);
        }
        &mut self.now
    }

    #[cold]
    fn advance(&mut self, epoch: u64) {
        if epoch == self.epoch + 1 {
            self.base = self.last;
            self.last = self.now;
        } else {
            // A whole epoch or more without events: its rate is 0.
            self.base = self.now;
            self.last = self.now;
        }
        self.epoch = epoch;
    }

    /// The totals, and what happened in the last whole epoch before `epoch`.
    pub fn view(&self, epoch: u64) -> StatsView<ChannelCounters> {
        let delta = if epoch <= self.epoch {
            self.last.minus(&self.base)
        } else if epoch == self.epoch + 1 {
            self.now.minus(&self.last)
        } else {
            ChannelCounters::default()
        };
        StatsView {
            total: self.now,
            delta,
            secs: RATE_SAMPLE_MS as f64 / 1000.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rate is the last whole epoch's count per second, whether the epoch was closed by an
    /// event or only by the read; a silent epoch reads 0 without anything touching the
    /// channel; events of an older epoch count as current.
    #[test]
    fn rates_rotate_lazily() {
        let secs = RATE_SAMPLE_MS as f64 / 1000.0;
        let mut s = ChannelStats::default();
        for _ in 0..10 {
            s.at(100).publish += 1;
        }
        assert_eq!(s.view(100).total.publish, 10);
        assert_eq!(s.view(100).delta.publish, 0, "epoch 100 is not over");
        let v = s.view(101);
        assert_eq!(v.rate(v.delta.publish), 10.0 / secs, "closed by the read");
        for _ in 0..5 {
            s.at(101).publish += 1;
        }
        s.at(100).ack += 1;
        let v = s.view(101);
        assert_eq!(v.delta.publish, 10, "closed by the event");
        assert_eq!(v.total.ack, 1);
        assert_eq!(s.view(102).delta.publish, 5);
        assert_eq!(s.view(103).delta.publish, 0, "a silent epoch");
        s.at(105).deliver += 2;
        assert_eq!(s.view(105).delta, ChannelCounters::default());
        assert_eq!(s.view(106).delta.deliver, 2);
        assert_eq!(s.view(106).total.publish, 15);
    }
}
