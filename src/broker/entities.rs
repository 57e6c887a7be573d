//! The entity verbs sessions call: exchange and queue declare and delete, bind and unbind,
//! purge, and what a closed connection takes with it. Each checks what RabbitMQ checks and
//! fails with its reply code and text; deleting cascades (bindings, auto-delete exchanges,
//! consumers cancelled through notices).

use super::args::{self, DeclaredFlags, QueueArgs};
use super::bindings::Binding;
use super::exchange::{Destination, Exchange, ExchangeId, ExchangeKind, DELAYED_TYPE};
use super::queue::{Queue, QueueId};
use super::{not_found_exchange, not_found_queue, Broker, ConnId, VHOST};
use crate::error::{AmqpError, Show};
use crate::protocol::{FieldTable, FieldValue, ReplyCode};

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

fn default_exchange_refused() -> AmqpError {
    AmqpError::access_refused("operation not permitted on the default exchange")
}

fn queue_locked(name: &[u8]) -> AmqpError {
    AmqpError::resource_locked(format_args!(
        "cannot obtain exclusive access to locked queue '{}' in vhost '{VHOST}'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.",
        Show(name)
    ))
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
    /// time): the default exchange or one that exists.
    pub(crate) fn check_exchange(&self, exchange: &[u8]) -> Result<(), AmqpError> {
        if exchange.is_empty() {
            return Ok(());
        }
        self.exchange_id(exchange).map(|_| ())
    }

    pub(crate) fn declare_exchange(
        &mut self,
        name: &[u8],
        kind: &[u8],
        flags: ExchangeFlags,
        args: FieldTable<'_>,
    ) -> Result<(), AmqpError> {
        if let Some(&id) = self.exchange_names.get(name) {
            return self.redeclare_exchange(id, name, kind, flags);
        }
        if flags.passive {
            return Err(not_found_exchange(name));
        }
        if name.is_empty() {
            return Err(default_exchange_refused());
        }
        if name.starts_with(b"amq.") {
            return Err(AmqpError::access_refused(format_args!(
                "exchange name '{}' contains reserved prefix 'amq.*'",
                Show(name)
            )));
        }
        let delayed = kind == DELAYED_TYPE.as_bytes();
        let routing_kind = if delayed {
            delayed_type(args)?
        } else {
            known_kind(kind)?
        };
        args::check_exchange_args(name, args)?;
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
        self.insert_exchange(x);
        self.definitions_changed |= flags.durable;
        Ok(())
    }

    /// exchange.declare of an existing exchange: passive, or the same type and flags.
    fn redeclare_exchange(
        &self,
        id: ExchangeId,
        name: &[u8],
        kind: &[u8],
        flags: ExchangeFlags,
    ) -> Result<(), AmqpError> {
        let Some(x) = self.exchanges.get(id) else {
            return Err(not_found_exchange(name));
        };
        if flags.passive {
            return Ok(());
        }
        if name.is_empty() {
            return Err(default_exchange_refused());
        }
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
        self.definitions_changed |= x.durable;
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

    /// Adds a binding; durable definitions change if its source is durable.
    fn bind(&mut self, b: Binding) {
        let durable = self.exchanges.get(b.source).is_some_and(|x| x.durable);
        if self.bindings.bind(&mut self.exchanges, b) {
            self.definitions_changed |= durable;
        }
    }

    /// Removes a binding; its source goes if it is auto-delete and now unused.
    fn unbind(&mut self, b: &Binding) {
        if self.bindings.unbind(&mut self.exchanges, b) {
            self.definitions_changed = true;
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

    pub(crate) fn unbind_queue(
        &mut self,
        conn: ConnId,
        queue: &[u8],
        exchange: &[u8],
        key: &[u8],
        args: FieldTable<'_>,
    ) -> Result<(), AmqpError> {
        let q = self.queue_for(conn, queue)?;
        let source = self.source_for_binding(exchange)?;
        self.unbind(&Binding {
            source,
            dest: Destination::Queue(q),
            key: key.into(),
            args: args.raw().into(),
        });
        Ok(())
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

    pub(crate) fn unbind_exchange(
        &mut self,
        destination: &[u8],
        source: &[u8],
        key: &[u8],
        args: FieldTable<'_>,
    ) -> Result<(), AmqpError> {
        let source = self.source_for_binding(source)?;
        let d = self.source_for_binding(destination)?;
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
            q.store_id = Some(self.next_queue_store_id);
            self.next_queue_store_id += 1;
            self.definitions_changed = true;
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
        let ok = DeclareOk {
            queue: id,
            message_count: q.message_count() as u32,
            consumer_count: q.consumers().len() as u32,
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
        if if_unused && !q.consumers().is_empty() {
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
            self.definitions_changed = true;
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
