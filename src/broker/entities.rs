//! The entity verbs sessions call: exchange and queue declare and delete, bind and unbind,
//! purge, and what a closed connection takes with it. Each acts in the actor's vhost, checks
//! what RabbitMQ checks — permissions (`VhostGrant`) among the existence and equivalence checks,
//! in RabbitMQ's order — and fails with its reply code and text; deleting cascades (bindings,
//! auto-delete exchanges, consumers cancelled through notices).

use super::args::{self, DeclaredFlags, QueueArgs};
use super::bindings::Binding;
use super::cleanup::{Task, CLOSED_OWNER};
use super::durability::record_binding;
use super::exchange::{
    Destination, Exchange, ExchangeId, ExchangeKind, ALTERNATE_EXCHANGE, COMPARED_ARGUMENTS,
    DELAYED_TYPE,
};
use super::queue::{Queue, QueueId};
use super::{not_found_exchange, not_found_queue, Actor, Broker, ConnId};
use crate::auth::{Resource, ResourceKind, SourceExchange};
use crate::error::{AmqpError, Show};
use crate::protocol::{FieldTable, FieldValue, ReplyCode};
use crate::store::definitions::DefChange;

/// What queue.declare answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclareOk {
    pub(crate) queue: QueueId,
    pub(crate) name: Box<[u8]>,
    pub(crate) message_count: u32,
    pub(crate) consumer_count: u32,
}

/// Declaration flags of queue.declare.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueFlags {
    pub(crate) passive: bool,
    pub(crate) durable: bool,
    pub(crate) exclusive: bool,
    pub(crate) auto_delete: bool,
}

/// Declaration flags of exchange.declare.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ExchangeFlags {
    pub(crate) passive: bool,
    pub(crate) durable: bool,
    pub(crate) auto_delete: bool,
    pub(crate) internal: bool,
}

fn inequivalent(
    vhost: &str,
    arg: &str,
    kind: &str,
    name: &[u8],
    received: impl std::fmt::Display,
    current: impl std::fmt::Display,
) -> AmqpError {
    AmqpError::precondition(format_args!(
        "inequivalent arg '{arg}' for {kind} '{}' in vhost '{vhost}': received '{received}' but current is '{current}'",
        Show(name)
    ))
}

/// An exchange type coney routes by, or RabbitMQ's connection error for an unknown one.
fn known_kind(kind: &[u8]) -> Result<ExchangeKind, AmqpError> {
    ExchangeKind::parse(kind).ok_or_else(|| {
        AmqpError::command_invalid(format_args!("unknown exchange type '{}'", Show(kind)))
    })
}

/// The routing type of an x-delayed-message exchange (its required x-delayed-type), checked
/// as the delayed-message plugin checks it.
fn delayed_type(args: FieldTable<'_>) -> Result<ExchangeKind, AmqpError> {
    match args.get(b"x-delayed-type") {
        Some(FieldValue::LongStr(t)) if t == DELAYED_TYPE.as_bytes() => {
            Err(AmqpError::precondition(
                "Invalid argument, 'x-delayed-message' can't be used for 'x-delayed-type'",
            ))
        }
        Some(FieldValue::LongStr(t)) => known_kind(t),
        _ => Err(AmqpError::precondition(
            "Invalid argument, 'x-delayed-type' must be an existing exchange type",
        )),
    }
}

pub(super) fn internal_exchange_refused(vhost: &str, name: &[u8]) -> AmqpError {
    AmqpError::access_refused(format_args!(
        "cannot publish to internal exchange '{}' in vhost '{vhost}'",
        Show(name)
    ))
}

fn default_exchange_refused() -> AmqpError {
    AmqpError::access_refused("operation not permitted on the default exchange")
}

fn reserved_name(kind: &str, name: &[u8]) -> AmqpError {
    AmqpError::access_refused(format_args!(
        "{kind} name '{}' contains reserved prefix 'amq.*'",
        Show(name)
    ))
}

fn queue_locked(vhost: &str, name: &[u8]) -> AmqpError {
    AmqpError::resource_locked(format_args!(
        "cannot obtain exclusive access to locked queue '{}' in vhost '{vhost}'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.",
        Show(name)
    ))
}

