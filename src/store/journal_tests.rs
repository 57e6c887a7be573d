//! Unit tests of the definitions journal: torn tails, damage, snapshots built in slices with a
//! simulated crash at every step, and the conversion of version 1 files.

use super::*;
use std::collections::{BTreeMap, BTreeSet};

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("coney-defs-{tag}-{}-{n}", std::process::id()));
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

/// (vhost, source, to_exchange, destination, key, arguments).
type BindingKey = (Vec<u8>, Vec<u8>, bool, Vec<u8>, Vec<u8>, Vec<u8>);
/// (vhost, name): an exchange or queue.
type EntityKey = (Vec<u8>, Vec<u8>);

/// The definitions as a broker would hold them after the same changes.
#[derive(Default, Clone, Debug, PartialEq)]
struct Model {
    exchanges: BTreeMap<EntityKey, ExchangeDef>,
    queues: BTreeMap<EntityKey, QueueDef>,
    bindings: BTreeSet<BindingKey>,
    delayed: BTreeMap<EntityKey, u32>,
    next_queue_id: u32,
    access: Option<Vec<u8>>,
    policies: Option<Vec<u8>>,
}

fn key(b: BindingRef<'_>) -> BindingKey {
    (
        b.vhost.to_vec(),
        b.source.to_vec(),
        b.to_exchange,
        b.destination.to_vec(),
        b.key.to_vec(),
        b.arguments.to_vec(),
    )
}

fn entity(vhost: &[u8], name: &[u8]) -> EntityKey {
    (vhost.to_vec(), name.to_vec())
}

impl Model {
    fn apply(&mut self, c: DefChange<'_>) {
        match c {
            DefChange::Exchange {
                vhost,
                name,
                kind,
                auto_delete,
                internal,
                arguments,
            } => {
                let x = ExchangeDef {
                    vhost: vhost.to_vec(),
                    name: name.to_vec(),
                    kind: kind.to_vec(),
                    auto_delete,
                    internal,
                    arguments: arguments.to_vec(),
                };
                self.exchanges.insert(entity(vhost, name), x);
            }
            DefChange::ExchangeDeleted { vhost, name } => {
                self.exchanges.remove(&entity(vhost, name));
                self.delayed.remove(&entity(vhost, name));
                self.bindings
                    .retain(|b| b.0 != vhost || (b.1 != name && !(b.2 && b.3 == name)));
            }
            DefChange::Queue {
                vhost,
                name,
                store_id,
                auto_delete,
                arguments,
            } => {
                let q = QueueDef {
                    vhost: vhost.to_vec(),
                    name: name.to_vec(),
                    store_id,
                    auto_delete,
                    arguments: arguments.to_vec(),
                };
                self.queues.insert(entity(vhost, name), q);
                self.next_queue_id = self.next_queue_id.max(store_id + 1);
            }
            DefChange::QueueDeleted { vhost, name } => {
                self.queues.remove(&entity(vhost, name));
                self.bindings.retain(|b| b.0 != vhost || b.2 || b.3 != name);
            }
            DefChange::Access(json) => self.access = Some(json.to_vec()),
            DefChange::Policies(json) => self.policies = Some(json.to_vec()),
            DefChange::Binding(b) => {
                self.bindings.insert(key(b));
            }
            DefChange::Unbinding(b) => {
                self.bindings.remove(&key(b));
            }
            DefChange::DelayedExchange {
                vhost,
                name,
                store_id,
            } => {
                self.delayed.insert(entity(vhost, name), store_id);
                self.next_queue_id = self.next_queue_id.max(store_id + 1);
            }
        }
    }

    fn of(d: &Definitions) -> Model {
        let mut m = Model {
            next_queue_id: d.next_queue_id,
            ..Default::default()
        };
        for x in &d.exchanges {
            assert!(
                m.exchanges
                    .insert(entity(&x.vhost, &x.name), x.clone())
                    .is_none(),
                "one record per exchange"
            );
        }
        for q in &d.queues {
            assert!(
                m.queues
                    .insert(entity(&q.vhost, &q.name), q.clone())
                    .is_none(),
                "one record per queue"
            );
        }
        m.access = d.access.clone();
        m.policies = d.policies.clone();
        for b in &d.bindings {
            assert!(m.bindings.insert(key(b.as_ref())), "one record per binding");
        }
        for x in &d.delayed_exchanges {
            assert!(
                m.delayed
                    .insert(entity(&x.vhost, &x.exchange), x.store_id)
                    .is_none(),
                "one record per delayed exchange"
            );
        }
        m
    }
}

