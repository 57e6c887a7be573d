//! The entity verbs sessions call: exchange and queue declare and delete, bind and unbind,
//! purge, and what a closed connection takes with it. Each checks what RabbitMQ checks and
//! fails with its reply code and text; deleting cascades (bindings, auto-delete exchanges,
//! consumers cancelled through notices).

use super::args::{self, DeclaredFlags, QueueArgs};
use super::bindings::Binding;
use super::durability::record_binding;
use super::exchange::{
    Destination, Exchange, ExchangeId, ExchangeKind, ALTERNATE_EXCHANGE, COMPARED_ARGUMENTS,
    DELAYED_TYPE,
};
use super::queue::{Queue, QueueId};
use super::{not_found_exchange, not_found_queue, Broker, ConnId, VHOST};
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
    arg: &str,
    kind: &str,
    name: &[u8],
    received: impl std::fmt::Display,
    current: impl std::fmt::Display,
) -> AmqpError {
    AmqpError::precondition(format_args!(
        "inequivalent arg '{arg}' for {kind} '{}' in vhost '{VHOST}': received '{received}' but current is '{current}'",
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

pub(super) fn internal_exchange_refused(name: &[u8]) -> AmqpError {
    AmqpError::access_refused(format_args!(
        "cannot publish to internal exchange '{}' in vhost '{VHOST}'",
        Show(name)
    ))
}

fn default_exchange_refused() -> AmqpError {
    AmqpError::access_refused("operation not permitted on the default exchange")
}

fn queue_locked(name: &[u8]) -> AmqpError {
    AmqpError::resource_locked(format_args!(
        "cannot obtain exclusive access to locked queue '{}' in vhost '{VHOST}'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.",
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

impl Broker {
    // ---- exchanges -------------------------------------------------------------------------

    pub(super) fn exchange_id(&self, name: &[u8]) -> Result<ExchangeId, AmqpError> {
        self.exchange_names
            .get(name)
            .copied()
            .ok_or_else(|| not_found_exchange(name))
    }

    /// Whether a publish to `exchange` can be routed later (a transaction checks at publish
    /// time, as RabbitMQ does): the default exchange, or one that exists and is not internal.
    pub(crate) fn check_exchange(&self, exchange: &[u8]) -> Result<(), AmqpError> {
        if exchange.is_empty() {
            return Ok(());
        }
        let id = self.exchange_id(exchange)?;
        if self.exchanges.get(id).is_some_and(|x| x.internal) {
            return Err(internal_exchange_refused(exchange));
        }
        Ok(())
    }

    /// exchange.declare, with RabbitMQ's order of checks: passive looks the name up (the
    /// default exchange is refused either way); otherwise the type must be known, the name not
    /// the default exchange, and an existing exchange equivalent.
    pub(crate) fn declare_exchange(
        &mut self,
        name: &[u8],
        kind: &[u8],
        flags: ExchangeFlags,
        args: FieldTable<'_>,
    ) -> Result<(), AmqpError> {
        if flags.passive {
            if name.is_empty() {
                return Err(default_exchange_refused());
            }
            return self.exchange_id(name).map(|_| ());
        }
        let delayed = kind == DELAYED_TYPE.as_bytes();
        if !delayed {
            known_kind(kind)?;
        }
        if name.is_empty() {
            return Err(default_exchange_refused());
        }
        if let Some(&id) = self.exchange_names.get(name) {
            return self.redeclare_exchange(id, name, kind, flags, args);
        }
        if name.starts_with(b"amq.") {
            return Err(AmqpError::access_refused(format_args!(
                "exchange name '{}' contains reserved prefix 'amq.*'",
                Show(name)
            )));
        }
        match args.get(ALTERNATE_EXCHANGE) {
            None | Some(FieldValue::LongStr(_)) => {}
            Some(other) => {
                return Err(AmqpError::precondition(format_args!(
                    "invalid type '{}' for arg '{}' in exchange '{}' in vhost '{VHOST}'",
                    other.type_name(),
                    Show(ALTERNATE_EXCHANGE),
                    Show(name)
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
                name,
                kind,
                flags.auto_delete,
                flags.internal,
                args.raw(),
            ));
        }
        if let Some(store_id) = delayed_store_id {
            self.store
                .record(DefChange::DelayedExchange { name, store_id });
        }
        Ok(())
    }

    /// exchange.declare of an existing exchange: the same type, flags and compared arguments.
    fn redeclare_exchange(
        &self,
        id: ExchangeId,
        name: &[u8],
        kind: &[u8],
        flags: ExchangeFlags,
        args: FieldTable<'_>,
    ) -> Result<(), AmqpError> {
        let Some(x) = self.exchanges.get(id) else {
            return Err(not_found_exchange(name));
        };
        let current = x.type_name();
        if current.as_bytes() != kind {
            return Err(inequivalent("type", "exchange", name, Show(kind), current));
        }
        let flags_now = [
            ("durable", flags.durable, x.durable),
            ("auto_delete", flags.auto_delete, x.auto_delete),
            ("internal", flags.internal, x.internal),
        ];
        if let Some((arg, received, current)) = flags_now.into_iter().find(|(_, r, c)| r != c) {
            return Err(inequivalent(arg, "exchange", name, received, current));
        }
        let current = FieldTable::parse(&x.arguments).unwrap_or_default();
        for key in COMPARED_ARGUMENTS {
            let (received, current) = (args.get(key), current.get(key));
            if !equivalent_values(received, current) {
                let typed = received.is_none() || current.is_none();
                let (received, current) = (
                    ArgValue {
                        value: received,
                        typed,
                    },
                    ArgValue {
                        value: current,
                        typed,
                    },
                );
                return Err(AmqpError::precondition(format_args!(
                    "inequivalent arg '{}' for exchange '{}' in vhost '{VHOST}': received {} but current is {}",
                    Show(key),
                    Show(name),
                    received,
                    current
                )));
            }
        }
        Ok(())
    }

    pub(super) fn insert_exchange(&mut self, x: Exchange) -> ExchangeId {
        let name = x.name.clone();
        let id = self.exchanges.insert(x);
        self.exchange_names.insert(name, id);
        id
    }

    pub(crate) fn delete_exchange(
        &mut self,
        name: &[u8],
        if_unused: bool,
    ) -> Result<(), AmqpError> {
        if name.is_empty() {
            return Err(default_exchange_refused());
        }
        if name.starts_with(b"amq.") {
            return Err(AmqpError::access_refused(format_args!(
                "deletion of system exchange '{}' in vhost '{VHOST}' not allowed",
                Show(name)
            )));
        }
        let Some(&id) = self.exchange_names.get(name) else {
            // Deleting a missing exchange succeeds (RabbitMQ 3.x).
            return Ok(());
        };
        if if_unused && self.bindings.has_source(id) {
            return Err(AmqpError::precondition(format_args!(
                "exchange '{}' in vhost '{VHOST}' in use",
                Show(name)
            )));
        }
        self.remove_exchange(id);
        Ok(())
    }

    /// Deletes an exchange with the bindings from and to it; sources left without bindings
    /// go too if they are auto-delete.
    fn remove_exchange(&mut self, id: ExchangeId) {
        let Some(x) = self.exchanges.remove(id) else {
            return;
        };
        self.exchange_names.remove(&x.name);
        if x.durable {
            // The store drops the bindings from and to a deleted exchange with it.
            self.store
                .record(DefChange::ExchangeDeleted { name: &x.name });
        }
        self.bindings.remove_from(id);
        let mut sources = Vec::new();
        self.bindings
            .remove_to(&mut self.exchanges, Destination::Exchange(id), &mut sources);
        self.auto_delete_exchanges(&sources);
    }

    /// Deletes the auto-delete exchanges among `sources` that have no bindings left.
    fn auto_delete_exchanges(&mut self, sources: &[ExchangeId]) {
        for &id in sources {
            let unused = self.exchanges.get(id).is_some_and(|x| x.auto_delete)
                && !self.bindings.has_source(id);
            if unused {
                self.remove_exchange(id);
            }
        }
    }

    /// The source exchange of exchange.bind / queue.bind and their unbinds.
    fn source_for_binding(&self, exchange: &[u8]) -> Result<ExchangeId, AmqpError> {
        if exchange.is_empty() {
            return Err(default_exchange_refused());
        }
        self.exchange_id(exchange)
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
            record_binding(&mut self.store, &self.exchanges, &self.queues, true, &b);
        }
    }

    /// Removes a binding; its source goes if it is auto-delete and now unused.
    fn unbind(&mut self, b: &Binding) {
        if self.bindings.unbind(&mut self.exchanges, b) {
            record_binding(&mut self.store, &self.exchanges, &self.queues, false, b);
            self.auto_delete_exchanges(&[b.source]);
        }
    }

    pub fn bind_queue(
        &mut self,
        conn: ConnId,
        queue: &[u8],
        exchange: &[u8],
        key: &[u8],
        args: FieldTable<'_>,
    ) -> Result<(), AmqpError> {
        let q = self.queue_for(conn, queue)?;
        let source = self.source_for_binding(exchange)?;
        self.bind(Binding {
            source,
            dest: Destination::Queue(q),
            key: key.into(),
            args: args.raw().into(),
        });
        Ok(())
    }

    /// queue.unbind. Unbinding is idempotent (RabbitMQ 3.10): a binding that does not exist,
    /// because its queue or exchange is gone or it was never made, is already unbound; the
    /// exclusive-queue lock applies only to a binding that exists.
    pub(crate) fn unbind_queue(
        &mut self,
        conn: ConnId,
        queue: &[u8],
        exchange: &[u8],
        key: &[u8],
        args: FieldTable<'_>,
    ) -> Result<(), AmqpError> {
        let source = self.source_for_unbinding(exchange)?;
        let (Some(source), Some(&q)) = (source, self.queue_names.get(queue)) else {
            return Ok(());
        };
        let b = Binding {
            source,
            dest: Destination::Queue(q),
            key: key.into(),
            args: args.raw().into(),
        };
        if self.bindings.contains(&b) {
            self.queue_for(conn, queue)?;
            self.unbind(&b);
        }
        Ok(())
    }

    /// The source exchange of an unbind: the default exchange is refused, a missing one is
    /// `None` (nothing to unbind).
    fn source_for_unbinding(&self, exchange: &[u8]) -> Result<Option<ExchangeId>, AmqpError> {
        if exchange.is_empty() {
            return Err(default_exchange_refused());
        }
        Ok(self.exchange_names.get(exchange).copied())
    }

    pub(crate) fn bind_exchange(
        &mut self,
        destination: &[u8],
        source: &[u8],
        key: &[u8],
        args: FieldTable<'_>,
    ) -> Result<(), AmqpError> {
        let source = self.source_for_binding(source)?;
        let d = self.source_for_binding(destination)?;
        self.bind(Binding {
            source,
            dest: Destination::Exchange(d),
            key: key.into(),
            args: args.raw().into(),
        });
        Ok(())
    }

    /// exchange.unbind; idempotent as queue.unbind is.
    pub(crate) fn unbind_exchange(
        &mut self,
        destination: &[u8],
        source: &[u8],
        key: &[u8],
        args: FieldTable<'_>,
    ) -> Result<(), AmqpError> {
        let source = self.source_for_unbinding(source)?;
        let d = self.source_for_unbinding(destination)?;
        let (Some(source), Some(d)) = (source, d) else {
            return Ok(());
        };
        self.unbind(&Binding {
            source,
            dest: Destination::Exchange(d),
            key: key.into(),
            args: args.raw().into(),
        });
        Ok(())
    }

    // ---- queues ----------------------------------------------------------------------------

    /// Looks a queue up for an operation by `conn`, enforcing exclusive ownership.
    pub(super) fn queue_for(&self, conn: ConnId, name: &[u8]) -> Result<QueueId, AmqpError> {
        let id = *self
            .queue_names
            .get(name)
            .ok_or_else(|| not_found_queue(name))?;
        let q = self.queues.get(id).ok_or_else(|| not_found_queue(name))?;
        if q.owner.is_some_and(|o| o != conn) {
            return Err(queue_locked(name));
        }
        Ok(id)
    }

    pub fn declare_queue(
        &mut self,
        conn: ConnId,
        name: &[u8],
        flags: QueueFlags,
        args: FieldTable<'_>,
    ) -> Result<DeclareOk, AmqpError> {
        let generated = name.is_empty() && !flags.passive;
        if generated {
            args::check_server_named(args)?;
        }
        let name: Box<[u8]> = if generated {
            self.generate_name("amq.gen-")
        } else {
            name.into()
        };
        if self.queue_names.contains_key(&name) {
            return self.redeclare_queue(conn, name, flags, args);
        }
        if flags.passive {
            return Err(not_found_queue(&name));
        }
        if name.starts_with(b"amq.") && !generated {
            return Err(AmqpError::access_refused(format_args!(
                "queue name '{}' contains reserved prefix 'amq.*'",
                Show(&name)
            )));
        }
        let declared = DeclaredFlags {
            durable: flags.durable,
            exclusive: flags.exclusive,
            auto_delete: flags.auto_delete,
        };
        let parsed = QueueArgs::declare(&name, args, declared)?;
        let owner = flags.exclusive.then_some(conn);
        let mut q = Queue::new(
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
                &name,
                store_id,
                flags.auto_delete,
                args.raw(),
            ));
            self.next_queue_store_id += 1;
        }
        let id = self.insert_queue(q);
        self.renew_lease(id);
        // Every queue is bound to the default exchange by its name; that binding is implicit.
        Ok(DeclareOk {
            queue: id,
            name,
            message_count: 0,
            consumer_count: 0,
        })
    }

    /// Registers a queue under its name.
    pub(super) fn insert_queue(&mut self, q: Queue) -> QueueId {
        let name = q.name.clone();
        self.quorum_queues += q.is_quorum() as usize;
        self.refusing_queues += q.may_refuse() as usize;
        let id = self.queues.insert(q);
        self.queue_names.insert(name, id);
        id
    }

    /// queue.declare of an existing queue: passive, or the same flags and the arguments
    /// RabbitMQ compares. Either way it counts as a use (x-expires).
    fn redeclare_queue(
        &mut self,
        conn: ConnId,
        name: Box<[u8]>,
        flags: QueueFlags,
        args: FieldTable<'_>,
    ) -> Result<DeclareOk, AmqpError> {
        let id = self.queue_for(conn, &name)?;
        let q = self.queues.get(id).ok_or_else(|| not_found_queue(&name))?;
        if !flags.passive {
            if q.durable != flags.durable {
                let (received, current) = (flags.durable, q.durable);
                return Err(inequivalent("durable", "queue", &name, received, current));
            }
            if q.owner.is_some() != flags.exclusive {
                return Err(queue_locked(&name));
            }
            if q.auto_delete != flags.auto_delete {
                let (received, current) = (flags.auto_delete, q.auto_delete);
                return Err(inequivalent(
                    "auto_delete",
                    "queue",
                    &name,
                    received,
                    current,
                ));
            }
            let current = FieldTable::parse(&q.arguments).unwrap_or_default();
            args::check_equivalent(&name, current, args)?;
        }
        // A quorum queue with a single active consumer counts only the active one (RabbitMQ
        // 3.10); a classic queue counts every consumer.
        let consumer_count = if q.is_quorum() && q.single_active() {
            q.active_consumer().is_some() as usize
        } else {
            q.consumer_count()
        };
        let ok = DeclareOk {
            queue: id,
            message_count: q.message_count() as u32,
            consumer_count: consumer_count as u32,
            name,
        };
        self.renew_lease(id);
        Ok(ok)
    }

    pub(crate) fn purge_queue(&mut self, conn: ConnId, name: &[u8]) -> Result<u32, AmqpError> {
        let id = self.queue_for(conn, name)?;
        let Some(q) = self.queues.get_mut(id) else {
            return Ok(0);
        };
        Ok(q.purge(&mut self.store) as u32)
    }

    pub(crate) fn delete_queue(
        &mut self,
        conn: ConnId,
        name: &[u8],
        if_unused: bool,
        if_empty: bool,
    ) -> Result<u32, AmqpError> {
        let id = match self.queue_for(conn, name) {
            Ok(id) => id,
            // Deleting a missing queue succeeds with a count of 0 (RabbitMQ 3.x).
            Err(e) if e.code == ReplyCode::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let q = self.queues.get(id).ok_or_else(|| not_found_queue(name))?;
        if if_unused && q.has_consumers() {
            return Err(AmqpError::precondition(format_args!(
                "queue '{}' in vhost '{VHOST}' in use",
                Show(name)
            )));
        }
        if if_empty && q.message_count() > 0 {
            return Err(AmqpError::precondition(format_args!(
                "queue '{}' in vhost '{VHOST}' not empty",
                Show(name)
            )));
        }
        let count = q.message_count() as u32;
        self.remove_queue(id);
        Ok(count)
    }

    /// Deletes a queue with its messages and bindings; its consumers are cancelled through
    /// notices.
    pub(super) fn remove_queue(&mut self, id: QueueId) {
        let Some(mut q) = self.queues.remove(id) else {
            return;
        };
        self.queue_names.remove(&q.name);
        self.quorum_queues -= q.is_quorum() as usize;
        self.refusing_queues -= q.may_refuse() as usize;
        if q.store_id.is_some() {
            // The store drops the bindings to a deleted queue with it.
            self.store.record(DefChange::QueueDeleted { name: &q.name });
            q.purge(&mut self.store);
        }
        let mut sources = Vec::new();
        self.bindings
            .remove_to(&mut self.exchanges, Destination::Queue(id), &mut sources);
        self.auto_delete_exchanges(&sources);
        self.cancel_consumers_of(q.consumers());
    }

    /// Deletes the exclusive queues of a closed connection.
    pub(crate) fn connection_closed(&mut self, conn: ConnId) {
        let owned: Vec<QueueId> = self
            .queues
            .iter()
            .filter(|(_, q)| q.owner == Some(conn))
            .map(|(h, _)| h)
            .collect();
        for id in owned {
            self.remove_queue(id);
        }
    }
}
