//! Durable definitions as a snapshot plus an append-only journal, in the data directory:
//! `definitions.dat` (the snapshot, generation G) and `definitions.NNNNNNNNNN.jnl` (the
//! changes made since snapshot G began, one journal per generation). A change costs one
//! record appended to the journal; the reactor's per-turn sync writes and fdatasyncs every
//! change of the turn at once, before any reply of the turn goes out.
//!
//! When the journal outgrows the snapshot, appends move to journal G+1 and snapshot G+1 is
//! built from snapshot G and the older journals, a slice per loop turn: their records are
//! visited newest first (`Fold`), and each one that is the latest word on its entity and
//! not a deletion (nor a binding whose source or destination was deleted after it) is
//! copied as it is into `definitions.dat.tmp`. That file is fdatasynced, renamed over the
//! snapshot, the directory fsynced, and only then are the older journals deleted. A crash at
//! any point leaves snapshot G with journals G and G+1, or snapshot G+1 (older journals are
//! then ignored and deleted), and loading is the same fold over whatever is there. So the
//! cost of a change does not grow with the number of definitions, and nothing is held in
//! memory for it but a 16-byte hash per entity while a snapshot is being built.
//!
//! A snapshot of format version 1 (a `definitions.dat` written before the journal existed)
//! is read the same way and replaced by a version 2 snapshot at the first start.

use super::definitions::*;
use super::record::{self, Step, Walk};
use crate::limits::{DEFINITIONS_JOURNAL_MIN_BYTES, DEFINITIONS_SNAPSHOT_BYTES_PER_TURN};
use log::{error, info, warn};
use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::hash::BuildHasher;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const SNAPSHOT_MAGIC: &[u8; 8] = b"CONEYDEF";
const JOURNAL_MAGIC: &[u8; 8] = b"CONEYDJL";
/// Version of snapshots written now; version 1 is read too.
const SNAPSHOT_VERSION: u32 = 2;
const JOURNAL_VERSION: u32 = 1;
const TMP_NAME: &str = "definitions.dat.tmp";

fn journal_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("definitions.{generation:010}.jnl"))
}

fn invalid(path: &Path, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {what}", path.display()),
    )
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Which records of a history of definitions still matter, decided newest first.
pub(super) struct Fold {
    keys: (RandomState, RandomState),
    /// Entities (and bindings) a newer record has already decided.
    seen: HashSet<u128>,
    /// Queues and exchanges deleted by a newer record: older bindings to them are gone.
    deleted_queues: HashSet<u128>,
    deleted_exchanges: HashSet<u128>,
    pub next_queue_id: u32,
}

impl Fold {
    pub fn new() -> Self {
        Fold {
            keys: (RandomState::new(), RandomState::new()),
            seen: HashSet::new(),
            deleted_queues: HashSet::new(),
            deleted_exchanges: HashSet::new(),
            next_queue_id: 1,
        }
    }

    /// A 128-bit hash under random keys: names come from clients, so collisions can be
    /// neither found nor expected. An entity is named by its vhost and its name.
    fn key(&self, tag: u8, vhost: &[u8], bytes: &[u8]) -> u128 {
        let a = self.keys.0.hash_one((tag, vhost, bytes)) as u128;
        let b = self.keys.1.hash_one((tag, vhost, bytes)) as u128;
        (a << 64) | b
    }

