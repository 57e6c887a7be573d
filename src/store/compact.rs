//! Compaction: reclaims the disk that held messages pin. A segment is deleted only when
//! nothing in it is held and no older segment its acks name still exists (`log.rs`), so one
//! long-held message would keep its segment, and every later one whose acks chain back to it.
//! Compaction copies what a sparse segment still needs forward and deletes it:
//!
//! - held messages are copied into a new "copy file" numbered between the newest non-head
//!   segment and the head, each as a RELOCATED record (new id, old id, which queues still
//!   hold it) followed by its original PUBLISH record byte for byte. Replay meets the
//!   original, then the copy (which supersedes it), then every later ack (acks go only to
//!   the head, which is numbered above every copy file);
//! - acks in it that name a message in another segment that still exists are appended to
//!   the head again, so deleting it brings nothing back.
//!
//! Queues and channels keep the ids and locations they were given: the store translates an
//! old id to where its copy is (`Translation`, 12 bytes per copied message while its copy is
//! alive), so compaction never reaches into queues. A recovered queue gets the new ids, and
//! puts messages back in order by the id they were first published with.
//!
//! A pass does at most `COMPACTION_BYTES_PER_TURN` of reading and copying per loop turn
//! (a record larger than that is copied in pieces over several turns). Crash safety: the
//! sources are deleted only after the copy file and the head (with the re-appended acks) are
//! written and fdatasynced; a kill -9 before that leaves originals and some copies, and the
//! copies supersede their originals at replay, so nothing is lost or doubled. A pass starts
//! only when the segment files exceed twice the held bytes plus one segment, and takes the
//! oldest segments whose useful content is under half their size, so copying costs at most
//! what it frees.

use super::format::{self, Publish, Relocated, ACK_RECORD_BYTES};
use super::log::{create_segment, segment_path, Location, Log, HEAD_NUMBER_STEP};
use super::record::{self, Scan, RECORD_HEADER_BYTES};
use super::segment::{Holders, Segment};
use crate::limits::COMPACTION_SOURCES_MAX;
use log::{error, info};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Where the messages copied out of one segment went: the k-th copied index `old[k]` got id
/// `target << 32 | first + k`, at `locs[k]` (offset, length) in the target.
pub(super) struct Translation {
    pub target: u32,
    first: u32,
    old: Vec<u32>,
    locs: Vec<(u32, u32)>,
}

impl Translation {
    pub fn find(&self, index: u32) -> Option<Location> {
        let k = self.old.binary_search(&index).ok()?;
        Some(Location {
            msg_id: format::make_id(self.target, self.first + k as u32),
            offset: self.locs[k].0,
            len: self.locs[k].1,
        })
    }
}

/// A compaction in progress.
pub(super) struct Pass {
    pub target: u32,
    pub sources: Vec<u32>,
    /// The source being read, and the next byte of it to look at.
    at: usize,
    offset: u64,
    source: Option<File>,
    out: File,
    /// Bytes of the target holding committed copies.
    out_size: u64,
    next_index: u32,
    big: Option<BigCopy>,
    buf: Vec<u8>,
    out_buf: Vec<u8>,
    staged: Vec<Moved>,
}

/// A message copied into the target, to be accounted for once its bytes are written.
struct Moved {
    source: u32,
    index: u32,
    old_len: u64,
    offset: u32,
    len: u32,
    /// The queues named by the copy's RELOCATED record.
    queues: Vec<u32>,
}

/// A record too large for one turn, being copied piece by piece.
struct BigCopy {
    source: u32,
    index: u32,
    old_id: u64,
    old_len: u64,
    /// The PUBLISH record's place in the source and its length.
    publish_at: u64,
    publish_len: u64,
    copied: u64,
    /// Where the copy (RELOCATED then PUBLISH) starts in the target, and its header length.
    pair_at: u64,
    header_len: u64,
    /// The queues the PUBLISH names, and which of them the source record still named.
    queues: Vec<u32>,
    named: Vec<bool>,
}

