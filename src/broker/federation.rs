//! What the federation links above the broker need from it, with no sockets: which
//! exchanges a policy federates (and a generation that changes when that set may have), the
//! binding keys of a federated exchange, and the changes to those bindings, recorded by the
//! bindings table in a bounded queue the loop drains each turn (`take_federation_events`).
//! A queue overflowing turns into a resync of that exchange: its links list its bindings
//! again.

use super::bindings::Binding;
use super::exchange::ExchangeId;
use super::Broker;
use crate::definitions::federation::FederationTarget;
use crate::limits::FEDERATION_BINDING_EVENTS_MAX;
use std::collections::{BTreeSet, HashMap, VecDeque};

/// A binding key of a federated exchange: routing key and raw argument table.
pub type BindingKey = (Box<[u8]>, Box<[u8]>);

/// A change to a federated exchange's bindings, for its links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingChange {
    Added(BindingKey),
    Removed(BindingKey),
    /// Too many changes were waiting: list the exchange's bindings again.
    Resync,
}

/// A change, with the exchange it happened on (by vhost and name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederationEvent {
    pub vhost: String,
    pub exchange: String,
    pub change: BindingChange,
}

/// An exchange a policy federates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedExchange {
    pub vhost: String,
    pub name: String,
    pub target: FederationTarget,
}

/// The binding changes waiting for the loop; owned by the bindings table, which makes them.
#[derive(Default)]
pub(super) struct BindingEvents {
    /// (sequence number, exchange, added, key), oldest first.
    events: VecDeque<(u64, ExchangeId, bool, BindingKey)>,
    /// The sequence number of the next change recorded.
    next_seq: u64,
    /// Exchanges whose changes did not fit.
    resync: BTreeSet<ExchangeId>,
    /// Exchanges that overflowed, with the sequence number at the overflow: their changes
    /// still queued from before it are dropped when taken, as the listing of the resync
    /// (taken later) already holds them; applied after it they would count twice.
    stale_before: HashMap<ExchangeId, u64>,
}

impl BindingEvents {
    /// A binding from a federated exchange was added (`added`) or removed.
    pub(super) fn record(&mut self, b: &Binding, added: bool) {
        if self.resync.contains(&b.source) {
            return;
        }
        if self.events.len() >= FEDERATION_BINDING_EVENTS_MAX {
            self.resync.insert(b.source);
            self.stale_before.insert(b.source, self.next_seq);
            return;
        }
        self.events.push_back((
            self.next_seq,
            b.source,
            added,
            (b.key.clone(), b.args.clone()),
        ));
        self.next_seq += 1;
    }

    /// Whether changes or resyncs are waiting.
    fn pending(&self) -> bool {
        !self.events.is_empty() || !self.resync.is_empty()
    }
}

/// The broker's federation state: the generation of the federated exchanges' set.
#[derive(Default)]
pub(super) struct Federation {
    generation: u64,
}

impl Federation {
    pub(super) fn changed(&mut self) {
        self.generation += 1;
    }
}

impl Broker {
    /// Changes whenever the set of federated exchanges may have changed (a policy applied or
    /// removed, a federated exchange created or deleted).
    pub fn federation_generation(&self) -> u64 {
        self.federation.generation
    }

    /// Every exchange a policy federates.
    pub fn federated_exchanges(&self) -> Vec<FederatedExchange> {
        let mut out = Vec::new();
        for (_, x) in self.exchanges.iter() {
            let Some(target) = x.policy.as_ref().and_then(|p| p.parsed.federation.clone()) else {
                continue;
            };
            let Some(v) = self.vhosts.get(x.vhost) else {
                continue;
            };
            out.push(FederatedExchange {
                vhost: v.name.to_string(),
                name: String::from_utf8_lossy(&x.name).into_owned(),
                target,
            });
        }
        out
    }

    fn exchange_by_name(&self, vhost: &str, name: &str) -> Option<ExchangeId> {
        let v = self.vhosts.get(self.vhost_id(vhost)?)?;
        v.exchanges.get(name.as_bytes()).copied()
    }

    /// The binding keys of an exchange, one per binding (a key bound to two queues twice);
    /// None when it does not exist.
    pub fn exchange_binding_keys(&self, vhost: &str, name: &str) -> Option<Vec<BindingKey>> {
        let id = self.exchange_by_name(vhost, name)?;
        Some(
            self.bindings
                .from_source(id)
                .map(|b| (b.key.clone(), b.args.clone()))
                .collect(),
        )
    }