/// RabbitMQ's argument equivalence (`rabbit_misc:assert_args_equivalence`): absent on both
/// sides, or equal values whose types are of one class (integers of any width are one).
fn equivalent_values(a: Option<FieldValue<'_>>, b: Option<FieldValue<'_>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => match (a.as_integer(), b.as_integer()) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
        _ => false,
    }
}

/// An argument value as RabbitMQ's inequivalence text shows it: `none`; `'v'` when both
/// sides have a value; `the value 'v' of type 't'` when only this side has one.
struct ArgValue<'a> {
    value: Option<FieldValue<'a>>,
    typed: bool,
}

impl std::fmt::Display for ArgValue<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some(v) = self.value else {
            return f.write_str("none");
        };
        let text = match v {
            FieldValue::LongStr(s) | FieldValue::Bytes(s) => {
                String::from_utf8_lossy(s).into_owned()
            }
            FieldValue::Bool(b) => b.to_string(),
            other => match other.as_integer() {
                Some(i) => i.to_string(),
                None => format!("{other:?}"),
            },
        };
        if self.typed {
            write!(f, "the value '{text}' of type '{}'", v.type_name())
        } else {
            write!(f, "'{text}'")
        }
    }
}

/// A long-string argument (alternate-exchange, x-dead-letter-exchange), for the permission
/// check RabbitMQ makes on it. Other types are for the argument checks to refuse.
fn string_arg<'a>(args: FieldTable<'a>, key: &[u8]) -> Option<&'a [u8]> {
    match args.get(key) {
        Some(FieldValue::LongStr(s)) => Some(s),
        _ => None,
    }
}

impl Broker {
    // ---- exchanges -------------------------------------------------------------------------

    /// The exchange `name` in the actor's vhost (404 if there is none).
    pub(super) fn exchange_id(&self, who: &Actor, name: &[u8]) -> Result<ExchangeId, AmqpError> {
        self.names(who)?
            .exchanges
            .get(name)
            .copied()
            .ok_or_else(|| not_found_exchange(who.vhost_name(), name))
    }

    /// exchange.declare, in RabbitMQ's order: passive is a lookup (not of the default
    /// exchange); otherwise the type, the default exchange, configure permission, then
    /// equivalence with an existing exchange (type, flags, alternate-exchange) or, for a new
    /// one, the reserved prefix and the alternate exchange's type and permissions.
    pub(crate) fn declare_exchange(
        &mut self,
        who: &Actor,
        name: &[u8],
        kind: &[u8],
        flags: ExchangeFlags,
        args: FieldTable<'_>,
    ) -> Result<(), AmqpError> {
        if flags.passive {
            if name.is_empty() {
                return Err(default_exchange_refused());
            }
            return self.exchange_id(who, name).map(|_| ());
        }
        let delayed = kind == DELAYED_TYPE.as_bytes();
        if !delayed {
            known_kind(kind)?;
        }
        if name.is_empty() {
            return Err(default_exchange_refused());
        }
        who.grant().check_exchange_declare(name)?;
        if let Some(&id) = self.names(who)?.exchanges.get(name) {
            return self.check_exchange_equivalent(who, id, name, kind, flags, args);
        }
        if name.starts_with(b"amq.") {
            return Err(reserved_name("exchange", name));
        }
        match args.get(ALTERNATE_EXCHANGE) {
            None => {}
            Some(FieldValue::LongStr(ae)) => who.grant().check_alternate_exchange(name, ae)?,
            Some(other) => {
                return Err(AmqpError::precondition(format_args!(
                    "invalid type '{}' for arg '{}' in exchange '{}' in vhost '{}'",
                    other.type_name(),
                    Show(ALTERNATE_EXCHANGE),
                    Show(name),
                    who.vhost_name()
                )))
            }
        }
        // The delayed-message plugin checks its routing type when the exchange is created.
        let routing_kind = if delayed {
            delayed_type(args)?
        } else {
            known_kind(kind)?
        };
        let mut x = Exchange::new(
            who.vhost,
            name.into(),
            routing_kind,
            flags.durable,
            flags.auto_delete,
            flags.internal,
            args.raw().into(),
        );
        x.delayed = delayed;
        if delayed && flags.durable && self.store.enabled() {
            // Held persistent messages are stored under this number, as a queue's are.
            x.delayed_store_id = Some(self.next_queue_store_id);
            self.next_queue_store_id += 1;
        }
        let delayed_store_id = x.delayed_store_id;
        self.insert_exchange(x);
        if flags.durable {
            self.store.record(DefChange::exchange(
                who.vhost_name().as_bytes(),
                name,
                kind,
                flags.auto_delete,
                flags.internal,
                args.raw(),
            ));
        }
        if let Some(store_id) = delayed_store_id {
            self.store.record(DefChange::DelayedExchange {
                vhost: who.vhost_name().as_bytes(),
                name,
                store_id,
            });
        }
        Ok(())
    }

