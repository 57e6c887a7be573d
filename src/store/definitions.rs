//! Durable definitions (exchanges, queues, bindings between durable entities, each in its
//! vhost, and the access tables) as records: their types, the changes the broker reports,
//! and how each is encoded. The same record kinds make up the snapshot file `definitions.dat`
//! and the journal after it (`journal.rs`).
//!
//! ```text
//! NEXT_QUEUE_ID    u32                      (snapshot: lowest store id never handed out)
//! EXCHANGE         name | kind | auto_delete u8 | internal u8 | arguments | vhost
//! QUEUE            name | store id u32 | auto_delete u8 | arguments | vhost
//! BINDING          source | to_exchange u8 | destination | key | arguments | vhost
//! GENERATION       u64                      (snapshot: the journals that follow it)
//! EXCHANGE_DELETED name | vhost
//! QUEUE_DELETED    name | vhost
//! UNBINDING        as BINDING
//! DELAYED_EXCHANGE name | store id u32 | vhost (where an x-delayed-message exchange holds messages)
//! ACCESS           users, vhosts, permissions as RabbitMQ's definitions JSON (the latest wins)
//! POLICIES         every policy as the JSON array of a definitions document (the latest wins)
//! ```
//! Byte strings carry a u32 length. A snapshot of format version 1 (coney before the
//! journal) has no GENERATION record. Records written before coney had vhosts end before
//! their vhost and belong to "/".

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
pub const KIND_ACCESS: u8 = 10;
pub const KIND_POLICIES: u8 = 12;

