//! Recovery of the message log at start, in two passes over the segment files so that memory
//! follows what is still held, not what the log ever held: the first pass replays every
//! record into one bit per message (`Segment`), cutting a torn tail and skipping damage; the
//! second reads only the files that still hold messages and hands each (message, queue) to
//! the broker, which keeps a 32-byte location per message. Nothing per message is allocated
//! in between (a message routed to several queues keeps its list of them).

use super::format::{self, Publish, Relocated};
use super::log::{segment_path, Location, Log, Recovered, RecoveryReport, HEAD_NUMBER_STEP};
use super::log::{MAGIC, SEGMENT_VERSION};
use super::record::{self, Scan, RECORD_HEADER_BYTES};
use super::segment::{Holders, Segment};
use crate::broker::message::StoredMeta;
use log::{error, info, warn};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// What the first pass found, kept until the broker has taken the messages.
pub(super) struct Replay {
    pub report: RecoveryReport,
    /// Messages per queue, so each queue can reserve exactly what it will hold.
    pub queue_counts: HashMap<u32, u64>,
    /// (message, queue) pairs marked delivered at the last clean stop.
    redelivered: HashSet<(u64, u32)>,
    /// The durable queues that exist; messages for others are dropped.
    queues: HashSet<u32>,
    scratch: Vec<u32>,
}

/// Bytes read from a segment at once: recovery's memory is this, not a whole segment.
const WALK_CHUNK_BYTES: usize = 1024 * 1024;

/// What is at the next place of a segment file (offsets are in the file).
enum Step {
    Record {
        at: u64,
        kind: u8,
        len: usize,
    },
    /// Damage from `at` to `next`, where a valid record starts again.
    Damaged {
        at: u64,
        next: u64,
    },
    /// Nothing valid from `at` to the end: a torn tail. The walk ends.
    Torn {
        at: u64,
    },
}

