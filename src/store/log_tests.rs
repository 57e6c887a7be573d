//! Unit tests of the message log: recovery (torn tails, damage, clean and unclean stops),
//! segment deletion, and compaction with a simulated crash at every step.

use super::*;
use std::collections::BTreeMap;

pub(super) struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("coney-log-{tag}-{}-{n}", std::process::id()));
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

fn queues(ids: &[u32]) -> std::collections::HashSet<u32> {
    ids.iter().copied().collect()
}

/// Opens the log and takes what it recovered, ordered by publish as a queue orders it.
fn open(dir: &Path, ids: &[u32]) -> (Log, RecoveryReport, Vec<Recovered>) {
    let (mut log, report, counts) = Log::open(dir, queues(ids)).expect("open");
    let mut got = Vec::new();
    let replay = log.replay.take().expect("replay state");
    replay.emit(&mut log, |m| got.push(m)).expect("emit");
    got.sort_by_key(|m| (m.origin, m.queue));
    for (q, n) in counts {
        assert_eq!(
            got.iter().filter(|m| m.queue == q).count() as u64,
            n,
            "count of queue {q}"
        );
    }
    (log, report, got)
}

fn bodies(log: &mut Log, got: &[Recovered]) -> Vec<String> {
    got.iter()
        .map(|m| String::from_utf8_lossy(log.read(m.loc).expect("read back").body()).into_owned())
        .collect()
}

impl Log {
    fn publish_id(&mut self, m: &Message, q: &[u32]) -> Location {
        self.publish(m, q, true, 1_000)
    }
    fn ack_at(&mut self, loc: Location, q: u32) {
        self.ack(loc.msg_id, q, loc.len);
    }
}

