//! The message log: append-only segment files `NNNNNNNNNN.seg` under `msgs/`, each bounded in
//! size and starting with a versioned header. Records are publishes (the message once, with
//! every durable queue it went to), acks, and the markers of a clean shutdown.
//!
//! Message ids are `segment << 32 | index`, so they grow in publish order and name their
//! segment. A segment is deleted once every message published in it is acked and every older
//! segment is gone: ack records only ever refer to messages in the same or older segments, so
//! deleting a prefix of the log never resurrects an acked message.

use super::record::{self, Cursor, Scan};
use crate::broker::message::{Message, StoredMeta};
use bytes::Bytes;
use log::{error, info, warn};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"CONEYSEG";
/// A segment is closed and a new one started once it reaches this size.
pub const SEGMENT_SIZE_MAX_BYTES: u64 = 16 * 1024 * 1024;

const KIND_PUBLISH: u8 = 1;
const KIND_ACK: u8 = 2;
const KIND_REDELIVERED: u8 = 3;
const KIND_CLEAN: u8 = 4;
const KIND_STARTED: u8 = 5;
/// The recovery byte of a publish record: a transient message paged out of memory is not
/// recovered; a persistent one is; so is a transient one kept durably because a queue keeps
/// every message on disk (a quorum queue).
const RECOVER_NOT: u8 = 0;
const RECOVER_PERSISTENT: u8 = 1;
const RECOVER_TRANSIENT: u8 = 2;
/// A publish with the time it was enqueued (ms since the epoch) after the message id. Older
/// logs have only `KIND_PUBLISH`, read with an unknown time.
const KIND_PUBLISH_AT: u8 = 6;

/// Where a publish record is: its message id (which names the segment), the record's offset
/// in the segment file and its length. Enough to read the message back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub msg_id: u64,
    pub offset: u32,
    pub len: u32,
}

impl Location {
    pub fn segment(&self) -> u32 {
        (self.msg_id >> 32) as u32
    }
}

/// A message found in the log at startup with the queues that still hold it. Only its
/// location is kept: bodies are read back when a queue needs them.
#[derive(Debug, Clone)]
pub struct RecoveredMessage {
    pub loc: Location,
    /// (queue store id, redelivered)
    pub queues: Vec<(u32, bool)>,
    /// When it was enqueued (ms since the epoch); 0 if the record does not say.
    pub enqueued_at_ms: u64,
    /// Body length, priority and expiration, read from the record at recovery.
    pub meta: StoredMeta,
}

/// What recovery found, for the log and for tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    pub records: usize,
    pub clean_shutdown: bool,
    /// Bytes cut from the end of the last segment (a torn write).
    pub truncated_bytes: u64,
    /// Damaged records skipped in the middle of a segment, and the bytes they spanned.
    pub corrupt_records: usize,
    pub corrupt_bytes: u64,
}

struct Segment {
    /// (message, queue) references published in this segment and not yet acked.
    live: u64,
}

pub struct Log {
    dir: PathBuf,
    segments: BTreeMap<u32, Segment>,
    current: u32,
    file: File,
    /// Size of the current file once `pending` is written.
    size: u64,
    /// Bytes of the current file known to be written.
    written: u64,
    next_index: u32,
    pending: Vec<u8>,
    /// Publishes were appended since the last fdatasync.
    need_sync: bool,
    /// Closed segments whose last writes are not yet synced.
    unsynced: Vec<File>,
    /// Open handles for reading paged-out messages back, by segment.
    readers: HashMap<u32, File>,
}

fn segment_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{n:010}.seg"))
}

struct Pending {
    loc: Location,
    queues: Vec<(u32, bool)>,
    enqueued_at_ms: u64,
    meta: StoredMeta,
}

