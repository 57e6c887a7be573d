//! Durable definitions (exchanges, queues, bindings between durable entities, and the access
//! tables: users, vhosts, permissions) as one file, replaced atomically: write a new file,
//! fsync it, rename it over the old one, fsync the directory. A crash at any byte leaves
//! either the old file or the new one, never a mix.
//!
//! Exchange, queue and binding records end with their vhost's name; a record without it (coney
//! before vhosts) belongs to "/". The access tables are one record holding them as RabbitMQ's
//! definitions JSON (users with their password hashes, vhosts, permissions, topic permissions,
//! vhost limits), which the broker writes and reads with the same code as definitions files.

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
const KIND_ACCESS: u8 = 9;

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingDef {
    pub vhost: Vec<u8>,
    pub source: Vec<u8>,
    /// True if the destination is an exchange.
    pub to_exchange: bool,
    pub destination: Vec<u8>,
    pub key: Vec<u8>,
    pub arguments: Vec<u8>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Definitions {
    pub next_queue_id: u32,
    pub exchanges: Vec<ExchangeDef>,
    pub queues: Vec<QueueDef>,
    pub bindings: Vec<BindingDef>,
    /// The access tables as a definitions JSON document; None before coney kept them.
    pub access: Option<Vec<u8>>,
}

/// The trailing vhost name of an entity record, "/" if it has none.
fn vhost_of(c: &mut Cursor<'_>) -> Vec<u8> {
    c.bytes()
        .map_or_else(|| DEFAULT_VHOST.to_vec(), <[u8]>::to_vec)
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
                put_bytes(p, &x.vhost);
            });
        }
        for q in &self.queues {
            record::write_record(&mut out, KIND_QUEUE, |p| {
                put_bytes(p, &q.name);
                p.extend_from_slice(&q.store_id.to_be_bytes());
                p.push(q.auto_delete as u8);
                put_bytes(p, &q.arguments);
                put_bytes(p, &q.vhost);
            });
        }
        for b in &self.bindings {
            record::write_record(&mut out, KIND_BINDING, |p| {
                put_bytes(p, &b.source);
                p.push(b.to_exchange as u8);
                put_bytes(p, &b.destination);
                put_bytes(p, &b.key);
                put_bytes(p, &b.arguments);
                put_bytes(p, &b.vhost);
            });
        }
        if let Some(access) = &self.access {
            record::write_record(&mut out, KIND_ACCESS, |p| put_bytes(p, access));
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
                            vhost: vhost_of(&mut c),
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
                            vhost: vhost_of(&mut c),
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
                            vhost: vhost_of(&mut c),
                        })
                    })()
                    .ok_or_else(bad)?,
                ),
                KIND_ACCESS => d.access = Some(c.bytes().ok_or_else(bad)?.to_vec()),
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
                vhost: b"/".to_vec(),
                name: b"logs".to_vec(),
                kind: b"topic".to_vec(),
                auto_delete: false,
                internal: true,
                arguments: vec![],
            }],
            queues: vec![QueueDef {
                vhost: b"v1".to_vec(),
                name: b"task_queue".to_vec(),
                store_id: 3,
                auto_delete: false,
                arguments: b"\x01kt\x01".to_vec(),
            }],
            bindings: vec![BindingDef {
                vhost: b"/".to_vec(),
                source: b"logs".to_vec(),
                to_exchange: false,
                destination: b"task_queue".to_vec(),
                key: b"lazy.#".to_vec(),
                arguments: vec![],
            }],
            access: Some(br#"{"users":[]}"#.to_vec()),
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
                let whole = d.exchanges.len() + d.queues.len() + d.bindings.len();
                assert!(whole + usize::from(d.access.is_some()) < 4);
            }
        }
        let mut flipped = bytes.clone();
        flipped[30] ^= 1;
        assert!(Definitions::decode(&flipped).is_err());
    }

    /// Records written before vhosts (no trailing vhost name) load into "/".
    #[test]
    fn records_without_a_vhost_belong_to_the_default_vhost() {
        let mut out = record::file_header(MAGIC).to_vec();
        record::write_record(&mut out, KIND_QUEUE, |p| {
            put_bytes(p, b"old");
            p.extend_from_slice(&7u32.to_be_bytes());
            p.push(0);
            put_bytes(p, b"");
        });
        let d = Definitions::decode(&out).expect("decode");
        assert_eq!(d.queues[0].vhost, b"/");
        assert_eq!(d.queues[0].store_id, 7);
        assert_eq!(d.access, None);
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
