//! The message log: segment files `NNNNNNNNNN.seg` under `msgs/`, each starting with a
//! versioned header, appended to at the head (the newest) and never rewritten. Records are
//! publishes (a message once, with every durable queue it went to), acks, the markers of a
//! clean stop, and relocated copies written by compaction (`compact.rs`); `format.rs` lays
//! them out. Recovery (`recover.rs`) replays the files in number order.
//!
//! Invariants, and why a crash (kill -9) at any point keeps them:
//! - A message id is `segment << 32 | index` and names the file holding its record. Head
//!   files are numbered in steps of `HEAD_NUMBER_STEP`; compaction writes its copies to a new
//!   file numbered between the newest non-head file and the head, so replay meets an
//!   original, then its copy (which names the original and supersedes it), then every ack
//!   written after the copy (acks are only ever appended to the head).
//! - Acks name the message's current id: after a copy, the store translates the old ids that
//!   queues and channels still hold (`Translation`), so nothing outside the store changes.
//! - A file is deleted only when no message in it is held and no older file it names in an
//!   ack or a relocation still exists (`Segment::deps`): deleting it earlier would bring back
//!   what those records settled. Compaction deletes its sources only after their held
//!   messages and still-needed acks were written (and synced) elsewhere.

use super::format::{self, RawMsg, Stamp, KIND_ACK, KIND_CLEAN, KIND_PUBLISH_AT, KIND_STARTED};
use super::record::{self, Scan};
use super::segment::Segment;
use crate::broker::message::{Message, StoredMeta};
use crate::limits::SEGMENT_SIZE_MAX_BYTES;
use bytes::Bytes;
use log::{error, warn};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub(super) const MAGIC: &[u8; 8] = b"CONEYSEG";
/// Version written in new segment headers. Version 1 (before relocation records) is read too.
pub(super) const SEGMENT_VERSION: u32 = 2;
/// Head files are numbered in these steps; the numbers between are for compaction's copies.
pub(super) const HEAD_NUMBER_STEP: u32 = 256;

/// Where a message's record is: its id (which names the file), the record's offset in the
/// file and its length (with a relocated copy's RELOCATED record). Enough to read it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub msg_id: u64,
    pub offset: u32,
    pub len: u32,
}

impl Location {
    pub fn segment(&self) -> u32 {
        format::segment_of(self.msg_id)
    }
}

/// What recovery found, for the log and for tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    pub records: usize,
    pub messages: usize,
    pub clean_shutdown: bool,
    /// Bytes cut from the end of the last segment (a torn write).
    pub truncated_bytes: u64,
    /// Damaged records skipped in the middle of a segment, and the bytes they spanned.
    pub corrupt_records: usize,
    pub corrupt_bytes: u64,
}

/// One (message, queue) found in the log at start, handed to the broker in file order.
#[derive(Debug, Clone, Copy)]
pub struct Recovered {
    pub queue: u32,
    pub loc: Location,
    /// The id the message was first published with: a queue's messages go back in this order.
    pub origin: u64,
    pub redelivered: bool,
    /// When it was enqueued (ms since the epoch); 0 if the record does not say.
    pub enqueued_at_ms: u64,
    /// Body length, priority and expiration, read from the record.
    pub meta: StoredMeta,
}