impl Log {
    /// Opens (creating if needed) the log in `dir`, replays it, and starts a new segment.
    /// Messages for queues not in `queues` (deleted queues) are dropped.
    pub fn open(
        dir: &Path,
        queues: &HashSet<u32>,
    ) -> io::Result<(Log, Vec<RecoveredMessage>, RecoveryReport)> {
        fs::create_dir_all(dir)?;
        let mut numbers: Vec<u32> = fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
            .collect();
        numbers.sort_unstable();
        let mut report = RecoveryReport {
            segments: numbers.len(),
            ..Default::default()
        };
        let mut msgs: BTreeMap<u64, Pending> = BTreeMap::new();
        for (i, &n) in numbers.iter().enumerate() {
            let last = i + 1 == numbers.len();
            replay_segment(&segment_path(dir, n), n, last, &mut msgs, &mut report)?;
        }
        // Recovery may have removed a segment whose header never reached the disk.
        numbers.retain(|&n| segment_path(dir, n).exists());
        if !report.clean_shutdown && !msgs.is_empty() {
            info!("message store: unclean shutdown; recovered messages are marked redelivered");
        }
        let mut recovered = Vec::with_capacity(msgs.len());
        let mut live: HashMap<u32, u64> = HashMap::new();
        for (msg_id, mut p) in msgs {
            p.queues.retain(|(q, _)| queues.contains(q));
            if p.queues.is_empty() {
                continue;
            }
            if !report.clean_shutdown {
                p.queues.iter_mut().for_each(|q| q.1 = true);
            }
            *live.entry((msg_id >> 32) as u32).or_default() += p.queues.len() as u64;
            recovered.push(RecoveredMessage {
                loc: p.loc,
                queues: p.queues,
                enqueued_at_ms: p.enqueued_at_ms,
                meta: p.meta,
            });
        }
        let current = numbers.last().map_or(1, |n| n + 1);
        let mut segments = BTreeMap::new();
        for &n in &numbers {
            segments.insert(
                n,
                Segment {
                    live: live.get(&n).copied().unwrap_or(0),
                },
            );
        }
        let (file, size) = create_segment(dir, current)?;
        segments.insert(current, Segment { live: 0 });
        let mut log = Log {
            dir: dir.to_path_buf(),
            segments,
            current,
            file,
            size,
            written: size,
            next_index: 0,
            pending: Vec::new(),
            need_sync: true,
            unsynced: Vec::new(),
            readers: HashMap::new(),
        };
        // A run that starts and then crashes must not look clean to the next start.
        record::write_record(&mut log.pending, KIND_STARTED, |_| {});
        log.size += log.pending.len() as u64;
        log.sync()?;
        Ok((log, recovered, report))
    }

    /// Appends a publish of `msg` to the durable queues `queues`, enqueued at `at_ms`;
    /// returns where it is. A non-`durable` append (a transient message paged out of memory)
    /// needs no fdatasync and is ignored by recovery.
    pub fn publish(
        &mut self,
        msg: &Message,
        queues: &[u32],
        durable: bool,
        at_ms: u64,
    ) -> Location {
        let (data, ex, rk, props) = msg.raw();
        let estimate = 40 + queues.len() as u64 * 4 + data.len() as u64;
        if self.size + estimate > SEGMENT_SIZE_MAX_BYTES
            && self.size > record::FILE_HEADER_BYTES as u64
        {
            self.rotate();
        }
        let msg_id = ((self.current as u64) << 32) | self.next_index as u64;
        self.next_index += 1;
        let offset = self.size as u32;
        let before = self.pending.len();
        record::write_record(&mut self.pending, KIND_PUBLISH_AT, |p| {
            p.extend_from_slice(&msg_id.to_be_bytes());
            p.extend_from_slice(&at_ms.to_be_bytes());
            p.push(match (durable, msg.persistent) {
                (false, _) => RECOVER_NOT,
                (true, true) => RECOVER_PERSISTENT,
                (true, false) => RECOVER_TRANSIENT,
            });
            p.extend_from_slice(&(queues.len() as u16).to_be_bytes());
            for q in queues {
                p.extend_from_slice(&q.to_be_bytes());
            }
            p.push(ex);
            p.push(rk);
            p.extend_from_slice(&props.to_be_bytes());
            p.extend_from_slice(data);
        });
        let len = (self.pending.len() - before) as u32;
        self.size += len as u64;
        if let Some(s) = self.segments.get_mut(&self.current) {
            s.live += queues.len() as u64;
        }
        self.need_sync |= durable;
        Location {
            msg_id,
            offset,
            len,
        }
    }