    /// exchange.declare of an existing exchange: the same type, flags and compared arguments.
    fn check_exchange_equivalent(
        &self,
        who: &Actor,
        id: ExchangeId,
        name: &[u8],
        kind: &[u8],
        flags: ExchangeFlags,
        args: FieldTable<'_>,
    ) -> Result<(), AmqpError> {
        let vhost = who.vhost_name();
        let Some(x) = self.exchanges.get(id) else {
            return Err(not_found_exchange(vhost, name));
        };
        let current = x.type_name();
        if current.as_bytes() != kind {
            return Err(inequivalent(
                vhost,
                "type",
                "exchange",
                name,
                Show(kind),
                current,
            ));
        }
        let flags_now = [
            ("durable", flags.durable, x.durable),
            ("auto_delete", flags.auto_delete, x.auto_delete),
            ("internal", flags.internal, x.internal),
        ];
        if let Some((arg, received, current)) = flags_now.into_iter().find(|(_, r, c)| r != c) {
            return Err(inequivalent(
                vhost, arg, "exchange", name, received, current,
            ));
        }
        let current = FieldTable::parse(&x.arguments).unwrap_or_default();
        for key in COMPARED_ARGUMENTS {
            let (received, current) = (args.get(key), current.get(key));
            if !equivalent_values(received, current) {
                let typed = received.is_none() || current.is_none();
                let received = ArgValue {
                    value: received,
                    typed,
                };
                let current = ArgValue {
                    value: current,
                    typed,
                };
                return Err(AmqpError::precondition(format_args!(
                    "inequivalent arg '{}' for exchange '{}' in vhost '{vhost}': received {} but current is {}",
                    Show(key),
                    Show(name),
                    received,
                    current
                )));
            }
        }
        Ok(())
    }

    /// Records a new exchange under its name in its vhost.
    pub(super) fn insert_exchange(&mut self, x: Exchange) -> ExchangeId {
        let x = self.with_exchange_policy(x);
        if x.federated() {
            self.federation.changed();
        }
        let (vhost, name) = (x.vhost, x.name.clone());
        let id = self.exchanges.insert(x);
        if let Some(v) = self.names_mut(vhost) {
            v.exchanges.insert(name, id);
        }
        id
    }

    /// exchange.delete: the default exchange and `amq.` ones are refused, then configure
    /// permission, then existence (a missing exchange is deleted already) and if-unused.
    pub(crate) fn delete_exchange(
        &mut self,
        who: &Actor,
        name: &[u8],
        if_unused: bool,
    ) -> Result<(), AmqpError> {
        let vhost = who.vhost_name();
        if name.is_empty() {
            return Err(default_exchange_refused());
        }
        if name.starts_with(b"amq.") {
            return Err(AmqpError::access_refused(format_args!(
                "deletion of system exchange '{}' in vhost '{vhost}' not allowed",
                Show(name)
            )));
        }
        who.grant().check_exchange_delete(name)?;
        let Some(&id) = self.names(who)?.exchanges.get(name) else {
            // Deleting a missing exchange succeeds (RabbitMQ 3.x).
            return Ok(());
        };
        if if_unused && self.bindings.has_source(id) {
            return Err(AmqpError::precondition(format_args!(
                "exchange '{}' in vhost '{vhost}' in use",
                Show(name)
            )));
        }
        self.remove_exchange(id);
        self.clean_up_inline();
        Ok(())
    }