pub struct Log {
    pub(super) dir: PathBuf,
    pub(super) segments: BTreeMap<u32, Segment>,
    /// Number of the segment new records are appended to.
    pub(super) head: u32,
    file: File,
    /// Bytes of the head file known to be written.
    written: u64,
    next_index: u32,
    pending: Vec<u8>,
    /// Publishes were appended since the last fdatasync.
    need_sync: bool,
    /// Closed segments whose last writes are not yet synced.
    unsynced: Vec<File>,
    /// Open handles for reading messages back, by segment.
    readers: HashMap<u32, File>,
    /// Where copied messages went, by the segment they were copied from.
    pub(super) translations: HashMap<u32, Vec<super::compact::Translation>>,
    pub(super) pass: Option<super::compact::Pass>,
    /// The highest copy file number handed out in this run: numbers are never reused, so an
    /// old id a queue still holds can only mean one record.
    pub(super) last_copy: u32,
    /// Sum of the sizes of all segment files, and of the records queues still hold.
    pub(super) disk_bytes: u64,
    pub(super) live_bytes: u64,
    /// A segment may have become deletable (or compactable) since the last look.
    pub(super) reclaim: bool,
    pub(super) reconsider: bool,
    /// Recovery's state until the broker has taken the recovered messages.
    pub(super) replay: Option<super::recover::Replay>,
    /// `SEGMENT_SIZE_MAX_BYTES` and `COMPACTION_BYTES_PER_TURN`, smaller in unit tests.
    pub(super) segment_bytes: u64,
    pub(super) turn_bytes: usize,
    /// Called at the steps of finishing a compaction (tests copy the files there).
    #[cfg(test)]
    pub(super) crash_point: Option<CrashPoint>,
}

/// What tests run at a crash point: they get the log's directory.
#[cfg(test)]
pub(super) type CrashPoint = Box<dyn FnMut(&Path)>;

pub(super) fn segment_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{n:010}.seg"))
}

impl Log {
    /// Opens (creating if needed) the log in `dir`, replays it (first pass: what is still
    /// held) and starts a new head. Messages for queues not in `queues` (deleted queues) are
    /// dropped. The broker then takes the messages with `recovered`.
    pub fn open(
        dir: &Path,
        queues: std::collections::HashSet<u32>,
    ) -> io::Result<(Log, RecoveryReport, HashMap<u32, u64>)> {
        fs::create_dir_all(dir)?;
        let (mut segments, replay) = super::recover::Replay::run(dir, queues)?;
        let report = replay.report.clone();
        let counts = replay.queue_counts.clone();
        let last = segments.keys().next_back().copied().unwrap_or(0);
        let head = (last / HEAD_NUMBER_STEP + 1) * HEAD_NUMBER_STEP;
        let (file, size) = create_segment(dir, head)?;
        let disk_bytes = size + segments.values().map(|s| s.size).sum::<u64>();
        segments.insert(head, Segment::new(size));
        let mut log = Log {
            dir: dir.to_path_buf(),
            segments,
            head,
            file,
            written: size,
            next_index: 0,
            pending: Vec::new(),
            need_sync: true,
            unsynced: Vec::new(),
            readers: HashMap::new(),
            translations: HashMap::new(),
            pass: None,
            last_copy: 0,
            disk_bytes,
            live_bytes: 0,
            reclaim: false,
            reconsider: false,
            replay: Some(replay),
            segment_bytes: SEGMENT_SIZE_MAX_BYTES,
            turn_bytes: crate::limits::COMPACTION_BYTES_PER_TURN,
            #[cfg(test)]
            crash_point: None,
        };
        // A run that starts and then crashes must not look clean to the next start.
        log.append(KIND_STARTED, |_| {});
        log.sync()?;
        Ok((log, report, counts))
    }

    /// Appends one record to the head; returns its offset and length.
    fn append(&mut self, kind: u8, f: impl FnOnce(&mut Vec<u8>)) -> (u32, u32) {
        let seg = self.segments.get_mut(&self.head).expect("head segment");
        let offset = seg.size;
        let before = self.pending.len();
        record::write_record(&mut self.pending, kind, f);
        let len = (self.pending.len() - before) as u64;
        seg.size += len;
        self.disk_bytes += len;
        (offset as u32, len as u32)
    }

    pub(super) fn head_size(&self) -> u64 {
        self.segments.get(&self.head).map_or(0, |s| s.size)
    }

