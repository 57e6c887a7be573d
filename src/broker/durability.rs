//! The broker's side of durability: exporting its durable definitions for the store, rebuilding
//! itself from what the store recovered, committing each loop turn (definitions saved, message
//! log synced) and the clean stop. The store is reached only from the broker.

use super::bindings::Binding;
use super::exchange::{Destination, Exchange, ExchangeKind};
use super::queue::Queue;
use super::{Broker, STANDARD_EXCHANGES};
use crate::store::definitions::{BindingDef, Definitions, ExchangeDef, QueueDef};
use crate::store::{Recovery, Store};
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
    /// written (group commit): does the turn's share of deferred cleanup, saves the
    /// definitions if they changed and syncs the message log if it has unsynced records. `Err` means something may not be on disk, so the
    /// turn's confirms must be nacks.
    pub(crate) fn commit_turn(&mut self) -> io::Result<()> {
        // Deferred cleanup first: it may delete durable queues and ack stored messages.
        self.clean_up();
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

    /// Clean stop: records which queued messages were delivered before, then marks the store
    /// clean.
    pub(crate) fn close_clean(&mut self) -> io::Result<()> {
        self.clean_up_all();
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
            d.exchanges.push(ExchangeDef {
                name: x.name.to_vec(),
                kind: x.kind().name().as_bytes().to_vec(),
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

    /// Whether a binding is part of the saved definitions (see `binding_def`).
    pub(super) fn binding_is_saved(&self, b: &Binding) -> bool {
        let source = self.exchanges.get(b.source).is_some_and(|x| x.durable);
        source
            && match b.dest {
                Destination::Queue(q) => self.queues.get(q).is_some_and(|q| q.store_id.is_some()),
                Destination::Exchange(e) => self.exchanges.get(e).is_some_and(|e| e.durable),
            }
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

    /// Rebuilds durable state from what the store recovered.
    fn recover(&mut self, r: Recovery) {
        let d = r.definitions;
        self.next_queue_store_id = d.next_queue_id.max(1);
        for x in &d.exchanges {
            let Some(kind) = ExchangeKind::parse(&x.kind) else {
                continue;
            };
            if !self.exchange_names.contains_key(&x.name[..]) {
                self.insert_exchange(Exchange::new(
                    x.name.clone().into(),
                    kind,
                    true,
                    x.auto_delete,
                    x.internal,
                    x.arguments.clone().into(),
                ));
            }
        }
        let mut by_store_id = HashMap::new();
        for qd in &d.queues {
            let mut q = Queue::new(
                qd.name.clone().into(),
                true,
                qd.auto_delete,
                None,
                qd.arguments.clone().into(),
            );
            q.store_id = Some(qd.store_id);
            self.next_queue_store_id = self.next_queue_store_id.max(qd.store_id + 1);
            let id = self.queues.insert(q);
            self.queue_names.insert(qd.name.clone().into(), id);
            by_store_id.insert(qd.store_id, id);
        }
        for b in &d.bindings {
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
        for m in r.messages {
            for (sid, redelivered) in m.queues {
                let Some(&q) = by_store_id.get(&sid) else {
                    continue;
                };
                // Everything recovered starts on disk; queues read their window back on demand.
                if let Some(queue) = self.queues.get_mut(q) {
                    queue.push_paged(m.loc, redelivered);
                }
            }
        }
        self.definitions_changed = false;
    }
}