    /// Reads a message back from its publish record.
    pub fn read(&mut self, loc: Location) -> io::Result<Message> {
        if loc.segment() == self.current {
            self.write_pending()?;
        }
        let seg = loc.segment();
        let file = match self.readers.entry(seg) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(File::open(segment_path(&self.dir, seg))?)
            }
        };
        let mut buf = vec![0u8; loc.len as usize];
        file.read_exact_at(&mut buf, loc.offset as u64)?;
        let bad = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("segment {seg}: bad record at {}", loc.offset),
            )
        };
        let (payload_at, header) = match record::scan(&buf) {
            Scan::Record { kind, payload, .. } if is_publish(kind) => (
                record::RECORD_HEADER_BYTES,
                parse_publish(kind, payload).ok_or_else(bad)?,
            ),
            _ => return Err(bad()),
        };
        if header.msg_id != loc.msg_id {
            return Err(bad());
        }
        let data = Bytes::from(buf).slice(payload_at + header.data_at..);
        Message::from_raw(data, header.ex, header.rk, header.props, header.persistent)
            .ok_or_else(bad)
    }

    /// Records that `queue` no longer holds `msg_id` (acked, purged, dropped, or deleted).
    pub fn ack(&mut self, msg_id: u64, queue: u32) {
        self.small_record(KIND_ACK, msg_id, queue);
        let seg = (msg_id >> 32) as u32;
        if let Some(s) = self.segments.get_mut(&seg) {
            s.live = s.live.saturating_sub(1);
        }
    }

    fn small_record(&mut self, kind: u8, msg_id: u64, queue: u32) {
        let before = self.pending.len();
        record::write_record(&mut self.pending, kind, |p| {
            p.extend_from_slice(&msg_id.to_be_bytes());
            p.extend_from_slice(&queue.to_be_bytes());
        });
        self.size += (self.pending.len() - before) as u64;
    }

    /// Closes the current segment and starts the next. Its unsynced writes are synced by the
    /// next `sync`, before any confirm that depends on them.
    fn rotate(&mut self) {
        if let Err(e) = self.write_pending() {
            error!("message store: write failed while rotating: {e}");
        }
        let next = self.current + 1;
        match create_segment(&self.dir, next) {
            Ok((file, size)) => {
                let old = std::mem::replace(&mut self.file, file);
                if self.need_sync {
                    self.unsynced.push(old);
                }
                self.current = next;
                self.size = size;
                self.written = size;
                self.next_index = 0;
                self.segments.insert(next, Segment { live: 0 });
            }
            Err(e) => error!(
                "message store: cannot create segment {next}: {e}; continuing in {}",
                self.current
            ),
        }
    }

    fn write_pending(&mut self) -> io::Result<()> {
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
                // Cut a partial write off so the file ends on a whole record.
                let _ = self.file.set_len(self.written);
                self.size = self.written;
                Err(e)
            }
        }
    }

    /// Writes what was appended this turn and, if it included publishes, fdatasyncs: one
    /// sync for every publish of the turn (group commit). Then deletes finished segments.
    pub fn sync(&mut self) -> io::Result<()> {
        self.write_pending()?;
        if self.need_sync {
            for f in self.unsynced.drain(..) {
                f.sync_data()?;
            }
            self.file.sync_data()?;
            self.need_sync = false;
        }
        self.delete_finished();
        Ok(())
    }

    /// Whether a sync has work to do.
    pub fn has_unsynced(&self) -> bool {
        !self.pending.is_empty() || self.need_sync
    }

    fn delete_finished(&mut self) {
        while let Some((&n, s)) = self.segments.iter().next() {
            if n == self.current || s.live > 0 {
                return;
            }
            match fs::remove_file(segment_path(&self.dir, n)) {
                Ok(()) => {}
                // Already gone (removed by recovery): forget it all the same.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    warn!("message store: cannot remove segment {n}: {e}");
                    return;
                }
            }
            self.segments.remove(&n);
            self.readers.remove(&n);
        }
    }

    /// Records which messages were delivered before a clean stop, then the clean marker.
    pub fn close_clean(&mut self, redelivered: &[(u64, u32)]) -> io::Result<()> {
        for &(m, q) in redelivered {
            self.small_record(KIND_REDELIVERED, m, q);
        }
        record::write_record(&mut self.pending, KIND_CLEAN, |_| {});
        self.need_sync = true;
        self.sync()
    }

    /// Segment numbers on disk, oldest first (tests and diagnostics).
    #[cfg(test)]
    pub fn segment_numbers(&self) -> Vec<u32> {
        self.segments.keys().copied().collect()
    }
}

