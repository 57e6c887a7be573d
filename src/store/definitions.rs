//! Durable definitions (exchanges, queues, bindings between durable entities) as one file,
//! replaced atomically: write a new file, fsync it, rename it over the old one, fsync the
//! directory. A crash at any byte leaves either the old file or the new one, never a mix.

use super::record::{self, put_bytes, Cursor, Scan};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

const MAGIC: &[u8; 8] = b"CONEYDEF";
pub const FILE_NAME: &str = "definitions.dat";

const KIND_NEXT_QUEUE_ID: u8 = 1;
const KIND_EXCHANGE: u8 = 2;
const KIND_QUEUE: u8 = 3;
const KIND_BINDING: u8 = 4;
const KIND_DELAYED_EXCHANGE: u8 = 5;

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingDef {
    pub source: Vec<u8>,
    /// True if the destination is an exchange.
    pub to_exchange: bool,
    pub destination: Vec<u8>,
    pub key: Vec<u8>,
    pub arguments: Vec<u8>,
}

/// Where a durable x-delayed-message exchange keeps its held messages in the message log
/// (a store number from the queues' sequence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelayedExchangeDef {
    pub exchange: Vec<u8>,
    pub store_id: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Definitions {
    pub next_queue_id: u32,
    pub exchanges: Vec<ExchangeDef>,
    pub queues: Vec<QueueDef>,
    pub bindings: Vec<BindingDef>,
    pub delayed_exchanges: Vec<DelayedExchangeDef>,
}

impl Definitions {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = record::file_header(MAGIC).to_vec();
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
        for d in &self.delayed_exchanges {
            record::write_record(&mut out, KIND_DELAYED_EXCHANGE, |p| {
                put_bytes(p, &d.exchange);
                p.extend_from_slice(&d.store_id.to_be_bytes());
            });
        }
        out
    }

    /// Decodes a whole file. Any damage is an error: this file is only ever replaced whole.
    pub fn decode(buf: &[u8]) -> Result<Self, String> {
        match record::check_file_header(buf, MAGIC) {
            Some(record::FORMAT_VERSION) => {}
            Some(v) => return Err(format!("definitions format version {v} is not supported")),
            None => return Err("not a coney definitions file".into()),
        }
        let mut d = Definitions::default();
        let mut at = record::FILE_HEADER_BYTES;
        while at < buf.len() {
            let Scan::Record { kind, payload, len } = record::scan(&buf[at..]) else {
                return Err(format!("damaged record at byte {at}"));
            };
            let bad = || format!("malformed record of kind {kind} at byte {at}");
            let mut c = Cursor::new(payload);
            match kind {
                KIND_NEXT_QUEUE_ID => d.next_queue_id = c.u32().ok_or_else(bad)?,
                KIND_EXCHANGE => d.exchanges.push(
                    (|| {
                        Some(ExchangeDef {
                            name: c.bytes()?.to_vec(),
                            kind: c.bytes()?.to_vec(),
                            auto_delete: c.u8()? != 0,
                            internal: c.u8()? != 0,
                            arguments: c.bytes()?.to_vec(),
                        })
                    })()
                    .ok_or_else(bad)?,
                ),
                KIND_QUEUE => d.queues.push(
                    (|| {
                        Some(QueueDef {
                            name: c.bytes()?.to_vec(),
                            store_id: c.u32()?,
                            auto_delete: c.u8()? != 0,
                            arguments: c.bytes()?.to_vec(),
                        })
                    })()
                    .ok_or_else(bad)?,
                ),
                KIND_BINDING => d.bindings.push(
                    (|| {
                        Some(BindingDef {
                            source: c.bytes()?.to_vec(),
                            to_exchange: c.u8()? != 0,
                            destination: c.bytes()?.to_vec(),
                            key: c.bytes()?.to_vec(),
                            arguments: c.bytes()?.to_vec(),
                        })
                    })()
                    .ok_or_else(bad)?,
                ),
                KIND_DELAYED_EXCHANGE => d.delayed_exchanges.push(
                    (|| {
                        Some(DelayedExchangeDef {
                            exchange: c.bytes()?.to_vec(),
                            store_id: c.u32()?,
                        })
                    })()
                    .ok_or_else(bad)?,
                ),
                _ => return Err(format!("unknown record kind {kind} at byte {at}")),
            }
            at += len;
        }
        Ok(d)
    }

    /// Loads the definitions in `dir`, or empty ones if there is no file yet.
    pub fn load(dir: &Path) -> io::Result<Self> {
        let path = dir.join(FILE_NAME);
        match fs::read(&path) {
            Ok(buf) => Definitions::decode(&buf).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Definitions {
                next_queue_id: 1,
                ..Default::default()
            }),
            Err(e) => Err(e),
        }
    }

    /// Replaces the file atomically and durably.
    pub fn save(&self, dir: &Path) -> io::Result<()> {
        let tmp = dir.join(format!("{FILE_NAME}.tmp"));
        let mut f = File::create(&tmp)?;
        f.write_all(&self.encode())?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, dir.join(FILE_NAME))?;
        File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Definitions {
        Definitions {
            next_queue_id: 9,
            exchanges: vec![ExchangeDef {
                name: b"logs".to_vec(),
                kind: b"topic".to_vec(),
                auto_delete: false,
                internal: true,
                arguments: vec![],
            }],
            queues: vec![QueueDef {
                name: b"task_queue".to_vec(),
                store_id: 3,
                auto_delete: false,
                arguments: b"\x01kt\x01".to_vec(),
            }],
            bindings: vec![BindingDef {
                source: b"logs".to_vec(),
                to_exchange: false,
                destination: b"task_queue".to_vec(),
                key: b"lazy.#".to_vec(),
                arguments: vec![],
            }],
            delayed_exchanges: vec![DelayedExchangeDef {
                exchange: b"later".to_vec(),
                store_id: 4,
            }],
        }
    }

    #[test]
    fn definitions_round_trip() {
        let d = sample();
        assert_eq!(Definitions::decode(&d.encode()), Ok(d));
    }

    #[test]
    fn any_damage_is_reported_not_half_applied() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            // A shorter file is either a valid prefix of whole records or an error.
            if let Ok(d) = Definitions::decode(&bytes[..cut]) {
                assert!(
                    d.exchanges.len()
                        + d.queues.len()
                        + d.bindings.len()
                        + d.delayed_exchanges.len()
                        < 4
                );
            }
        }
        let mut flipped = bytes.clone();
        flipped[30] ^= 1;
        assert!(Definitions::decode(&flipped).is_err());
    }

    #[test]
    fn save_replaces_the_file_and_load_reads_it_back() {
        let dir = std::env::temp_dir().join(format!("coney-defs-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        assert_eq!(Definitions::load(&dir).expect("empty").next_queue_id, 1);
        sample().save(&dir).expect("save");
        assert_eq!(Definitions::load(&dir).expect("load"), sample());
        assert!(!dir.join(format!("{FILE_NAME}.tmp")).exists());
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