#[test]
fn recovery_keeps_unacked_messages_in_order_with_their_queues() {
    let d = TempDir::new("order");
    let (mut log, _, rec) = open(&d.0, &[1, 2]);
    assert!(rec.is_empty());
    let a = log.publish_id(&msg("a"), &[1, 2]);
    let b = log.publish_id(&msg("b"), &[1]);
    let _c = log.publish_id(&msg("c"), &[2]);
    log.ack_at(a, 1);
    log.ack_at(b, 1);
    log.sync().expect("sync");
    drop(log);
    let (mut log, report, rec) = open(&d.0, &[1, 2]);
    assert_eq!(bodies(&mut log, &rec), ["a", "c"]);
    assert_eq!(
        rec.iter()
            .map(|m| (m.queue, m.redelivered))
            .collect::<Vec<_>>(),
        [(2, true), (2, true)],
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
    let (mut log, _, _) = open(&d.0, &[1]);
    let a = log.publish_id(&msg("a"), &[1]);
    log.publish_id(&msg("b"), &[1]);
    log.close_clean(&[(a.msg_id, 1)]).expect("close");
    drop(log);
    let (log, report, rec) = open(&d.0, &[1]);
    assert!(report.clean_shutdown);
    assert_eq!(
        rec.iter().map(|m| m.redelivered).collect::<Vec<_>>(),
        [true, false]
    );
    // A crash after this start must not be taken for a clean stop.
    drop(log);
    let (_, report, _) = open(&d.0, &[1]);
    assert!(!report.clean_shutdown);
}

#[test]
fn a_torn_tail_at_every_byte_of_the_last_record_loses_only_that_record() {
    let d = TempDir::new("torn");
    let (mut log, _, _) = open(&d.0, &[1]);
    log.publish_id(&msg("first"), &[1]);
    log.sync().expect("sync");
    let path = segment_path(&d.0, log.head);
    let before = fs::metadata(&path).expect("meta").len();
    log.publish_id(&msg("second"), &[1]);
    log.sync().expect("sync");
    drop(log);
    let full = fs::read(&path).expect("read");
    for cut in before as usize..full.len() {
        let d2 = TempDir::new("torn-case");
        fs::write(segment_path(&d2.0, HEAD_NUMBER_STEP), &full[..cut]).expect("write");
        let (mut log2, rec, report) = {
            let (l, r, g) = open(&d2.0, &[1]);
            (l, g, r)
        };
        assert_eq!(bodies(&mut log2, &rec), ["first"], "cut at {cut}");
        assert_eq!(report.truncated_bytes, (cut - before as usize) as u64);
        assert_eq!(
            fs::metadata(segment_path(&d2.0, HEAD_NUMBER_STEP))
                .expect("meta")
                .len(),
            before,
            "cut at {cut}"
        );
    }
}

#[test]
fn a_flipped_byte_in_the_middle_loses_only_that_record() {
    let d = TempDir::new("flip");
    let (mut log, _, _) = open(&d.0, &[1]);
    let path = segment_path(&d.0, log.head);
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
    let (mut log, report, rec) = open(&d.0, &[1]);
    assert_eq!(bodies(&mut log, &rec), ["one", "three"]);
    assert_eq!(report.corrupt_records, 1);
}

fn files(dir: &Path) -> usize {
    fs::read_dir(dir).expect("ls").count()
}

#[test]
fn segments_are_removed_once_everything_in_them_is_acked() {
    let d = TempDir::new("gc");
    let (mut log, _, _) = open(&d.0, &[1]);
    let big = "x".repeat(1024 * 1024);
    let mut locs = Vec::new();
    for _ in 0..40 {
        locs.push(log.publish_id(&msg(&big), &[1]));
    }
    log.sync().expect("sync");
    assert!(files(&d.0) >= 3, "40 MiB spans several segments");
    for l in &locs[..39] {
        log.ack_at(*l, 1);
    }
    log.sync().expect("sync");
    assert!(
        files(&d.0) <= 2,
        "only the segments with the last message and the head remain"
    );
    log.ack_at(locs[39], 1);
    log.sync().expect("sync");
    assert_eq!(files(&d.0), 1);
    assert_eq!(log.segment_numbers(), [log.head]);
}

#[test]
fn a_segment_whose_acks_name_an_older_one_waits_for_it() {
    let d = TempDir::new("deps");
    let (mut log, _, _) = open(&d.0, &[1, 2]);
    log.segment_bytes = 4096;
    let body = "y".repeat(1000);
    let held = log.publish_id(&msg(&body), &[1]);
    let early = log.publish_id(&msg(&body), &[2]);
    for _ in 0..6 {
        let l = log.publish_id(&msg(&body), &[2]);
        log.ack_at(l, 2);
    }
    // Acked after a rotation: the ack sits in a newer segment than the message.
    log.ack_at(early, 2);
    log.sync().expect("sync");
    let first = held.segment();
    assert!(log.segment_numbers().contains(&first));
    let acker = log.head;
    assert!(acker != first, "the ack of `early` is in a later segment");
    for _ in 0..8 {
        let l = log.publish_id(&msg(&body), &[2]);
        log.ack_at(l, 2);
    }
    log.sync().expect("sync");
    assert!(
        log.segment_numbers().contains(&acker),
        "its ack of a message in segment {first}, which is still there, keeps segment {acker}"
    );
    log.ack_at(held, 1);
    log.sync().expect("sync");
    assert_eq!(
        log.segment_numbers(),
        [log.head],
        "the whole chain goes at once"
    );
    drop(log);
    let (_, _, rec) = open(&d.0, &[1, 2]);
    assert!(rec.is_empty());
}

#[test]
fn messages_of_deleted_queues_are_not_recovered() {
    let d = TempDir::new("deleted");
    let (mut log, _, _) = open(&d.0, &[1, 2]);
    log.publish_id(&msg("a"), &[1, 2]);
    log.sync().expect("sync");
    drop(log);
    let (_, _, rec) = open(&d.0, &[2]);
    assert_eq!(rec.len(), 1);
    assert_eq!((rec[0].queue, rec[0].redelivered), (2, true));
}

#[test]
fn paged_messages_read_back_before_sync_and_transient_ones_are_not_recovered() {
    let d = TempDir::new("read");
    let (mut log, _, _) = open(&d.0, &[1]);
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
    let (mut log, _, rec) = open(&d.0, &[1]);
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
    let (mut log, _, _) = open(&d.0, &[1]);
    let loc = log.publish_id(&msg("a"), &[1]);
    log.sync().expect("sync");
    let next = log.head + HEAD_NUMBER_STEP;
    drop(log);
    // A crash right after creating the next segment, before its header was written.
    fs::write(segment_path(&d.0, next), b"CONEY").expect("write");
    let (mut log, _, rec) = open(&d.0, &[1]);
    assert_eq!(rec.len(), 1);
    log.ack_at(loc, 1);
    log.sync().expect("sync");
    assert_eq!(
        log.segment_numbers(),
        [log.head],
        "every finished segment is gone"
    );
    assert_eq!(files(&d.0), 1);
}

#[test]
fn version_1_segments_numbered_one_by_one_are_read_and_compacted_around() {
    let d = TempDir::new("v1");
    // A segment as coney wrote it before compaction: version 1, numbered 1.
    let mut seg = record::file_header_version(MAGIC, 1).to_vec();
    for (i, body) in ["old-a", "old-b"].iter().enumerate() {
        let m = msg(body);
        let (data, ex, rk, props) = m.raw();
        let raw = RawMsg {
            data,
            ex,
            rk,
            props,
            persistent: true,
        };
        record::write_record(&mut seg, format::KIND_PUBLISH, |p| {
            format::encode_publish_v1(p, format::make_id(1, i as u32), &[1], raw)
        });
    }
    fs::write(segment_path(&d.0, 1), &seg).expect("write");
    let (mut log, _, rec) = open(&d.0, &[1]);
    assert_eq!(bodies(&mut log, &rec), ["old-a", "old-b"]);
    assert_eq!(log.head, HEAD_NUMBER_STEP);
    log.ack_at(rec[0].loc, 1);
    log.ack_at(rec[1].loc, 1);
    log.sync().expect("sync");
    assert_eq!(log.segment_numbers(), [log.head]);
}

// ---- compaction ------------------------------------------------------------------------------

/// A log driven like a broker drives it, with the expected content kept beside it.
struct Sim {
    dir: TempDir,
    log: Log,
    /// queue -> (message number, location given to the queue), in publish order.
    held: BTreeMap<u32, Vec<(u64, Location)>>,
    next: u64,
    rng: u64,
    checks: usize,
}

const SIM_QUEUES: [u32; 3] = [1, 2, 3];

fn body_of(n: u64, size: usize) -> String {
    let head = format!("{n}|");
    let pad = (b'a' + (n % 26) as u8) as char;
    head.clone() + &pad.to_string().repeat(size.saturating_sub(head.len()))
}

fn number_of(body: &[u8]) -> u64 {
    let s = String::from_utf8_lossy(body);
    s.split('|')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("numbered body")
}

impl Sim {
    fn new(tag: &str, segment_bytes: u64, turn_bytes: usize) -> Self {
        let dir = TempDir::new(tag);
        let (mut log, _, _) = open(&dir.0, &SIM_QUEUES);
        log.segment_bytes = segment_bytes;
        log.turn_bytes = turn_bytes;
        Sim {
            dir,
            log,
            held: BTreeMap::new(),
            next: 0,
            rng: 0x2545_f491_4f6c_dd1d,
            checks: 0,
        }
    }

    fn random(&mut self, n: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % n
    }

    fn publish(&mut self, qs: &[u32], size: usize) {
        self.next += 1;
        let n = self.next;
        let loc = self.log.publish_id(&msg(&body_of(n, size)), qs);
        for q in qs {
            self.held.entry(*q).or_default().push((n, loc));
        }
    }

    fn ack(&mut self, q: u32, i: usize) {
        let Some(list) = self.held.get_mut(&q) else {
            return;
        };
        if i < list.len() {
            let (_, loc) = list.remove(i);
            self.log.ack_at(loc, q);
        }
    }

    /// The end of a loop turn: group commit, then a slice of compaction.
    fn turn(&mut self) {
        self.log.sync().expect("sync");
        self.log.maintain();
    }

    /// Recovers a copy of the files as they are now (what a kill -9 would leave) and checks
    /// it holds exactly what the queues hold: nothing lost, nothing back, nothing twice.
    fn check_copy(dir: &Path, held: &BTreeMap<u32, Vec<(u64, Location)>>, at: &str) {
        let copy = TempDir::new("crash");
        for e in fs::read_dir(dir).expect("ls") {
            let e = e.expect("entry");
            fs::copy(e.path(), copy.0.join(e.file_name())).expect("copy");
        }
        let (mut log, report, rec) = open(&copy.0, &SIM_QUEUES);
        assert_eq!(report.corrupt_records, 0, "{at}: no damage");
        for q in SIM_QUEUES {
            let got: Vec<u64> = rec
                .iter()
                .filter(|m| m.queue == q)
                .map(|m| number_of(log.read(m.loc).expect("read").body()))
                .collect();
            let want: Vec<u64> = held
                .get(&q)
                .map_or(vec![], |l| l.iter().map(|x| x.0).collect());
            assert_eq!(got, want, "{at}: queue {q} after a crash");
        }
    }

    fn check_now(&mut self, at: &str) {
        self.checks += 1;
        Sim::check_copy(&self.dir.0, &self.held, at);
        // The live log reads every held message from the location its queue was given.
        for (_, list) in self.held.iter() {
            for &(n, loc) in list {
                let m = self.log.read(loc).expect("read through a translation");
                assert_eq!(number_of(m.body()), n, "{at}");
            }
        }
    }
}

#[test]
fn compaction_reclaims_what_one_held_message_pins() {
    let mut s = Sim::new("probe", 64 * 1024, 16 * 1024);
    s.publish(&[1], 4096);
    for i in 0..2000 {
        s.publish(&[2], 4096);
        if i % 8 == 7 {
            // The consumer of queue 2 acks in batches, a little behind.
            for _ in 0..8 {
                s.ack(2, 0);
            }
        }
        s.turn();
    }
    for _ in 0..200 {
        s.turn();
    }
    let (disk, live) = s.log.usage();
    assert!(
        disk <= 2 * s.log.segment_bytes + 2 * live,
        "{disk} bytes in segment files, {live} held: at most 2 segments + twice that"
    );
    assert!(
        s.log.segment_numbers().len() <= 4,
        "{:?}",
        s.log.segment_numbers()
    );
    s.check_now("after the traffic");
    s.ack(1, 0);
    s.turn();
    s.check_now("after the held message is acked");
}

#[test]
fn compaction_crashed_at_every_step_loses_and_duplicates_nothing() {
    let mut s = Sim::new("crashes", 32 * 1024, 4 * 1024);
    let held = std::rc::Rc::new(std::cell::RefCell::new(BTreeMap::new()));
    let points = std::rc::Rc::new(std::cell::Cell::new(0));
    let (h, p) = (held.clone(), points.clone());
    s.log.crash_point = Some(Box::new(move |dir: &Path| {
        p.set(p.get() + 1);
        Sim::check_copy(dir, &h.borrow(), "finishing a compaction");
    }));
    for i in 0..1500u64 {
        let size = match s.random(20) {
            0 => 6000, // larger than a turn's budget: copied in pieces
            1..=3 => 50,
            _ => 300 + s.random(400) as usize,
        };
        match s.random(10) {
            0 => s.publish(&[1, 2], size),
            1 => s.publish(&[1, 2, 3], size),
            2 => s.publish(&[1], size),
            _ => s.publish(&[2 + (i % 2) as u32], size),
        }
        // Queues 2 and 3 are drained in order with some lag; queue 1 keeps a few for long
        // and acks at random; fanned-out messages are acked queue by queue.
        for q in [2, 3] {
            while s.held.get(&q).map_or(0, Vec::len) > 20 {
                s.ack(q, 0);
            }
        }
        if s.random(3) == 0 {
            let n = s.held.get(&1).map_or(0, Vec::len) as u64;
            if n > 5 {
                let i = 1 + s.random(n - 1) as usize;
                s.ack(1, i);
            }
        }
        *held.borrow_mut() = s.held.clone();
        s.log.sync().expect("sync");
        if i % 7 == 0 {
            s.check_now("after a sync");
        }
        s.log.maintain();
        if s.log.busy() || i % 7 == 0 {
            s.check_now("during compaction");
        }
    }
    while s.log.busy() {
        s.turn();
        s.check_now("finishing");
    }
    assert!(
        points.get() >= 3,
        "compaction finished at least once ({} crash points)",
        points.get()
    );
    let (disk, live) = s.log.usage();
    assert!(
        disk <= 2 * s.log.segment_bytes + 2 * live,
        "{disk} on disk, {live} held"
    );
    // The held messages' ids were translated; a restart gives the new ones, same order.
    let held_now = s.held.clone();
    s.log.sync().expect("sync");
    let dir = s.dir.0.clone();
    let Sim { log, dir: keep, .. } = s;
    drop(log);
    let (mut log, _, rec) = open(&dir, &SIM_QUEUES);
    for q in SIM_QUEUES {
        let got: Vec<u64> = rec
            .iter()
            .filter(|m| m.queue == q)
            .map(|m| number_of(log.read(m.loc).expect("read").body()))
            .collect();
        let want: Vec<u64> = held_now
            .get(&q)
            .map_or(vec![], |l| l.iter().map(|x| x.0).collect());
        assert_eq!(got, want, "queue {q} after a restart");
    }
    drop(keep);
}

#[test]
fn copies_of_copies_are_followed_and_acked_by_their_first_id() {
    let mut s = Sim::new("chains", 16 * 1024, 64 * 1024);
    // Each round pins four more messages among dead ones and lets three older ones go, so
    // the files holding earlier copies thin out and are copied again.
    let mut chained = false;
    for _round in 0..8 {
        for _ in 0..4 {
            s.publish(&[1], 200);
        }
        for _ in 0..3 {
            let n = s.held[&1].len() as u64;
            let i = s.random(n) as usize;
            s.ack(1, i);
        }
        for _ in 0..120 {
            s.publish(&[2], 300);
            s.ack(2, 0);
            s.turn();
        }
        for _ in 0..20 {
            s.turn();
        }
        s.check_now("after a round");
        let ts = &s.log.translations;
        chained |= ts.values().flatten().any(|t| ts.contains_key(&t.target));
    }
    assert!(chained, "some message was copied twice");
    let first = s.held[&1][0].1;
    assert!(
        !s.log.segments.contains_key(&first.segment()),
        "the oldest held message was moved"
    );
    while s.held.get(&1).is_some_and(|l| !l.is_empty()) {
        s.ack(1, 0);
        s.turn();
    }
    for _ in 0..20 {
        s.turn();
    }
    assert_eq!(s.log.usage().1, 0, "nothing held");
    assert!(
        s.log.translations.is_empty(),
        "translations are forgotten with their messages"
    );
    assert_eq!(s.log.segment_numbers(), [s.log.head]);
    s.check_now("all acked");
}

#[test]
fn recovery_reads_big_files_in_chunks_and_finds_damage_past_the_first() {
    let d = TempDir::new("chunks");
    let (mut log, _, _) = open(&d.0, &[1]);
    let mut want = Vec::new();
    let mut locs = Vec::new();
    for i in 0..40usize {
        // Records of 10 KiB to 1.5 MiB straddle every chunk boundary of the reader.
        let size = if i % 9 == 4 {
            1_500_000
        } else {
            10_000 + i * 3_001
        };
        let body = body_of(i as u64, size);
        locs.push(log.publish_id(&msg(&body), &[1]));
        want.push(i as u64);
    }
    log.sync().expect("sync");
    let head = log.head;
    drop(log);
    let victim = 23;
    assert!(
        locs[victim].offset as usize > 2 * 1024 * 1024,
        "past the first chunks"
    );
    let path = segment_path(&d.0, head);
    let mut bytes = fs::read(&path).expect("read");
    bytes[locs[victim].offset as usize + 40] ^= 0x55;
    fs::write(&path, &bytes).expect("write");
    let (mut log, report, rec) = open(&d.0, &[1]);
    assert_eq!(report.corrupt_records, 1);
    want.remove(victim);
    let got: Vec<u64> = rec
        .iter()
        .map(|m| number_of(log.read(m.loc).expect("read").body()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn a_clean_stop_in_the_middle_of_a_compaction_keeps_everything_and_is_clean() {
    let mut s = Sim::new("clean-mid", 32 * 1024, 2 * 1024);
    let mut i = 0;
    while !s.log.busy() {
        i += 1;
        assert!(i < 5000, "no compaction started");
        s.publish(
            &[1 + (i % 10 == 0) as u32],
            if i % 50 == 0 { 5000 } else { 400 },
        );
        while s.held.get(&1).map_or(0, Vec::len) > 3 {
            s.ack(1, 0);
        }
        s.turn();
    }
    s.turn();
    assert!(s.log.busy(), "the pass takes several turns");
    s.log.close_clean(&[]).expect("close");
    let held = s.held.clone();
    let dir = s.dir.0.clone();
    let Sim { log, dir: keep, .. } = s;
    drop(log);
    let (mut log, report, rec) = open(&dir, &SIM_QUEUES);
    assert!(report.clean_shutdown);
    assert_eq!((report.truncated_bytes, report.corrupt_records), (0, 0));
    for q in SIM_QUEUES {
        let got: Vec<u64> = rec
            .iter()
            .filter(|m| m.queue == q)
            .map(|m| number_of(log.read(m.loc).expect("read").body()))
            .collect();
        let want: Vec<u64> = held
            .get(&q)
            .map_or(vec![], |l| l.iter().map(|x| x.0).collect());
        assert_eq!(got, want, "queue {q}");
    }
    drop(keep);
}

#[test]
fn compaction_reclaims_with_a_lagging_consumer() {
    for lag in [10usize, 60, 120, 200] {
        let mut s = Sim::new("lag", 64 * 1024, 16 * 1024);
        s.publish(&[1], 4096);
        for i in 0..1200 {
            s.publish(&[2], 4000);
            if i % 10 == 9 {
                while s.held.get(&2).map_or(0, Vec::len) > lag {
                    s.ack(2, 0);
                }
            }
            s.turn();
        }
        while s.held.get(&2).is_some_and(|l| !l.is_empty()) {
            s.ack(2, 0);
        }
        for _ in 0..300 {
            s.turn();
        }
        let (disk, live) = s.log.usage();
        assert!(
            disk <= 2 * s.log.segment_bytes + 2 * live,
            "lag {lag}: {disk} bytes in {:?}, {live} held",
            s.log.segment_numbers()
        );
    }
}

#[test]
fn acks_in_the_head_alone_can_start_a_compaction() {
    let mut s = Sim::new("head-acks", 64 * 1024, 16 * 1024);
    s.publish(&[1], 4096);
    // A consumer lagging by a segment's worth of messages: when the last message outside the
    // head is acked, the backlog in the head still justifies the files.
    let first = s.log.head;
    while s.log.head < first + 2 * HEAD_NUMBER_STEP || s.log.head_size() < 56 * 1024 {
        s.publish(&[2], 4000);
        while s.held[&2].len() > 15 {
            s.ack(2, 0);
        }
        s.turn();
    }
    let head = s.log.head;
    while s.held[&2].first().is_some_and(|m| m.1.segment() != head) {
        s.ack(2, 0);
        s.turn();
    }
    let (disk, live) = s.log.usage();
    assert!(
        disk <= 2 * live + s.log.segment_bytes,
        "premise: the files are not too big for the backlog ({disk} on disk, {live} held)"
    );
    assert!(s.log.segment_numbers().len() >= 3);
    // Only acks of messages in the head are left; they alone shrink what is held.
    while !s.held[&2].is_empty() {
        s.ack(2, 0);
        s.turn();
    }
    for _ in 0..100 {
        s.turn();
    }
    let (disk, live) = s.log.usage();
    assert!(
        disk <= 2 * s.log.segment_bytes + 2 * live,
        "{disk} bytes in {:?}, {live} held",
        s.log.segment_numbers()
    );
    s.check_now("after the backlog is acked");
}