impl Log {
    /// One loop turn's share of compaction: starts a pass if the disk holds too much that
    /// is not needed, or continues the one in progress.
    pub fn maintain(&mut self) {
        if self.replay.is_some() {
            return;
        }
        if self.pass.is_none() {
            // Whatever made the files outgrow what is held (acks anywhere, even in the head),
            // the first turn it holds looks for sources; then only changes to the candidates
            // (acks outside the head, rotations, deletions) make it look again.
            if self.disk_bytes <= 2 * self.live_bytes + self.segment_bytes {
                self.reconsider = true;
                return;
            }
            if !self.reconsider {
                return;
            }
            self.reconsider = false;
            let Some(sources) = self.choose_sources() else {
                return;
            };
            if let Err(e) = self.start_pass(sources) {
                error!("message store: cannot start compaction: {e}");
                return;
            }
        }
        let Some(mut pass) = self.pass.take() else {
            return;
        };
        match self.step(&mut pass) {
            Ok(false) => self.pass = Some(pass),
            Ok(true) => {
                if let Err(e) = self.finish_pass(pass) {
                    error!("message store: compaction could not finish: {e}");
                }
            }
            Err(e) => {
                error!("message store: compaction stopped: {e}");
                let damaged = e.kind() == io::ErrorKind::InvalidData;
                self.abandon_pass(pass, damaged);
            }
        }
    }

    /// Whether compaction has work for the next turn.
    pub fn busy(&self) -> bool {
        self.pass.is_some()
    }

    /// Bytes of `s` that must be kept: held records and acks naming other existing files.
    fn useful_bytes(&self, n: u32, s: &Segment) -> u64 {
        let acks: u64 = s
            .deps()
            .iter()
            .filter(|d| d.0 != n && self.segments.contains_key(&d.0))
            .map(|d| d.1 as u64)
            .sum();
        s.live_bytes + acks * ACK_RECORD_BYTES
    }

    fn choose_sources(&self) -> Option<Vec<u32>> {
        let candidates: Vec<(u32, u64, bool)> = self
            .segments
            .iter()
            .filter(|(n, s)| **n != self.head && !s.no_compact)
            .map(|(n, s)| (*n, self.useful_bytes(*n, s), s.live_count > 0))
            .filter(|(n, useful, _)| useful * 2 < self.segments[n].size)
            .collect();
        let is_candidate = |t: u32| candidates.iter().any(|c| c.0 == t);
        // A file holding only acks whose targets are themselves compacted needs no copy: it
        // goes once they do. The root of such a chain must be copied.
        let root = candidates.iter().position(|&(n, useful, live)| {
            live || (useful > 0
                && self.segments[&n]
                    .deps()
                    .iter()
                    .any(|d| self.segments.contains_key(&d.0) && !is_candidate(d.0)))
        })?;
        let mut sources = vec![candidates[root].0];
        let mut total = candidates[root].1;
        // The segment just below the head holds what consumers are working through: its
        // messages are likely acked soon, so it is not copied along unless it is the root.
        let newest = self.segments.range(..self.head).next_back().map(|e| *e.0);
        for &(n, useful, live) in &candidates[root + 1..] {
            if sources.len() >= COMPACTION_SOURCES_MAX {
                break;
            }
            if live && Some(n) != newest && total + useful <= self.segment_bytes {
                sources.push(n);
                total += useful;
            }
        }
        Some(sources)
    }

