//! The broker's side of durability: exporting its durable definitions for the store, rebuilding
//! itself from what the store recovered, committing each loop turn (definitions saved, message
//! log synced) and the clean stop. The store is reached only from the broker.

use super::args::QueueArgs;
use super::bindings::Binding;
use super::exchange::{Destination, Exchange, ExchangeId, ExchangeKind, DELAYED_TYPE};
use super::queue::{PagedRef, Queue, QueueId, NEVER};
use super::{Broker, STANDARD_EXCHANGES};
use crate::protocol::{FieldTable, FieldValue};
use crate::store::definitions::{
    BindingDef, Definitions, DelayedExchangeDef, ExchangeDef, QueueDef,
};
use crate::store::{RecoveredMessage, Recovery, Store, StoreRef};
use log::{error, info};
use std::collections::HashMap;
use std::io;
use std::path::Path;

impl Broker {
    /// Opens the store in `data_dir` and rebuilds the durable state it holds; the broker
    /// writes to that store from now on.
    pub(crate) fn open(data_dir: &Path) -> io::Result<Self> {
        let (store, recovery) = Store::open(data_dir)?;
        let r = &recovery.report;
        info!(
            "message store: {} segments, {} records, {} messages recovered, clean shutdown: {}, torn tail: {} bytes, damaged records: {}",
            r.segments, r.records, recovery.messages.len(), r.clean_shutdown, r.truncated_bytes, r.corrupt_records
        );
        let mut b = Broker::new();
        b.store = store;
        b.recover(recovery);
        Ok(b)
    }

    /// Makes this turn's durable changes durable, before any reply or confirm of the turn is
    /// written (group commit): saves the definitions if they changed and syncs the message
    /// log if it has unsynced records. `Err` means something may not be on disk, so the
    /// turn's confirms must be nacks.
    pub(crate) fn commit_turn(&mut self) -> io::Result<()> {
        let mut result = Ok(());
        if std::mem::take(&mut self.definitions_changed) {
            if let Err(e) = self.store.save_definitions(&self.definitions()) {
                error!("cannot save definitions: {e}");
                result = Err(e);
            }
        }
        if self.store.has_unsynced() {
            if let Err(e) = self.store.sync() {
                error!("message store write failed: {e}; this turn's publishes are nacked");
                result = Err(e);
            }
        }
        result
    }

    /// Clean stop: routes the dead letters still waiting, records which queued messages were
    /// delivered before, then marks the store clean.
    pub(crate) fn close_clean(&mut self) -> io::Result<()> {
        // Dead letters still waiting are routed now (their sources are acked after them), so
        // they do not come back to their source queues at the next start.
        self.budget = usize::MAX;
        self.run_dead_letters();
        let mut refs = Vec::new();
        for (_, q) in self.queues.iter() {
            q.redelivered_refs(&mut refs);
        }
        self.store.close_clean(&refs)
    }

    /// The durable definitions as the store saves them.
    fn definitions(&self) -> Definitions {
        let standard = |n: &[u8]| STANDARD_EXCHANGES.iter().any(|(s, _)| s.as_bytes() == n);
        let mut d = Definitions {
            next_queue_id: self.next_queue_store_id,
            ..Default::default()
        };
        for (_, x) in self.exchanges.iter() {
            if !x.durable || standard(&x.name) {
                continue;
            }
            if let Some(store_id) = x.delayed_store_id {
                d.delayed_exchanges.push(DelayedExchangeDef {
                    exchange: x.name.to_vec(),
                    store_id,
                });
            }
            d.exchanges.push(ExchangeDef {
                name: x.name.to_vec(),
                kind: x.type_name().as_bytes().to_vec(),
                auto_delete: x.auto_delete,
                internal: x.internal,
                arguments: x.arguments.to_vec(),
            });
        }
        for (_, q) in self.queues.iter() {
            if let Some(store_id) = q.store_id {
                d.queues.push(QueueDef {
                    name: q.name.to_vec(),
                    store_id,
                    auto_delete: q.auto_delete,
                    arguments: q.arguments.to_vec(),
                });
            }
        }
        for b in self.bindings.iter() {
            if let Some(def) = self.binding_def(b) {
                d.bindings.push(def);
            }
        }
        d
    }

    /// A binding as saved: only between a durable source and a durable destination.
    fn binding_def(&self, b: &Binding) -> Option<BindingDef> {
        let source = self.exchanges.get(b.source).filter(|x| x.durable)?;
        let (to_exchange, destination) = match b.dest {
            Destination::Queue(q) => match self.queues.get(q) {
                Some(q) if q.store_id.is_some() => (false, q.name.to_vec()),
                _ => return None,
            },
            Destination::Exchange(e) => match self.exchanges.get(e) {
                Some(e) if e.durable => (true, e.name.to_vec()),
                _ => return None,
            },
        };
        Some(BindingDef {
            source: source.name.to_vec(),
            to_exchange,
            destination,
            key: b.key.to_vec(),
            arguments: b.args.to_vec(),
        })
    }

