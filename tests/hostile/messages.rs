//! Messages a client piles up and then drops in one command: 100,000 unacked deliveries
//! requeued by one channel.close into a queue that holds 400,000 more, and that queue purged
//! and deleted.

use std::time::Duration;

use crate::harness::*;
use crate::raw::*;
use crate::support::unique;
use crate::wire::*;

/// basic.qos (60,10) with `prefetch_count` on `ch`.
fn qos(ch: u16, prefetch_count: u16) -> Vec<u8> {
    let mut p = b"\x00\x3c\x00\x0a\x00\x00\x00\x00".to_vec();
    p.extend_from_slice(&prefetch_count.to_be_bytes());
    p.push(0);
    method(ch, &p)
}

/// basic.consume (60,20) with acks (bits 0), waiting for consume-ok.
fn consume_with_acks(ch: u16, queue: &str) -> Vec<u8> {
    let mut p = b"\x00\x3c\x00\x14\x00\x00".to_vec();
    p.extend_from_slice(&shortstr(queue));
    p.extend_from_slice(&shortstr("c"));
    p.push(0);
    p.extend_from_slice(&longstr(b""));
    method(ch, &p)
}

/// 500,000 messages in a queue, 60,000 of them delivered and unacked on one channel, which is
/// then closed (all requeued at once); then the queue is purged, filled and deleted: the
/// canary's p99 stays under 10 ms.
#[test]
fn mass_requeue_purge_and_delete() {
    judged_twice(mass_requeue_purge_and_delete_once);
}

fn mass_requeue_purge_and_delete_once() {
    const MESSAGES: usize = 500_000;
    const UNACKED: u16 = 60_000;
    const BATCH: usize = 10_000;
    let mut load = Load::start("messages: 60,000 requeued, 500,000 purged", &[]);
    let q = unique("hx-mass");
    let mut c = Client::connect(&load.b);
    c.send(&queue_declare(1, &q, NO_WAIT, &table(b"")));
    let mut batch = Vec::new();
    for _ in 0..BATCH {
        batch.extend_from_slice(&publish(1, "", &q, None, b"", 4096));
    }
    let fill = |c: &mut Client| {
        let (n, note) = pump(c, &batch, Duration::from_secs(60), MESSAGES / BATCH);
        format!("{} messages{note}", count(n * BATCH))
    };
    load.phase("fill", |_| fill(&mut c));
    load.phase("deliver without acks", |_| {
        c.open_channel(2);
        c.send(&qos(2, UNACKED));
        c.wait_for(2, (60, 11));
        c.send(&consume_with_acks(2, &q));
        c.wait_for(2, (60, 21));
        let mut delivered = 0;
        while delivered < UNACKED {
            let f = c.next_method();
            if f.kind == 1 && f.class_method() == (60, 60) {
                delivered += 1;
            }
        }
        format!("{} unacked deliveries", count(UNACKED as usize))
    });
    load.phase("close the channel", |_| {
        c.send(&channel_close(2));
        c.wait_for(2, (20, 41));
        c.sync();
        format!("{} requeued", count(UNACKED as usize))
    });
    load.phase("purge", |_| {
        c.send(&queue_purge(1, &q));
        let f = c.wait_for(1, (50, 31));
        let n = u32::from_be_bytes(f.payload[4..8].try_into().unwrap());
        assert_eq!(n as usize, MESSAGES, "purge-ok message count");
        format!("{} purged", count(n as usize))
    });
    load.phase("fill again", |_| fill(&mut c));
    load.phase("delete", |_| {
        c.send(&queue_delete(1, &q));
        c.sync();
        format!("a queue of {} deleted", count(MESSAGES))
    });
    c.close();
    load.finish();
}
