//! Message counts since start, kept by the broker as events happen (one add each, O(1)),
//! for the management API's message_stats and the Prometheus counters. Rates are derived
//! from samples of these by the management layer; nothing here reads a clock.

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
}

impl MessageCounters {
    /// RabbitMQ's deliver_get: every delivery and get, with or without ack.
    pub fn deliver_get(&self) -> u64 {
        self.deliver + self.deliver_no_ack + self.get + self.get_no_ack
    }
}
