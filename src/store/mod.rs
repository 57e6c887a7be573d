//! Durability: the definitions file and the message log under the data directory. The broker
//! calls in at explicit points (publish of a persistent message to durable queues, ack, a
//! definitions change); the reactor calls `sync` once per loop turn, before confirms go out.
//! The only module that touches files. A disabled store (no data dir) does nothing.

mod crc;
pub mod definitions;
pub mod log;
pub mod record;

use crate::broker::message::Message;
use definitions::Definitions;
use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

pub use self::log::{Location, RecoveredMessage, RecoveryReport};

/// A message's place in the store as seen from one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreRef {
    pub msg_id: u64,
    pub queue: u32,
}

/// What the broker rebuilds itself from at start.
#[derive(Debug, Default)]
pub struct Recovery {
    pub definitions: Definitions,
    pub messages: Vec<RecoveredMessage>,
    pub report: RecoveryReport,
}

pub struct Store {
    dir: Option<PathBuf>,
    log: Option<self::log::Log>,
}

impl Store {
    /// A store that keeps nothing: for tests and benchmarks of the in-memory broker.
    pub fn disabled() -> Self {
        Store {
            dir: None,
            log: None,
        }
    }

    /// Opens the store in `data_dir`, replaying definitions and the message log.
    pub fn open(data_dir: &Path) -> io::Result<(Store, Recovery)> {
        std::fs::create_dir_all(data_dir)?;
        let definitions = Definitions::load(data_dir)?;
        let queues: HashSet<u32> = definitions
            .queues
            .iter()
            .map(|q| q.store_id)
            .chain(definitions.delayed_exchanges.iter().map(|d| d.store_id))
            .collect();
        let (log, messages, report) = self::log::Log::open(&data_dir.join("msgs"), &queues)?;
        let store = Store {
            dir: Some(data_dir.to_path_buf()),
            log: Some(log),
        };
        Ok((
            store,
            Recovery {
                definitions,
                messages,
                report,
            },
        ))
    }

    pub fn enabled(&self) -> bool {
        self.log.is_some()
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

    /// Reads a paged-out message back.
    pub fn read(&mut self, loc: Location) -> io::Result<Message> {
        match self.log.as_mut() {
            Some(l) => l.read(loc),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "store disabled")),
        }
    }

    pub fn ack(&mut self, r: StoreRef) {
        if let Some(l) = self.log.as_mut() {
            l.ack(r.msg_id, r.queue);
        }
    }

    /// Whether the log holds records not yet synced to disk.
    pub fn has_unsynced(&self) -> bool {
        self.log.as_ref().is_some_and(|l| l.has_unsynced())
    }

    /// Writes and syncs this turn's records (group commit).
    pub fn sync(&mut self) -> io::Result<()> {
        match self.log.as_mut() {
            Some(l) => l.sync(),
            None => Ok(()),
        }
    }

    pub fn save_definitions(&mut self, d: &Definitions) -> io::Result<()> {
        match &self.dir {
            Some(dir) => d.save(dir),
            None => Ok(()),
        }
    }

    /// Clean shutdown: the redelivered marks of queued messages, then the clean marker.
    pub fn close_clean(&mut self, redelivered: &[(u64, u32)]) -> io::Result<()> {
        match self.log.as_mut() {
            Some(l) => l.close_clean(redelivered),
            None => Ok(()),
        }
    }
}