    /// Visits one record (newest first); returns whether it belongs in a snapshot, or None
    /// if it is malformed.
    pub fn keep(&mut self, kind: u8, payload: &[u8]) -> Option<bool> {
        match kind {
            KIND_NEXT_QUEUE_ID => {
                let id = record::Cursor::new(payload).u32()?;
                self.next_queue_id = self.next_queue_id.max(id);
                Some(false)
            }
            KIND_GENERATION => Some(false),
            KIND_QUEUE | KIND_QUEUE_DELETED => {
                let (vhost, name) = parse_entity(kind, payload)?;
                let k = self.key(b'q', vhost, name);
                if kind == KIND_QUEUE {
                    let id = parse_queue(payload)?.store_id;
                    self.next_queue_id = self.next_queue_id.max(id.saturating_add(1));
                } else {
                    self.deleted_queues.insert(k);
                }
                Some(self.seen.insert(k) && kind == KIND_QUEUE)
            }
            KIND_EXCHANGE | KIND_EXCHANGE_DELETED => {
                let (vhost, name) = parse_entity(kind, payload)?;
                let k = self.key(b'x', vhost, name);
                if kind == KIND_EXCHANGE_DELETED {
                    self.deleted_exchanges.insert(k);
                }
                Some(self.seen.insert(k) && kind == KIND_EXCHANGE)
            }
            KIND_DELAYED_EXCHANGE => {
                let d = parse_delayed_exchange(payload)?;
                self.next_queue_id = self.next_queue_id.max(d.store_id.saturating_add(1));
                let gone = self
                    .deleted_exchanges
                    .contains(&self.key(b'x', &d.vhost, &d.exchange));
                Some(self.seen.insert(self.key(b'd', &d.vhost, &d.exchange)) && !gone)
            }
            KIND_BINDING | KIND_UNBINDING => {
                let b = parse_binding(payload)?;
                // A binding is named by all its fields, vhost included (a record written
                // before vhosts names "/" implicitly).
                let mut whole = Vec::with_capacity(payload.len() + 8);
                put_binding_key(&mut whole, b);
                if !self.seen.insert(self.key(b'b', b.vhost, &whole)) || kind == KIND_UNBINDING {
                    return Some(false);
                }
                let source_gone = self
                    .deleted_exchanges
                    .contains(&self.key(b'x', b.vhost, b.source));
                let dest_gone = if b.to_exchange {
                    self.deleted_exchanges
                        .contains(&self.key(b'x', b.vhost, b.destination))
                } else {
                    self.deleted_queues
                        .contains(&self.key(b'q', b.vhost, b.destination))
                };
                Some(!source_gone && !dest_gone)
            }
            // Each ACCESS record holds all the access tables: only the newest counts.
            KIND_ACCESS => Some(self.seen.insert(self.key(b'a', b"", b""))),
            KIND_POLICIES => Some(self.seen.insert(self.key(b'p', b"", b""))),
            _ => None,
        }
    }
}

/// A binding's identity without its vhost, whether or not its record ends with one.
fn put_binding_key(out: &mut Vec<u8>, b: BindingRef<'_>) {
    for part in [b.source, b.destination, b.key, b.arguments] {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part);
    }
    out.push(b.to_exchange as u8);
}

/// A file's records: (offset, length, kind).
type Index = Vec<(u32, u32, u8)>;

/// Reads a definitions file whole. `torn_ok`: a torn tail is cut off (the newest journal,
/// after a crash mid-append); anything else damaged is an error.
fn read_file(
    path: &Path,
    magic: &[u8; 8],
    versions: std::ops::RangeInclusive<u32>,
    torn_ok: bool,
) -> io::Result<(Vec<u8>, u32, Index)> {
    let buf = fs::read(path)?;
    let version = match record::check_file_header(&buf, magic) {
        Some(v) if versions.contains(&v) => v,
        Some(v) => {
            return Err(invalid(
                path,
                format!("format version {v} is not supported"),
            ))
        }
        None => return Err(invalid(path, "not a coney definitions file")),
    };
    let mut index = Vec::new();
    for step in Walk::new(&buf, record::FILE_HEADER_BYTES) {
        match step {
            Step::Record { at, kind, len, .. } => index.push((at as u32, len as u32, kind)),
            Step::Torn { at } if torn_ok => {
                warn!(
                    "{}: torn tail of {} bytes at byte {at}; truncating",
                    path.display(),
                    buf.len() - at
                );
                OpenOptions::new()
                    .write(true)
                    .open(path)?
                    .set_len(at as u64)?;
                let mut buf = buf;
                buf.truncate(at);
                return Ok((buf, version, index));
            }
            Step::Torn { at } | Step::Damaged { at, .. } => {
                return Err(invalid(path, format!("damaged record at byte {at}")))
            }
        }
    }
    Ok((buf, version, index))
}