    /// Deletes an exchange; the bindings from and to it go through the cleanup, and sources
    /// left without bindings go too if they are auto-delete.
    pub(super) fn remove_exchange(&mut self, id: ExchangeId) {
        let Some(x) = self.exchanges.remove(id) else {
            return;
        };
        if x.federated() {
            self.federation.changed();
        }
        if let Some(v) = self.vhosts.get_mut(x.vhost) {
            v.exchanges.remove(&x.name);
            if x.durable {
                // The store drops the bindings from and to a deleted exchange with it; the
                // cleanup only removes them from memory.
                self.store.record(DefChange::ExchangeDeleted {
                    vhost: v.name.as_bytes(),
                    name: &x.name,
                });
            }
        }
        self.cleanup.push(Task::BindingsFrom(id));
        self.cleanup
            .push(Task::BindingsTo(Destination::Exchange(id)));
    }

    /// Deletes the auto-delete exchanges among `sources` that have no bindings left.
    pub(super) fn auto_delete_exchanges(&mut self, sources: &[ExchangeId]) {
        for &id in sources {
            let unused = self.exchanges.get(id).is_some_and(|x| x.auto_delete)
                && !self.bindings.has_source(id);
            if unused {
                self.remove_exchange(id);
            }
        }
    }

    /// The checks of every (un)bind, in RabbitMQ's order (`binding_action`): the permissions
    /// (write on the destination, neither end the default exchange, read on the source, topic
    /// read on the key if the source is a topic exchange), then the source exists, then the
    /// destination exists and (a queue) is not another connection's exclusive queue. An unbind
    /// is idempotent as in RabbitMQ 3.10: None when an end is missing, and the exclusive lock
    /// matters only if the binding exists.
    fn binding_for(
        &self,
        who: &Actor,
        destination: Resource<'_>,
        source: &[u8],
        key: &[u8],
        args: FieldTable<'_>,
        unbinding: bool,
    ) -> Result<Option<Binding>, AmqpError> {
        let vhost = who.vhost_name();
        let names = self.names(who)?;
        let source_id = names.exchanges.get(source).copied();
        let source_kind = match source_id.and_then(|id| self.exchanges.get(id)) {
            None => SourceExchange::Absent,
            Some(x) if x.kind() == ExchangeKind::Topic => SourceExchange::Topic,
            Some(_) => SourceExchange::NotTopic,
        };
        who.grant()
            .check_bind(destination, source, key, source_kind)?;
        let dest = match destination.kind {
            ResourceKind::Queue => names
                .queues
                .get(destination.name)
                .map(|&q| Destination::Queue(q)),
            ResourceKind::Exchange => names
                .exchanges
                .get(destination.name)
                .map(|&x| Destination::Exchange(x)),
        };
        let (source, dest) = match (source_id, dest) {
            (Some(s), Some(d)) => (s, d),
            _ if unbinding => return Ok(None),
            (None, _) => return Err(not_found_exchange(vhost, source)),
            (Some(_), None) => {
                return Err(match destination.kind {
                    ResourceKind::Queue => not_found_queue(vhost, destination.name),
                    ResourceKind::Exchange => not_found_exchange(vhost, destination.name),
                })
            }
        };
        let b = Binding {
            source,
            dest,
            key: key.into(),
            args: args.raw().into(),
        };
        if let Destination::Queue(_) = dest {
            if !unbinding || self.bindings.contains(&b) {
                self.queue_for(who, destination.name)?;
            }
        }
        Ok(Some(b))
    }

    /// Adds a binding; the store saves it if both its ends are durable.
    fn bind(&mut self, b: Binding) {
        let (source, dest, key, args) = (b.source, b.dest, b.key.clone(), b.args.clone());
        if self.bindings.bind(&mut self.exchanges, b) {
            let b = Binding {
                source,
                dest,
                key,
                args,
            };
            let (exchanges, queues) = (&self.exchanges, &self.queues);
            record_binding(&mut self.store, &self.vhosts, exchanges, queues, true, &b);
        }
    }

