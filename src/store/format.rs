//! The records of the message log and how their payloads are laid out (the frame around them,
//! length and checksum, is `record.rs`'s). Encoding and borrowed, allocation-free parsing only;
//! what the records mean is `log.rs`'s business.
//!
//! ```text
//! PUBLISH      id u64 | persistent u8 | n u16 | queue u32 * n | ex u8 | rk u8 | props u32 | data
//! PUBLISH_AT   id u64 | enqueued at u64 | recover u8 | then as PUBLISH from n
//! ACK          id u64 | queue u32           (the queue no longer holds the message)
//! REDELIVERED  id u64 | queue u32           (written at a clean stop: delivered before)
//! CLEAN        (empty)                      (last record of a clean stop)
//! STARTED      (empty)                      (first record of every run)
//! RELOCATED    id u64 | old id u64 | publish len u32 | n u16 | remaining bitmask (n bits)
//!              always followed by the message's original PUBLISH record, byte for byte
//! ```
//! `data` is exchange ++ routing key ++ property bytes ++ body. A RELOCATED record gives a
//! copied message its new id; bit k of the bitmask says whether the k-th queue of the
//! PUBLISH that follows still holds it. coney writes PUBLISH_AT (the time, ms since the
//! epoch, keeps TTL deadlines across a restart; `recover` says whether recovery keeps the
//! message: not a transient one paged out of memory, yes a persistent one, and yes a
//! transient one a queue keeps durably, a quorum queue's); PUBLISH is read from older logs.
//! "PUBLISH" below means either.

use super::record::Cursor;

pub const KIND_PUBLISH: u8 = 1;
pub const KIND_ACK: u8 = 2;
pub const KIND_REDELIVERED: u8 = 3;
pub const KIND_CLEAN: u8 = 4;
pub const KIND_STARTED: u8 = 5;
pub const KIND_RELOCATED: u8 = 6;
pub const KIND_PUBLISH_AT: u8 = 7;

/// The recovery byte of PUBLISH_AT.
const RECOVER_NOT: u8 = 0;
const RECOVER_PERSISTENT: u8 = 1;
const RECOVER_TRANSIENT: u8 = 2;

/// Whether a record of `kind` is a publish (either layout).
pub fn is_publish(kind: u8) -> bool {
    kind == KIND_PUBLISH || kind == KIND_PUBLISH_AT
}

/// Size of an ACK record with its frame: what keeping one costs.
pub const ACK_RECORD_BYTES: u64 = super::record::RECORD_HEADER_BYTES as u64 + 12;

/// A message id is `segment << 32 | index`: it names the segment holding the message's record.
pub fn segment_of(id: u64) -> u32 {
    (id >> 32) as u32
}

pub fn index_of(id: u64) -> u32 {
    id as u32
}

pub fn make_id(segment: u32, index: u32) -> u64 {
    ((segment as u64) << 32) | index as u64
}

/// A parsed PUBLISH payload, borrowing the record.
pub struct Publish<'a> {
    pub id: u64,
    /// When it was enqueued (ms since the epoch); 0 in a PUBLISH record.
    pub enqueued_at_ms: u64,
    /// Recovery keeps the message.
    pub recover: bool,
    pub persistent: bool,
    /// The queue ids, 4 bytes each, big-endian.
    queues: &'a [u8],
    pub ex: u8,
    pub rk: u8,
    pub props: u32,
    /// Offset of exchange ++ routing key ++ properties ++ body within the payload.
    pub data_at: usize,
}

impl<'a> Publish<'a> {
    /// Parses the payload of a publish record of `kind` (`is_publish`).
    pub fn parse(kind: u8, payload: &'a [u8]) -> Option<Self> {
        let p = Self::parse_head(kind, payload)?;
        let rest = payload.len() - p.data_at;
        if p.ex as usize + p.rk as usize + p.props as usize > rest {
            return None;
        }
        Some(p)
    }

    /// Parses the fields before the message data, from a prefix of the payload that holds
    /// them (compaction reads no more than that of a large record at once).
    pub fn parse_head(kind: u8, payload: &'a [u8]) -> Option<Self> {
        let mut c = Cursor::new(payload);
        let id = c.u64()?;
        let enqueued_at_ms = if kind == KIND_PUBLISH_AT { c.u64()? } else { 0 };
        let recover = c.u8()?;
        let n = c.u16()? as usize;
        let queues = c.take(n * 4)?;
        let ex = c.u8()?;
        let rk = c.u8()?;
        let props = c.u32()?;
        let data_at = payload.len() - c.rest().len();
        Some(Publish {
            id,
            enqueued_at_ms,
            recover: recover != RECOVER_NOT,
            persistent: recover == RECOVER_PERSISTENT,
            queues,
            ex,
            rk,
            props,
            data_at,
        })
    }

