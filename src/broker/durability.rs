//! The broker's side of durability: handing each change of its durable definitions (entities
//! with their vhost, and the access tables) to the store as it happens, rebuilding itself from
//! what the store recovered, committing each loop turn (the turn's definition changes and
//! message records synced) and the clean stop. The store is reached only from the broker.

use super::args::QueueArgs;
use super::bindings::Binding;
use super::exchange::{Destination, Exchange, ExchangeId, ExchangeKind, DELAYED_TYPE};
use super::handle::Registry;
use super::queue::{PagedRef, Queue, QueueId, NEVER};
use super::vhost::VhostState;
use super::{Broker, DefaultData, VhostId};
use crate::auth::{users::DEFAULT_VHOST_DESCRIPTION, AccessControl, Vhost};
use crate::definitions::{import_access, Definitions as Document};
use crate::protocol::{FieldTable, FieldValue};
use crate::store::definitions::{BindingDef, BindingRef, DefChange, Definitions};
use crate::store::{Location, Recovered, Recovery, Store, StoreRef};
use log::{error, info, warn};
use std::collections::HashMap;
use std::io;
use std::path::Path;

fn invalid(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// What a store number names at recovery.
#[derive(Clone, Copy)]
enum Owner {
    Queue(QueueId),
    Delayed(ExchangeId),
}

/// A message a delayed exchange held at the last stop, read back once recovery is done.
struct HeldAtStop {
    exchange: ExchangeId,
    loc: Location,
    store_id: u32,
    enqueued_at_ms: u64,
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
            r.segments, r.records, r.messages, r.clean_shutdown, r.truncated_bytes, r.corrupt_records
        );
        let mut b = Broker::empty();
        b.store = store;
        if let Some(json) = &recovery.definitions.access {
            b.recover_access(json)?;
        }
        if let Some(json) = &recovery.definitions.policies {
            b.recover_policies(json)?;
        }
        if let (true, Some(d)) = (b.needs_default_data(), defaults) {
            info!(
                "seeding the default vhost '{}' and user '{}'",
                d.vhost, d.user
            );
            b.insert_default_data(d).map_err(invalid)?;
        }
        b.recover(recovery)?;
        b.sweep_after_recovery();
        Ok(b)
    }

    /// Makes this turn's durable changes durable, before any reply or confirm of the turn is
    /// written (group commit): first the turn's share of deferred cleanup (it may delete
    /// durable queues and ack stored messages), then one sync covers the turn's definition
    /// changes and message records, then a bounded slice of the store's background work
    /// (compaction, definitions snapshot). `Err` means something may not be on disk, so the
    /// turn's confirms must be nacks.
    pub fn commit_turn(&mut self) -> io::Result<()> {
        // Policies first: bringing queues in line may trim them (store acks).
        self.apply_policies_some();
        self.sample_rates();
        // Deferred cleanup first: it may delete durable queues and ack stored messages.
        self.clean_up();
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

    /// Background work is left (deferred cleanup, compaction, a snapshot being built): the
    /// loop must not sleep.
    pub(crate) fn has_background_work(&self) -> bool {
        self.cleaning_up() || self.store.busy() || self.policies_pending()
    }

    /// Clean stop: finishes the cleanup, routes the dead letters still waiting, records which
    /// queued messages were delivered before, then marks the store clean.
    pub fn close_clean(&mut self) -> io::Result<()> {
        // Purged messages must not come back at the next start.
        self.clean_up_all();
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

    /// Hands the whole access tables to the store after a change to them: changes are rare and
    /// the tables small, and one record in RabbitMQ's format is read back with the code that
    /// imports definitions files.
    pub(super) fn record_access(&mut self) {
        if !self.store.enabled() {
            return;
        }
        let mut doc = Document::default();
        self.export_access(&mut doc);
        self.store
            .record(DefChange::Access(doc.to_json().as_bytes()));
    }

    /// The users, vhosts and permissions saved with the definitions.
    fn recover_access(&mut self, json: &[u8]) -> io::Result<()> {
        let doc = Document::parse(json).map_err(|e| invalid(format!("access tables: {e}")))?;
        let ac = import_access(&doc, &AccessControl::new())
            .map_err(|e| invalid(format!("access tables: {e}")))?;
        self.install_access(ac);
        super::parameters::check_parameters(&doc)
            .map_err(|(entry, e)| invalid(format!("access tables: {entry}: {e}")))?;
        self.import_parameters(&doc);
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

    /// Rebuilds durable state from what the store recovered, each entity in its vhost.
    /// Leases (x-expires) start again now, as RabbitMQ's do at node start; message deadlines
    /// are kept.
    fn recover(&mut self, r: Recovery) -> io::Result<()> {
        let d = r.definitions;
        self.next_queue_store_id = d.next_queue_id.max(1);
        let mut owners = self.recover_exchanges(&d);
        for qd in &d.queues {
            let Some(vhost) = self.recovered_vhost(&qd.vhost) else {
                continue;
            };
            let args = QueueArgs::parse(FieldTable::parse(&qd.arguments).unwrap_or_default());
            let mut q = Queue::new(
                vhost,
                qd.name.clone().into(),
                true,
                qd.auto_delete,
                None,
                qd.arguments.clone().into(),
                args,
            );
            q.store_id = Some(qd.store_id);
            if let Some(&n) = r.queue_counts.get(&qd.store_id) {
                q.reserve_paged(n as usize);
            }
            self.next_queue_store_id = self.next_queue_store_id.max(qd.store_id + 1);
            let id = self.insert_queue(q);
            owners.insert(qd.store_id, Owner::Queue(id));
        }
        for b in &d.bindings {
            if let Some(binding) = self.recovered_binding(b) {
                self.bindings.bind(&mut self.exchanges, binding);
            }
        }
        let held = self.recover_messages(&owners)?;
        for h in held {
            let r = StoreRef::at(h.loc, h.store_id);
            match self.store.read(h.loc) {
                Ok(msg) => self.recover_held(h.exchange, msg, h.enqueued_at_ms, r),
                Err(e) => {
                    error!("cannot read a delayed message back from the store: {e}");
                    self.store.ack(r);
                }
            }
        }
        let ids: Vec<QueueId> = self.queues.iter().map(|(id, _)| id).collect();
        for id in ids {
            if let Some(q) = self.queues.get_mut(id) {
                q.recovered();
            }
            self.renew_lease(id);
            self.arm_expiry(id);
        }
        Ok(())
    }

    /// Recreates the durable exchanges, each in its vhost (a delayed exchange with the store
    /// number it holds messages under); returns those store numbers.
    fn recover_exchanges(&mut self, d: &Definitions) -> HashMap<u32, Owner> {
        let mut owners = HashMap::new();
        for x in &d.exchanges {
            let args = FieldTable::parse(&x.arguments).unwrap_or_default();
            let delayed = x.kind == DELAYED_TYPE.as_bytes();
            let kind = match args.get(b"x-delayed-type") {
                Some(FieldValue::LongStr(t)) if delayed => ExchangeKind::parse(t),
                _ => ExchangeKind::parse(&x.kind),
            };
            let (Some(kind), Some(vhost)) = (kind, self.recovered_vhost(&x.vhost)) else {
                continue;
            };
            let exists = self
                .vhosts
                .get(vhost)
                .is_some_and(|v| v.exchanges.contains_key(&x.name[..]));
            if exists {
                continue;
            }
            let mut e = Exchange::new(
                vhost,
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
                .find(|de| delayed && de.exchange == x.name && de.vhost == x.vhost)
                .map(|de| de.store_id);
            let store_id = e.delayed_store_id;
            let id = self.insert_exchange(e);
            if let Some(sid) = store_id {
                self.next_queue_store_id = self.next_queue_store_id.max(sid + 1);
                owners.insert(sid, Owner::Delayed(id));
            }
        }
        owners
    }

    /// Puts every recovered message back where it was: on disk in its queue (in its
    /// priority level, with its deadline); returns those its delayed exchange held.
    fn recover_messages(&mut self, owners: &HashMap<u32, Owner>) -> io::Result<Vec<HeldAtStop>> {
        let (queues, clock) = (&mut self.queues, self.clock_ms);
        let mut held = Vec::new();
        self.store.recovered(|m: Recovered| {
            // A record without a time (an older log) counts as enqueued now.
            let at = match m.enqueued_at_ms {
                0 => clock,
                t => t,
            };
            match owners.get(&m.queue) {
                Some(&Owner::Queue(q)) => {
                    if let Some(q) = queues.get_mut(q) {
                        let ttl = match (q.args.message_ttl_ms, m.meta.expiration_ms) {
                            (None, None) => None,
                            (a, b) => Some(a.unwrap_or(u64::MAX).min(b.unwrap_or(u64::MAX))),
                        };
                        let expires_at = ttl.map_or(NEVER, |t| at.saturating_add(t));
                        q.may_expire |= expires_at != NEVER;
                        // Everything recovered starts on disk; queues read their window back
                        // on demand.
                        let r = PagedRef {
                            loc: m.loc,
                            expires_at,
                            body_len: m.meta.body_len,
                            redelivered: m.redelivered,
                        };
                        q.push_recovered(m.meta.priority, r, m.origin);
                    }
                }
                Some(&Owner::Delayed(exchange)) => held.push(HeldAtStop {
                    exchange,
                    loc: m.loc,
                    store_id: m.queue,
                    enqueued_at_ms: at,
                }),
                None => {}
            }
        })?;
        Ok(held)
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

/// Hands a binding or unbinding to the store if both its ends are durable (a binding to a
/// transient entity dies with it, so it is never saved).
pub(super) fn record_binding(
    store: &mut Store,
    vhosts: &Registry<VhostId, VhostState>,
    exchanges: &Registry<ExchangeId, Exchange>,
    queues: &Registry<QueueId, Queue>,
    bound: bool,
    b: &Binding,
) {
    let Some(source) = exchanges.get(b.source).filter(|x| x.durable) else {
        return;
    };
    let Some(vhost) = vhosts.get(source.vhost) else {
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
        vhost: vhost.name.as_bytes(),
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
