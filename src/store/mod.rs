//! Durability: the definitions (snapshot + journal) and the message log under the data
//! directory. The only module that touches files. A disabled store (no data dir) does nothing.
//!
//! How the broker uses it:
//! - at start, `open` loads the definitions and replays the log; the broker creates its
//!   queues, then takes the held messages with `recovered` (in log order; each carries the id
//!   it was first published with, which orders a queue);
//! - as things happen: `record` for every change to durable definitions, `publish` for a
//!   persistent message routed to durable queues, `page_out`/`read` for messages a queue
//!   keeps on disk only, `ack` when a queue lets go of a message (however it let go);
//! - once per loop turn the reactor calls `sync` (before any reply or confirm of the turn is
//!   written: group commit) and then `maintain` (a bounded slice of compaction and snapshot
//!   work; `busy` says whether more is waiting), and `close_clean` at a clean stop.
//!
//! Locations and references the broker holds stay valid whatever compaction does.

mod compact;
mod crc;
pub mod definitions;
mod format;
pub mod journal;
pub mod log;
pub mod record;
mod recover;
mod segment;

use crate::broker::message::Message;
use definitions::{DefChange, Definitions};
use std::collections::{HashMap, HashSet};
use std::io;
use std::path::Path;

pub use self::log::{Location, Recovered, RecoveryReport};

/// A message's place in the store as seen from one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreRef {
    pub msg_id: u64,
    pub queue: u32,
    /// Length of the record at the location the queue was given.
    pub len: u32,
}

impl StoreRef {
    /// The reference of `queue` to the message stored at `loc`.
    pub fn at(loc: Location, queue: u32) -> Self {
        StoreRef {
            msg_id: loc.msg_id,
            queue,
            len: loc.len,
        }
    }
}

/// What the broker rebuilds itself from at start (the messages come after, by `recovered`).
#[derive(Debug, Default)]
pub struct Recovery {
    pub definitions: Definitions,
    pub report: RecoveryReport,
    /// Messages each durable queue will get, so it can reserve room for exactly that many.
    pub queue_counts: HashMap<u32, u64>,
}

pub struct Store {
    journal: Option<journal::Journal>,
    log: Option<self::log::Log>,
}

impl Store {
    /// A store that keeps nothing: for tests and benchmarks of the in-memory broker.
    pub fn disabled() -> Self {
        Store {
            journal: None,
            log: None,
        }
    }

    /// Opens the store in `data_dir`: loads the definitions and replays the message log.
    pub fn open(data_dir: &Path) -> io::Result<(Store, Recovery)> {
        std::fs::create_dir_all(data_dir)?;
        let (journal, definitions) = journal::Journal::open(data_dir)?;
        let queues: HashSet<u32> = definitions
            .queues
            .iter()
            .map(|q| q.store_id)
            .chain(definitions.delayed_exchanges.iter().map(|d| d.store_id))
            .collect();
        let (log, report, queue_counts) = self::log::Log::open(&data_dir.join("msgs"), queues)?;
        let store = Store {
            journal: Some(journal),
            log: Some(log),
        };
        let recovery = Recovery {
            definitions,
            report,
            queue_counts,
        };
        Ok((store, recovery))
    }

    pub fn enabled(&self) -> bool {
        self.log.is_some()
    }

    /// Hands every recovered (message, queue) to `f`; once, after `open`.
    pub fn recovered(&mut self, f: impl FnMut(Recovered)) -> io::Result<()> {
        let Some(l) = self.log.as_mut() else {
            return Ok(());
        };
        match l.replay.take() {
            Some(r) => r.emit(l, f),
            None => Ok(()),
        }
    }

    /// Appends a message routed to durable queues at `at_ms` (wall clock, kept for TTL
    /// deadlines), to be recovered after a restart (a persistent message, or any message of a
    /// quorum queue); returns where it is.
    pub fn publish(&mut self, msg: &Message, queues: &[u32], at_ms: u64) -> Option<Location> {
        self.log
            .as_mut()
            .map(|l| l.publish(msg, queues, true, at_ms))
    }

    /// Writes a transient message out of memory for a queue over its window.
    pub fn page_out(&mut self, msg: &Message, queue: u32, at_ms: u64) -> Option<Location> {
        self.log
            .as_mut()
            .map(|l| l.publish(msg, &[queue], false, at_ms))
    }

    /// Reads a message back.
    pub fn read(&mut self, loc: Location) -> io::Result<Message> {
        match self.log.as_mut() {
            Some(l) => l.read(loc),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "store disabled")),
        }
    }

    /// The queue no longer holds the message.
    pub fn ack(&mut self, r: StoreRef) {
        if let Some(l) = self.log.as_mut() {
            l.ack(r.msg_id, r.queue, r.len);
        }
    }

    /// A durable definition changed; it is on disk after this turn's `sync`.
    pub fn record(&mut self, change: DefChange<'_>) {
        if let Some(j) = self.journal.as_mut() {
            j.record(change);
        }
    }

    /// Whether `sync` has anything to do.
    pub fn has_unsynced(&self) -> bool {
        self.journal.as_ref().is_some_and(|j| j.has_unsynced())
            || self.log.as_ref().is_some_and(|l| l.has_unsynced())
    }

    /// Writes and fdatasyncs this turn's definition changes and message records (group
    /// commit), then deletes message segments nothing needs any more.
    pub fn sync(&mut self) -> io::Result<()> {
        let defs = match self.journal.as_mut() {
            Some(j) => j.sync(),
            None => Ok(()),
        };
        let msgs = match self.log.as_mut() {
            Some(l) => l.sync(),
            None => Ok(()),
        };
        defs.and(msgs)
    }

    /// A bounded slice of background work: compaction of the message log, rewriting the
    /// definitions snapshot. Call once per loop turn, after `sync`.
    pub fn maintain(&mut self) {
        if let Some(l) = self.log.as_mut() {
            l.maintain();
        }
        if let Some(j) = self.journal.as_mut() {
            j.maintain();
        }
    }

    /// Whether `maintain` has work waiting (the loop should not sleep).
    pub fn busy(&self) -> bool {
        self.log.as_ref().is_some_and(|l| l.busy())
            || self.journal.as_ref().is_some_and(|j| j.busy())
    }

    /// Clean shutdown: the redelivered marks of queued messages, then the clean marker.
    pub fn close_clean(&mut self, redelivered: &[(u64, u32)]) -> io::Result<()> {
        if let Some(j) = self.journal.as_mut() {
            j.sync()?;
        }
        match self.log.as_mut() {
            Some(l) => l.close_clean(redelivered),
            None => Ok(()),
        }
    }
}
