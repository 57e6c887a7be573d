//! Read-only views of the broker's entities for the management API and Prometheus: plain
//! rows copied out on request (names as text, arguments as their raw tables), so listings
//! never hold a borrow of the broker across loop turns. Nothing here changes state.

use super::consumer::ConsumerId;
use super::counters::{ExchangeCounters, MessageCounters, StatsView};
use super::exchange::Destination;
use super::policy::Policy;
use super::{Broker, ConnId};
use std::rc::Rc;

/// A queue as the API lists it.
pub struct QueueView {
    pub vhost: String,
    pub name: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub exclusive: bool,
    /// The raw argument table of the declaration.
    pub arguments: Box<[u8]>,
    pub ready: u64,
    pub unacked: u64,
    pub consumers: u64,
    /// The policy applied to it.
    pub policy: Option<Rc<Policy>>,
    pub stats: StatsView<MessageCounters>,
}

pub struct ExchangeView {
    pub vhost: String,
    pub name: String,
    pub kind: &'static str,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: Box<[u8]>,
    /// The policy applied to it.
    pub policy: Option<Rc<Policy>>,
    pub stats: StatsView<ExchangeCounters>,
}

pub struct BindingView {
    pub vhost: String,
    /// "" for the default exchange's implicit bindings.
    pub source: String,
    pub destination: String,
    pub to_queue: bool,
    pub routing_key: String,
    pub arguments: Box<[u8]>,
}

/// What the broker knows of a consumer (the session knows its tag and prefetch).
pub struct ConsumerView {
    pub vhost: String,
    pub queue: String,
    pub conn: ConnId,
    pub channel: u16,
    pub no_ack: bool,
    pub exclusive: bool,
    pub priority: i64,
    /// Single active consumer: whether this one is the active one (true otherwise).
    pub active: bool,
}

/// Counts for the overview and Prometheus.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    pub queues: u64,
    pub exchanges: u64,
    pub consumers: u64,
    pub ready: u64,
    pub unacked: u64,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Broker {
    fn vhost_text(&self, id: super::vhost::VhostId) -> String {
        self.vhosts
            .get(id)
            .map_or_else(String::new, |v| v.name.to_string())
    }

    /// Every queue, or those of one vhost.
    pub fn queue_views(&self, vhost: Option<&str>) -> Vec<QueueView> {
        let want = vhost.map(|v| self.vhost_id(v));
        let mut out = Vec::with_capacity(self.queues.len());
        let secs = self.rate_secs();
        for (_, q) in self.queues.iter() {
            if want.is_some_and(|w| w != Some(q.vhost)) {
                continue;
            }
            out.push(QueueView {
                vhost: self.vhost_text(q.vhost),
                name: text(&q.name),
                durable: q.durable,
                auto_delete: q.auto_delete,
                exclusive: q.owner.is_some(),
                arguments: q.arguments.clone(),
                ready: q.message_count() as u64,
                unacked: q.unacked_count(),
                consumers: q.consumer_count() as u64,
                policy: q.policy.clone(),
                stats: q.stats.view(secs, MessageCounters::minus),
            });
        }
        out
    }

    pub fn exchange_views(&self, vhost: Option<&str>) -> Vec<ExchangeView> {
        let want = vhost.map(|v| self.vhost_id(v));
        let mut out = Vec::with_capacity(self.exchanges.len());
        let secs = self.rate_secs();
        for (_, x) in self.exchanges.iter() {
            if want.is_some_and(|w| w != Some(x.vhost)) {
                continue;
            }
            out.push(ExchangeView {
                vhost: self.vhost_text(x.vhost),
                name: text(&x.name),
                kind: x.kind().name(),
                durable: x.durable,
                auto_delete: x.auto_delete,
                internal: x.internal,
                arguments: x.arguments.clone(),
                policy: x.policy.clone(),
                stats: x.stats.view(secs, ExchangeCounters::minus),
            });
        }
        out
    }

    /// Every binding, with the default exchange's implicit one per queue first, as RabbitMQ
    /// lists them.
    pub fn binding_views(&self, vhost: Option<&str>) -> Vec<BindingView> {
        let want = vhost.map(|v| self.vhost_id(v));
        let mut out = Vec::new();
        for (_, q) in self.queues.iter() {
            if want.is_some_and(|w| w != Some(q.vhost)) {
                continue;
            }
            out.push(BindingView {
                vhost: self.vhost_text(q.vhost),
                source: String::new(),
                destination: text(&q.name),
                to_queue: true,
                routing_key: text(&q.name),
                arguments: Box::new([]),
            });
        }
        for b in self.bindings.iter() {
            let Some(source) = self.exchanges.get(b.source) else {
                continue;
            };
            if want.is_some_and(|w| w != Some(source.vhost)) {
                continue;
            }
            let (destination, to_queue) = match b.dest {
                Destination::Queue(q) => match self.queues.get(q) {
                    Some(q) => (text(&q.name), true),
                    None => continue,
                },
                Destination::Exchange(x) => match self.exchanges.get(x) {
                    Some(x) => (text(&x.name), false),
                    None => continue,
                },
            };
            out.push(BindingView {
                vhost: self.vhost_text(source.vhost),
                source: text(&source.name),
                destination,
                to_queue,
                routing_key: text(&b.key),
                arguments: b.args.clone(),
            });
        }
        out
    }

    pub fn consumer_view(&self, id: ConsumerId) -> Option<ConsumerView> {
        let c = self.consumers.get(id)?;
        let q = self.queues.get(c.queue())?;
        Some(ConsumerView {
            vhost: self.vhost_text(q.vhost),
            queue: text(&q.name),
            conn: c.conn(),
            channel: c.channel(),
            no_ack: c.no_ack(),
            exclusive: c.exclusive(),
            priority: c.priority(),
            active: !q.single_active() || q.active_consumer() == Some(id),
        })
    }

    pub fn totals(&self) -> Totals {
        let mut t = Totals {
            queues: self.queues.len() as u64,
            exchanges: self.exchanges.len() as u64,
            consumers: self.consumers.len() as u64,
            ..Totals::default()
        };
        for (_, q) in self.queues.iter() {
            t.ready += q.message_count() as u64;
            t.unacked += q.unacked_count();
        }
        t
    }
}