fn create_segment(dir: &Path, n: u32) -> io::Result<(File, u64)> {
    let path = segment_path(dir, n);
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    f.write_all(&record::file_header(MAGIC))?;
    f.sync_all()?;
    File::open(dir)?.sync_all()?;
    Ok((f, record::FILE_HEADER_BYTES as u64))
}

/// Applies one segment's records to `msgs`. Only the last segment may have a torn tail; it is
/// cut off. Damage elsewhere is skipped record by record and reported.
fn replay_segment(
    path: &Path,
    n: u32,
    last: bool,
    msgs: &mut BTreeMap<u64, Pending>,
    report: &mut RecoveryReport,
) -> io::Result<()> {
    let buf = fs::read(path)?;
    match record::check_file_header(&buf, MAGIC) {
        Some(record::FORMAT_VERSION) => {}
        Some(v) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: format version {v} is not supported", path.display()),
            ))
        }
        None if buf.len() < record::FILE_HEADER_BYTES && last => {
            // Created but its header never reached the disk: nothing was written in it.
            warn!(
                "message store: {} has no complete header; removing it",
                path.display()
            );
            fs::remove_file(path)?;
            return Ok(());
        }
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not a coney segment", path.display()),
            ))
        }
    }
    let mut at = record::FILE_HEADER_BYTES;
    while at < buf.len() {
        match record::scan(&buf[at..]) {
            Scan::Record { kind, payload, len } => {
                apply(kind, payload, n, (at, len), msgs, report);
                report.records += 1;
                at += len;
            }
            Scan::Truncated | Scan::Corrupt => match record::resync(&buf, at) {
                Some(next) => {
                    error!(
                        "message store: {}: damaged record at byte {at}, skipped {} bytes",
                        path.display(),
                        next - at
                    );
                    report.corrupt_records += 1;
                    report.corrupt_bytes += (next - at) as u64;
                    at = next;
                }
                None => {
                    let cut = (buf.len() - at) as u64;
                    warn!(
                        "message store: {}: torn tail of {cut} bytes at byte {at}; truncating",
                        path.display()
                    );
                    OpenOptions::new()
                        .write(true)
                        .open(path)?
                        .set_len(at as u64)?;
                    report.truncated_bytes += cut;
                    if !last {
                        report.corrupt_records += 1;
                        report.corrupt_bytes += cut;
                    }
                    break;
                }
            },
        }
    }
    Ok(())
}

fn is_publish(kind: u8) -> bool {
    kind == KIND_PUBLISH || kind == KIND_PUBLISH_AT
}

