//! What a session tells the management API about itself: the connection's identity, state
//! and negotiated limits, and each open channel's settings and counts. Read-only; built on
//! request, so nothing is kept up to date on the hot path.

use super::channel::TxOp;
use super::stats::ChannelCounters;
use super::{Session, State};
use crate::broker::counters::StatsView;
use crate::protocol::FieldTable;
use std::net::SocketAddr;
use std::time::Instant;

/// One connection, as /api/connections shows it.
pub struct SessionInfo<'a> {
    pub peer: SocketAddr,
    pub user: &'a str,
    /// The vhost connection.open chose ("" before it).
    pub vhost: &'a str,
    /// RabbitMQ's connection state: starting, tuning, opening, running, flow, blocked,
    /// closing.
    pub state: &'static str,
    pub channel_max: u16,
    pub frame_max: u32,
    pub heartbeat_secs: u16,
    pub opened_at: Instant,
    /// The SASL mechanism it logged in with (PLAIN, AMQPLAIN, EXTERNAL).
    pub auth_mechanism: &'static str,
    /// The client's start-ok properties (product, version, capabilities, connection_name).
    pub client_properties: FieldTable<'a>,
}

/// One open channel, as /api/channels shows it.
pub struct ChannelInfo {
    pub number: u16,
    /// basic.qos global=false (per consumer).
    pub prefetch_count: u16,
    /// basic.qos global=true (shared by the channel's consumers).
    pub global_prefetch_count: u16,
    pub unacked: usize,
    pub consumers: usize,
    pub confirm: bool,
    pub transactional: bool,
    /// Published in confirm mode and not yet confirmed.
    pub unconfirmed: u64,
    /// Publishes held by an open transaction.
    pub uncommitted: usize,
    /// Deliveries the settles held by an open transaction cover.
    pub acks_uncommitted: usize,
    /// Its message counts, and their rates over the last whole rate epoch.
    pub stats: StatsView<ChannelCounters>,
}

impl Session {
    /// The connection as the API shows it at `now` (its flow state lingers a second after a
    /// publisher flow pause, as RabbitMQ's does).
    pub fn info(&self, now: Instant) -> SessionInfo<'_> {
        let state = match self.state {
            State::AwaitingHeader | State::AwaitingStartOk => "starting",
            State::AwaitingTuneOk => "tuning",
            State::AwaitingOpen => "opening",
            State::Open => self.flow_state(now).as_str(),
            State::Closing | State::Closed => "closing",
        };
        SessionInfo {
            peer: self.peer,
            user: &self.user,
            vhost: self.actor.as_ref().map_or("", |a| a.vhost_name()),
            state,
            channel_max: self.channel_max,
            frame_max: self.frame_max,
            heartbeat_secs: self.heartbeat_secs,
            opened_at: self.opened_at,
            auth_mechanism: self.auth_mechanism,
            client_properties: FieldTable::parse(&self.client_properties).unwrap_or_default(),
        }
    }

    /// Calls `f` with each open channel, in channel-number order, its rates as of the rate
    /// epoch `epoch` (the broker's `rate_epoch`).
    pub fn each_channel(&self, epoch: u64, mut f: impl FnMut(ChannelInfo)) {
        for (number, ch) in self.channels.iter() {
            let ops = ch.tx.as_deref().unwrap_or_default();
            let publishes = ops
                .iter()
                .filter(|op| matches!(op, TxOp::Publish { .. }))
                .count();
            f(ChannelInfo {
                number,
                prefetch_count: ch.consumer_prefetch,
                global_prefetch_count: ch.channel_prefetch,
                unacked: ch.unacked_count(),
                consumers: ch.consumer_count(),
                confirm: ch.confirm,
                transactional: ch.tx.is_some(),
                unconfirmed: ch.publish_seq - ch.confirmed_seq,
                uncommitted: publishes,
                acks_uncommitted: ch.settles_uncommitted(),
                stats: ch.stats.view(epoch),
            });
        }
    }

    /// Calls `f` with each consumer: channel number, broker id, tag, prefetch count.
    pub fn each_consumer(
        &self,
        mut f: impl FnMut(u16, crate::broker::consumer::ConsumerId, &[u8], u16),
    ) {
        for (number, ch) in self.channels.iter() {
            ch.each_consumer(|id, tag, prefetch| f(number, id, tag, prefetch));
        }
    }

    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }
}
