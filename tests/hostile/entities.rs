//! Entities a client piles up and then drops at once: thousands of bindings on one queue (and
//! its deletion), thousands of exclusive queues on one connection (and its close), and
//! exchange-to-exchange graphs that are wide, deep and cyclic.

use std::time::Duration;

use crate::harness::*;
use crate::raw::*;
use crate::support::unique;

/// 30,000 bindings on one queue (20,000 direct keys, 10,000 topic patterns), then the queue
/// deleted in one command: the canary's p99 stays under 10 ms through both.
#[test]
fn thousands_of_bindings_on_one_queue_then_its_deletion() {
    judged_twice(thousands_of_bindings_on_one_queue_then_its_deletion_once);
}

fn thousands_of_bindings_on_one_queue_then_its_deletion_once() {
    const DIRECT: usize = 20_000;
    const TOPIC: usize = 10_000;
    let mut load = Load::start("bindings: 30,000 on one queue", &[]);
    let q = unique("hx-bound");
    let mut c = Client::connect(&load.b);
    let mut bind = queue_declare(1, &q, NO_WAIT, &table(b""));
    for i in 0..DIRECT {
        bind.extend_from_slice(&queue_bind(
            1,
            &q,
            "amq.direct",
            &format!("k{i}"),
            &table(b""),
        ));
    }
    for i in 0..TOPIC {
        let key = format!("k{i}.#.*");
        bind.extend_from_slice(&queue_bind(1, &q, "amq.topic", &key, &table(b"")));
    }
    load.phase("bind", |_| {
        c.send(&bind);
        c.sync();
        format!("{} bindings", count(DIRECT + TOPIC))
    });
    load.phase("delete the queue", |_| {
        c.send(&queue_delete(1, &q));
        c.sync();
        "1 queue.delete".to_owned()
    });
    c.close();
    load.finish();
}

/// A connection declares 10,000 exclusive queues, each bound and holding a message, then
/// closes (twice: with connection.close and by dropping the socket); the broker deletes them
/// all while the canary's p99 stays under 10 ms.
#[test]
fn ten_thousand_exclusive_queues_go_with_their_connection() {
    judged_twice(ten_thousand_exclusive_queues_go_with_their_connection_once);
}

fn ten_thousand_exclusive_queues_go_with_their_connection_once() {
    const QUEUES: usize = 10_000;
    let mut load = Load::start("exclusive queues: 10,000 on one connection", &[]);
    for how in ["connection.close", "socket dropped"] {
        let prefix = unique("hx-excl");
        let mut c = Client::connect(&load.b);
        let mut bytes = Vec::new();
        for i in 0..QUEUES {
            let q = format!("{prefix}-{i}");
            bytes.extend_from_slice(&queue_declare(1, &q, NO_WAIT | EXCLUSIVE, &table(b"")));
            bytes.extend_from_slice(&queue_bind(1, &q, "amq.direct", &q, &table(b"")));
            bytes.extend_from_slice(&publish(1, "", &q, None, b"m", 4096));
        }
        load.phase(&format!("declare ({how})"), |_| {
            c.send(&bytes);
            c.sync();
            format!("{} queues, bindings, messages", count(QUEUES))
        });
        let last = format!("{prefix}-{}", QUEUES - 1);
        load.phase(&format!("close ({how})"), |b| {
            if how == "connection.close" {
                c.close();
            } else {
                drop(c);
            }
            // The queues are gone once a passive declare of the last one says 404.
            wait_queue_gone(b, &last);
            format!("{} queues deleted", count(QUEUES))
        });
    }
    load.finish();
}

/// Waits (bounded) until a passive queue.declare of `queue` gets 404 on a fresh connection.
fn wait_queue_gone(b: &crate::support::Broker, queue: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "{queue} still exists after 60 s"
        );
        let mut probe = Client::connect(b);
        probe.send(&queue_declare(1, queue, 1, &table(b"")));
        // declare-ok: still there; channel.close 404 or 405 (still locked): ask again.
        let f = probe.next_method();
        match f.class_method() {
            (50, 11) => {}
            (20, 40) if u16::from_be_bytes([f.payload[4], f.payload[5]]) == 404 => return,
            (20, 40) => {}
            other => panic!("passive declare answered {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Exchange-to-exchange graphs: a chain of 1,000 fanout exchanges closed into a cycle, and two
/// fully connected layers of 100 (10,000 bindings) bound back to their source; publishes walk
/// each graph whole. The canary's p99 stays under 10 ms.
#[test]
fn exchange_to_exchange_graphs_deep_wide_and_cyclic() {
    judged_twice(exchange_to_exchange_graphs_deep_wide_and_cyclic_once);
}

fn exchange_to_exchange_graphs_deep_wide_and_cyclic_once() {
    const CHAIN: usize = 1_000;
    const LAYER: usize = 100;
    const BATCH: usize = 100;
    let mut load = Load::start("e2e: 1,000-deep chain, 100×100 layers, cycles", &[]);
    let x = unique("hx-e2e");
    let mut c = Client::connect(&load.b);
    let chain: Vec<String> = (0..CHAIN).map(|i| format!("{x}-c{i}")).collect();
    let mut setup = Vec::new();
    let mut teardown = Vec::new();
    for (i, e) in chain.iter().enumerate() {
        setup.extend_from_slice(&exchange_declare(1, e, "fanout"));
        if i > 0 {
            setup.extend_from_slice(&exchange_bind(1, e, &chain[i - 1], "", &table(b"")));
        }
        teardown.extend_from_slice(&exchange_delete(1, e));
    }
    setup.extend_from_slice(&exchange_bind(
        1,
        &chain[0],
        &chain[CHAIN - 1],
        "",
        &table(b""),
    ));
    let root = format!("{x}-root");
    setup.extend_from_slice(&exchange_declare(1, &root, "fanout"));
    teardown.extend_from_slice(&exchange_delete(1, &root));
    let layer =
        |name: &str| -> Vec<String> { (0..LAYER).map(|i| format!("{x}-{name}{i}")).collect() };
    let (a, z) = (layer("a"), layer("z"));
    for e in a.iter().chain(&z) {
        setup.extend_from_slice(&exchange_declare(1, e, "fanout"));
        teardown.extend_from_slice(&exchange_delete(1, e));
    }
    for ea in &a {
        setup.extend_from_slice(&exchange_bind(1, ea, &root, "", &table(b"")));
        for ez in &z {
            setup.extend_from_slice(&exchange_bind(1, ez, ea, "", &table(b"")));
        }
    }
    for ez in &z {
        setup.extend_from_slice(&exchange_bind(1, &root, ez, "", &table(b"")));
    }
    load.phase("build the graphs", |_| {
        c.send(&setup);
        c.sync();
        format!(
            "{} exchanges, {} bindings",
            count(CHAIN + 1 + 2 * LAYER),
            count(CHAIN + 2 * LAYER + LAYER * LAYER)
        )
    });
    for (what, start) in [
        ("publish into the chain", &chain[0]),
        ("publish into the layers", &root),
    ] {
        let mut batch = Vec::new();
        for _ in 0..BATCH {
            batch.extend_from_slice(&publish(1, start, "k", None, b"", 4096));
        }
        load.phase(what, |_| {
            let (n, note) = pump(&mut c, &batch, Duration::from_secs(2), 10_000);
            format!("{} publishes{note}", count(n * BATCH))
        });
    }
    if !c.stalled {
        load.phase("delete the graphs", |_| {
            c.send(&teardown);
            c.sync();
            format!("{} exchanges", count(CHAIN + 1 + 2 * LAYER))
        });
        c.close();
    }
    load.finish();
}
