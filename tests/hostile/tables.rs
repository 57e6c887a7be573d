//! Huge field tables at the depth limit: headers-exchange bindings and publishes with wide and
//! deep tables, and queue.declare / queue.bind arguments as large as a frame allows.

use std::time::Duration;

use crate::harness::*;
use crate::raw::*;
use crate::support::unique;

/// Entries of a table that fills a method frame of 131,072 octets with room for its other
/// fields: ~15 octets per `kN = "vN"` entry.
const FRAME_TABLE_ENTRIES: usize = 8_000;

/// 200 headers bindings of 500 entries each (x-match all and any, plus tables nested 16 deep)
/// and publishes carrying 2,000 headers: the canary's p99 stays under 10 ms.
#[test]
fn headers_exchange_with_wide_and_deep_tables() {
    judged_twice(headers_exchange_with_wide_and_deep_tables_once);
}

fn headers_exchange_with_wide_and_deep_tables_once() {
    const BINDINGS: usize = 200;
    const BINDING_ENTRIES: usize = 500;
    const HEADERS: usize = 2_000;
    const BATCH: usize = 10;
    let mut load = Load::start("headers: 200 × 500-entry bindings, 2,000 headers", &[]);
    let (h, sink) = (unique("hx-headers"), unique("hx-sink"));
    let mut c = Client::connect(&load.b);
    let deep = deep_entry(16, &wide_entries(10));
    let mut bind = exchange_declare(1, &h, "headers");
    bind.extend_from_slice(&exchange_declare(1, &sink, "fanout"));
    let mut unbind = exchange_delete(1, &h);
    unbind.extend_from_slice(&exchange_delete(1, &sink));
    for i in 0..BINDINGS {
        let mode = if i % 2 == 0 { "all" } else { "any" };
        let mut args = entry_str("x-match", mode);
        args.extend_from_slice(&entry_str("id", &i.to_string()));
        // Every binding but the last few has keys the publishes carry (k0..), so both kinds
        // compare everything before they decide.
        for j in 0..BINDING_ENTRIES {
            let k = (i * 7 + j) % (HEADERS + 50);
            args.extend_from_slice(&entry_str(&format!("k{k}"), &format!("v{k}")));
        }
        args.extend_from_slice(&deep);
        bind.extend_from_slice(&exchange_bind(1, &sink, &h, "", &table(&args)));
    }
    load.phase("bind, delete", |_| {
        let n = repeat_for(PHASE_TIME_MIN, 20, |_| {
            c.send(&bind);
            c.send(&unbind);
            c.sync();
        });
        c.send(&bind);
        c.sync();
        format!("{n} × {BINDINGS} bindings of {BINDING_ENTRIES} entries")
    });
    let mut headers = wide_entries(HEADERS);
    headers.extend_from_slice(&deep);
    let headers = table(&headers);
    let mut batch = Vec::new();
    for _ in 0..BATCH {
        batch.extend_from_slice(&publish(1, &h, "", Some(&headers), b"", 131_072));
    }
    load.phase("publish", |_| {
        let (n, note) = pump(&mut c, &batch, Duration::from_secs(2), 10_000);
        format!(
            "{} publishes of {} KiB headers{note}",
            count(n * BATCH),
            headers.len() / 1024
        )
    });
    if !c.stalled {
        c.send(&unbind);
        c.close();
    }
    load.finish();
}

/// queue.declare and queue.bind with arguments filling a whole frame (8,000 entries and a table
/// nested 16 deep), declared, bound and deleted over and over: the canary's p99 stays under
/// 10 ms.
#[test]
fn frame_sized_declare_and_bind_arguments() {
    judged_twice(frame_sized_declare_and_bind_arguments_once);
}

fn frame_sized_declare_and_bind_arguments_once() {
    const QUEUES: usize = 50;
    let mut load = Load::start("tables: frame-sized arguments", &[]);
    let x = unique("hx-args");
    let mut c = Client::connect(&load.b);
    c.send(&exchange_declare(1, &x, "direct"));
    c.sync();
    let mut args = deep_entry(16, &wide_entries(10));
    args.extend_from_slice(&wide_entries(FRAME_TABLE_ENTRIES));
    let args = table(&args);
    let mut cycle = Vec::new();
    for i in 0..QUEUES {
        let q = format!("{x}-q{i}");
        cycle.extend_from_slice(&queue_declare(1, &q, NO_WAIT, &args));
        cycle.extend_from_slice(&queue_bind(1, &q, &x, "k", &args));
    }
    for i in 0..QUEUES {
        cycle.extend_from_slice(&queue_delete(1, &format!("{x}-q{i}")));
    }
    load.phase("declare, bind, delete", |_| {
        let n = repeat_for(Duration::from_secs(1), 50, |_| {
            c.send(&cycle);
            c.sync();
        });
        format!(
            "{} declares and binds with {} KiB arguments",
            count(n * QUEUES),
            args.len() / 1024
        )
    });
    c.send(&exchange_delete(1, &x));
    c.close();
    load.finish();
}