    /// Removes a binding; its source goes if it is auto-delete and now unused.
    fn unbind(&mut self, b: &Binding) {
        if self.bindings.unbind(&mut self.exchanges, b) {
            let (exchanges, queues) = (&self.exchanges, &self.queues);
            record_binding(&mut self.store, &self.vhosts, exchanges, queues, false, b);
            self.auto_delete_exchanges(&[b.source]);
            self.clean_up_inline();
        }
    }

    pub fn bind_queue(
        &mut self,
        who: &Actor,
        queue: &[u8],
        exchange: &[u8],
        key: &[u8],
        args: FieldTable<'_>,
    ) -> Result<(), AmqpError> {
        let dest = Resource {
            kind: ResourceKind::Queue,
            name: queue,
        };
        if let Some(b) = self.binding_for(who, dest, exchange, key, args, false)? {
            self.bind(b);
        }
        Ok(())
    }

    pub(crate) fn unbind_queue(
        &mut self,
        who: &Actor,
        queue: &[u8],
        exchange: &[u8],
        key: &[u8],
        args: FieldTable<'_>,
    ) -> Result<(), AmqpError> {
        let dest = Resource {
            kind: ResourceKind::Queue,
            name: queue,
        };
        if let Some(b) = self.binding_for(who, dest, exchange, key, args, true)? {
            self.unbind(&b);
        }
        Ok(())
    }

    pub(crate) fn bind_exchange(
        &mut self,
        who: &Actor,
        destination: &[u8],
        source: &[u8],
        key: &[u8],
        args: FieldTable<'_>,
    ) -> Result<(), AmqpError> {
        let dest = Resource {
            kind: ResourceKind::Exchange,
            name: destination,
        };
        if let Some(b) = self.binding_for(who, dest, source, key, args, false)? {
            self.bind(b);
        }
        Ok(())
    }

    pub(crate) fn unbind_exchange(
        &mut self,
        who: &Actor,
        destination: &[u8],
        source: &[u8],
        key: &[u8],
        args: FieldTable<'_>,
    ) -> Result<(), AmqpError> {
        let dest = Resource {
            kind: ResourceKind::Exchange,
            name: destination,
        };
        if let Some(b) = self.binding_for(who, dest, source, key, args, true)? {
            self.unbind(&b);
        }
        Ok(())
    }

    // ---- queues ----------------------------------------------------------------------------

    /// Looks a queue up in the actor's vhost for an operation by its connection, enforcing
    /// exclusive ownership.
    pub(super) fn queue_for(&self, who: &Actor, name: &[u8]) -> Result<QueueId, AmqpError> {
        let vhost = who.vhost_name();
        let id = *self
            .names(who)?
            .queues
            .get(name)
            .ok_or_else(|| not_found_queue(vhost, name))?;
        let q = self
            .queues
            .get(id)
            .ok_or_else(|| not_found_queue(vhost, name))?;
        if q.owner.is_some_and(|o| o != who.conn) {
            return Err(queue_locked(vhost, name));
        }
        Ok(id)
    }

    /// queue.declare, in RabbitMQ's order: passive is a lookup; otherwise the reserved prefix,
    /// configure permission on the actual name, then equivalence with an existing queue or,
    /// for a new one, the vhost's queue limit and the dead-letter exchange's permissions.
    pub fn declare_queue(
        &mut self,
        who: &Actor,
        name: &[u8],
        flags: QueueFlags,
        args: FieldTable<'_>,
    ) -> Result<DeclareOk, AmqpError> {
        if flags.passive {
            let id = self.queue_for(who, name)?;
            return Ok(self.declare_ok(id, name.into()));
        }
        let generated = name.is_empty();
        if generated {
            args::check_server_named(args)?;
        }
        let name: Box<[u8]> = if generated {
            self.generate_name("amq.gen-")
        } else if name.starts_with(b"amq.") {
            return Err(reserved_name("queue", name));
        } else {
            name.into()
        };
        who.grant().check_queue_declare(&name)?;
        let names = self.names(who)?;
        if names.queues.contains_key(&name) {
            return self.redeclare_queue(who, name, flags, args);
        }
        who.grant().check_queue_limit(&name, names.queues.len())?;
        if let Some(dlx) = string_arg(args, b"x-dead-letter-exchange") {
            who.grant().check_dead_letter_exchange(&name, dlx)?;
        }
        let declared = DeclaredFlags {
            durable: flags.durable,
            exclusive: flags.exclusive,
            auto_delete: flags.auto_delete,
        };
        let parsed = QueueArgs::declare(who.vhost_name(), &name, args, declared)?;
        let owner = flags.exclusive.then_some(who.conn);
        let mut q = Queue::new(
            who.vhost,
            name.clone(),
            flags.durable,
            flags.auto_delete,
            owner,
            args.raw().into(),
            parsed,
        );
        if flags.durable && !flags.exclusive && self.store.enabled() {
            // Exclusive queues die with their connection, so they are never recovered.
            let store_id = self.next_queue_store_id;
            q.store_id = Some(store_id);
            self.store.record(DefChange::queue(
                who.vhost_name().as_bytes(),
                &name,
                store_id,
                flags.auto_delete,
                args.raw(),
            ));
            self.next_queue_store_id += 1;
        }
        let id = self.insert_queue(q);
        self.renew_lease(id);
        if flags.exclusive {
            self.own_exclusive(who.conn, id);
        }
        // Every queue is bound to the default exchange by its name; that binding is implicit.
        Ok(DeclareOk {
            queue: id,
            name,
            message_count: 0,
            consumer_count: 0,
        })
    }