    /// Appends a publish of `msg` to the durable queues `queues`, enqueued at `at_ms`;
    /// returns where it is. A non-`durable` append (a transient message paged out of
    /// memory) needs no fdatasync and is ignored by recovery.
    pub fn publish(
        &mut self,
        msg: &Message,
        queues: &[u32],
        durable: bool,
        at_ms: u64,
    ) -> Location {
        let (data, ex, rk, props) = msg.raw();
        let estimate = 40 + queues.len() as u64 * 4 + data.len() as u64;
        let size = self.head_size();
        if size + estimate > self.segment_bytes && size > record::FILE_HEADER_BYTES as u64 {
            self.rotate();
        }
        let index = self.next_index;
        self.next_index += 1;
        let msg_id = format::make_id(self.head, index);
        let raw = RawMsg {
            data,
            ex,
            rk,
            props,
            persistent: msg.persistent,
        };
        let stamp = Stamp {
            enqueued_at_ms: at_ms,
            durable,
        };
        let (offset, len) = self.append(KIND_PUBLISH_AT, |p| {
            format::encode_publish(p, msg_id, stamp, queues, raw)
        });
        let seg = self.segments.get_mut(&self.head).expect("head segment");
        seg.hold(index, queues, queues.len() > 1);
        seg.live_bytes += len as u64;
        self.live_bytes += len as u64;
        self.need_sync |= durable;
        Location {
            msg_id,
            offset,
            len,
        }
    }