    /// The type of an exchange as declared (`direct`, `headers`, ...).
    pub fn exchange_type(&self, vhost: &str, name: &str) -> Option<&'static str> {
        let id = self.exchange_by_name(vhost, name)?;
        self.exchanges.get(id).map(|x| x.type_name())
    }

    /// Takes up to `max` binding changes of federated exchanges, oldest first, resyncs
    /// before them; changes made stale by a resync are dropped, and count towards `max` (the
    /// work of one call stays bounded). Changes of an exchange deleted since are dropped (its
    /// links stop).
    pub fn take_federation_events(&mut self, max: usize) -> Vec<FederationEvent> {
        let mut out = Vec::new();
        let name = |b: &Broker, id: ExchangeId| {
            let x = b.exchanges.get(id)?;
            let v = b.vhosts.get(x.vhost)?;
            Some((
                v.name.to_string(),
                String::from_utf8_lossy(&x.name).into_owned(),
            ))
        };
        let mut taken = 0;
        while taken < max {
            let Some(id) = self.bindings.federation_events().resync.pop_first() else {
                break;
            };
            taken += 1;
            if let Some((vhost, exchange)) = name(self, id) {
                out.push(FederationEvent {
                    vhost,
                    exchange,
                    change: BindingChange::Resync,
                });
            }
        }
        while taken < max {
            let ev = self.bindings.federation_events();
            let Some((seq, id, added, key)) = ev.events.pop_front() else {
                // Nothing queued is stale any more.
                ev.stale_before.clear();
                break;
            };
            taken += 1;
            if let Some(&before) = ev.stale_before.get(&id) {
                if seq < before {
                    continue;
                }
                ev.stale_before.remove(&id);
            }
            if let Some((vhost, exchange)) = name(self, id) {
                let change = if added {
                    BindingChange::Added(key)
                } else {
                    BindingChange::Removed(key)
                };
                out.push(FederationEvent {
                    vhost,
                    exchange,
                    change,
                });
            }
        }
        out
    }

    /// Whether binding changes (or resyncs) are waiting for `take_federation_events`.
    pub fn federation_events_pending(&mut self) -> bool {
        self.bindings.federation_events().pending()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::policy::Policy;
    use crate::broker::ConnId;
    use crate::broker::{ExchangeFlags, QueueFlags};
    use crate::protocol::FieldTable;

    /// Past FEDERATION_BINDING_EVENTS_MAX the exchange is listed again (a resync) and the
    /// changes still queued from before the overflow are dropped, not applied after the
    /// listing that holds them already (they would count twice: a key bound twice upstream
    /// is never unbound); stale changes count towards the per-call bound; a change made
    /// after the resync was taken arrives.
    #[test]
    fn an_overflow_drops_the_changes_the_listing_holds() {
        let mut b = Broker::new();
        let who = b.internal_actor(ConnId(1), "/").expect("vhost /");
        b.declare_exchange(
            &who,
            b"fx",
            b"topic",
            ExchangeFlags::default(),
            FieldTable::EMPTY,
        )
        .expect("fx");
        b.declare_queue(&who, b"q", QueueFlags::default(), FieldTable::EMPTY)
            .expect("q");
        let p = Policy::from_json(
            "/",
            "fed",
            &serde_json::json!({"pattern": "^fx$", "apply-to": "exchanges",
                "definition": {"federation-upstream-set": "all"}}),
        )
        .expect("policy");
        b.put_policy(p);
        while b.policies_pending() {
            b.apply_policies_some();
        }
        let n = FEDERATION_BINDING_EVENTS_MAX + 10;
        for i in 0..n {
            b.bind_queue(
                &who,
                b"q",
                b"fx",
                format!("k{i}").as_bytes(),
                FieldTable::EMPTY,
            )
            .expect("bind");
        }
        let first = b.take_federation_events(100);
        assert_eq!(first.len(), 1, "the resync, then 99 stale changes dropped");
        assert_eq!(first[0].change, BindingChange::Resync);
        assert!(b.federation_events_pending());
        let listed = b.exchange_binding_keys("/", "fx").expect("fx").len();
        assert_eq!(listed, n, "the listing holds every binding");
        b.bind_queue(&who, b"q", b"fx", b"after", FieldTable::EMPTY)
            .expect("bind after");
        let mut rest = Vec::new();
        let mut calls = 0;
        while b.federation_events_pending() {
            rest.extend(b.take_federation_events(4096));
            calls += 1;
            assert!(calls < 100, "the changes are taken");
        }
        let key = (Box::from(&b"after"[..]), Box::from(&[] as &[u8]));
        assert_eq!(
            rest.into_iter().map(|e| e.change).collect::<Vec<_>>(),
            vec![BindingChange::Added(key)],
            "only the change made after the resync"
        );
        b.bind_queue(&who, b"q", b"fx", b"later", FieldTable::EMPTY)
            .expect("bind later");
        assert_eq!(
            b.take_federation_events(10).len(),
            1,
            "nothing is stale any more"
        );
    }
}
