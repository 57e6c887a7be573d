//! Topic routing under hostile patterns and keys: `#` chains and alternations with 128-word
//! keys of 255 bytes, thousands of wildcard bindings matched by most publishes, and publishes
//! that reach hundreds of queues each.

use std::time::Duration;

use crate::harness::*;
use crate::raw::*;
use crate::support::unique;

/// Publishes per batch written by the publishing loads.
const BATCH: usize = 200;
/// How long each publishing phase writes.
const PUBLISH_TIME: Duration = Duration::from_secs(2);

/// Bindings `#.#.#.#.#.#.#.#.#`, 128 adjacent `#`, `#.a.#.a…#.z` and `*`/`#` mixes, with
/// publishes of 128-word, 255-byte keys: the canary's p99 stays under 10 ms.
#[test]
fn pathological_topic_patterns_and_long_keys() {
    judged_twice(pathological_topic_patterns_and_long_keys_once);
}

fn pathological_topic_patterns_and_long_keys_once() {
    let mut load = Load::start("topic: # chains, 128-word keys", &[]);
    let (x, sink) = (unique("hx-topic"), unique("hx-sink"));
    let mut c = Client::connect(&load.b);
    let patterns = [
        "#.#.#.#.#.#.#.#.#".to_owned(),
        key_of(&["#"], 128),
        key_of(&["#", "a"], 128),
        key_of(&["#", "a"], 125) + ".#.z",
        key_of(&["*", "#"], 128),
        "*.*.*.#.*.*.#.#.*".to_owned(),
        key_of(&["a", "#", "*"], 128),
    ];
    c.send(&exchange_declare(1, &x, "topic"));
    // A fanout exchange bound to nothing: routing walks everything, nothing is queued.
    c.send(&exchange_declare(1, &sink, "fanout"));
    for p in &patterns {
        c.send(&exchange_bind(1, &sink, &x, p, &table(b"")));
    }
    c.sync();
    let keys = [
        key_of(&["a"], 128),
        key_of(&["a"], 127) + ".z",
        key_of(&["a", "b"], 128),
        key_of(&["b"], 128),
    ];
    let mut batch = Vec::new();
    for i in 0..BATCH {
        batch.extend_from_slice(&publish(1, &x, &keys[i % keys.len()], None, b"", 4096));
    }
    load.phase("publish 128-word keys", |_| {
        let (n, note) = pump(&mut c, &batch, PUBLISH_TIME, 5_000);
        format!("{} publishes{note}", count(n * BATCH))
    });
    if !c.stalled {
        c.send(&exchange_delete(1, &x));
        c.send(&exchange_delete(1, &sink));
        c.close();
    }
    load.finish();
}

/// 5,000 wildcard bindings (`#.p.#.q.#` and kin) from one topic exchange to 1,000 exchanges,
/// and 127-word keys that match most of them: the canary's p99 stays under 10 ms.
#[test]
fn thousands_of_wildcard_bindings_matched_by_most_publishes() {
    judged_twice(thousands_of_wildcard_bindings_matched_by_most_publishes_once);
}

fn thousands_of_wildcard_bindings_matched_by_most_publishes_once() {
    const BINDINGS: usize = 5_000;
    const SINKS: usize = 1_000;
    let mut load = Load::start("topic: 5,000 wildcard bindings", &[]);
    let x = unique("hx-wild");
    let sinks: Vec<String> = (0..SINKS).map(|i| format!("{x}-s{i}")).collect();
    let mut c = Client::connect(&load.b);
    let mut declare = exchange_declare(1, &x, "topic");
    let mut delete = exchange_delete(1, &x);
    for s in &sinks {
        declare.extend_from_slice(&exchange_declare(1, s, "fanout"));
        delete.extend_from_slice(&exchange_delete(1, s));
    }
    let mut rng = Rng(0x2545_f491);
    for i in 0..BINDINGS {
        let (p, q) = (rng.letter(), rng.letter());
        let key = match i % 5 {
            0 => format!("#.{p}.#.{q}.#"),
            1 => format!("#.{p}.*.{q}.#"),
            2 => format!("{p}.#.{q}"),
            3 => format!("*.#.{p}.#.{q}.*"),
            _ => format!("#.{p}.#"),
        };
        declare.extend_from_slice(&exchange_bind(1, &sinks[i % SINKS], &x, &key, &table(b"")));
    }
    load.phase("declare, bind, delete", |_| {
        let n = repeat_for(PHASE_TIME_MIN, 20, |_| {
            c.send(&declare);
            c.send(&delete);
            c.sync();
        });
        c.send(&declare);
        c.sync();
        format!(
            "{n} × ({} exchanges, {} bindings)",
            count(SINKS + 1),
            count(BINDINGS)
        )
    });
    let mut rng = Rng(0x9e37_79b9);
    let mut batch = Vec::new();
    for _ in 0..BATCH {
        let words: Vec<String> = (0..127).map(|_| rng.letter().to_string()).collect();
        batch.extend_from_slice(&publish(1, &x, &words.join("."), None, b"", 4096));
    }
    load.phase("publish matching keys", |_| {
        let (n, note) = pump(&mut c, &batch, PUBLISH_TIME, 5_000);
        format!("{} publishes{note}", count(n * BATCH))
    });
    if !c.stalled {
        c.send(&delete);
        c.close();
    }
    load.finish();
}

/// Publishes that each reach 300 queues through a topic exchange (the fan-out a client
/// controls), then the queues deleted with their messages: the canary's p99 stays under 10 ms.
#[test]
fn publishes_that_reach_hundreds_of_queues() {
    judged_twice(publishes_that_reach_hundreds_of_queues_once);
}

fn publishes_that_reach_hundreds_of_queues_once() {
    const QUEUES: usize = 300;
    const PUBLISHES: usize = 2_000;
    let mut load = Load::start("topic: publishes reaching 300 queues", &[]);
    let x = unique("hx-amp");
    let queues: Vec<String> = (0..QUEUES).map(|i| format!("{x}-q{i}")).collect();
    let mut c = Client::connect(&load.b);
    let mut bytes = exchange_declare(1, &x, "topic");
    for q in &queues {
        bytes.extend_from_slice(&queue_declare(1, q, NO_WAIT, &table(b"")));
        bytes.extend_from_slice(&queue_bind(1, q, &x, "#", &table(b"")));
        bytes.extend_from_slice(&queue_bind(1, q, &x, "*.#", &table(b"")));
    }
    c.send(&bytes);
    c.sync();
    let body = [b'.'; 100];
    let mut batch = Vec::new();
    for i in 0..BATCH {
        batch.extend_from_slice(&publish(1, &x, &format!("k.{i}"), None, &body, 4096));
    }
    load.phase("publish", |_| {
        let (n, note) = pump(&mut c, &batch, Duration::from_secs(10), PUBLISHES / BATCH);
        format!(
            "{} publishes, {} enqueued{note}",
            count(n * BATCH),
            count(n * BATCH * QUEUES)
        )
    });
    if c.stalled {
        load.finish();
        return;
    }
    load.phase("delete the full queues", |_| {
        let mut bytes = Vec::new();
        for q in &queues {
            bytes.extend_from_slice(&queue_delete(1, q));
        }
        bytes.extend_from_slice(&exchange_delete(1, &x));
        c.send(&bytes);
        c.sync();
        format!("{QUEUES} queues of {} messages", count(PUBLISHES))
    });
    c.close();
    load.finish();
}
