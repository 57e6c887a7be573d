//! Bulk on the wire: a client that pipelines declares and never reads the answers, and frames
//! at frame_max (message bodies, and content headers whose tables fill a frame).

use std::time::Duration;

use crate::harness::*;
use crate::raw::*;
use crate::support::proc_rss_bytes;
use crate::support::unique;

/// A client pipelines passive queue.declares of a 255-byte name and reads nothing: the canary's
/// p99 stays under 10 ms, and the broker stops reading the client once its unread answers
/// reach WRITE_BUFFER_HIGH_BYTES (1 MiB), so its memory grows by little (it held 192 MiB of
/// answers before, and freeing them stalled the loop for 10 ms).
#[test]
fn pipelined_declares_never_read() {
    judged_twice(pipelined_declares_never_read_once);
}

fn pipelined_declares_never_read_once() {
    const BATCH: usize = 1_000;
    /// The broker's RSS growth allowed: the unread output (1 MiB and a frame) and some slack.
    const RSS_GROWTH_MAX_BYTES: u64 = 16 * 1024 * 1024;
    let mut load = Load::start("declares pipelined, answers never read", &[]);
    let mut name = unique("hx-unread");
    name.extend(std::iter::repeat_n('q', 255 - name.len()));
    let name = &name;
    let mut c = Client::connect(&load.b);
    c.send(&queue_declare(1, name, NO_WAIT, &table(b"")));
    c.sync();
    let mut batch = Vec::new();
    for _ in 0..BATCH {
        batch.extend_from_slice(&queue_declare(1, name, 1, &table(b"")));
    }
    let pid = load.b.pid();
    let rss_before = pid.and_then(proc_rss_bytes);
    let mut growth = None;
    load.phase("pipeline without reading", |_| {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        let mut n = 0;
        while std::time::Instant::now() < deadline && c.send_before(&batch, deadline) {
            n += 1;
        }
        growth = match (rss_before, pid.and_then(proc_rss_bytes)) {
            (Some(before), Some(after)) => Some(after.saturating_sub(before)),
            _ => None,
        };
        let rss = growth.map_or(String::new(), |g| {
            format!("; broker RSS +{} MiB", g / (1024 * 1024))
        });
        let stalled = if c.stalled {
            " (the broker stopped reading)"
        } else {
            ""
        };
        format!("{} declares written{stalled}{rss}", count(n * BATCH))
    });
    load.phase("drop the connection", |_| {
        drop(c);
        "1 connection".to_owned()
    });
    let external = load.external();
    load.finish();
    if let (false, Some(g)) = (external, growth) {
        assert!(
            g < RSS_GROWTH_MAX_BYTES,
            "broker RSS grew by {g} bytes for one client that does not read"
        );
    }
}

/// 1 MiB messages in frames of 131,072 octets, and publishes whose headers table fills a whole
/// frame, pipelined to an exchange bound nowhere: the canary's p99 stays under 10 ms.
#[test]
fn frames_at_frame_max() {
    judged_twice(frames_at_frame_max_once);
}

fn frames_at_frame_max_once() {
    let mut load = Load::start("frames at frame_max", &[]);
    let x = unique("hx-frames");
    let mut c = Client::connect(&load.b);
    c.send(&exchange_declare(1, &x, "fanout"));
    c.sync();
    let body = vec![b'.'; 1024 * 1024];
    let mut batch = Vec::new();
    for _ in 0..4 {
        batch.extend_from_slice(&publish(1, &x, "k", None, &body, 131_072));
    }
    load.phase("1 MiB bodies", |_| {
        let (n, note) = pump(&mut c, &batch, Duration::from_secs(1), 10_000);
        format!("{} MiB published{note}", count(n * 4))
    });
    // content header: class, weight, size, flags, then the table; 131,064 octets in all.
    let mut entries = Vec::new();
    let mut i = 0;
    while entries.len() < 131_064 - 14 - 4 - 20 {
        entries.extend_from_slice(&entry_str(&format!("h{i}"), "v"));
        i += 1;
    }
    let headers = table(&entries);
    let mut batch = Vec::new();
    for _ in 0..8 {
        batch.extend_from_slice(&publish(1, &x, "k", Some(&headers), b"b", 131_072));
    }
    load.phase("frame-sized header tables", |_| {
        let (n, note) = pump(&mut c, &batch, Duration::from_secs(1), 10_000);
        format!(
            "{} publishes with {} headers each{note}",
            count(n * 8),
            count(i)
        )
    });
    c.send(&exchange_delete(1, &x));
    c.close();
    load.finish();
}

/// 16 MiB bodies pipelined by four connections at once, to an exchange bound nowhere: their
/// payload is read straight into the messages, READ_BODY_BYTES_PER_TURN_MAX (256 KiB) per
/// connection per turn, and the canary's p99 stays under 10 ms.
#[test]
fn large_bodies_from_several_connections() {
    judged_twice(large_bodies_from_several_connections_once);
}

fn large_bodies_from_several_connections_once() {
    const CLIENTS: usize = 4;
    let mut load = Load::start("16 MiB bodies from 4 connections", &[]);
    let x = unique("hx-large");
    let mut clients: Vec<Client> = (0..CLIENTS).map(|_| Client::connect(&load.b)).collect();
    clients[0].send(&exchange_declare(1, &x, "fanout"));
    clients[0].sync();
    let body = vec![b'.'; 16 * 1024 * 1024];
    let batch = publish(1, &x, "k", None, &body, 131_072);
    load.phase("16 MiB bodies", |_| {
        let results: Vec<(usize, String)> = std::thread::scope(|s| {
            let pumps: Vec<_> = clients
                .iter_mut()
                .map(|c| s.spawn(|| pump(c, &batch, Duration::from_secs(2), 1_000)))
                .collect();
            pumps
                .into_iter()
                .map(|p| p.join().expect("pump thread"))
                .collect()
        });
        let n: usize = results.iter().map(|r| r.0).sum();
        let notes: String = results.iter().map(|r| r.1.as_str()).collect();
        format!("{} MiB published{notes}", count(n * 16))
    });
    clients[0].send(&exchange_delete(1, &x));
    for c in clients {
        c.close();
    }
    load.finish();
}
