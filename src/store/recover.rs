//! Recovery of the message log at start, in two passes over the segment files so that memory
//! follows what is still held, not what the log ever held: the first pass replays every
//! record into one bit per message (`Segment`), cutting a torn tail and skipping damage; the
//! second reads only the files that still hold messages and hands each (message, queue) to
//! the broker, which keeps a 32-byte location per message. Nothing per message is allocated
//! in between (a message routed to several queues keeps its list of them).

use super::format::{self, Publish, Relocated};
use super::log::{segment_path, Location, Log, Recovered, RecoveryReport, HEAD_NUMBER_STEP};
use super::log::{MAGIC, SEGMENT_VERSION};
use super::record::{self, Step, Walk};
use super::segment::{Holders, Segment};
use log::{error, info, warn};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
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

/// The previous record, if it was a RELOCATED header: its offset, length and payload.
type Header<'a> = Option<(usize, usize, Relocated<'a>)>;

fn invalid(path: &Path, what: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {what}", path.display()),
    )
}

/// Reads a whole file into `buf` (reused between files).
fn read_into(path: &Path, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    File::open(path)?.read_to_end(buf)?;
    Ok(())
}

/// Whether segment `n` holds compaction's copies (a version-2 file between two heads).
fn is_copy_file(n: u32, version: u32) -> bool {
    version >= 2 && n % HEAD_NUMBER_STEP != 0
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
        let mut buf = Vec::new();
        for (i, &n) in numbers.iter().enumerate() {
            let last = i + 1 == numbers.len();
            r.replay_file(dir, n, last, &mut buf, &mut segments)?;
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
        buf: &mut Vec<u8>,
        segments: &mut BTreeMap<u32, Segment>,
    ) -> io::Result<()> {
        let path = segment_path(dir, n);
        read_into(&path, buf)?;
        let version = match record::check_file_header(buf, MAGIC) {
            Some(v @ 1..=SEGMENT_VERSION) => v,
            Some(v) => {
                return Err(invalid(
                    &path,
                    format!("format version {v} is not supported"),
                ))
            }
            None if buf.len() < record::FILE_HEADER_BYTES && last => {
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
        segments.insert(n, Segment::new(buf.len() as u64));
        let mut header: Header<'_> = None;
        for step in Walk::new(buf, record::FILE_HEADER_BYTES) {
            match step {
                Step::Record {
                    at,
                    kind,
                    payload,
                    len,
                } => {
                    self.report.records += 1;
                    self.report.clean_shutdown = kind == format::KIND_CLEAN;
                    header = self.apply(segments, n, (at, len), kind, payload, header.take());
                }
                Step::Damaged { at, next } => {
                    error!(
                        "message store: {}: damaged record at byte {at}, skipped {} bytes",
                        path.display(),
                        next - at
                    );
                    self.report.corrupt_records += 1;
                    self.report.corrupt_bytes += (next - at) as u64;
                    header = None;
                }
                Step::Torn { at } => {
                    let cut = (buf.len() - at) as u64;
                    warn!(
                        "message store: {}: torn tail of {cut} bytes at byte {at}; truncating",
                        path.display()
                    );
                    OpenOptions::new()
                        .write(true)
                        .open(&path)?
                        .set_len(at as u64)?;
                    if let Some(s) = segments.get_mut(&n) {
                        s.size = at as u64;
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

    /// Applies one record; returns it if it is a RELOCATED header (its PUBLISH follows).
    fn apply<'a>(
        &mut self,
        segments: &mut BTreeMap<u32, Segment>,
        n: u32,
        (at, len): (usize, usize),
        kind: u8,
        payload: &'a [u8],
        header: Header<'a>,
    ) -> Header<'a> {
        match kind {
            format::KIND_RELOCATED => match Relocated::parse(payload) {
                Some(r) => return Some((at, len, r)),
                None => self.malformed(n, "relocation"),
            },
            format::KIND_PUBLISH => match Publish::parse(payload) {
                Some(p) => match header {
                    Some((h_at, h_len, h))
                        if h_at + h_len == at
                            && h.publish_len as usize == len
                            && format::segment_of(h.id) == n =>
                    {
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
        None
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
        if !p.persistent {
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
        let clean = self.report.clean_shutdown;
        let numbers: Vec<u32> = log
            .segments
            .iter()
            .filter(|(n, s)| **n != log.head && s.live_count > 0)
            .map(|(n, _)| *n)
            .collect();
        let mut buf = Vec::new();
        for n in numbers {
            read_into(&segment_path(&log.dir, n), &mut buf)?;
            let Some(seg) = log.segments.get_mut(&n) else {
                continue;
            };
            let mut header: Header<'_> = None;
            for step in Walk::new(&buf, record::FILE_HEADER_BYTES) {
                let Step::Record {
                    at,
                    kind,
                    payload,
                    len,
                } = step
                else {
                    header = None;
                    continue;
                };
                if kind == format::KIND_RELOCATED {
                    header = Relocated::parse(payload).map(|r| (at, len, r));
                    continue;
                }
                let h = header.take();
                if kind != format::KIND_PUBLISH {
                    continue;
                }
                let Some(p) = Publish::parse(payload) else {
                    continue;
                };
                let (loc, reloc) = match h {
                    Some((h_at, h_len, h)) if h_at + h_len == at => {
                        (location(h.id, h_at, h_len + len), Some(h))
                    }
                    _ if format::segment_of(p.id) == n => (location(p.id, at, len), None),
                    _ => continue,
                };
                if !seg.is_live(format::index_of(loc.msg_id)) {
                    continue;
                }
                seg.live_bytes += loc.len as u64;
                log.live_bytes += loc.len as u64;
                let Some(holders) = seg.holders(format::index_of(loc.msg_id)) else {
                    continue;
                };
                let red = |q: u32| !clean || self.redelivered.contains(&(loc.msg_id, q));
                let m = |queue| Recovered {
                    queue,
                    loc,
                    origin: p.id,
                    redelivered: red(queue),
                };
                match holders {
                    Holders::One => {
                        let named = |k: &usize| reloc.as_ref().is_none_or(|r| r.holds(*k));
                        if let Some(k) = (0..p.queue_count()).find(named) {
                            f(m(p.queue(k)));
                        }
                    }
                    Holders::Many(qs) => qs.iter().for_each(|&q| f(m(q))),
                }
            }
        }
        self.redelivered = HashSet::new();
        log.reclaim = true;
        log.reconsider = true;
        Ok(())
    }
}

fn location(msg_id: u64, at: usize, len: usize) -> Location {
    Location {
        msg_id,
        offset: at as u32,
        len: len as u32,
    }
}
