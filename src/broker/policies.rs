//! The broker's policies: the table (set, cleared, listed, saved with the durable
//! definitions), which one applies to each queue and exchange (the highest priority match,
//! one per object, as RabbitMQ), and applying them: at once to an object being created, and
//! to the objects of a vhost whose policies changed across loop turns, at most
//! `POLICY_OBJECTS_PER_TURN_MAX` per turn (a vhost of 10,000 queues does not stall the loop).

use super::args::QueueArgs;
use super::exchange::{Exchange, ExchangeId};
use super::expiry::Timer;
use super::policy::{best, merge_queue_args, Policy, Target};
use super::queue::{Queue, QueueId, NEVER};
use super::{Broker, VhostId};
use crate::limits::{POLICY_OBJECTS_PER_TURN_MAX, POLICY_TRIM_PER_TURN_MAX};
use crate::protocol::FieldTable;
use crate::store::definitions::DefChange;
use serde_json::Value;
use std::rc::Rc;

/// An object whose policy is to be looked at again.
#[derive(Debug, Clone, Copy)]
pub(super) enum Pending {
    Queue(QueueId),
    Exchange(ExchangeId),
}

/// The policies of every vhost and the objects waiting for theirs.
#[derive(Default)]
pub(super) struct Policies {
    list: Vec<Rc<Policy>>,
    /// Objects of vhosts whose policies changed, with their vhost; worked through a bounded
    /// number per turn. A vhost's objects are listed once however often its policies change
    /// before the sweep reaches them.
    sweep: Vec<(VhostId, Pending)>,
}

impl Policies {
    fn of_vhost<'a>(&'a self, vhost: &'a str) -> impl Iterator<Item = &'a Rc<Policy>> + 'a {
        self.list.iter().filter(move |p| p.vhost == vhost)
    }
}

impl Broker {
    /// Every policy, or those of one vhost, by vhost and name.
    pub fn policies(&self, vhost: Option<&str>) -> Vec<Rc<Policy>> {
        let mut v: Vec<Rc<Policy>> = self
            .policies
            .list
            .iter()
            .filter(|p| vhost.is_none_or(|v| p.vhost == v))
            .cloned()
            .collect();
        v.sort_by(|a, b| (&a.vhost, &a.name).cmp(&(&b.vhost, &b.name)));
        v
    }

    /// Sets a policy (its vhost must exist); true if it is new. Its objects follow over the
    /// next turns.
    pub fn put_policy(&mut self, p: Policy) -> bool {
        let vhost = p.vhost.clone();
        let old = self
            .policies
            .list
            .iter()
            .position(|x| x.vhost == p.vhost && x.name == p.name);
        let created = match old {
            Some(i) => {
                self.policies.list[i] = Rc::new(p);
                false
            }
            None => {
                self.policies.list.push(Rc::new(p));
                true
            }
        };
        self.policies_changed(&vhost);
        created
    }

    /// Clears a policy; false if there is none of that name.
    pub fn delete_policy(&mut self, vhost: &str, name: &str) -> bool {
        let before = self.policies.list.len();
        self.policies
            .list
            .retain(|p| !(p.vhost == vhost && p.name == name));
        if self.policies.list.len() == before {
            return false;
        }
        self.policies_changed(vhost);
        true
    }

    /// A vhost is gone: so are its policies.
    pub(super) fn drop_vhost_policies(&mut self, vhost: &str) {
        let before = self.policies.list.len();
        self.policies.list.retain(|p| p.vhost != vhost);
        if self.policies.list.len() != before {
            self.record_policies();
        }
    }

    /// Saves the table and queues the vhost's objects for the sweep.
    fn policies_changed(&mut self, vhost: &str) {
        self.record_policies();
        self.sweep_vhost(vhost);
    }

    /// After recovery: the queues of vhosts with policies are looked at again over the next
    /// turns, so a backlog above a policy's limit (a trim cut short by a stop) is trimmed in
    /// bounded slices rather than all at once by the next publish.
    pub(super) fn sweep_after_recovery(&mut self) {
        let mut vhosts: Vec<String> = self.policies.list.iter().map(|p| p.vhost.clone()).collect();
        vhosts.sort();
        vhosts.dedup();
        for v in vhosts {
            self.sweep_vhost(&v);
        }
    }

    /// Queues the vhost's objects for the sweep (once, however often this is called before
    /// the sweep reaches them).
    fn sweep_vhost(&mut self, vhost: &str) {
        let Some(vid) = self.vhost_id(vhost) else {
            return;
        };
        self.policies.sweep.retain(|(v, _)| *v != vid);
        if let Some(names) = self.vhosts.get(vid) {
            let queues = names.queues.values().map(|&q| (vid, Pending::Queue(q)));
            let exchanges = names
                .exchanges
                .values()
                .map(|&x| (vid, Pending::Exchange(x)));
            self.policies.sweep.extend(queues.chain(exchanges));
        }
    }

    /// Applies changed policies to at most `POLICY_OBJECTS_PER_TURN_MAX` objects (from
    /// `commit_turn`).
    pub(super) fn apply_policies_some(&mut self) {
        let mut again = Vec::new();
        let mut trim_budget = POLICY_TRIM_PER_TURN_MAX;
        for _ in 0..POLICY_OBJECTS_PER_TURN_MAX {
            let Some((vhost, pending)) = self.policies.sweep.pop() else {
                break;
            };
            match pending {
                Pending::Queue(id) => {
                    if self.reapply_queue_policy(id, &mut trim_budget) {
                        // Still over a lowered limit: more heads go next turn.
                        again.push((vhost, pending));
                    }
                }
                Pending::Exchange(id) => self.reapply_exchange_policy(id),
            }
        }
        self.policies.sweep.extend(again);
    }