    /// Rebuilds durable state from what the store recovered. Leases (x-expires) start again
    /// now, as RabbitMQ's do at node start; message deadlines are kept.
    fn recover(&mut self, r: Recovery) {
        let d = r.definitions;
        self.next_queue_store_id = d.next_queue_id.max(1);
        let mut by_store_id: HashMap<u32, Recovered> = HashMap::new();
        for x in &d.exchanges {
            let args = FieldTable::parse(&x.arguments).unwrap_or_default();
            let delayed = x.kind == DELAYED_TYPE.as_bytes();
            let kind = match args.get(b"x-delayed-type") {
                Some(FieldValue::LongStr(t)) if delayed => ExchangeKind::parse(t),
                _ => ExchangeKind::parse(&x.kind),
            };
            let Some(kind) = kind else {
                continue;
            };
            if !self.exchange_names.contains_key(&x.name[..]) {
                let mut e = Exchange::new(
                    x.name.clone().into(),
                    kind,
                    true,
                    x.auto_delete,
                    x.internal,
                    x.arguments.clone().into(),
                );
                e.delayed = delayed;
                e.delayed_store_id = d
                    .delayed_exchanges
                    .iter()
                    .find(|de| de.exchange == x.name)
                    .map(|de| de.store_id);
                if let Some(sid) = e.delayed_store_id {
                    self.next_queue_store_id = self.next_queue_store_id.max(sid + 1);
                }
                let id = self.insert_exchange(e);
                if let Some(sid) = self.exchanges.get(id).and_then(|e| e.delayed_store_id) {
                    by_store_id.insert(sid, Recovered::Delayed(id));
                }
            }
        }
        for qd in &d.queues {
            let args = QueueArgs::parse(FieldTable::parse(&qd.arguments).unwrap_or_default());
            let mut q = Queue::new(
                qd.name.clone().into(),
                true,
                qd.auto_delete,
                None,
                qd.arguments.clone().into(),
                args,
            );
            q.store_id = Some(qd.store_id);
            self.next_queue_store_id = self.next_queue_store_id.max(qd.store_id + 1);
            let id = self.insert_queue(q);
            by_store_id.insert(qd.store_id, Recovered::Queue(id));
        }
        self.recover_bindings(&d.bindings);
        for m in r.messages {
            self.recover_message(m, &by_store_id);
        }
        let ids: Vec<QueueId> = self.queues.iter().map(|(id, _)| id).collect();
        for id in ids {
            self.renew_lease(id);
            self.arm_expiry(id);
        }
        self.definitions_changed = false;
    }

    fn recover_bindings(&mut self, bindings: &[BindingDef]) {
        for b in bindings {
            let Ok(source) = self.exchange_id(&b.source) else {
                continue;
            };
            let dest = if b.to_exchange {
                match self.exchange_id(&b.destination) {
                    Ok(e) => Destination::Exchange(e),
                    Err(_) => continue,
                }
            } else {
                match self.queue_names.get(&b.destination[..]) {
                    Some(&q) => Destination::Queue(q),
                    None => continue,
                }
            };
            let binding = Binding {
                source,
                dest,
                key: b.key.clone().into(),
                args: b.arguments.clone().into(),
            };
            self.bindings.bind(&mut self.exchanges, binding);
        }
    }

    /// Puts a recovered message back where it was: on disk in each queue (in its priority
    /// level, with its deadline), or held again by its delayed exchange.
    fn recover_message(&mut self, m: RecoveredMessage, by_store_id: &HashMap<u32, Recovered>) {
        // A record without a time (an older log) counts as enqueued now.
        let at = match m.enqueued_at_ms {
            0 => self.clock_ms,
            t => t,
        };
        for (sid, redelivered) in m.queues {
            match by_store_id.get(&sid) {
                Some(&Recovered::Queue(q)) => {
                    let Some(queue) = self.queues.get_mut(q) else {
                        continue;
                    };
                    let ttl = match (queue.args.message_ttl_ms, m.meta.expiration_ms) {
                        (None, None) => None,
                        (a, b) => Some(a.unwrap_or(u64::MAX).min(b.unwrap_or(u64::MAX))),
                    };
                    let expires_at = ttl.map_or(NEVER, |t| at.saturating_add(t));
                    queue.may_expire |= expires_at != NEVER;
                    // Everything recovered starts on disk; queues read their window back on demand.
                    queue.push_paged(
                        m.meta.priority,
                        PagedRef {
                            loc: m.loc,
                            expires_at,
                            body_len: m.meta.body_len,
                            redelivered,
                        },
                    );
                }
                Some(&Recovered::Delayed(x)) => {
                    let r = StoreRef {
                        msg_id: m.loc.msg_id,
                        queue: sid,
                    };
                    match self.store.read(m.loc) {
                        Ok(msg) => self.recover_held(x, msg, at, r),
                        Err(e) => {
                            error!("cannot read a delayed message back from the store: {e}");
                            self.store.ack(r);
                        }
                    }
                }
                None => {}
            }
        }
    }
}

/// What a store number names at recovery.
#[derive(Clone, Copy)]
enum Recovered {
    Queue(QueueId),
    Delayed(ExchangeId),
}