/// The journals in `dir` by generation, oldest first.
fn journals(dir: &Path) -> io::Result<Vec<u64>> {
    let mut gens: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let n = name
                .to_str()?
                .strip_prefix("definitions.")?
                .strip_suffix(".jnl")?;
            n.parse().ok()
        })
        .collect();
    gens.sort_unstable();
    Ok(gens)
}

/// Creates journal `generation` with its header, durably.
fn create_journal(dir: &Path, generation: u64) -> io::Result<(File, u64)> {
    let path = journal_path(dir, generation);
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    f.write_all(&record::file_header_version(JOURNAL_MAGIC, JOURNAL_VERSION))?;
    f.sync_all()?;
    sync_dir(dir)?;
    Ok((f, record::FILE_HEADER_BYTES as u64))
}

pub struct Journal {
    dir: PathBuf,
    /// Generation of the journal appended to.
    generation: u64,
    file: File,
    /// Bytes of that journal written.
    size: u64,
    pending: Vec<u8>,
    snapshot_bytes: u64,
    snapshot: Option<Snapshot>,
    /// `DEFINITIONS_JOURNAL_MIN_BYTES` and `DEFINITIONS_SNAPSHOT_BYTES_PER_TURN`, smaller in
    /// unit tests.
    min_bytes: u64,
    slice_bytes: usize,
}

impl Journal {
    /// Loads the definitions in `dir` (empty ones if there are none yet) and opens the
    /// journal for appending. A version 1 snapshot is converted.
    pub fn open(dir: &Path) -> io::Result<(Journal, Definitions)> {
        let _ = fs::remove_file(dir.join(TMP_NAME));
        let snap_path = dir.join(FILE_NAME);
        let mut files: Vec<(Vec<u8>, Index)> = Vec::new();
        let (mut generation, mut version) = (0, SNAPSHOT_VERSION);
        if snap_path.exists() {
            let (buf, v, index) =
                read_file(&snap_path, SNAPSHOT_MAGIC, 1..=SNAPSHOT_VERSION, false)?;
            version = v;
            if let Some(&(at, len, _)) = index.iter().find(|r| r.2 == KIND_GENERATION) {
                let payload = &buf[at as usize + record::RECORD_HEADER_BYTES..(at + len) as usize];
                generation = record::Cursor::new(payload)
                    .u64()
                    .ok_or_else(|| invalid(&snap_path, "malformed generation"))?;
            }
            files.push((buf, index));
        }
        let snapshot_bytes = files.first().map_or(0, |f| f.0.len() as u64);
        let gens = journals(dir)?;
        for &g in gens.iter().filter(|&&g| g < generation) {
            fs::remove_file(journal_path(dir, g))?;
        }
        let live: Vec<u64> = gens.into_iter().filter(|&g| g >= generation).collect();
        for (i, &g) in live.iter().enumerate() {
            let path = journal_path(dir, g);
            let newest = i + 1 == live.len();
            if newest && fs::metadata(&path)?.len() < record::FILE_HEADER_BYTES as u64 {
                // Created by a crash-interrupted snapshot start; nothing was written to it.
                fs::remove_file(&path)?;
                continue;
            }
            let (buf, _, index) = read_file(&path, JOURNAL_MAGIC, 1..=JOURNAL_VERSION, newest)?;
            files.push((buf, index));
        }
        let defs = fold_files(&files).ok_or_else(|| invalid(&snap_path, "malformed record"))?;
        let newest = journals(dir)?.last().copied();
        let (file, size, current) = match newest {
            Some(g) => {
                let f = OpenOptions::new().append(true).open(journal_path(dir, g))?;
                let size = f.metadata()?.len();
                (f, size, g)
            }
            None => {
                let (f, size) = create_journal(dir, generation)?;
                (f, size, generation)
            }
        };
        let mut j = Journal {
            dir: dir.to_path_buf(),
            generation: current,
            file,
            size,
            pending: Vec::new(),
            snapshot_bytes,
            snapshot: None,
            min_bytes: DEFINITIONS_JOURNAL_MIN_BYTES,
            slice_bytes: DEFINITIONS_SNAPSHOT_BYTES_PER_TURN,
        };
        if snapshot_bytes > 0 && version < SNAPSHOT_VERSION {
            info!(
                "{}: converting definitions to format version {SNAPSHOT_VERSION}",
                snap_path.display()
            );
            j.write_snapshot_now(&defs)?;
        }
        Ok((j, defs))
    }