    fn start_pass(&mut self, sources: Vec<u32>) -> io::Result<()> {
        let floor = |l: &Log| {
            let below_head = l.segments.range(..l.head).next_back().map_or(0, |e| *e.0);
            below_head.max(l.last_copy)
        };
        if floor(self) + 1 >= self.head {
            self.rotate();
        }
        let target = floor(self) + 1;
        if target >= self.head || target % HEAD_NUMBER_STEP == 0 {
            return Err(io::Error::other("no file number free below the head"));
        }
        self.last_copy = target;
        let (out, size) = create_segment(&self.dir, target)?;
        self.segments.insert(target, Segment::new(size));
        self.disk_bytes += size;
        info!(
            "message store: compacting segments {sources:?} into {target} ({} MB in files, {} MB held)",
            self.disk_bytes >> 20,
            self.live_bytes >> 20
        );
        self.pass = Some(Pass {
            target,
            sources,
            at: 0,
            offset: record::FILE_HEADER_BYTES as u64,
            source: None,
            out,
            out_size: size,
            next_index: 0,
            big: None,
            buf: Vec::new(),
            out_buf: Vec::new(),
            staged: Vec::new(),
        });
        Ok(())
    }

    /// Does up to one turn's work; returns true once every source has been read.
    fn step(&mut self, p: &mut Pass) -> io::Result<bool> {
        let mut budget = self.turn_bytes;
        while budget > 0 {
            if p.big.is_some() {
                budget -= self.continue_big(p, budget)?;
                continue;
            }
            let Some(&src) = p.sources.get(p.at) else {
                return Ok(true);
            };
            let size = self.segments.get(&src).map_or(0, |s| s.size);
            if p.offset >= size {
                p.at += 1;
                p.offset = record::FILE_HEADER_BYTES as u64;
                p.source = None;
                continue;
            }
            let used = self.step_chunk(p, src, size, budget)?;
            if used == 0 {
                break;
            }
            budget = budget.saturating_sub(used);
        }
        Ok(p.big.is_none() && p.at >= p.sources.len())
    }