fn load(dir: &Path) -> io::Result<Model> {
    Journal::open(dir).map(|(_, d)| Model::of(&d))
}

fn copy_dir(from: &Path) -> TempDir {
    let to = TempDir::new("copy");
    for e in fs::read_dir(from).expect("ls") {
        let e = e.expect("entry");
        fs::copy(e.path(), to.0.join(e.file_name())).expect("copy");
    }
    to
}

fn journal_file(dir: &Path) -> PathBuf {
    let g = journals(dir).expect("ls").pop().expect("a journal");
    journal_path(dir, g)
}

/// A few declarations, then `last` alone in a sync of its own.
fn two_syncs(dir: &Path) -> (Model, Model) {
    let (mut j, _) = Journal::open(dir).expect("open");
    let mut m = Model {
        next_queue_id: 1,
        ..Default::default()
    };
    let changes = [
        DefChange::Exchange {
            vhost: b"/",
            name: b"logs",
            kind: b"topic",
            auto_delete: false,
            internal: false,
            arguments: b"",
        },
        DefChange::Queue {
            vhost: b"/",
            name: b"q1",
            store_id: 7,
            auto_delete: false,
            arguments: b"\x00\x00\x00\x00",
        },
        DefChange::Binding(BindingRef {
            vhost: b"/",
            source: b"logs",
            to_exchange: false,
            destination: b"q1",
            key: b"a.#",
            arguments: b"",
        }),
        DefChange::Access(br#"{"users":[]}"#),
        DefChange::Queue {
            vhost: b"other",
            name: b"q1",
            store_id: 5,
            auto_delete: false,
            arguments: b"",
        },
        DefChange::Access(br#"{"users":[],"vhosts":[{"name":"other"}]}"#),
    ];
    for c in changes {
        j.record(c);
        m.apply(c);
    }
    j.sync().expect("sync");
    let before = m.clone();
    let last = DefChange::QueueDeleted {
        vhost: b"/",
        name: b"q1",
    };
    j.record(last);
    m.apply(last);
    j.sync().expect("sync");
    (before, m)
}

#[test]
fn changes_survive_a_reopen() {
    let d = TempDir::new("reopen");
    let (_, after) = two_syncs(&d.0);
    assert_eq!(load(&d.0).expect("load"), after);
    assert!(
        after.bindings.is_empty(),
        "deleting the queue removed its binding"
    );
    assert_eq!(
        after.next_queue_id, 8,
        "a deleted queue's id is not handed out again"
    );
    assert_eq!(
        after.queues.keys().collect::<Vec<_>>(),
        [&entity(b"other", b"q1")],
        "q1 of another vhost is another queue"
    );
    assert_eq!(
        after.access.as_deref(),
        Some(&br#"{"users":[],"vhosts":[{"name":"other"}]}"#[..]),
        "the latest access tables"
    );
}

#[test]
fn a_torn_tail_at_every_byte_loses_only_the_last_change() {
    let d = TempDir::new("torn");
    let (before, after) = two_syncs(&d.0);
    let path = journal_file(&d.0);
    let full = fs::read(&path).expect("read");
    let last_len = {
        let mut t = Vec::new();
        DefChange::QueueDeleted {
            vhost: b"/",
            name: b"q1",
        }
        .encode(&mut t);
        t.len()
    };
    for cut in full.len() - last_len..full.len() {
        let c = copy_dir(&d.0);
        fs::write(journal_file(&c.0), &full[..cut]).expect("write");
        assert_eq!(
            load(&c.0).expect("torn tail is cut"),
            before,
            "cut at {cut}"
        );
        assert_eq!(
            load(&c.0).expect("again"),
            before,
            "cut at {cut}, second start"
        );
        assert_eq!(
            fs::metadata(journal_file(&c.0)).expect("meta").len() as usize,
            full.len() - last_len
        );
    }
    assert_eq!(load(&d.0).expect("whole"), after);
}

#[test]
fn a_flipped_byte_refuses_to_start_unless_it_is_in_the_torn_last_record() {
    let d = TempDir::new("flip");
    let (before, _) = two_syncs(&d.0);
    let path = journal_file(&d.0);
    let full = fs::read(&path).expect("read");
    let c = copy_dir(&d.0);
    let mut b = full.clone();
    b[record::FILE_HEADER_BYTES + 12] ^= 0x20;
    fs::write(journal_file(&c.0), &b).expect("write");
    let e = load(&c.0).expect_err("damage in the middle");
    assert!(e.to_string().contains("damaged record"), "{e}");
    let c = copy_dir(&d.0);
    let mut b = full.clone();
    let n = b.len();
    b[n - 3] ^= 0x20;
    fs::write(journal_file(&c.0), &b).expect("write");
    assert_eq!(
        load(&c.0).expect("last record damaged: a torn write"),
        before
    );
}

fn random(state: &mut u64, n: u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state % n
}

/// A random change among a few names, so declarations, deletions and bindings collide.
fn random_change(
    rng: &mut u64,
    m: &Model,
    names: &mut Vec<Vec<u8>>,
    next_id: &mut u32,
) -> Option<usize> {
    let x = format!("x{}", random(rng, 5)).into_bytes();
    let q = format!("q{}", random(rng, 12)).into_bytes();
    let k = format!("k{}", random(rng, 3)).into_bytes();
    let to_x = random(rng, 4) == 0;
    let vhost = if random(rng, 3) == 0 { "v2" } else { "/" };
    let dest = if to_x {
        format!("x{}", random(rng, 5)).into_bytes()
    } else {
        q.clone()
    };
    names.clear();
    names.extend([x, q, k, dest, vhost.as_bytes().to_vec()]);
    let v = &names[4];
    let op = random(rng, 12) as usize;
    let ok = match op {
        10 => true,
        0 | 1 => true,
        2 | 3 => {
            *next_id += 1;
            true
        }
        11 if m.exchanges.contains_key(&entity(v, &names[0])) => {
            *next_id += 1;
            true
        }
        11 => false,
        4 => m.exchanges.contains_key(&entity(v, &names[0])),
        5 => m.queues.contains_key(&entity(v, &names[1])),
        _ => {
            m.exchanges.contains_key(&entity(v, &names[0]))
                && if to_x {
                    m.exchanges.contains_key(&entity(v, &names[3]))
                } else {
                    m.queues.contains_key(&entity(v, &names[3]))
                }
        }
    };
    ok.then_some(op + if to_x { 100 } else { 0 })
}

fn build<'a>(op: usize, names: &'a [Vec<u8>], id: u32) -> DefChange<'a> {
    let vhost = &names[4];
    let b = BindingRef {
        vhost,
        source: &names[0],
        to_exchange: op >= 100,
        destination: &names[3],
        key: &names[2],
        arguments: b"",
    };
    match op % 100 {
        0 | 1 => DefChange::Exchange {
            vhost,
            name: &names[0],
            kind: if op.is_multiple_of(2) {
                b"direct"
            } else {
                b"fanout"
            },
            auto_delete: false,
            internal: op % 2 == 1,
            arguments: b"",
        },
        2 | 3 => DefChange::Queue {
            vhost,
            name: &names[1],
            store_id: id,
            auto_delete: false,
            arguments: b"",
        },
        4 => DefChange::ExchangeDeleted {
            vhost,
            name: &names[0],
        },
        5 => DefChange::QueueDeleted {
            vhost,
            name: &names[1],
        },
        6..=8 => DefChange::Binding(b),
        // The access tables as a whole; their content does not matter to the store.
        10 => DefChange::Access(&names[2]),
        11 => DefChange::DelayedExchange {
            vhost,
            name: &names[0],
            store_id: id,
        },
        _ => DefChange::Unbinding(b),
    }
}

#[test]
fn snapshots_built_in_slices_and_crashes_at_every_step_keep_the_definitions() {
    let d = TempDir::new("model");
    let (mut j, _) = Journal::open(&d.0).expect("open");
    j.min_bytes = 2048;
    j.slice_bytes = 300;
    let mut m = Model {
        next_queue_id: 1,
        ..Default::default()
    };
    let (mut rng, mut names, mut id) = (0x9e37_79b9_7f4a_7c15u64, Vec::new(), 0u32);
    let (mut snapshots, mut steps) = (0, 0);
    for turn in 0..1500 {
        for _ in 0..1 + random(&mut rng, 4) {
            if let Some(op) = random_change(&mut rng, &m, &mut names, &mut id) {
                let c = build(op, &names, id);
                j.record(c);
                m.apply(c);
            }
        }
        j.sync().expect("sync");
        let was = j.busy();
        j.maintain();
        steps += j.busy() as usize;
        snapshots += (was && !j.busy()) as usize;
        if j.busy() || turn % 10 == 0 {
            let c = copy_dir(&d.0);
            assert_eq!(load(&c.0).expect("load a crashed copy"), m, "turn {turn}");
        }
    }
    assert!(snapshots >= 5, "{snapshots} snapshots");
    assert!(
        steps >= 5 * snapshots,
        "{steps} slices for {snapshots} snapshots"
    );
    drop(j);
    assert_eq!(load(&d.0).expect("reopen"), m);
    assert!(
        journals(&d.0).expect("ls").len() <= 2,
        "older journals are deleted"
    );
}

#[test]
fn version_1_definitions_are_read_and_converted() {
    let d = TempDir::new("v1");
    let old = Definitions {
        next_queue_id: 9,
        exchanges: vec![ExchangeDef {
            vhost: b"/".to_vec(),
            name: b"logs".to_vec(),
            kind: b"topic".to_vec(),
            auto_delete: false,
            internal: true,
            arguments: vec![],
        }],
        queues: vec![QueueDef {
            vhost: b"/".to_vec(),
            name: b"task_queue".to_vec(),
            store_id: 3,
            auto_delete: false,
            arguments: b"\x01kt\x01".to_vec(),
        }],
        bindings: vec![BindingDef {
            vhost: b"/".to_vec(),
            source: b"logs".to_vec(),
            to_exchange: false,
            destination: b"task_queue".to_vec(),
            key: b"lazy.#".to_vec(),
            arguments: vec![],
        }],
        delayed_exchanges: vec![],
        access: None,
        policies: None,
    };
    fs::write(d.0.join(FILE_NAME), old.encode_version_1()).expect("write");
    let (mut j, got) = Journal::open(&d.0).expect("open version 1");
    assert_eq!(got, old);
    let snap = fs::read(d.0.join(FILE_NAME)).expect("read");
    assert_eq!(
        record::check_file_header(&snap, SNAPSHOT_MAGIC),
        Some(SNAPSHOT_VERSION)
    );
    j.record(DefChange::QueueDeleted {
        vhost: b"/",
        name: b"task_queue",
    });
    j.sync().expect("sync");
    drop(j);
    let (_, again) = Journal::open(&d.0).expect("reopen");
    assert_eq!(again.exchanges, old.exchanges);
    assert!(again.queues.is_empty() && again.bindings.is_empty());
    assert_eq!(again.next_queue_id, 9);
}

#[test]
fn a_snapshot_of_100k_queues_takes_many_bounded_turns() {
    let d = TempDir::new("many");
    let (mut j, _) = Journal::open(&d.0).expect("open");
    let mut names = Vec::new();
    for i in 0..100_000u32 {
        names.push(format!("device.{i:06}.inbox").into_bytes());
    }
    let mut started = false;
    let mut turns = 0;
    for (i, n) in names.iter().enumerate() {
        j.record(DefChange::Queue {
            vhost: b"/",
            name: n,
            store_id: i as u32 + 1,
            auto_delete: false,
            arguments: b"",
        });
        j.record(DefChange::Binding(BindingRef {
            vhost: b"/",
            source: b"amq.direct",
            to_exchange: false,
            destination: n,
            key: n,
            arguments: b"",
        }));
        if i % 500 == 499 {
            j.sync().expect("sync");
            j.maintain();
            started |= j.busy();
            turns += j.busy() as usize;
        }
    }
    j.sync().expect("sync");
    while j.busy() {
        j.maintain();
        turns += 1;
    }
    assert!(started);
    assert!(
        turns >= 30,
        "a multi-megabyte journal folded in {turns} turns of 256 KiB"
    );
    drop(j);
    let t = std::time::Instant::now();
    let (_, defs) = Journal::open(&d.0).expect("open");
    let took = t.elapsed();
    assert_eq!((defs.queues.len(), defs.bindings.len()), (100_000, 100_000));
    assert_eq!(defs.next_queue_id, 100_001);
    assert!(took.as_secs_f64() < 1.0, "loading took {took:?}");
}