    /// Reads a message back from its record (following it if compaction moved it).
    pub fn read(&mut self, loc: Location) -> io::Result<Message> {
        let loc = self.current(loc);
        let seg = loc.segment();
        if seg == self.head {
            self.write_pending()?;
        }
        let file = match self.readers.entry(seg) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(File::open(segment_path(&self.dir, seg))?)
            }
        };
        let mut buf = vec![0u8; loc.len as usize];
        file.read_exact_at(&mut buf, loc.offset as u64)?;
        decode_message(Bytes::from(buf), loc.msg_id).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("segment {seg}: bad record at {}", loc.offset),
            )
        })
    }

    /// Where the message `loc` names is now: compaction may have copied it, maybe more than
    /// once. The location is unchanged if it was not copied.
    pub(super) fn current(&self, mut loc: Location) -> Location {
        while let Some(ts) = self.translations.get(&loc.segment()) {
            match ts.iter().find_map(|t| t.find(format::index_of(loc.msg_id))) {
                Some(next) => loc = next,
                None => break,
            }
        }
        loc
    }

    /// Records that `queue` no longer holds message `msg_id` (acked, purged, dropped, or its
    /// queue deleted). `len` is the length of the record the holder was given.
    pub fn ack(&mut self, msg_id: u64, queue: u32, len: u32) {
        let loc = self.current(Location {
            msg_id,
            offset: 0,
            len,
        });
        let n = loc.segment();
        let Some(seg) = self.segments.get_mut(&n) else {
            return;
        };
        let Some(dead) = seg.release(format::index_of(loc.msg_id), queue) else {
            return;
        };
        if dead {
            seg.live_bytes = seg.live_bytes.saturating_sub(loc.len as u64);
            self.live_bytes = self.live_bytes.saturating_sub(loc.len as u64);
            self.reclaim |= seg.live_count == 0;
            self.reconsider |= n != self.head;
        }
        self.ack_record(loc.msg_id, queue);
    }

    /// Appends an ACK record to the head, noting the file it names.
    pub(super) fn ack_record(&mut self, msg_id: u64, queue: u32) {
        self.append(KIND_ACK, |p| format::encode_ref(p, msg_id, queue));
        let target = format::segment_of(msg_id);
        if target != self.head {
            if let Some(h) = self.segments.get_mut(&self.head) {
                h.add_dep(target);
            }
        }
    }

    /// Closes the head and starts the next. Its unsynced writes are synced by the next `sync`,
    /// before any confirm that depends on them.
    pub(super) fn rotate(&mut self) {
        if let Err(e) = self.write_pending() {
            error!("message store: write failed while rotating: {e}");
        }
        let next = (self.head / HEAD_NUMBER_STEP + 1) * HEAD_NUMBER_STEP;
        match create_segment(&self.dir, next) {
            Ok((file, size)) => {
                let old = std::mem::replace(&mut self.file, file);
                if self.need_sync {
                    self.unsynced.push(old);
                }
                self.head = next;
                self.written = size;
                self.next_index = 0;
                self.disk_bytes += size;
                self.segments.insert(next, Segment::new(size));
                self.reclaim = true;
                self.reconsider = true;
            }
            Err(e) => error!(
                "message store: cannot create segment {next}: {e}; continuing in {}",
                self.head
            ),
        }
    }

    pub(super) fn write_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let result = self.file.write_all(&self.pending);
        let len = self.pending.len() as u64;
        self.pending.clear();
        match result {
            Ok(()) => {
                self.written += len;
                Ok(())
            }
            Err(e) => {
                // Cut a partial write off so the file ends on a whole record; the records
                // lost were acks or publishes whose confirms become nacks.
                let _ = self.file.set_len(self.written);
                let _ = self.file.seek(SeekFrom::Start(self.written));
                if let Some(s) = self.segments.get_mut(&self.head) {
                    self.disk_bytes -= s.size - self.written;
                    s.size = self.written;
                }
                Err(e)
            }
        }
    }

    /// Writes what was appended this turn and, if it included publishes, fdatasyncs: one
    /// sync for every publish of the turn (group commit). Then deletes finished segments.
    pub fn sync(&mut self) -> io::Result<()> {
        self.write_pending()?;
        if self.need_sync {
            self.sync_written()?;
        }
        self.delete_finished();
        Ok(())
    }

    /// fdatasyncs everything written to head files so far.
    pub(super) fn sync_written(&mut self) -> io::Result<()> {
        for f in self.unsynced.drain(..) {
            f.sync_data()?;
        }
        self.file.sync_data()?;
        self.need_sync = false;
        Ok(())
    }

    /// Whether a sync has work to do.
    pub fn has_unsynced(&self) -> bool {
        !self.pending.is_empty() || self.need_sync || self.reclaim
    }

    /// Deletes every segment nothing needs any more, oldest first (so a chain of files that
    /// each name the one before goes in one sweep).
    fn delete_finished(&mut self) {
        if !self.reclaim || self.replay.is_some() {
            return;
        }
        self.reclaim = false;
        let numbers: Vec<u32> = self.segments.keys().copied().collect();
        let mut deleted = false;
        for n in numbers {
            if n == self.head || self.in_pass(n) {
                continue;
            }
            let Some(s) = self.segments.get(&n) else {
                continue;
            };
            if s.live_count > 0 || s.deps().iter().any(|d| self.segments.contains_key(&d.0)) {
                continue;
            }
            if self.remove_segment(n).is_err() {
                return;
            }
            deleted = true;
        }
        if deleted {
            self.forget_translations();
            self.reconsider = true;
        }
    }

    pub(super) fn in_pass(&self, n: u32) -> bool {
        self.pass
            .as_ref()
            .is_some_and(|p| p.target == n || p.sources.contains(&n))
    }

    /// Deletes segment `n`'s file and forgets it.
    pub(super) fn remove_segment(&mut self, n: u32) -> io::Result<()> {
        match fs::remove_file(segment_path(&self.dir, n)) {
            Ok(()) => {}
            // Already gone (removed by recovery): forget it all the same.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                warn!("message store: cannot remove segment {n}: {e}");
                return Err(e);
            }
        }
        if let Some(s) = self.segments.remove(&n) {
            self.disk_bytes -= s.size;
            self.live_bytes -= s.live_bytes;
        }
        self.readers.remove(&n);
        Ok(())
    }

    /// Drops translations nobody can use any more: those into a file that is gone and was
    /// not itself copied on. A holder of an old id holds a live message, and a live message
    /// keeps its file (or, once copied again, that file's translation).
    fn forget_translations(&mut self) {
        loop {
            let before: usize = self.translations.values().map(Vec::len).sum();
            let alive = |n: &u32, segments: &BTreeMap<u32, Segment>, ts: &HashMap<_, _>| {
                segments.contains_key(n) || ts.contains_key(n)
            };
            let keep: Vec<(u32, Vec<bool>)> = self
                .translations
                .iter()
                .map(|(src, ts)| {
                    let k = ts
                        .iter()
                        .map(|t| alive(&t.target, &self.segments, &self.translations))
                        .collect();
                    (*src, k)
                })
                .collect();
            for (src, k) in keep {
                if let Some(ts) = self.translations.get_mut(&src) {
                    let mut it = k.iter();
                    ts.retain(|_| *it.next().unwrap_or(&true));
                    if ts.is_empty() {
                        self.translations.remove(&src);
                    }
                }
            }
            if self.translations.values().map(Vec::len).sum::<usize>() == before {
                return;
            }
        }
    }

    /// Records which messages were delivered before a clean stop, then the clean marker. A
    /// compaction under way stops where it is (what it copied stays valid).
    pub fn close_clean(&mut self, redelivered: &[(u64, u32)]) -> io::Result<()> {
        if let Some(p) = self.pass.take() {
            self.stop_pass(p);
        }
        for &(m, q) in redelivered {
            let id = self
                .current(Location {
                    msg_id: m,
                    offset: 0,
                    len: 0,
                })
                .msg_id;
            self.append(format::KIND_REDELIVERED, |p| format::encode_ref(p, id, q));
        }
        self.append(KIND_CLEAN, |_| {});
        self.need_sync = true;
        self.write_pending()?;
        self.sync_written()
    }

    /// Segment numbers on disk, oldest first (tests and diagnostics).
    #[cfg(test)]
    pub fn segment_numbers(&self) -> Vec<u32> {
        self.segments.keys().copied().collect()
    }

    /// A point where a crash must leave a recoverable log (tests look at the files there).
    pub(super) fn crash_point(&mut self) {
        #[cfg(test)]
        if let Some(f) = self.crash_point.as_mut() {
            f(&self.dir);
        }
    }

    /// (bytes of all segment files, bytes of records still held).
    #[cfg(test)]
    pub fn usage(&self) -> (u64, u64) {
        (self.disk_bytes, self.live_bytes)
    }
}

