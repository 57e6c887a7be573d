//! Durable definitions (exchanges, queues, bindings between durable entities) as records:
//! their types, the changes the broker reports, and how each is encoded. The same record
//! kinds make up the snapshot file `definitions.dat` and the journal after it (`journal.rs`).
//!
//! ```text
//! NEXT_QUEUE_ID    u32                      (snapshot: lowest store id never handed out)
//! EXCHANGE         name | kind | auto_delete u8 | internal u8 | arguments
//! QUEUE            name | store id u32 | auto_delete u8 | arguments
//! BINDING          source | to_exchange u8 | destination | key | arguments
//! GENERATION       u64                      (snapshot: the journals that follow it)
//! EXCHANGE_DELETED name
//! QUEUE_DELETED    name
//! UNBINDING        as BINDING
//! DELAYED_EXCHANGE name | store id u32     (where an x-delayed-message exchange holds messages)
//! ```
//! Byte strings carry a u32 length. A snapshot of format version 1 (coney before the
//! journal) has no GENERATION record.

use super::record::{self, put_bytes, Cursor};

pub const FILE_NAME: &str = "definitions.dat";

pub const KIND_NEXT_QUEUE_ID: u8 = 1;
pub const KIND_EXCHANGE: u8 = 2;
pub const KIND_QUEUE: u8 = 3;
pub const KIND_BINDING: u8 = 4;
pub const KIND_GENERATION: u8 = 5;
pub const KIND_EXCHANGE_DELETED: u8 = 6;
pub const KIND_QUEUE_DELETED: u8 = 7;
pub const KIND_UNBINDING: u8 = 8;
pub const KIND_DELAYED_EXCHANGE: u8 = 9;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeDef {
    pub name: Vec<u8>,
    pub kind: Vec<u8>,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDef {
    pub name: Vec<u8>,
    /// Stable number naming the queue in message records.
    pub store_id: u32,
    pub auto_delete: bool,
    pub arguments: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BindingDef {
    pub source: Vec<u8>,
    /// True if the destination is an exchange.
    pub to_exchange: bool,
    pub destination: Vec<u8>,
    pub key: Vec<u8>,
    pub arguments: Vec<u8>,
}

/// Where a durable x-delayed-message exchange keeps its held messages in the message log
/// (a store number from the queues' sequence). Deleting the exchange deletes this too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelayedExchangeDef {
    pub exchange: Vec<u8>,
    pub store_id: u32,
}

/// The durable definitions as recovered at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Definitions {
    /// Lowest queue store id never handed out: ids are not reused, since messages of a
    /// deleted queue may still be in the log.
    pub next_queue_id: u32,
    pub exchanges: Vec<ExchangeDef>,
    pub queues: Vec<QueueDef>,
    pub bindings: Vec<BindingDef>,
    pub delayed_exchanges: Vec<DelayedExchangeDef>,
}

/// A binding as the broker has it, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct BindingRef<'a> {
    pub source: &'a [u8],
    pub to_exchange: bool,
    pub destination: &'a [u8],
    pub key: &'a [u8],
    pub arguments: &'a [u8],
}

/// A change to the durable definitions, reported by the broker as it happens. Deleting an
/// exchange or queue also removes every binding from or to it, as in the broker.
#[derive(Debug, Clone, Copy)]
pub enum DefChange<'a> {
    Exchange {
        name: &'a [u8],
        kind: &'a [u8],
        auto_delete: bool,
        internal: bool,
        arguments: &'a [u8],
    },
    ExchangeDeleted {
        name: &'a [u8],
    },
    Queue {
        name: &'a [u8],
        store_id: u32,
        auto_delete: bool,
        arguments: &'a [u8],
    },
    QueueDeleted {
        name: &'a [u8],
    },
    Binding(BindingRef<'a>),
    Unbinding(BindingRef<'a>),
    DelayedExchange {
        name: &'a [u8],
        store_id: u32,
    },
}

impl<'a> DefChange<'a> {
    pub fn exchange(
        name: &'a [u8],
        kind: &'a [u8],
        auto_delete: bool,
        internal: bool,
        arguments: &'a [u8],
    ) -> Self {
        DefChange::Exchange {
            name,
            kind,
            auto_delete,
            internal,
            arguments,
        }
    }

    pub fn queue(name: &'a [u8], store_id: u32, auto_delete: bool, arguments: &'a [u8]) -> Self {
        DefChange::Queue {
            name,
            store_id,
            auto_delete,
            arguments,
        }
    }

    /// Appends the change as one record.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            DefChange::Exchange {
                name,
                kind,
                auto_delete,
                internal,
                arguments,
            } => record::write_record(out, KIND_EXCHANGE, |p| {
                put_bytes(p, name);
                put_bytes(p, kind);
                p.push(auto_delete as u8);
                p.push(internal as u8);
                put_bytes(p, arguments);
            }),
            DefChange::ExchangeDeleted { name } => {
                record::write_record(out, KIND_EXCHANGE_DELETED, |p| put_bytes(p, name))
            }
            DefChange::Queue {
                name,
                store_id,
                auto_delete,
                arguments,
            } => record::write_record(out, KIND_QUEUE, |p| {
                put_bytes(p, name);
                p.extend_from_slice(&store_id.to_be_bytes());
                p.push(auto_delete as u8);
                put_bytes(p, arguments);
            }),
            DefChange::QueueDeleted { name } => {
                record::write_record(out, KIND_QUEUE_DELETED, |p| put_bytes(p, name))
            }
            DefChange::Binding(b) => record::write_record(out, KIND_BINDING, |p| put_binding(p, b)),
            DefChange::Unbinding(b) => {
                record::write_record(out, KIND_UNBINDING, |p| put_binding(p, b))
            }
            DefChange::DelayedExchange { name, store_id } => {
                record::write_record(out, KIND_DELAYED_EXCHANGE, |p| {
                    put_bytes(p, name);
                    p.extend_from_slice(&store_id.to_be_bytes());
                })
            }
        }
    }
}