    pub fn queue_count(&self) -> usize {
        self.queues.len() / 4
    }

    pub fn queue(&self, k: usize) -> u32 {
        let b = &self.queues[k * 4..k * 4 + 4];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    pub fn queues(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.queue_count()).map(|k| self.queue(k))
    }
}

/// Payload of a PUBLISH_AT record. `durable`: recovery keeps the message.
pub fn encode_publish(p: &mut Vec<u8>, id: u64, at: Stamp, queues: &[u32], raw: RawMsg) {
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&at.enqueued_at_ms.to_be_bytes());
    p.push(match (at.durable, raw.persistent) {
        (false, _) => RECOVER_NOT,
        (true, true) => RECOVER_PERSISTENT,
        (true, false) => RECOVER_TRANSIENT,
    });
    p.extend_from_slice(&(queues.len() as u16).to_be_bytes());
    for q in queues {
        p.extend_from_slice(&q.to_be_bytes());
    }
    p.push(raw.ex);
    p.push(raw.rk);
    p.extend_from_slice(&raw.props.to_be_bytes());
    p.extend_from_slice(raw.data);
}

/// Payload of a PUBLISH record (the layout before PUBLISH_AT; tests of older logs).
#[cfg(test)]
pub fn encode_publish_v1(p: &mut Vec<u8>, id: u64, queues: &[u32], raw: RawMsg) {
    p.extend_from_slice(&id.to_be_bytes());
    p.push(raw.persistent as u8);
    p.extend_from_slice(&(queues.len() as u16).to_be_bytes());
    for q in queues {
        p.extend_from_slice(&q.to_be_bytes());
    }
    p.push(raw.ex);
    p.push(raw.rk);
    p.extend_from_slice(&raw.props.to_be_bytes());
    p.extend_from_slice(raw.data);
}

/// A message as the log stores it: the shared buffer and the lengths of its first parts.
#[derive(Clone, Copy)]
pub struct RawMsg<'a> {
    pub data: &'a [u8],
    pub ex: u8,
    pub rk: u8,
    pub props: u32,
    pub persistent: bool,
}

/// When a message was enqueued (ms since the epoch) and whether recovery keeps it.
#[derive(Clone, Copy)]
pub struct Stamp {
    pub enqueued_at_ms: u64,
    pub durable: bool,
}

/// A parsed RELOCATED payload.
pub struct Relocated<'a> {
    pub id: u64,
    pub old_id: u64,
    /// Length of the PUBLISH record that follows, frame included.
    pub publish_len: u32,
    bitmask: &'a [u8],
}

impl<'a> Relocated<'a> {
    pub fn parse(payload: &'a [u8]) -> Option<Self> {
        let mut c = Cursor::new(payload);
        let id = c.u64()?;
        let old_id = c.u64()?;
        let publish_len = c.u32()?;
        let queue_count = c.u16()?;
        let bitmask = c.take((queue_count as usize).div_ceil(8))?;
        Some(Relocated {
            id,
            old_id,
            publish_len,
            bitmask,
        })
    }

    /// Whether the k-th queue of the following PUBLISH still holds the message.
    pub fn holds(&self, k: usize) -> bool {
        self.bitmask
            .get(k / 8)
            .is_some_and(|b| b & (1 << (k % 8)) != 0)
    }
}

/// Payload of a RELOCATED record for a message whose PUBLISH names `queue_count` queues;
/// `holds[k]` says whether the k-th still holds it.
pub fn encode_relocated(p: &mut Vec<u8>, id: u64, old_id: u64, publish_len: u32, holds: &[bool]) {
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&old_id.to_be_bytes());
    p.extend_from_slice(&publish_len.to_be_bytes());
    p.extend_from_slice(&(holds.len() as u16).to_be_bytes());
    let start = p.len();
    p.resize(start + holds.len().div_ceil(8), 0);
    for (k, _) in holds.iter().enumerate().filter(|(_, h)| **h) {
        p[start + k / 8] |= 1 << (k % 8);
    }
}

/// Payload of ACK and REDELIVERED records.
pub fn encode_ref(p: &mut Vec<u8>, id: u64, queue: u32) {
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&queue.to_be_bytes());
}

pub fn parse_ref(payload: &[u8]) -> Option<(u64, u32)> {
    let mut c = Cursor::new(payload);
    Some((c.u64()?, c.u32()?))
}