    /// Appends a change; it reaches the disk with the turn's `sync`.
    pub fn record(&mut self, change: DefChange<'_>) {
        change.encode(&mut self.pending);
    }

    pub fn has_unsynced(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes and fdatasyncs every change of the turn. On failure the changes are kept and
    /// written again at the next sync: snapshots are built from the files, so a change that
    /// never reached the journal would never reach the disk at all.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let result = self
            .file
            .write_all(&self.pending)
            .and_then(|()| self.file.sync_data());
        match result {
            Ok(()) => {
                self.size += self.pending.len() as u64;
                self.pending.clear();
                Ok(())
            }
            Err(e) => {
                // Cut a partial write off so the journal ends on a whole record, and append
                // from there.
                let _ = self.file.set_len(self.size);
                let _ = self.file.seek(SeekFrom::Start(self.size));
                Err(e)
            }
        }
    }

    /// Starts a new generation: appends go to a new journal from now on.
    fn next_generation(&mut self) -> io::Result<u64> {
        let next = self.generation + 1;
        let (file, size) = create_journal(&self.dir, next)?;
        self.file = file;
        self.size = size;
        self.generation = next;
        Ok(next)
    }

    /// Replaces the snapshot with `defs` in one go (at start only).
    fn write_snapshot_now(&mut self, defs: &Definitions) -> io::Result<()> {
        let generation = self.next_generation()?;
        let mut out = snapshot_head(generation);
        let encoded = defs.encode_version_1();
        out.extend_from_slice(&encoded[record::FILE_HEADER_BYTES..]);
        let tmp = self.dir.join(TMP_NAME);
        let mut f = File::create(&tmp)?;
        f.write_all(&out)?;
        f.sync_all()?;
        self.install_snapshot(out.len() as u64, generation)
    }

    /// The temporary snapshot of `generation` is complete and synced: make it the snapshot,
    /// then forget the journals it covers.
    fn install_snapshot(&mut self, bytes: u64, generation: u64) -> io::Result<()> {
        fs::rename(self.dir.join(TMP_NAME), self.dir.join(FILE_NAME))?;
        sync_dir(&self.dir)?;
        for g in journals(&self.dir)?.into_iter().filter(|&g| g < generation) {
            fs::remove_file(journal_path(&self.dir, g))?;
        }
        self.snapshot_bytes = bytes;
        Ok(())
    }

    /// Whether a snapshot is being built (work for the next turns).
    pub fn busy(&self) -> bool {
        self.snapshot.is_some()
    }