/// The vhost of entity records written before coney had vhosts.
const DEFAULT_VHOST: &[u8] = b"/";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeDef {
    pub vhost: Vec<u8>,
    pub name: Vec<u8>,
    pub kind: Vec<u8>,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDef {
    pub vhost: Vec<u8>,
    pub name: Vec<u8>,
    /// Stable number naming the queue in message records.
    pub store_id: u32,
    pub auto_delete: bool,
    pub arguments: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BindingDef {
    pub vhost: Vec<u8>,
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
    pub vhost: Vec<u8>,
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
    /// The access tables as a definitions JSON document; None before coney kept them.
    pub access: Option<Vec<u8>>,
    /// The policies as a JSON array; None before any was set.
    pub policies: Option<Vec<u8>>,
}

/// A binding as the broker has it, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct BindingRef<'a> {
    pub vhost: &'a [u8],
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
        vhost: &'a [u8],
        name: &'a [u8],
        kind: &'a [u8],
        auto_delete: bool,
        internal: bool,
        arguments: &'a [u8],
    },
    ExchangeDeleted {
        vhost: &'a [u8],
        name: &'a [u8],
    },
    Queue {
        vhost: &'a [u8],
        name: &'a [u8],
        store_id: u32,
        auto_delete: bool,
        arguments: &'a [u8],
    },
    QueueDeleted {
        vhost: &'a [u8],
        name: &'a [u8],
    },
    Binding(BindingRef<'a>),
    Unbinding(BindingRef<'a>),
    DelayedExchange {
        vhost: &'a [u8],
        name: &'a [u8],
        store_id: u32,
    },
    /// The whole access tables after a change to them.
    Access(&'a [u8]),
    /// Every policy after a change to them.
    Policies(&'a [u8]),
}

impl<'a> DefChange<'a> {
    pub fn exchange(
        vhost: &'a [u8],
        name: &'a [u8],
        kind: &'a [u8],
        auto_delete: bool,
        internal: bool,
        arguments: &'a [u8],
    ) -> Self {
        DefChange::Exchange {
            vhost,
            name,
            kind,
            auto_delete,
            internal,
            arguments,
        }
    }

    pub fn queue(
        vhost: &'a [u8],
        name: &'a [u8],
        store_id: u32,
        auto_delete: bool,
        arguments: &'a [u8],
    ) -> Self {
        DefChange::Queue {
            vhost,
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
                vhost,
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
                put_bytes(p, vhost);
            }),
            DefChange::ExchangeDeleted { vhost, name } => {
                record::write_record(out, KIND_EXCHANGE_DELETED, |p| {
                    put_bytes(p, name);
                    put_bytes(p, vhost);
                })
            }
            DefChange::Queue {
                vhost,
                name,
                store_id,
                auto_delete,
                arguments,
            } => record::write_record(out, KIND_QUEUE, |p| {
                put_bytes(p, name);
                p.extend_from_slice(&store_id.to_be_bytes());
                p.push(auto_delete as u8);
                put_bytes(p, arguments);
                put_bytes(p, vhost);
            }),
            DefChange::QueueDeleted { vhost, name } => {
                record::write_record(out, KIND_QUEUE_DELETED, |p| {
                    put_bytes(p, name);
                    put_bytes(p, vhost);
                })
            }
            DefChange::Binding(b) => record::write_record(out, KIND_BINDING, |p| put_binding(p, b)),
            DefChange::Unbinding(b) => {
                record::write_record(out, KIND_UNBINDING, |p| put_binding(p, b))
            }
            DefChange::DelayedExchange {
                vhost,
                name,
                store_id,
            } => record::write_record(out, KIND_DELAYED_EXCHANGE, |p| {
                put_bytes(p, name);
                p.extend_from_slice(&store_id.to_be_bytes());
                put_bytes(p, vhost);
            }),
            DefChange::Access(json) => {
                record::write_record(out, KIND_ACCESS, |p| put_bytes(p, json))
            }
            DefChange::Policies(json) => {
                record::write_record(out, KIND_POLICIES, |p| put_bytes(p, json))
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
    put_bytes(p, b.vhost);
}

/// The trailing vhost name of an entity record, "/" if it has none.
fn vhost_of<'a>(c: &mut Cursor<'a>) -> &'a [u8] {
    c.bytes().unwrap_or(DEFAULT_VHOST)
}

pub fn parse_exchange(payload: &[u8]) -> Option<ExchangeDef> {
    let mut c = Cursor::new(payload);
    let (name, kind) = (c.bytes()?.to_vec(), c.bytes()?.to_vec());
    let (auto_delete, internal) = (c.u8()? != 0, c.u8()? != 0);
    let arguments = c.bytes()?.to_vec();
    Some(ExchangeDef {
        vhost: vhost_of(&mut c).to_vec(),
        name,
        kind,
        auto_delete,
        internal,
        arguments,
    })
}

pub fn parse_queue(payload: &[u8]) -> Option<QueueDef> {
    let mut c = Cursor::new(payload);
    let (name, store_id) = (c.bytes()?.to_vec(), c.u32()?);
    let (auto_delete, arguments) = (c.u8()? != 0, c.bytes()?.to_vec());
    Some(QueueDef {
        vhost: vhost_of(&mut c).to_vec(),
        name,
        store_id,
        auto_delete,
        arguments,
    })
}

pub fn parse_binding(payload: &[u8]) -> Option<BindingRef<'_>> {
    let mut c = Cursor::new(payload);
    let (source, to_exchange) = (c.bytes()?, c.u8()? != 0);
    let (destination, key, arguments) = (c.bytes()?, c.bytes()?, c.bytes()?);
    Some(BindingRef {
        vhost: vhost_of(&mut c),
        source,
        to_exchange,
        destination,
        key,
        arguments,
    })
}

/// The (vhost, name) an exchange, queue or deletion record is about: its first byte string,
/// and its vhost (after the kind's other fields; "/" in records written before vhosts).
pub fn parse_entity(kind: u8, payload: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut c = Cursor::new(payload);
    let name = c.bytes()?;
    match kind {
        KIND_EXCHANGE => {
            c.bytes()?;
            c.u8()?;
            c.u8()?;
            c.bytes()?;
        }
        KIND_QUEUE => {
            c.u32()?;
            c.u8()?;
            c.bytes()?;
        }
        KIND_EXCHANGE_DELETED | KIND_QUEUE_DELETED => {}
        _ => return None,
    }
    Some((vhost_of(&mut c), name))
}

/// The access tables of an ACCESS record.
pub fn parse_access(payload: &[u8]) -> Option<&[u8]> {
    Cursor::new(payload).bytes()
}

/// A DELAYED_EXCHANGE record ("/" for one written before the record had its vhost).
pub fn parse_delayed_exchange(payload: &[u8]) -> Option<DelayedExchangeDef> {
    let mut c = Cursor::new(payload);
    let exchange = c.bytes()?.to_vec();
    let store_id = c.u32()?;
    Some(DelayedExchangeDef {
        vhost: vhost_of(&mut c).to_vec(),
        exchange,
        store_id,
    })
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
                    vhost: b.vhost.to_vec(),
                    source: b.source.to_vec(),
                    to_exchange: b.to_exchange,
                    destination: b.destination.to_vec(),
                    key: b.key.to_vec(),
                    arguments: b.arguments.to_vec(),
                });
            }
            KIND_ACCESS => self.access = Some(parse_access(payload)?.to_vec()),
            KIND_POLICIES => self.policies = Some(parse_access(payload)?.to_vec()),
            _ => return None,
        }
        Some(())
    }

    /// The definitions as a whole file in format version 1, as coney wrote before the
    /// journal and before vhosts: no vhost in any record, no access tables (tests of the
    /// conversion; snapshots are written by `journal.rs`).
    pub fn encode_version_1(&self) -> Vec<u8> {
        let mut out = record::file_header(super::journal::SNAPSHOT_MAGIC).to_vec();
        record::write_record(&mut out, KIND_NEXT_QUEUE_ID, |p| {
            p.extend_from_slice(&self.next_queue_id.to_be_bytes())
        });
        for x in &self.exchanges {
            record::write_record(&mut out, KIND_EXCHANGE, |p| {
                put_bytes(p, &x.name);
                put_bytes(p, &x.kind);
                p.push(x.auto_delete as u8);
                p.push(x.internal as u8);
                put_bytes(p, &x.arguments);
            });
        }
        for q in &self.queues {
            record::write_record(&mut out, KIND_QUEUE, |p| {
                put_bytes(p, &q.name);
                p.extend_from_slice(&q.store_id.to_be_bytes());
                p.push(q.auto_delete as u8);
                put_bytes(p, &q.arguments);
            });
        }
        for b in &self.bindings {
            record::write_record(&mut out, KIND_BINDING, |p| {
                put_bytes(p, &b.source);
                p.push(b.to_exchange as u8);
                put_bytes(p, &b.destination);
                put_bytes(p, &b.key);
                put_bytes(p, &b.arguments);
            });
        }
        out
    }
}

#[cfg(test)]
impl BindingDef {
    pub fn as_ref(&self) -> BindingRef<'_> {
        BindingRef {
            vhost: &self.vhost,
            source: &self.source,
            to_exchange: self.to_exchange,
            destination: &self.destination,
            key: &self.key,
            arguments: &self.arguments,
        }
    }
}