    /// Records a new queue under its name in its vhost.
    pub(super) fn insert_queue(&mut self, q: Queue) -> QueueId {
        let q = self.with_queue_policy(q);
        let (vhost, name) = (q.vhost, q.name.clone());
        self.quorum_queues += q.is_quorum() as usize;
        self.refusing_queues += q.may_refuse() as usize;
        let id = self.queues.insert(q);
        if let Some(v) = self.names_mut(vhost) {
            v.queues.insert(name, id);
        }
        id
    }

    /// What queue.declare answers for an existing queue; a declare counts as a use
    /// (x-expires). A quorum queue with a single active consumer counts only the active one
    /// (RabbitMQ 3.10); a classic queue counts every consumer.
    fn declare_ok(&mut self, id: QueueId, name: Box<[u8]>) -> DeclareOk {
        let (messages, consumers) = self.queues.get(id).map_or((0, 0), |q| {
            let consumers = if q.is_quorum() && q.single_active() {
                q.active_consumer().is_some() as usize
            } else {
                q.consumer_count()
            };
            (q.message_count(), consumers)
        });
        self.renew_lease(id);
        DeclareOk {
            queue: id,
            message_count: messages as u32,
            consumer_count: consumers as u32,
            name,
        }
    }

    /// queue.declare of an existing queue: exclusive access checked strictly (another
    /// connection's exclusive queue, or a different exclusive flag, is locked), then the same
    /// durable and auto-delete flags, then the arguments RabbitMQ compares.
    fn redeclare_queue(
        &mut self,
        who: &Actor,
        name: Box<[u8]>,
        flags: QueueFlags,
        args: FieldTable<'_>,
    ) -> Result<DeclareOk, AmqpError> {
        let vhost = who.vhost_name();
        let id = self.queue_for(who, &name)?;
        let q = self
            .queues
            .get(id)
            .ok_or_else(|| not_found_queue(vhost, &name))?;
        // RabbitMQ checks exclusive access strictly first: the flag must match too.
        if q.owner.is_some() != flags.exclusive {
            return Err(queue_locked(vhost, &name));
        }
        if q.durable != flags.durable {
            let (received, current) = (flags.durable, q.durable);
            return Err(inequivalent(
                vhost, "durable", "queue", &name, received, current,
            ));
        }
        if q.auto_delete != flags.auto_delete {
            let (received, current) = (flags.auto_delete, q.auto_delete);
            return Err(inequivalent(
                vhost,
                "auto_delete",
                "queue",
                &name,
                received,
                current,
            ));
        }
        let current = FieldTable::parse(&q.arguments).unwrap_or_default();
        args::check_equivalent(vhost, &name, current, args)?;
        Ok(self.declare_ok(id, name))
    }