fn put_binding(p: &mut Vec<u8>, b: BindingRef<'_>) {
    put_bytes(p, b.source);
    p.push(b.to_exchange as u8);
    put_bytes(p, b.destination);
    put_bytes(p, b.key);
    put_bytes(p, b.arguments);
}

pub fn parse_exchange(payload: &[u8]) -> Option<ExchangeDef> {
    let mut c = Cursor::new(payload);
    Some(ExchangeDef {
        name: c.bytes()?.to_vec(),
        kind: c.bytes()?.to_vec(),
        auto_delete: c.u8()? != 0,
        internal: c.u8()? != 0,
        arguments: c.bytes()?.to_vec(),
    })
}

pub fn parse_queue(payload: &[u8]) -> Option<QueueDef> {
    let mut c = Cursor::new(payload);
    Some(QueueDef {
        name: c.bytes()?.to_vec(),
        store_id: c.u32()?,
        auto_delete: c.u8()? != 0,
        arguments: c.bytes()?.to_vec(),
    })
}

pub fn parse_binding(payload: &[u8]) -> Option<BindingRef<'_>> {
    let mut c = Cursor::new(payload);
    Some(BindingRef {
        source: c.bytes()?,
        to_exchange: c.u8()? != 0,
        destination: c.bytes()?,
        key: c.bytes()?,
        arguments: c.bytes()?,
    })
}

pub fn parse_delayed_exchange(payload: &[u8]) -> Option<DelayedExchangeDef> {
    let mut c = Cursor::new(payload);
    Some(DelayedExchangeDef {
        exchange: c.bytes()?.to_vec(),
        store_id: c.u32()?,
    })
}

/// The name a record is about (the first byte string of its payload).
pub fn parse_name(payload: &[u8]) -> Option<&[u8]> {
    Cursor::new(payload).bytes()
}

impl Definitions {
    /// Adds the definition one record declares (snapshot kinds only).
    pub fn apply(&mut self, kind: u8, payload: &[u8]) -> Option<()> {
        match kind {
            KIND_NEXT_QUEUE_ID => {
                let id = Cursor::new(payload).u32()?;
                self.next_queue_id = self.next_queue_id.max(id);
            }
            KIND_EXCHANGE => self.exchanges.push(parse_exchange(payload)?),
            KIND_QUEUE => self.queues.push(parse_queue(payload)?),
            KIND_DELAYED_EXCHANGE => self
                .delayed_exchanges
                .push(parse_delayed_exchange(payload)?),
            KIND_BINDING => {
                let b = parse_binding(payload)?;
                self.bindings.push(BindingDef {
                    source: b.source.to_vec(),
                    to_exchange: b.to_exchange,
                    destination: b.destination.to_vec(),
                    key: b.key.to_vec(),
                    arguments: b.arguments.to_vec(),
                });
            }
            _ => return None,
        }
        Some(())
    }

    /// The definitions as a whole file in format version 1, as coney wrote before the
    /// journal (tests of the conversion; snapshots are written by `journal.rs`).
    pub fn encode_version_1(&self) -> Vec<u8> {
        let mut out = record::file_header(super::journal::SNAPSHOT_MAGIC).to_vec();
        record::write_record(&mut out, KIND_NEXT_QUEUE_ID, |p| {
            p.extend_from_slice(&self.next_queue_id.to_be_bytes())
        });
        for x in &self.exchanges {
            DefChange::Exchange {
                name: &x.name,
                kind: &x.kind,
                auto_delete: x.auto_delete,
                internal: x.internal,
                arguments: &x.arguments,
            }
            .encode(&mut out);
        }
        for q in &self.queues {
            DefChange::Queue {
                name: &q.name,
                store_id: q.store_id,
                auto_delete: q.auto_delete,
                arguments: &q.arguments,
            }
            .encode(&mut out);
        }
        for b in &self.bindings {
            DefChange::Binding(b.as_ref()).encode(&mut out);
        }
        out
    }
}

impl BindingDef {
    pub fn as_ref(&self) -> BindingRef<'_> {
        BindingRef {
            source: &self.source,
            to_exchange: self.to_exchange,
            destination: &self.destination,
            key: &self.key,
            arguments: &self.arguments,
        }
    }
}