/// The fixed part of a publish record's payload.
struct PublishHeader {
    msg_id: u64,
    /// 0 in records without a time.
    enqueued_at_ms: u64,
    /// Recovery keeps the message.
    recover: bool,
    persistent: bool,
    queues: Vec<(u32, bool)>,
    ex: u8,
    rk: u8,
    props: u32,
    /// Offset of exchange ++ routing key ++ properties ++ body within the payload.
    data_at: usize,
}

fn parse_publish(kind: u8, payload: &[u8]) -> Option<PublishHeader> {
    let mut c = Cursor::new(payload);
    let msg_id = c.u64()?;
    let enqueued_at_ms = if kind == KIND_PUBLISH_AT { c.u64()? } else { 0 };
    let recover = c.u8()?;
    let persistent = recover == RECOVER_PERSISTENT;
    let nq = c.u16()? as usize;
    let mut queues = Vec::with_capacity(nq);
    for _ in 0..nq {
        queues.push((c.u32()?, false));
    }
    let ex = c.u8()?;
    let rk = c.u8()?;
    let props = c.u32()?;
    let data_at = payload.len() - c.rest().len();
    if (ex as usize + rk as usize + props as usize) > c.rest().len() {
        return None;
    }
    Some(PublishHeader {
        msg_id,
        enqueued_at_ms,
        recover: recover != RECOVER_NOT,
        persistent,
        queues,
        ex,
        rk,
        props,
        data_at,
    })
}