    /// Objects are still waiting for their policy.
    pub(super) fn policies_pending(&self) -> bool {
        !self.policies.sweep.is_empty()
    }

    fn best_policy(&self, vhost: VhostId, target: Target, name: &[u8]) -> Option<Rc<Policy>> {
        let vname = self.vhosts.get(vhost)?.name.clone();
        best(self.policies.of_vhost(&vname), target, name).cloned()
    }

    /// A queue being created gets its policy before anything reads its arguments.
    pub(super) fn with_queue_policy(&self, mut q: Queue) -> Queue {
        let policy = self.best_policy(q.vhost, Target::Queue, &q.name);
        if policy.is_some() {
            let args = effective_args(&q.arguments, policy.as_deref());
            q.set_effective_args(args);
            q.policy = policy;
        }
        q
    }

    /// An exchange being created gets its policy.
    pub(super) fn with_exchange_policy(&self, mut x: Exchange) -> Exchange {
        let policy = self.best_policy(x.vhost, Target::Exchange, &x.name);
        if policy.is_some() {
            x.set_policy(policy);
        }
        x
    }

    fn reapply_exchange_policy(&mut self, id: ExchangeId) {
        let Some(x) = self.exchanges.get(id) else {
            return;
        };
        let policy = self.best_policy(x.vhost, Target::Exchange, &x.name);
        let federation =
            |p: &Option<Rc<Policy>>| p.as_ref().and_then(|p| p.parsed.federation.clone());
        if federation(&x.policy) != federation(&policy) {
            self.federation.changed();
        }
        if let Some(x) = self.exchanges.get_mut(id) {
            x.set_policy(policy);
        }
    }

    /// Applies the policy that now matches queue `id`, with what a change of arguments sets
    /// off: the x-expires lease restarted with the new expiry, a queue over a lower length
    /// limit trimmed while the turn's `trim_budget` lasts; true if it is still over its limit.
    fn reapply_queue_policy(&mut self, id: QueueId, trim_budget: &mut usize) -> bool {
        let Some(q) = self.queues.get(id) else {
            return false;
        };
        let policy = self.best_policy(q.vhost, Target::Queue, &q.name);
        let args = effective_args(&q.arguments, policy.as_deref());
        let Some(q) = self.queues.get_mut(id) else {
            return false;
        };
        let same_policy = match (&q.policy, &policy) {
            (Some(a), Some(b)) => Rc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if same_policy && q.args == args {
            return self.trim_some(id, trim_budget);
        }
        let (was_refusing, old_expires) = (q.may_refuse(), q.args.expires_ms);
        q.policy = policy;
        q.set_effective_args(args);
        let (now_refusing, new_expires) = (q.may_refuse(), q.args.expires_ms);
        self.refusing_queues = self.refusing_queues + now_refusing as usize - was_refusing as usize;
        if new_expires != old_expires {
            self.restart_lease(id);
        }
        self.trim_some(id, trim_budget)
    }

    /// x-expires changed: the lease runs from now with the new expiry (none cancels it).
    fn restart_lease(&mut self, id: QueueId) {
        let now = self.clock_ms;
        let Some(q) = self.queues.get_mut(id) else {
            return;
        };
        let Some(ms) = q.args.expires_ms else {
            q.lease_until = NEVER;
            q.lease_due = NEVER;
            return;
        };
        q.lease_until = now.saturating_add(ms);
        if q.lease_due == NEVER || q.lease_due > q.lease_until {
            // An earlier entry in the heap than the one pending: the old one becomes stale.
            q.lease_due = q.lease_until;
            let until = q.lease_until;
            self.push_timer(until, Timer::Lease, id);
        }
    }

    /// The policy table as one definitions-journal record (the latest wins).
    fn record_policies(&mut self) {
        if !self.store.enabled() {
            return;
        }
        let json = policies_json(&self.policies.list);
        self.store.record(DefChange::Policies(json.as_bytes()));
    }

    /// The policies saved with the definitions, set again at start (before the queues and
    /// exchanges they apply to are recovered).
    pub(super) fn recover_policies(&mut self, json: &[u8]) -> std::io::Result<()> {
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        let v: Value = serde_json::from_slice(json).map_err(|e| invalid(e.to_string()))?;
        for item in v.as_array().into_iter().flatten() {
            let vhost = item["vhost"].as_str().unwrap_or("/");
            let name = item["name"].as_str().unwrap_or("");
            let p = Policy::from_json(vhost, name, item)
                .map_err(|e| invalid(format!("policy '{name}' in vhost '{vhost}': {}", e.0)))?;
            self.policies.list.push(Rc::new(p));
        }
        Ok(())
    }
}

/// A queue's arguments (its raw declared table) with `policy` merged in.
fn effective_args(raw: &[u8], policy: Option<&Policy>) -> QueueArgs {
    let Ok(table) = FieldTable::parse(raw) else {
        return QueueArgs::default();
    };
    let declared = QueueArgs::parse(table);
    merge_queue_args(
        &declared,
        table.get(b"x-queue-mode").is_some(),
        table.get(b"x-overflow").is_some(),
        policy.map(|p| &p.parsed),
    )
}

/// Policies as the JSON array definitions carry.
pub(super) fn policies_json(list: &[Rc<Policy>]) -> String {
    Value::Array(list.iter().map(|p| p.to_json()).collect()).to_string()
}