    /// Reads up to `budget` bytes of `src` and handles the whole records in them; returns
    /// the bytes consumed (0: nothing fits this turn).
    fn step_chunk(
        &mut self,
        p: &mut Pass,
        src: u32,
        size: u64,
        budget: usize,
    ) -> io::Result<usize> {
        if p.source.is_none() {
            p.source = Some(File::open(segment_path(&self.dir, src))?);
        }
        let want = budget.min((size - p.offset) as usize);
        p.buf.resize(want, 0);
        if let Some(f) = &p.source {
            f.read_exact_at(&mut p.buf, p.offset)?;
        }
        let buf = std::mem::take(&mut p.buf);
        let mut used = 0;
        let result = loop {
            match self.next_record(p, src, &buf[used..], used == 0 && budget == self.turn_bytes) {
                Ok(Some(n)) => used += n,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
            if used >= buf.len() {
                break Ok(());
            }
        };
        p.buf = buf;
        result?;
        self.commit(p)?;
        p.offset += used as u64;
        Ok(used)
    }

    /// Handles the record (or RELOCATED + PUBLISH pair) at the start of `buf`; returns its
    /// length, or None if it is not wholly in `buf` (a large one starts a piecewise copy
    /// when `fresh`, at the start of a turn's budget).
    fn next_record(
        &mut self,
        p: &mut Pass,
        src: u32,
        buf: &[u8],
        fresh: bool,
    ) -> io::Result<Option<usize>> {
        match record::scan(buf) {
            Scan::Record { kind, payload, len } => match kind {
                k if format::is_publish(k) => {
                    let pb = Publish::parse(k, payload).ok_or_else(|| damaged(src))?;
                    if format::segment_of(pb.id) == src {
                        self.stage(p, src, format::index_of(pb.id), &buf[..len], &pb, None, len);
                    }
                    Ok(Some(len))
                }
                format::KIND_RELOCATED => self.next_pair(p, src, buf, payload, len, fresh),
                format::KIND_ACK => {
                    let (id, queue) = format::parse_ref(payload).ok_or_else(|| damaged(src))?;
                    let t = format::segment_of(id);
                    if t != src && !p.sources.contains(&t) && self.segments.contains_key(&t) {
                        self.ack_record(id, queue);
                    }
                    Ok(Some(len))
                }
                _ => Ok(Some(len)),
            },
            Scan::Truncated if fresh => self.start_big(p, src, buf, None).map(|_| None),
            Scan::Truncated => Ok(None),
            Scan::Corrupt => Err(damaged(src)),
        }
    }

    fn next_pair(
        &mut self,
        p: &mut Pass,
        src: u32,
        buf: &[u8],
        payload: &[u8],
        h_len: usize,
        fresh: bool,
    ) -> io::Result<Option<usize>> {
        let h = Relocated::parse(payload).ok_or_else(|| damaged(src))?;
        match record::scan(&buf[h_len..]) {
            Scan::Record {
                kind,
                payload: pp,
                len,
            } if format::is_publish(kind) && len == h.publish_len as usize => {
                let pb = Publish::parse(kind, pp).ok_or_else(|| damaged(src))?;
                let whole = h_len + len;
                let index = format::index_of(h.id);
                self.stage(p, src, index, &buf[h_len..whole], &pb, Some(&h), whole);
                Ok(Some(whole))
            }
            // A header whose record was torn by a crash during an earlier compaction.
            Scan::Record { .. } | Scan::Corrupt => Ok(Some(h_len)),
            Scan::Truncated if fresh => self.start_big(p, src, buf, Some((h, h_len))).map(|_| None),
            Scan::Truncated => Ok(None),
        }
    }

    /// Which queues of `pb` still hold message `index` of `src` (None: no queue does).
    fn holds(
        &self,
        src: u32,
        index: u32,
        pb: &Publish<'_>,
        named: &dyn Fn(usize) -> bool,
    ) -> Option<Vec<bool>> {
        let holders = self.segments.get(&src)?.holders(index)?;
        Some(
            (0..pb.queue_count())
                .map(|k| match holders {
                    Holders::One => named(k),
                    Holders::Many(qs) => qs.contains(&pb.queue(k)),
                })
                .collect(),
        )
    }

    /// Writes a copy of a held message into the pass's buffer.
    #[allow(clippy::too_many_arguments)]
    fn stage(
        &mut self,
        p: &mut Pass,
        src: u32,
        index: u32,
        publish: &[u8],
        pb: &Publish<'_>,
        h: Option<&Relocated<'_>>,
        old_len: usize,
    ) {
        let named = |k: usize| h.is_none_or(|h| h.holds(k));
        let Some(holds) = self.holds(src, index, pb, &named) else {
            return;
        };
        let id = format::make_id(p.target, p.next_index + p.staged.len() as u32);
        let old_id = format::make_id(src, index);
        let offset = p.out_size + p.out_buf.len() as u64;
        let start = p.out_buf.len();
        record::write_record(&mut p.out_buf, format::KIND_RELOCATED, |b| {
            format::encode_relocated(b, id, old_id, publish.len() as u32, &holds)
        });
        p.out_buf.extend_from_slice(publish);
        let queues = (0..holds.len())
            .filter(|&k| holds[k])
            .map(|k| pb.queue(k))
            .collect();
        p.staged.push(Moved {
            source: src,
            index,
            old_len: old_len as u64,
            offset: offset as u32,
            len: (p.out_buf.len() - start) as u32,
            queues,
        });
    }

    /// Writes the staged copies to the target, then moves the messages to them.
    fn commit(&mut self, p: &mut Pass) -> io::Result<()> {
        if !p.out_buf.is_empty() {
            if let Err(e) = p.out.write_all_at(&p.out_buf, p.out_size) {
                p.out_buf.clear();
                p.staged.clear();
                return Err(e);
            }
            p.out_size += p.out_buf.len() as u64;
            self.disk_bytes += p.out_buf.len() as u64;
            if let Some(t) = self.segments.get_mut(&p.target) {
                t.size = p.out_size;
            }
            p.out_buf.clear();
        }
        for m in std::mem::take(&mut p.staged) {
            self.move_message(p, m);
        }
        Ok(())
    }

    /// The copy of a message is written: acks and reads now go to it.
    fn move_message(&mut self, p: &mut Pass, m: Moved) {
        let index = p.next_index;
        p.next_index += 1;
        if let Some(s) = self.segments.get_mut(&m.source) {
            s.take(m.index);
            s.live_bytes = s.live_bytes.saturating_sub(m.old_len);
        }
        if let Some(t) = self.segments.get_mut(&p.target) {
            t.hold(index, &m.queues, m.queues.len() > 1);
            t.live_bytes += m.len as u64;
            t.add_dep(m.source);
        }
        self.live_bytes = (self.live_bytes + m.len as u64).saturating_sub(m.old_len);
        let ts = self.translations.entry(m.source).or_default();
        if ts.last().is_none_or(|t| t.target != p.target) {
            ts.push(Translation {
                target: p.target,
                first: index,
                old: Vec::new(),
                locs: Vec::new(),
            });
        }
        if let Some(t) = ts.last_mut() {
            debug_assert_eq!(t.first + t.old.len() as u32, index);
            t.old.push(m.index);
            t.locs.push((m.offset, m.len));
        }
    }

    /// Starts copying a record that does not fit in one turn: checks it is held, writes its
    /// RELOCATED header, and leaves the PUBLISH to `continue_big`.
    fn start_big(
        &mut self,
        p: &mut Pass,
        src: u32,
        buf: &[u8],
        h: Option<(Relocated<'_>, usize)>,
    ) -> io::Result<()> {
        let h_len = h.as_ref().map_or(0, |h| h.1);
        let rec = &buf[h_len..];
        if rec.len() < RECORD_HEADER_BYTES {
            return Err(damaged(src));
        }
        let len = u32::from_be_bytes([rec[0], rec[1], rec[2], rec[3]]) as u64
            + RECORD_HEADER_BYTES as u64;
        let size = self.segments.get(&src).map_or(0, |s| s.size);
        if !format::is_publish(rec[8]) || p.offset + h_len as u64 + len > size {
            return Err(damaged(src));
        }
        let pb =
            Publish::parse_head(rec[8], &rec[RECORD_HEADER_BYTES..]).ok_or_else(|| damaged(src))?;
        let (old_id, named): (u64, Vec<bool>) = match &h {
            Some((h, _)) => (h.id, (0..pb.queue_count()).map(|k| h.holds(k)).collect()),
            None => (pb.id, vec![true; pb.queue_count()]),
        };
        let index = format::index_of(old_id);
        let publish_at = p.offset + h_len as u64;
        let Some(holds) = self.holds(src, index, &pb, &|k| named[k]) else {
            // Not held: skip it whole.
            p.offset = publish_at + len;
            return Ok(());
        };
        let id = format::make_id(p.target, p.next_index);
        let mut header = Vec::new();
        record::write_record(&mut header, format::KIND_RELOCATED, |b| {
            format::encode_relocated(b, id, old_id, len as u32, &holds)
        });
        p.out.write_all_at(&header, p.out_size)?;
        p.big = Some(BigCopy {
            source: src,
            index,
            old_id,
            old_len: h_len as u64 + len,
            publish_at,
            publish_len: len,
            copied: 0,
            pair_at: p.out_size,
            header_len: header.len() as u64,
            queues: pb.queues().collect(),
            named,
        });
        Ok(())
    }

    /// Copies the next piece of a large record; returns the bytes of budget used.
    fn continue_big(&mut self, p: &mut Pass, budget: usize) -> io::Result<usize> {
        let Some(mut b) = p.big.take() else {
            return Ok(0);
        };
        if p.source.is_none() {
            p.source = Some(File::open(segment_path(&self.dir, b.source))?);
        }
        let n = budget.min((b.publish_len - b.copied) as usize);
        p.buf.resize(n, 0);
        if let Some(f) = &p.source {
            f.read_exact_at(&mut p.buf, b.publish_at + b.copied)?;
        }
        p.out
            .write_all_at(&p.buf, b.pair_at + b.header_len + b.copied)?;
        b.copied += n as u64;
        if b.copied < b.publish_len {
            p.big = Some(b);
            return Ok(n);
        }
        self.finish_big(p, b)?;
        Ok(n.max(1))
    }

    /// The large record is copied: keep it if it is still held (with today's holders).
    fn finish_big(&mut self, p: &mut Pass, b: BigCopy) -> io::Result<()> {
        p.offset = b.publish_at + b.publish_len;
        let holders = self
            .segments
            .get(&b.source)
            .and_then(|s| s.holders(b.index));
        let holds: Vec<bool> = match holders {
            None => {
                p.out.set_len(b.pair_at)?;
                return Ok(());
            }
            Some(Holders::One) => b.named.clone(),
            Some(Holders::Many(qs)) => b.queues.iter().map(|q| qs.contains(q)).collect(),
        };
        let mut header = Vec::new();
        let id = format::make_id(p.target, p.next_index);
        record::write_record(&mut header, format::KIND_RELOCATED, |h| {
            format::encode_relocated(h, id, b.old_id, b.publish_len as u32, &holds)
        });
        p.out.write_all_at(&header, b.pair_at)?;
        let len = b.header_len + b.publish_len;
        p.out_size += len;
        self.disk_bytes += len;
        if let Some(t) = self.segments.get_mut(&p.target) {
            t.size = p.out_size;
        }
        let queues = (0..holds.len())
            .filter(|&k| holds[k])
            .map(|k| b.queues[k])
            .collect();
        let m = Moved {
            source: b.source,
            index: b.index,
            old_len: b.old_len,
            offset: b.pair_at as u32,
            len: len as u32,
            queues,
        };
        self.move_message(p, m);
        Ok(())
    }

    /// Every source is read: make the copies and the re-appended acks durable, then delete
    /// the sources.
    fn finish_pass(&mut self, p: Pass) -> io::Result<()> {
        p.out.sync_data()?;
        self.crash_point();
        self.write_pending()?;
        self.sync_written()?;
        self.crash_point();
        for &n in &p.sources {
            if self.segments.get(&n).is_some_and(|s| s.live_count == 0) {
                self.remove_segment(n)?;
                self.crash_point();
            } else {
                error!("message store: segment {n} still holds messages after compaction; kept");
            }
        }
        info!(
            "message store: compaction into {} done: {} messages copied, {} MB in files, {} MB held",
            p.target,
            p.next_index,
            self.disk_bytes >> 20,
            self.live_bytes >> 20
        );
        if p.next_index == 0 {
            self.remove_segment(p.target)?;
        }
        self.reclaim = true;
        self.reconsider = true;
        Ok(())
    }

    /// Stops a pass after an error: the copies made so far stay; `damaged` marks the source
    /// being read as not to be compacted again.
    fn abandon_pass(&mut self, p: Pass, damaged: bool) {
        if let Some(s) = p.sources.get(p.at).and_then(|n| self.segments.get_mut(n)) {
            s.no_compact |= damaged;
        }
        self.stop_pass(p);
    }

    /// Ends a pass where it is: the copies made so far stay (they supersede their originals,
    /// which stay too); a partial copy is cut off.
    pub(super) fn stop_pass(&mut self, p: Pass) {
        if let Err(e) = p.out.set_len(p.out_size) {
            error!("message store: cannot cut segment {}: {e}", p.target);
        }
        if p.next_index == 0 {
            let _ = self.remove_segment(p.target);
        }
        self.reclaim = true;
    }
}

fn damaged(n: u32) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("segment {n}: damaged record"),
    )
}