/// Walks a segment file record by record through a buffer of about `WALK_CHUNK_BYTES`
/// (more for a larger record). The bytes of the record returned last and of the one before
/// it stay readable until the next call, so a RELOCATED header and its PUBLISH are seen
/// together. Two walks over the same file see the same records.
struct FileWalk {
    file: File,
    size: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`, of the next record, and of the last record returned.
    base: u64,
    pos: u64,
    keep: u64,
}

impl FileWalk {
    fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let size = file.metadata()?.len();
        Ok(FileWalk {
            file,
            size,
            buf: Vec::new(),
            base: 0,
            pos: 0,
            keep: 0,
        })
    }

    fn end(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    /// The file's header (its first bytes, fewer if the file is shorter).
    fn header(&mut self) -> io::Result<&[u8]> {
        self.fill(record::FILE_HEADER_BYTES)?;
        self.pos = record::FILE_HEADER_BYTES as u64;
        self.keep = self.pos;
        Ok(&self.buf[..self.buf.len().min(record::FILE_HEADER_BYTES)])
    }

    /// Makes `need` bytes from `pos` readable (fewer at the end of the file).
    fn fill(&mut self, need: usize) -> io::Result<()> {
        if self.pos + need as u64 <= self.end() || self.end() >= self.size {
            return Ok(());
        }
        let drop = (self.keep.min(self.pos) - self.base) as usize;
        self.buf.drain(..drop);
        self.base += drop as u64;
        let end = (self.pos + need.max(WALK_CHUNK_BYTES) as u64).min(self.size);
        let old = self.buf.len();
        self.buf.resize((end - self.base) as usize, 0);
        self.file
            .read_exact_at(&mut self.buf[old..], self.base + old as u64)
    }

    fn next(&mut self) -> io::Result<Option<Step>> {
        if self.pos >= self.size {
            return Ok(None);
        }
        self.fill(RECORD_HEADER_BYTES)?;
        loop {
            let rest = &self.buf[(self.pos - self.base) as usize..];
            let declared = match rest {
                [a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]) as usize,
                _ => 0,
            };
            match record::scan(rest) {
                Scan::Record { kind, len, .. } => {
                    let at = self.pos;
                    self.keep = at;
                    self.pos += len as u64;
                    return Ok(Some(Step::Record { at, kind, len }));
                }
                Scan::Truncated if self.end() < self.size => {
                    self.fill(RECORD_HEADER_BYTES + declared)?;
                }
                Scan::Truncated | Scan::Corrupt => {
                    // Damage: the rest of the file decides where valid records resume.
                    self.keep = self.pos;
                    self.fill((self.size - self.pos) as usize)?;
                    let rel = (self.pos - self.base) as usize;
                    let at = self.pos;
                    return Ok(Some(match record::resync(&self.buf[rel..], 0) {
                        Some(next) => {
                            self.pos += next as u64;
                            Step::Damaged { at, next: self.pos }
                        }
                        None => {
                            self.pos = self.size;
                            Step::Torn { at }
                        }
                    }));
                }
            }
        }
    }

    /// The payload of the record at `at` of length `len` (one of the last two returned).
    fn payload(&self, at: u64, len: usize) -> &[u8] {
        let rel = (at - self.base) as usize;
        &self.buf[rel + RECORD_HEADER_BYTES..rel + len]
    }
}

/// The previous record, if it was a RELOCATED header: its offset and length.
type Header = Option<(u64, usize)>;

fn invalid(path: &Path, what: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {what}", path.display()),
    )
}

/// Whether segment `n` holds compaction's copies (a version-2 file between two heads).
fn is_copy_file(n: u32, version: u32) -> bool {
    version >= 2 && !n.is_multiple_of(HEAD_NUMBER_STEP)
}

impl Replay {
    /// First pass: replays every segment in `dir`, oldest first.
    pub fn run(dir: &Path, queues: HashSet<u32>) -> io::Result<(BTreeMap<u32, Segment>, Self)> {
        let mut numbers: Vec<u32> = fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
            .collect();
        numbers.sort_unstable();
        let mut r = Replay {
            report: RecoveryReport {
                segments: numbers.len(),
                ..Default::default()
            },
            queue_counts: HashMap::new(),
            redelivered: HashSet::new(),
            queues,
            scratch: Vec::new(),
        };
        let mut segments = BTreeMap::new();
        for (i, &n) in numbers.iter().enumerate() {
            let last = i + 1 == numbers.len();
            r.replay_file(dir, n, last, &mut segments)?;
        }
        let keys: HashSet<u32> = segments.keys().copied().collect();
        for s in segments.values_mut() {
            s.prune_deps(|n| keys.contains(&n));
        }
        r.report.messages = segments.values().map(|s| s.live_count as usize).sum();
        if !r.report.clean_shutdown && r.report.messages > 0 {
            info!("message store: unclean shutdown; recovered messages are marked redelivered");
        }
        Ok((segments, r))
    }

    fn replay_file(
        &mut self,
        dir: &Path,
        n: u32,
        last: bool,
        segments: &mut BTreeMap<u32, Segment>,
    ) -> io::Result<()> {
        let path = segment_path(dir, n);
        let mut w = FileWalk::open(&path)?;
        let head = w.header()?;
        let short = head.len() < record::FILE_HEADER_BYTES;
        let version = match record::check_file_header(head, MAGIC) {
            Some(v @ 1..=SEGMENT_VERSION) => v,
            Some(v) => {
                return Err(invalid(
                    &path,
                    format!("format version {v} is not supported"),
                ))
            }
            None if short && last => {
                // Created but its header never reached the disk: nothing was written in it.
                warn!(
                    "message store: {} has no complete header; removing it",
                    path.display()
                );
                fs::remove_file(&path)?;
                return Ok(());
            }
            None => return Err(invalid(&path, "not a coney segment".into())),
        };
        let copies = is_copy_file(n, version);
        segments.insert(n, Segment::new(w.size));
        let mut header: Header = None;
        while let Some(step) = w.next()? {
            match step {
                Step::Record { at, kind, len } => {
                    self.report.records += 1;
                    self.report.clean_shutdown = kind == format::KIND_CLEAN;
                    let h = header.take().filter(|h| h.0 + h.1 as u64 == at);
                    let h = h.and_then(|(h_at, h_len)| Relocated::parse(w.payload(h_at, h_len)));
                    if kind == format::KIND_RELOCATED {
                        header = Some((at, len));
                    }
                    self.apply(segments, n, len, kind, w.payload(at, len), h);
                }
                Step::Damaged { at, next } => {
                    error!(
                        "message store: {}: damaged record at byte {at}, skipped {} bytes",
                        path.display(),
                        next - at
                    );
                    self.report.corrupt_records += 1;
                    self.report.corrupt_bytes += next - at;
                    header = None;
                }
                Step::Torn { at } => {
                    let cut = w.size - at;
                    truncate(&path, at, cut)?;
                    if let Some(s) = segments.get_mut(&n) {
                        s.size = at;
                    }
                    self.report.truncated_bytes += cut;
                    // A copy file's tail is torn by a crash during compaction, and only there.
                    if !last && !copies {
                        self.report.corrupt_records += 1;
                        self.report.corrupt_bytes += cut;
                    }
                }
            }
        }
        Ok(())
    }

    /// Applies one record. `header`: the RELOCATED record just before it, if any.
    fn apply(
        &mut self,
        segments: &mut BTreeMap<u32, Segment>,
        n: u32,
        len: usize,
        kind: u8,
        payload: &[u8],
        header: Option<Relocated<'_>>,
    ) {
        match kind {
            format::KIND_RELOCATED if Relocated::parse(payload).is_none() => {
                self.malformed(n, "relocation")
            }
            k if format::is_publish(k) => match Publish::parse(k, payload) {
                Some(p) => match header {
                    Some(h) if h.publish_len as usize == len && format::segment_of(h.id) == n => {
                        self.relocate(segments, n, &h, &p)
                    }
                    _ if format::segment_of(p.id) == n => self.publish(segments, n, &p, None),
                    _ => self.malformed(n, "publish"),
                },
                None => self.malformed(n, "publish"),
            },
            format::KIND_ACK => {
                if let Some((id, queue)) = format::parse_ref(payload) {
                    self.ack(segments, n, id, queue);
                }
            }
            format::KIND_REDELIVERED => {
                if let Some(r) = format::parse_ref(payload) {
                    self.redelivered.insert(r);
                }
            }
            _ => {}
        }
    }

    fn malformed(&mut self, n: u32, what: &str) {
        self.report.corrupt_records += 1;
        error!("message store: segment {n}: malformed {what} record skipped");
    }

    /// A message (`reloc`: a copy with that header) is held by the queues its record names
    /// that still exist. Transient messages paged out of memory are not recovered.
    fn publish(
        &mut self,
        segments: &mut BTreeMap<u32, Segment>,
        n: u32,
        p: &Publish<'_>,
        reloc: Option<&Relocated<'_>>,
    ) {
        if !p.recover {
            return;
        }
        let id = reloc.map_or(p.id, |r| r.id);
        let named = |k: usize| reloc.is_none_or(|r| r.holds(k));
        let mut qs = std::mem::take(&mut self.scratch);
        qs.clear();
        let mut many = 0;
        for k in (0..p.queue_count()).filter(|&k| named(k)) {
            many += 1;
            if self.queues.contains(&p.queue(k)) {
                qs.push(p.queue(k));
            }
        }
        if !qs.is_empty() {
            if let Some(s) = segments.get_mut(&n) {
                s.hold(format::index_of(id), &qs, many > 1);
            }
            for q in &qs {
                *self.queue_counts.entry(*q).or_default() += 1;
            }
        }
        self.scratch = qs;
    }

    /// A copy supersedes the original (if its file is still there) and is held instead.
    fn relocate(
        &mut self,
        segments: &mut BTreeMap<u32, Segment>,
        n: u32,
        h: &Relocated<'_>,
        p: &Publish<'_>,
    ) {
        let old = format::segment_of(h.old_id);
        if let Some(s) = segments.get_mut(&old) {
            match s.take(format::index_of(h.old_id)) {
                Some(Some(many)) => many.iter().for_each(|q| self.uncount(*q)),
                Some(None) => {
                    if let Some(q) = (0..p.queue_count()).find(|&k| h.holds(k)) {
                        self.uncount(p.queue(q));
                    }
                }
                None => {}
            }
            if let Some(s) = segments.get_mut(&n) {
                s.add_dep(old);
            }
        }
        self.publish(segments, n, p, Some(h));
    }

    fn uncount(&mut self, q: u32) {
        if let Some(c) = self.queue_counts.get_mut(&q) {
            *c = c.saturating_sub(1);
        }
    }

    fn ack(&mut self, segments: &mut BTreeMap<u32, Segment>, n: u32, id: u64, queue: u32) {
        let target = format::segment_of(id);
        let Some(s) = segments.get_mut(&target) else {
            return;
        };
        if s.release(format::index_of(id), queue).is_some() {
            self.uncount(queue);
        }
        if target != n {
            if let Some(s) = segments.get_mut(&n) {
                s.add_dep(target);
            }
        }
    }

    /// Second pass: hands every held (message, queue) to `f`, file by file, and counts the
    /// bytes each file still holds.
    pub fn emit(mut self, log: &mut Log, mut f: impl FnMut(Recovered)) -> io::Result<()> {
        let numbers: Vec<u32> = log
            .segments
            .iter()
            .filter(|(n, s)| **n != log.head && s.live_count > 0)
            .map(|(n, _)| *n)
            .collect();
        for n in numbers {
            self.emit_file(log, n, &mut f)?;
        }
        self.redelivered = HashSet::new();
        log.reclaim = true;
        log.reconsider = true;
        Ok(())
    }

    fn emit_file(&self, log: &mut Log, n: u32, f: &mut impl FnMut(Recovered)) -> io::Result<()> {
        let clean = self.report.clean_shutdown;
        let mut w = FileWalk::open(&segment_path(&log.dir, n))?;
        w.header()?;
        let Some(seg) = log.segments.get_mut(&n) else {
            return Ok(());
        };
        let mut header: Header = None;
        while let Some(step) = w.next()? {
            let Step::Record { at, kind, len } = step else {
                header = None;
                continue;
            };
            let h = header.take().filter(|h| h.0 + h.1 as u64 == at);
            if kind == format::KIND_RELOCATED {
                header = Some((at, len));
            }
            let Some(p) = format::is_publish(kind)
                .then(|| Publish::parse(kind, w.payload(at, len)))
                .flatten()
            else {
                continue;
            };
            let reloc = h.and_then(|(h_at, h_len)| {
                Relocated::parse(w.payload(h_at, h_len)).map(|r| (r, h_at, h_len))
            });
            let loc = match &reloc {
                Some((r, h_at, h_len)) => location(r.id, *h_at, h_len + len),
                None if format::segment_of(p.id) == n => location(p.id, at, len),
                None => continue,
            };
            let index = format::index_of(loc.msg_id);
            if !seg.is_live(index) {
                continue;
            }
            seg.live_bytes += loc.len as u64;
            log.live_bytes += loc.len as u64;
            let meta = meta_of(&p, w.payload(at, len));
            let red = |q: u32| !clean || self.redelivered.contains(&(loc.msg_id, q));
            let m = |queue| Recovered {
                queue,
                loc,
                origin: p.id,
                redelivered: red(queue),
                enqueued_at_ms: p.enqueued_at_ms,
                meta,
            };
            match seg.holders(index) {
                Some(Holders::One) => {
                    let named = |k: &usize| reloc.as_ref().is_none_or(|r| r.0.holds(*k));
                    if let Some(k) = (0..p.queue_count()).find(named) {
                        f(m(p.queue(k)));
                    }
                }
                Some(Holders::Many(qs)) => qs.iter().for_each(|&q| f(m(q))),
                None => {}
            }
        }
        Ok(())
    }
}

/// What a queue needs to know of a recovered message without reading it back: its body
/// length, priority and expiration, from the publish record's `payload`.
fn meta_of(p: &Publish<'_>, payload: &[u8]) -> StoredMeta {
    let data = &payload[p.data_at..];
    let props_at = p.ex as usize + p.rk as usize;
    let body_at = props_at + p.props as usize;
    StoredMeta::parse(&data[props_at..body_at], data.len() - body_at)
}

/// Cuts a torn tail off a segment.
fn truncate(path: &Path, at: u64, cut: u64) -> io::Result<()> {
    warn!(
        "message store: {}: torn tail of {cut} bytes at byte {at}; truncating",
        path.display()
    );
    OpenOptions::new().write(true).open(path)?.set_len(at)
}

fn location(msg_id: u64, at: u64, len: usize) -> Location {
    Location {
        msg_id,
        offset: at as u32,
        len: len as u32,
    }
}