/// Creates segment `n` with its header, durably (file and directory entry).
pub(super) fn create_segment(dir: &Path, n: u32) -> io::Result<(File, u64)> {
    let path = segment_path(dir, n);
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    f.write_all(&record::file_header_version(MAGIC, SEGMENT_VERSION))?;
    f.sync_all()?;
    File::open(dir)?.sync_all()?;
    Ok((f, record::FILE_HEADER_BYTES as u64))
}

/// Decodes the message at the start of `buf`: a PUBLISH with id `id`, or a RELOCATED record
/// with id `id` followed by the message's original PUBLISH.
pub(super) fn decode_message(buf: Bytes, id: u64) -> Option<Message> {
    let (publish_at, end) = match record::scan(&buf) {
        Scan::Record { kind, payload, len }
            if format::is_publish(kind) && format::Publish::parse(kind, payload)?.id == id =>
        {
            (0, len)
        }
        Scan::Record {
            kind: format::KIND_RELOCATED,
            payload,
            len,
        } => {
            let r = format::Relocated::parse(payload)?;
            if r.id != id {
                return None;
            }
            (len, len + r.publish_len as usize)
        }
        _ => return None,
    };
    let Scan::Record { kind, payload, len } = record::scan(buf.get(publish_at..end)?) else {
        return None;
    };
    if !format::is_publish(kind) || publish_at + len != end {
        return None;
    }
    let p = format::Publish::parse(kind, payload)?;
    let data_at = publish_at + record::RECORD_HEADER_BYTES + p.data_at;
    Message::from_raw(buf.slice(data_at..end), p.ex, p.rk, p.props, p.persistent)
}

#[cfg(test)]
#[path = "log_tests.rs"]
mod tests;