fn apply(
    kind: u8,
    payload: &[u8],
    segment: u32,
    (offset, len): (usize, usize),
    msgs: &mut BTreeMap<u64, Pending>,
    report: &mut RecoveryReport,
) {
    let mut c = Cursor::new(payload);
    report.clean_shutdown = kind == KIND_CLEAN;
    match kind {
        KIND_PUBLISH | KIND_PUBLISH_AT => match parse_publish(kind, payload) {
            // Transient messages paged out of memory are not recovered.
            Some(h) if !h.recover => {}
            Some(h) if (h.msg_id >> 32) as u32 == segment => {
                let loc = Location {
                    msg_id: h.msg_id,
                    offset: offset as u32,
                    len: len as u32,
                };
                let data = &payload[h.data_at..];
                let props_at = h.ex as usize + h.rk as usize;
                let body_at = props_at + h.props as usize;
                let meta = StoredMeta::parse(&data[props_at..body_at], data.len() - body_at);
                msgs.insert(
                    h.msg_id,
                    Pending {
                        loc,
                        queues: h.queues,
                        enqueued_at_ms: h.enqueued_at_ms,
                        meta,
                    },
                );
            }
            _ => {
                report.corrupt_records += 1;
                error!("message store: segment {segment}: malformed publish record skipped");
            }
        },
        KIND_ACK | KIND_REDELIVERED => {
            let (Some(msg_id), Some(queue)) = (c.u64(), c.u32()) else {
                return;
            };
            let Some(p) = msgs.get_mut(&msg_id) else {
                return;
            };
            if kind == KIND_ACK {
                p.queues.retain(|(q, _)| *q != queue);
                if p.queues.is_empty() {
                    msgs.remove(&msg_id);
                }
            } else if let Some(q) = p.queues.iter_mut().find(|(q, _)| *q == queue) {
                q.1 = true;
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> Self {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p =
                std::env::temp_dir().join(format!("coney-log-{tag}-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).expect("temp dir");
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn msg(body: &str) -> Message {
        Message::new(b"ex", b"rk", &[0x10, 0, 2], body.as_bytes(), true)
    }

    fn queues(ids: &[u32]) -> HashSet<u32> {
        ids.iter().copied().collect()
    }

    impl Log {
        fn publish_id(&mut self, m: &Message, q: &[u32]) -> u64 {
            self.publish(m, q, true, 1_000).msg_id
        }
    }

    fn bodies(log: &mut Log, r: &[RecoveredMessage]) -> Vec<String> {
        r.iter()
            .map(|m| {
                String::from_utf8_lossy(log.read(m.loc).expect("read back").body()).into_owned()
            })
            .collect()
    }

    #[test]
    fn recovery_keeps_unacked_messages_in_order_with_their_queues() {
        let d = TempDir::new("order");
        let (mut log, rec, _) = Log::open(&d.0, &queues(&[1, 2])).expect("open");
        assert!(rec.is_empty());
        let a = log.publish_id(&msg("a"), &[1, 2]);
        let b = log.publish_id(&msg("b"), &[1]);
        let _c = log.publish_id(&msg("c"), &[2]);
        log.ack(a, 1);
        log.ack(b, 1);
        log.sync().expect("sync");
        drop(log);
        let (mut log, rec, report) = Log::open(&d.0, &queues(&[1, 2])).expect("reopen");
        assert_eq!(bodies(&mut log, &rec), ["a", "c"]);
        assert_eq!(
            rec[0].queues,
            [(2, true)],
            "unclean stop: marked redelivered"
        );
        assert!(!report.clean_shutdown);
        let first = log.read(rec[0].loc).expect("read");
        assert_eq!(first.exchange(), b"ex");
        assert_eq!(first.properties(), &[0x10, 0, 2]);
        assert!(first.persistent);
    }

    #[test]
    fn clean_shutdown_keeps_redelivered_flags_exact() {
        let d = TempDir::new("clean");
        let (mut log, _, _) = Log::open(&d.0, &queues(&[1])).expect("open");
        let a = log.publish_id(&msg("a"), &[1]);
        log.publish_id(&msg("b"), &[1]);
        log.close_clean(&[(a, 1)]).expect("close");
        drop(log);
        let (log, rec, report) = Log::open(&d.0, &queues(&[1])).expect("reopen");
        assert!(report.clean_shutdown);
        assert_eq!(
            rec.iter().map(|m| m.queues[0].1).collect::<Vec<_>>(),
            [true, false]
        );
        // A crash after this start must not be taken for a clean stop.
        drop(log);
        let (_, _, report) = Log::open(&d.0, &queues(&[1])).expect("third open");
        assert!(!report.clean_shutdown);
    }

    #[test]
    fn a_torn_tail_at_every_byte_of_the_last_record_loses_only_that_record() {
        let d = TempDir::new("torn");
        let (mut log, _, _) = Log::open(&d.0, &queues(&[1])).expect("open");
        log.publish_id(&msg("first"), &[1]);
        log.sync().expect("sync");
        let path = segment_path(&d.0, log.current);
        let before = fs::metadata(&path).expect("meta").len();
        log.publish_id(&msg("second"), &[1]);
        log.sync().expect("sync");
        drop(log);
        let full = fs::read(&path).expect("read");
        for cut in before as usize..full.len() {
            let d2 = TempDir::new("torn-case");
            fs::write(segment_path(&d2.0, 1), &full[..cut]).expect("write");
            let (mut log2, rec, report) = Log::open(&d2.0, &queues(&[1])).expect("recover");
            assert_eq!(bodies(&mut log2, &rec), ["first"], "cut at {cut}");
            assert_eq!(report.truncated_bytes, (cut - before as usize) as u64);
            assert_eq!(
                fs::metadata(segment_path(&d2.0, 1)).expect("meta").len(),
                before,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_flipped_byte_in_the_middle_loses_only_that_record() {
        let d = TempDir::new("flip");
        let (mut log, _, _) = Log::open(&d.0, &queues(&[1])).expect("open");
        let path = segment_path(&d.0, log.current);
        log.publish_id(&msg("one"), &[1]);
        log.sync().expect("sync");
        let mid = fs::metadata(&path).expect("meta").len() as usize;
        log.publish_id(&msg("two"), &[1]);
        log.publish_id(&msg("three"), &[1]);
        log.sync().expect("sync");
        drop(log);
        let mut bytes = fs::read(&path).expect("read");
        bytes[mid + 12] ^= 0xff;
        fs::write(&path, &bytes).expect("write");
        let (mut log, rec, report) = Log::open(&d.0, &queues(&[1])).expect("recover");
        assert_eq!(bodies(&mut log, &rec), ["one", "three"]);
        assert_eq!(report.corrupt_records, 1);
    }

    #[test]
    fn segments_are_removed_once_everything_in_them_is_acked() {
        let d = TempDir::new("gc");
        let (mut log, _, _) = Log::open(&d.0, &queues(&[1])).expect("open");
        let big = "x".repeat(1024 * 1024);
        let mut ids = Vec::new();
        for _ in 0..40 {
            ids.push(log.publish_id(&msg(&big), &[1]));
        }
        log.sync().expect("sync");
        let on_disk = || fs::read_dir(&d.0).expect("ls").count();
        assert!(on_disk() >= 3, "40 MiB spans several segments");
        for id in &ids[..39] {
            log.ack(*id, 1);
        }
        log.sync().expect("sync");
        assert!(
            on_disk() <= 2,
            "only the segments with the last message and the current one remain"
        );
        log.ack(ids[39], 1);
        log.sync().expect("sync");
        assert_eq!(on_disk(), 1);
        assert_eq!(log.segment_numbers(), [log.current]);
    }

    #[test]
    fn messages_of_deleted_queues_are_not_recovered() {
        let d = TempDir::new("deleted");
        let (mut log, _, _) = Log::open(&d.0, &queues(&[1, 2])).expect("open");
        log.publish_id(&msg("a"), &[1, 2]);
        log.sync().expect("sync");
        drop(log);
        let (_, rec, _) = Log::open(&d.0, &queues(&[2])).expect("reopen");
        assert_eq!(rec.len(), 1);
        assert_eq!(rec[0].queues, [(2, true)]);
    }

    #[test]
    fn paged_messages_read_back_before_sync_and_transient_ones_are_not_recovered() {
        let d = TempDir::new("read");
        let (mut log, _, _) = Log::open(&d.0, &queues(&[1])).expect("open");
        let kept = log.publish(&msg("kept"), &[1], true, 1_000);
        let paged = log.publish(
            &Message::new(b"", b"q", &[0, 0], b"transient", false),
            &[1],
            false,
            1_000,
        );
        assert_eq!(
            log.read(paged).expect("read before sync").body(),
            b"transient"
        );
        assert_eq!(log.read(kept).expect("read").body(), b"kept");
        log.sync().expect("sync");
        drop(log);
        let (mut log, rec, _) = Log::open(&d.0, &queues(&[1])).expect("reopen");
        assert_eq!(bodies(&mut log, &rec), ["kept"]);
        assert_eq!(
            rec[0].enqueued_at_ms, 1_000,
            "the time it was enqueued is kept"
        );
        assert_eq!(rec[0].meta.body_len, 4);
    }

    #[test]
    fn a_headerless_newest_segment_does_not_block_segment_removal() {
        let d = TempDir::new("headerless");
        let (mut log, _, _) = Log::open(&d.0, &queues(&[1])).expect("open");
        let id = log.publish_id(&msg("a"), &[1]);
        log.sync().expect("sync");
        let next = log.current + 1;
        drop(log);
        // A crash right after creating the next segment, before its header was written.
        fs::write(segment_path(&d.0, next), b"CONEY").expect("write");
        let (mut log, rec, _) = Log::open(&d.0, &queues(&[1])).expect("reopen");
        assert_eq!(rec.len(), 1);
        log.ack(id, 1);
        log.sync().expect("sync");
        assert_eq!(
            log.segment_numbers(),
            [log.current],
            "every finished segment is gone"
        );
        assert_eq!(fs::read_dir(&d.0).expect("ls").count(), 1);
    }
}