    /// One loop turn's share of snapshot work: starts one when the journal has outgrown the
    /// snapshot, or continues the one in progress.
    pub fn maintain(&mut self) {
        if self.snapshot.is_none() {
            let limit = self.snapshot_bytes.max(self.min_bytes);
            if self.size <= limit || !self.pending.is_empty() {
                return;
            }
            if let Err(e) = self.start_snapshot() {
                error!("definitions: cannot start a snapshot: {e}");
                return;
            }
        }
        let Some(mut s) = self.snapshot.take() else {
            return;
        };
        match s.step() {
            Ok(false) => self.snapshot = Some(s),
            Ok(true) => {
                let generation = s.generation;
                match s
                    .finish()
                    .and_then(|bytes| self.install_snapshot(bytes, generation))
                {
                    Ok(()) => info!("definitions: snapshot {generation} written"),
                    Err(e) => error!("definitions: snapshot {generation} failed: {e}"),
                }
            }
            Err(e) => {
                error!("definitions: snapshot {} abandoned: {e}", s.generation);
                let _ = fs::remove_file(self.dir.join(TMP_NAME));
            }
        }
    }

    fn start_snapshot(&mut self) -> io::Result<()> {
        let mut inputs = Vec::new();
        let snap = self.dir.join(FILE_NAME);
        if snap.exists() {
            inputs.push(snap);
        }
        for g in journals(&self.dir)?
            .into_iter()
            .filter(|&g| g <= self.generation)
        {
            inputs.push(journal_path(&self.dir, g));
        }
        let journal_bytes = self.size;
        let generation = self.next_generation()?;
        info!(
            "definitions: building snapshot {generation} from {} files (journal of {journal_bytes} bytes)",
            inputs.len()
        );
        let mut tmp = File::create(self.dir.join(TMP_NAME))?;
        let head = snapshot_head(generation);
        tmp.write_all(&head)?;
        let mut files = Vec::new();
        for p in &inputs {
            let f = File::open(p)?;
            let size = f.metadata()?.len();
            files.push((f, size));
        }
        self.snapshot = Some(Snapshot {
            generation,
            slice_bytes: self.slice_bytes,
            files,
            file: 0,
            offset: record::FILE_HEADER_BYTES as u64,
            index: Vec::new(),
            folding: false,
            fold: Fold::new(),
            tmp,
            tmp_size: head.len() as u64,
            buf: Vec::new(),
            out: Vec::new(),
        });
        Ok(())
    }
}

/// A version 2 snapshot's header and GENERATION record.
fn snapshot_head(generation: u64) -> Vec<u8> {
    let mut out = record::file_header_version(SNAPSHOT_MAGIC, SNAPSHOT_VERSION).to_vec();
    record::write_record(&mut out, KIND_GENERATION, |p| {
        p.extend_from_slice(&generation.to_be_bytes())
    });
    out
}

/// Folds whole files (oldest first) into definitions, in the order they were declared.
fn fold_files(files: &[(Vec<u8>, Index)]) -> Option<Definitions> {
    let mut fold = Fold::new();
    let mut kept = Vec::new();
    for (f, (buf, index)) in files.iter().enumerate().rev() {
        for &(at, len, kind) in index.iter().rev() {
            let payload = &buf[at as usize + record::RECORD_HEADER_BYTES..(at + len) as usize];
            if fold.keep(kind, payload)? {
                kept.push((f, at, len, kind));
            }
        }
    }
    let mut defs = Definitions::default();
    for &(f, at, len, kind) in kept.iter().rev() {
        let buf = &files[f].0;
        defs.apply(
            kind,
            &buf[at as usize + record::RECORD_HEADER_BYTES..(at + len) as usize],
        )?;
    }
    defs.next_queue_id = defs.next_queue_id.max(fold.next_queue_id);
    Some(defs)
}

/// A snapshot being built from older files, a slice per turn: first their records are
/// indexed (offset, length, file), then visited newest first, the kept ones appended to the
/// temporary file.
struct Snapshot {
    generation: u64,
    slice_bytes: usize,
    files: Vec<(File, u64)>,
    /// While indexing: the file and offset being read.
    file: usize,
    offset: u64,
    index: Vec<(u32, u32, u32)>,
    folding: bool,
    fold: Fold,
    tmp: File,
    tmp_size: u64,
    buf: Vec<u8>,
    out: Vec<u8>,
}

