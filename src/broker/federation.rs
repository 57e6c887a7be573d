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
use std::collections::{BTreeSet, VecDeque};

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
    events: VecDeque<(ExchangeId, bool, BindingKey)>,
    /// Exchanges whose changes did not fit.
    resync: BTreeSet<ExchangeId>,
}

impl BindingEvents {
    /// A binding from a federated exchange was added (`added`) or removed.
    pub(super) fn record(&mut self, b: &Binding, added: bool) {
        if self.resync.contains(&b.source) {
            return;
        }
        if self.events.len() >= FEDERATION_BINDING_EVENTS_MAX {
            self.resync.insert(b.source);
            return;
        }
        self.events
            .push_back((b.source, added, (b.key.clone(), b.args.clone())));
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
    /// before them. Changes of an exchange deleted since are dropped (its links stop).
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
        while out.len() < max {
            let Some(id) = self.bindings.federation_events().resync.pop_first() else {
                break;
            };
            if let Some((vhost, exchange)) = name(self, id) {
                out.push(FederationEvent {
                    vhost,
                    exchange,
                    change: BindingChange::Resync,
                });
            }
        }
        while out.len() < max {
            let Some((id, added, key)) = self.bindings.federation_events().events.pop_front()
            else {
                break;
            };
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
}
