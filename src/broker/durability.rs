//! The broker's side of durability: exporting its durable definitions (and the access tables)
//! for the store, rebuilding itself from what the store recovered, committing each loop turn
//! (definitions saved, message log synced) and the clean stop. The store is reached only from
//! the broker.

use super::bindings::Binding;
use super::exchange::{Destination, Exchange, ExchangeKind};
use super::queue::Queue;
use super::{Broker, DefaultData, VhostId, STANDARD_EXCHANGES};
use crate::auth::{users::DEFAULT_VHOST_DESCRIPTION, AccessControl, Vhost};
use crate::definitions::{import_access, Definitions as Document};
use crate::store::definitions::{BindingDef, Definitions, ExchangeDef, QueueDef};
use crate::store::{Recovery, Store};
use log::{error, info, warn};
use std::collections::HashMap;
use std::io;
use std::path::Path;

fn invalid(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl Broker {
    /// Opens the store in `data_dir` and rebuilds the durable state it holds; the broker
    /// writes to that store from now on. A fresh node (no users, vhosts or permissions) is
    /// seeded with `defaults` if given (RabbitMQ seeds nothing when definitions are to be
    /// loaded at boot).
    pub fn open(data_dir: &Path, defaults: Option<&DefaultData>) -> io::Result<Self> {
        let (store, recovery) = Store::open(data_dir)?;
        let r = &recovery.report;
        info!(
            "message store: {} segments, {} records, {} messages recovered, clean shutdown: {}, torn tail: {} bytes, damaged records: {}",
            r.segments, r.records, recovery.messages.len(), r.clean_shutdown, r.truncated_bytes, r.corrupt_records
        );
        let mut b = Broker::empty();
        b.store = store;
        if let Some(json) = &recovery.definitions.access {
            b.recover_access(json)?;
        }
        if let (true, Some(d)) = (b.needs_default_data(), defaults) {
            info!(
                "seeding the default vhost '{}' and user '{}'",
                d.vhost, d.user
            );
            b.insert_default_data(d).map_err(invalid)?;
        }
        b.recover(recovery);
        Ok(b)
    }

    /// The users, vhosts and permissions saved with the definitions.
    fn recover_access(&mut self, json: &[u8]) -> io::Result<()> {
        let doc = Document::parse(json).map_err(|e| invalid(format!("access tables: {e}")))?;
        let ac = import_access(&doc, &AccessControl::new())
            .map_err(|e| invalid(format!("access tables: {e}")))?;
        self.replace_access(ac);
        Ok(())
    }

    /// The vhost a recovered entity belongs to. One missing from the access tables (a data
    /// dir written before coney had vhosts, whose entities are all in "/") is created.
    fn recovered_vhost(&mut self, name: &[u8]) -> Option<VhostId> {
        let name = std::str::from_utf8(name).ok()?;
        if let Some(id) = self.vhost_id(name) {
            return Some(id);
        }
        warn!("recovered entities of vhost '{name}', which is not among the vhosts: creating it");
        let mut v = Vhost::new(name);
        if name == "/" {
            v.description = DEFAULT_VHOST_DESCRIPTION.to_owned();
        }
        Some(self.add_vhost(v))
    }

    /// Makes this turn's durable changes durable, before any reply or confirm of the turn is
    /// written (group commit): saves the definitions if they changed and syncs the message
    /// log if it has unsynced records. `Err` means something may not be on disk, so the
    /// turn's confirms must be nacks.
    pub fn commit_turn(&mut self) -> io::Result<()> {
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
    pub fn close_clean(&mut self) -> io::Result<()> {
        let mut refs = Vec::new();
        for (_, q) in self.queues.iter() {
            q.redelivered_refs(&mut refs);
        }
        self.store.close_clean(&refs)
    }

    /// The durable definitions as the store saves them.
    fn definitions(&self) -> Definitions {
        let standard = |n: &[u8]| STANDARD_EXCHANGES.iter().any(|(s, _)| s.as_bytes() == n);
        let vhost = |id: VhostId| {
            self.vhosts
                .get(id)
                .map_or_else(Vec::new, |v| v.name.as_bytes().to_vec())
        };
        let mut access = Document::default();
        self.export_access(&mut access);
        let mut d = Definitions {
            next_queue_id: self.next_queue_store_id,
            access: Some(access.to_json().into_bytes()),
            ..Default::default()
        };
        for (_, x) in self.exchanges.iter() {
            if !x.durable || standard(&x.name) {
                continue;
            }
            d.exchanges.push(ExchangeDef {
                vhost: vhost(x.vhost),
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
                    vhost: vhost(q.vhost),
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
            vhost: self.vhosts.get(source.vhost)?.name.as_bytes().to_vec(),
            source: source.name.to_vec(),
            to_exchange,
            destination,
            key: b.key.to_vec(),
            arguments: b.args.to_vec(),
        })
    }

    /// Rebuilds durable entities from what the store recovered, each in its vhost.
    fn recover(&mut self, r: Recovery) {
        let d = r.definitions;
        self.next_queue_store_id = d.next_queue_id.max(1);
        for x in &d.exchanges {
            let (Some(kind), Some(vhost)) =
                (ExchangeKind::parse(&x.kind), self.recovered_vhost(&x.vhost))
            else {
                continue;
            };
            let exists = self
                .vhosts
                .get(vhost)
                .is_some_and(|v| v.exchanges.contains_key(&x.name[..]));
            if !exists {
                self.insert_exchange(Exchange::new(
                    vhost,
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
            let Some(vhost) = self.recovered_vhost(&qd.vhost) else {
                continue;
            };
            let mut q = Queue::new(
                vhost,
                qd.name.clone().into(),
                true,
                qd.auto_delete,
                None,
                qd.arguments.clone().into(),
            );
            q.store_id = Some(qd.store_id);
            self.next_queue_store_id = self.next_queue_store_id.max(qd.store_id + 1);
            by_store_id.insert(qd.store_id, self.insert_queue(q));
        }
        for b in &d.bindings {
            if let Some(binding) = self.recovered_binding(b) {
                self.bindings.bind(&mut self.exchanges, binding);
            }
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
    }

    /// A saved binding between entities that were recovered.
    fn recovered_binding(&self, b: &BindingDef) -> Option<Binding> {
        let vhost = self
            .vhosts
            .get(self.vhost_id(std::str::from_utf8(&b.vhost).ok()?)?)?;
        let source = *vhost.exchanges.get(&b.source[..])?;
        let dest = if b.to_exchange {
            Destination::Exchange(*vhost.exchanges.get(&b.destination[..])?)
        } else {
            Destination::Queue(*vhost.queues.get(&b.destination[..])?)
        };
        Some(Binding {
            source,
            dest,
            key: b.key.clone().into(),
            args: b.arguments.clone().into(),
        })
    }
}