impl Snapshot {
    /// One turn's work (at most `slice_bytes` read, or one larger record); true when done.
    fn step(&mut self) -> io::Result<bool> {
        if !self.folding {
            self.index_slice()?;
            return Ok(false);
        }
        self.fold_slice()?;
        let out = std::mem::take(&mut self.out);
        self.tmp.write_all(&out)?;
        self.tmp.sync_data()?;
        self.tmp_size += out.len() as u64;
        Ok(self.index.is_empty())
    }

    fn index_slice(&mut self) -> io::Result<()> {
        let Some(&(ref f, size)) = self.files.get(self.file) else {
            self.folding = true;
            return Ok(());
        };
        if self.offset >= size {
            self.file += 1;
            self.offset = record::FILE_HEADER_BYTES as u64;
            return Ok(());
        }
        let want = self.slice_bytes.min((size - self.offset) as usize);
        self.buf.resize(want, 0);
        f.read_exact_at(&mut self.buf, self.offset)?;
        let mut used = 0;
        while let record::Scan::Record { kind, len, .. } = record::scan(&self.buf[used..]) {
            self.index.push((
                self.file as u32,
                (self.offset as usize + used) as u32,
                len as u32,
            ));
            let _ = kind;
            used += len;
        }
        if used == 0 {
            // One record larger than a slice: read it whole next time.
            let b = &self.buf;
            if b.len() < record::RECORD_HEADER_BYTES {
                return Err(io::Error::other("damaged definitions record"));
            }
            let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
            let mut rec = vec![0; record::RECORD_HEADER_BYTES + len];
            f.read_exact_at(&mut rec, self.offset)?;
            if !matches!(record::scan(&rec), record::Scan::Record { .. }) {
                return Err(io::Error::other("damaged definitions record"));
            }
            self.index
                .push((self.file as u32, self.offset as u32, rec.len() as u32));
            used = rec.len();
        }
        self.offset += used as u64;
        Ok(())
    }

    /// Visits the newest records not yet visited, up to a slice's worth of bytes of one file.
    fn fold_slice(&mut self) -> io::Result<()> {
        let Some(&(file, last_at, last_len)) = self.index.last() else {
            return Ok(());
        };
        let end = last_at as u64 + last_len as u64;
        let mut first = self.index.len() - 1;
        while first > 0 {
            let (f, at, _) = self.index[first - 1];
            if f != file || end - at as u64 > self.slice_bytes as u64 {
                break;
            }
            first -= 1;
        }
        let start = self.index[first].1 as u64;
        self.buf.resize((end - start) as usize, 0);
        self.files[file as usize]
            .0
            .read_exact_at(&mut self.buf, start)?;
        for &(_, at, len) in self.index[first..].iter().rev() {
            let rec = &self.buf
                [(at as u64 - start) as usize..(at as u64 - start) as usize + len as usize];
            let record::Scan::Record { kind, payload, .. } = record::scan(rec) else {
                return Err(io::Error::other("definitions record changed while folding"));
            };
            match self.fold.keep(kind, payload) {
                Some(true) => self.out.extend_from_slice(rec),
                Some(false) => {}
                None => return Err(io::Error::other("malformed definitions record")),
            }
        }
        self.index.truncate(first);
        Ok(())
    }

    /// Appends the next queue id, syncs the file; returns its size.
    fn finish(mut self) -> io::Result<u64> {
        let mut out = Vec::new();
        record::write_record(&mut out, KIND_NEXT_QUEUE_ID, |p| {
            p.extend_from_slice(&self.fold.next_queue_id.to_be_bytes())
        });
        self.tmp.write_all(&out)?;
        self.tmp.sync_all()?;
        Ok(self.tmp_size + out.len() as u64)
    }
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
