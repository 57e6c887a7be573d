//! Churn a client controls: thousands of consumers on one channel subscribed and cancelled,
//! one consumer tag subscribed and cancelled over and over, every channel number opened and
//! closed, and connections holding channel_max channels each.

use std::time::Duration;

use crate::harness::*;
use crate::raw::*;
use crate::support::proc_rss_bytes;
use crate::support::unique;
use crate::wire::*;

/// 5,000 consumers on one channel subscribed then cancelled, over and over, and one tag
/// consumed and cancelled back to back: the canary's p99 stays under 10 ms.
#[test]
fn consumer_and_cancel_churn() {
    judged_twice(consumer_and_cancel_churn_once);
}

fn consumer_and_cancel_churn_once() {
    const CONSUMERS: usize = 5_000;
    const PAIRS: usize = 1_000;
    let mut load = Load::start("consumers: 5,000 per channel, consume/cancel churn", &[]);
    let q = unique("hx-consumed");
    let mut c = Client::connect(&load.b);
    c.send(&queue_declare(1, &q, NO_WAIT, &table(b"")));
    c.sync();
    let mut cycle = Vec::new();
    for i in 0..CONSUMERS {
        cycle.extend_from_slice(&basic_consume(1, &q, &format!("t{i}")));
    }
    for i in 0..CONSUMERS {
        cycle.extend_from_slice(&basic_cancel(1, &format!("t{i}")));
    }
    load.phase("5,000 consumers, then cancelled", |_| {
        let n = repeat_for(Duration::from_secs(1), 50, |_| {
            c.send(&cycle);
            c.sync();
        });
        format!("{} consumes and cancels", count(n * CONSUMERS))
    });
    let mut pairs = Vec::new();
    for _ in 0..PAIRS {
        pairs.extend_from_slice(&basic_consume(1, &q, "same"));
        pairs.extend_from_slice(&basic_cancel(1, "same"));
    }
    load.phase("one tag consumed and cancelled", |_| {
        let (n, note) = pump(&mut c, &pairs, Duration::from_secs(1), 1_000);
        format!("{} consume/cancel pairs{note}", count(n * PAIRS))
    });
    c.send(&queue_delete(1, &q));
    c.close();
    load.finish();
}

/// Reads until `n` frames of `(class, method)` arrived (bounded by the socket timeout).
fn expect_n(c: &mut Client, want: (u16, u16), n: usize) {
    let mut seen = 0;
    while seen < n {
        let f = c.next_method();
        let cm = f.class_method();
        if cm == want {
            seen += 1;
        } else if cm != (20, 11) && cm != (20, 41) {
            panic!("expected {want:?}, got {cm:?} on channel {}", f.channel);
        }
    }
}

/// Every channel number up to channel_max (2047) opened and closed over and over, then ten
/// connections holding 2,047 open channels each: the canary's p99 stays under 10 ms and the
/// broker's memory per open channel is reported.
#[test]
fn channel_open_close_churn_up_to_channel_max() {
    judged_twice(channel_open_close_churn_up_to_channel_max_once);
}

fn channel_open_close_churn_up_to_channel_max_once() {
    const CHANNEL_MAX: u16 = 2047;
    const CONNECTIONS: usize = 10;
    let mut load = Load::start("channels: open/close churn up to channel_max", &[]);
    let mut c = Client::connect(&load.b);
    let (mut open, mut close) = (Vec::new(), Vec::new());
    for ch in 2..=CHANNEL_MAX {
        open.extend_from_slice(&channel_open(ch));
        close.extend_from_slice(&channel_close(ch));
    }
    let per_cycle = CHANNEL_MAX as usize - 1;
    load.phase("open and close 2,046 channels", |_| {
        let n = repeat_for(Duration::from_secs(1), 100, |_| {
            c.send(&open);
            c.send(&close);
            expect_n(&mut c, (20, 41), per_cycle);
        });
        format!("{} channels opened and closed", count(n * per_cycle))
    });
    c.close();
    let pid = load.b.pid();
    let rss_before = pid.and_then(proc_rss_bytes);
    let mut held = Vec::new();
    load.phase("10 connections × 2,047 channels", |b| {
        for _ in 0..CONNECTIONS {
            let mut c = Client::connect(b);
            c.send(&open);
            expect_n(&mut c, (20, 11), per_cycle);
            held.push(c);
        }
        let rss = match (rss_before, pid.and_then(proc_rss_bytes)) {
            (Some(before), Some(after)) => format!(
                "; {} B of RSS per channel",
                after.saturating_sub(before) / (CONNECTIONS * CHANNEL_MAX as usize) as u64
            ),
            _ => String::new(),
        };
        format!(
            "{} open channels{rss}",
            count(CONNECTIONS * CHANNEL_MAX as usize)
        )
    });
    load.phase("close those connections", |_| {
        for c in held.drain(..) {
            c.close();
        }
        format!("{CONNECTIONS} connections")
    });
    load.finish();
}