    /// queue.purge: read permission, then the queue.
    pub(crate) fn purge_queue(&mut self, who: &Actor, name: &[u8]) -> Result<u32, AmqpError> {
        who.grant().check_queue_purge(name)?;
        let id = self.queue_for(who, name)?;
        let Some(q) = self.queues.get_mut(id) else {
            return Ok(0);
        };
        let purged = q.take_messages();
        let count = purged.len() as u32;
        self.cleanup.push(Task::Messages(purged));
        self.clean_up_inline();
        Ok(count)
    }

    /// queue.delete: configure permission (also for a queue that does not exist), then the
    /// queue, its lock, if-unused and if-empty.
    pub(crate) fn delete_queue(
        &mut self,
        who: &Actor,
        name: &[u8],
        if_unused: bool,
        if_empty: bool,
    ) -> Result<u32, AmqpError> {
        let vhost = who.vhost_name();
        who.grant().check_queue_delete(name)?;
        let id = match self.queue_for(who, name) {
            Ok(id) => id,
            // Deleting a missing queue succeeds with a count of 0 (RabbitMQ 3.x).
            Err(e) if e.code == ReplyCode::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let q = self
            .queues
            .get(id)
            .ok_or_else(|| not_found_queue(vhost, name))?;
        if if_unused && q.has_consumers() {
            return Err(AmqpError::precondition(format_args!(
                "queue '{}' in vhost '{vhost}' in use",
                Show(name)
            )));
        }
        if if_empty && q.message_count() > 0 {
            return Err(AmqpError::precondition(format_args!(
                "queue '{}' in vhost '{vhost}' not empty",
                Show(name)
            )));
        }
        let count = q.message_count() as u32;
        self.remove_queue(id);
        self.clean_up_inline();
        Ok(count)
    }

    /// Deletes a queue; its consumers are cancelled through notices, its messages and
    /// bindings go through the cleanup (the caller runs the inline part).
    pub(super) fn remove_queue(&mut self, id: QueueId) {
        let Some(mut q) = self.queues.remove(id) else {
            return;
        };
        self.quorum_queues -= q.is_quorum() as usize;
        self.refusing_queues -= q.may_refuse() as usize;
        if let Some(v) = self.vhosts.get_mut(q.vhost) {
            v.queues.remove(&q.name);
            if q.store_id.is_some() {
                // The store drops the bindings to a deleted queue with it (and, after a
                // crash, the messages the cleanup had not acked yet).
                self.store.record(DefChange::QueueDeleted {
                    vhost: v.name.as_bytes(),
                    name: &q.name,
                });
            }
        }
        let purged = q.take_messages();
        if purged.len() > 0 {
            self.cleanup.push(Task::Messages(purged));
        }
        self.cleanup.push(Task::BindingsTo(Destination::Queue(id)));
        self.cancel_consumers_of(q.consumers());
    }

    /// Records `conn` as the owner of the exclusive queue `id`. The list also keeps ids of
    /// queues deleted since (they are skipped at close); it is compacted whenever its length
    /// reaches a power of two, so a connection that declares and deletes exclusive queues
    /// forever keeps a list as long as its live queues, amortised O(1) per declare.
    fn own_exclusive(&mut self, conn: ConnId, id: QueueId) {
        let owned = self.exclusive.entry(conn).or_default();
        owned.push(id);
        if owned.len() >= 64 && owned.len().is_power_of_two() {
            let queues = &self.queues;
            owned.retain(|&q| queues.get(q).is_some_and(|q| q.owner == Some(conn)));
        }
    }

    /// A connection went: it no longer counts towards its vhost's and user's limits, and its
    /// exclusive queues are locked to everyone at once and deleted through the cleanup: those
    /// a few hundred units of work allow before close-ok, the rest over the next turns
    /// (RabbitMQ too deletes them after the connection is gone).
    pub(crate) fn connection_closed(&mut self, conn: ConnId) {
        self.forget_connection(conn);
        let Some(owned) = self.exclusive.remove(&conn) else {
            return;
        };
        let mut orphans = Vec::with_capacity(owned.len());
        for id in owned {
            if let Some(q) = self.queues.get_mut(id).filter(|q| q.owner == Some(conn)) {
                q.owner = Some(CLOSED_OWNER);
                orphans.push(id);
            }
        }
        if !orphans.is_empty() {
            self.cleanup.push(Task::Orphans(orphans));
            self.clean_up_inline();
        }
    }
}
