//! The broker's side of durability: handing each change of its durable definitions to the
//! store as it happens, rebuilding itself from what the store recovered, committing each loop
//! turn (the turn's definition changes and message records synced) and the clean stop. The
//! store is reached only from the broker.

use super::bindings::Binding;
use super::exchange::{Destination, Exchange, ExchangeId, ExchangeKind};
use super::handle::Registry;
use super::queue::{Queue, QueueId};
use super::Broker;
use crate::store::definitions::{BindingRef, DefChange};
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
            r.segments, r.records, r.messages, r.clean_shutdown, r.truncated_bytes, r.corrupt_records
        );
        let mut b = Broker::new();
        b.store = store;
        b.recover(recovery)?;
        Ok(b)
    }

    /// Makes this turn's durable changes durable, before any reply or confirm of the turn is
    /// written (group commit): one sync covers the turn's definition changes and message
    /// records. Then a bounded slice of the store's background work (compaction, definitions
    /// snapshot). `Err` means something may not be on disk, so the turn's confirms must be
    /// nacks.
    pub(crate) fn commit_turn(&mut self) -> io::Result<()> {
        let mut result = Ok(());
        if self.store.has_unsynced() {
            if let Err(e) = self.store.sync() {
                error!("store write failed: {e}; this turn's publishes are nacked");
                result = Err(e);
            }
        }
        self.store.maintain();
        result
    }

    /// The store has background work left (compaction, a snapshot being built): the loop
    /// must not sleep.
    pub(crate) fn has_background_work(&self) -> bool {
        self.store.busy()
    }

    /// Clean stop: records which queued messages were delivered before, then marks the store
    /// clean.
    pub(crate) fn close_clean(&mut self) -> io::Result<()> {
        let mut refs = Vec::new();
        for (_, q) in self.queues.iter() {
            q.redelivered_refs(&mut refs);
        }
        self.store.close_clean(&refs)
    }

    /// Rebuilds durable state from what the store recovered.
    fn recover(&mut self, r: Recovery) -> io::Result<()> {
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
        for (sid, n) in &r.queue_counts {
            if let Some(q) = by_store_id.get(sid).and_then(|&q| self.queues.get_mut(q)) {
                q.reserve_paged(*n as usize);
            }
        }
        // Everything recovered starts on disk; queues read their window back on demand.
        let queues = &mut self.queues;
        self.store.recovered(|m| {
            if let Some(q) = by_store_id.get(&m.queue).and_then(|&q| queues.get_mut(q)) {
                q.push_recovered(m.loc, m.origin, m.redelivered);
            }
        })?;
        for &q in by_store_id.values() {
            if let Some(q) = self.queues.get_mut(q) {
                q.recovered();
            }
        }
        Ok(())
    }
}

/// Hands a binding or unbinding to the store if both its ends are durable (a binding to a
/// transient entity dies with it, so it is never saved).
pub(super) fn record_binding(
    store: &mut Store,
    exchanges: &Registry<ExchangeId, Exchange>,
    queues: &Registry<QueueId, Queue>,
    bound: bool,
    b: &Binding,
) {
    let Some(source) = exchanges.get(b.source).filter(|x| x.durable) else {
        return;
    };
    let (to_exchange, destination) = match b.dest {
        Destination::Queue(q) => match queues.get(q) {
            Some(q) if q.store_id.is_some() => (false, &q.name),
            _ => return,
        },
        Destination::Exchange(e) => match exchanges.get(e) {
            Some(e) if e.durable => (true, &e.name),
            _ => return,
        },
    };
    let r = BindingRef {
        source: &source.name,
        to_exchange,
        destination,
        key: &b.key,
        arguments: &b.args,
    };
    store.record(if bound {
        DefChange::Binding(r)
    } else {
        DefChange::Unbinding(r)
    });
}
