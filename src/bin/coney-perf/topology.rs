//! What a load run declares and tears down: the exchange, its queues, their bindings, and the
//! routing-key sets of the topic mode. Idempotent (purges instead of failing on leftovers);
//! `amq.*` exchanges are declared passively.

use crate::client::{Client, Result, CHANNEL};
use crate::run::RunConfig;
use coney::protocol::method::{
    ExchangeDeclare, ExchangeDelete, Method, QueueBind, QueueDeclare, QueueDelete, QueuePurge,
};
use coney::protocol::table::TableWriter;
use coney::protocol::wire::Writer;
use coney::protocol::FieldTable;
use std::collections::HashSet;

/// The queues of a run: `queue` itself, or `queue-0` .. `queue-{n-1}` with `--queues n`.
pub fn queue_names(cfg: &RunConfig) -> Vec<String> {
    if cfg.queues <= 1 {
        vec![cfg.queue.clone()]
    } else {
        (0..cfg.queues)
            .map(|i| format!("{}-{i}", cfg.queue))
            .collect()
    }
}

/// The queue a `--retry-ttl` run dead-letters `queue` into.
pub fn retry_queue(queue: &str) -> String {
    format!("{queue}.retry")
}

/// Encodes a field table written by `f` (its contents, without the length prefix).
fn table(f: impl FnOnce(&mut TableWriter<'_, '_>)) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = Writer::new(&mut buf);
    let mut t = TableWriter::begin(&mut w);
    f(&mut t);
    t.finish();
    buf.split_off(4)
}

/// The arguments of a run's queue `q`: priorities, length limit, retry dead-lettering.
fn queue_arguments(cfg: &RunConfig, q: &str) -> Vec<u8> {
    table(|t| {
        if let Some(p) = cfg.max_priority {
            t.i32("x-max-priority", p as i32);
        }
        if let Some(n) = cfg.max_length {
            t.i64("x-max-length", n as i64);
        }
        if cfg.retry_ttl_ms.is_some() {
            t.longstr("x-dead-letter-exchange", b"")
                .longstr("x-dead-letter-routing-key", retry_queue(q).as_bytes());
        }
    })
}

/// The retry queue of `q`: messages wait `ttl_ms`, then go back to `q`.
fn retry_arguments(q: &str, ttl_ms: u32) -> Vec<u8> {
    table(|t| {
        t.i32("x-message-ttl", ttl_ms as i32)
            .longstr("x-dead-letter-exchange", b"")
            .longstr("x-dead-letter-routing-key", q.as_bytes());
    })
}

/// Declares queue `name` with `arguments` (a table's contents) and purges it.
fn declare_queue(c: &mut Client, cfg: &RunConfig, name: &str, arguments: &[u8]) -> Result<()> {
    let d = QueueDeclare {
        queue: name.as_bytes(),
        durable: cfg.queue_durable,
        arguments: FieldTable::parse(arguments).unwrap_or_default(),
        ..Default::default()
    };
    c.call(CHANNEL, &Method::QueueDeclare(d), "queue.declare-ok", |m| {
        matches!(m, Method::QueueDeclareOk(_)).then_some(())
    })?;
    let p = QueuePurge {
        queue: name.as_bytes(),
        ..Default::default()
    };
    c.call(CHANNEL, &Method::QueuePurge(p), "queue.purge-ok", |m| {
        matches!(m, Method::QueuePurgeOk(_)).then_some(())
    })
}

/// The fixed routing key: `-k`, or the queue name (which the default exchange routes by).
pub fn routing_key(cfg: &RunConfig) -> String {
    cfg.routing_key.clone().unwrap_or_else(|| cfg.queue.clone())
}

/// Words per level of the topic keys: the smallest base with base^3 >= n.
fn topic_base(n: usize) -> usize {
    let mut b = 1;
    while b * b * b < n.max(1) {
        b += 1;
    }
    b
}

/// `n` three-word routing keys `s{x}.m{y}.e{z}`, enumerated in base `topic_base(n)`.
pub fn topic_routing_keys(n: usize) -> Vec<String> {
    let b = topic_base(n);
    (0..n)
        .map(|i| format!("s{}.m{}.e{}", i % b, (i / b) % b, (i / b / b) % b))
        .collect()
}

/// `count` distinct binding keys over the words of `topic_routing_keys(keys)`: one in ten is
/// `#.e{z}`, one in ten `s{x}.*.e{z}`, one in ten `*.m{y}.#`, the rest exact keys; duplicates
/// are replaced by four-word keys no routing key matches. Every routing key matches at least
/// the `#.e{z}` and `*.m{y}.#` bindings once `count >= 10 * base`.
pub fn topic_binding_keys(count: usize, keys: usize) -> Vec<String> {
    let b = topic_base(keys);
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(count);
    for j in 0..count {
        let k = j / 10;
        let key = match j % 10 {
            0 => format!("#.e{}", k % b),
            1 => format!("s{}.*.e{}", k % b, (k / b) % b),
            2 => format!("*.m{}.#", k % b),
            _ => format!("s{}.m{}.e{}", j % b, (j / b) % b, (j / b / b) % b),
        };
        if seen.insert(key.clone()) {
            out.push(key);
        }
    }
    let mut filler = 0;
    while out.len() < count {
        out.push(format!("s{}.m{}.e{}.t{filler}", filler % b, 0, 0));
        filler += 1;
    }
    out
}

fn exchange_is_predeclared(name: &str) -> bool {
    name.is_empty() || name.starts_with("amq.")
}

/// Declares the exchange, queues and bindings of the run and purges the queues.
pub fn declare(c: &mut Client, cfg: &RunConfig) -> Result<()> {
    if !cfg.exchange.is_empty() {
        let x = ExchangeDeclare {
            exchange: cfg.exchange.as_bytes(),
            kind: cfg.exchange_type.as_bytes(),
            passive: exchange_is_predeclared(&cfg.exchange),
            durable: cfg.queue_durable,
            ..Default::default()
        };
        c.call(
            CHANNEL,
            &Method::ExchangeDeclare(x),
            "exchange.declare-ok",
            |m| matches!(m, Method::ExchangeDeclareOk(_)).then_some(()),
        )?;
    }
    let queues = queue_names(cfg);
    for q in &queues {
        declare_queue(c, cfg, q, &queue_arguments(cfg, q))?;
        if let Some(ttl) = cfg.retry_ttl_ms {
            declare_queue(c, cfg, &retry_queue(q), &retry_arguments(q, ttl))?;
        }
    }
    if cfg.exchange.is_empty() {
        return Ok(());
    }
    let keys = if cfg.topic_bindings > 0 {
        topic_binding_keys(cfg.topic_bindings, cfg.routing_keys_random.max(1000))
    } else {
        vec![routing_key(cfg)]
    };
    for (j, key) in keys.iter().enumerate() {
        // With several queues, topic bindings are dealt round-robin; a fixed key binds them all.
        let targets: Vec<&String> = if cfg.topic_bindings > 0 {
            vec![&queues[j % queues.len()]]
        } else {
            queues.iter().collect()
        };
        for q in targets {
            let b = QueueBind {
                queue: q.as_bytes(),
                exchange: cfg.exchange.as_bytes(),
                routing_key: key.as_bytes(),
                arguments: FieldTable::EMPTY,
                ..Default::default()
            };
            c.call(CHANNEL, &Method::QueueBind(b), "queue.bind-ok", |m| {
                matches!(m, Method::QueueBindOk(_)).then_some(())
            })?;
        }
    }
    Ok(())
}

/// Deletes the run's queues, and its exchange unless it is predeclared.
pub fn cleanup(c: &mut Client, cfg: &RunConfig) -> Result<()> {
    let mut names = queue_names(cfg);
    if cfg.retry_ttl_ms.is_some() {
        names.extend(queue_names(cfg).iter().map(|q| retry_queue(q)));
    }
    for q in names {
        let d = QueueDelete {
            queue: q.as_bytes(),
            ..Default::default()
        };
        c.call(CHANNEL, &Method::QueueDelete(d), "queue.delete-ok", |m| {
            matches!(m, Method::QueueDeleteOk(_)).then_some(())
        })?;
    }
    if !exchange_is_predeclared(&cfg.exchange) {
        let d = ExchangeDelete {
            exchange: cfg.exchange.as_bytes(),
            ..Default::default()
        };
        c.call(
            CHANNEL,
            &Method::ExchangeDelete(d),
            "exchange.delete-ok",
            |m| matches!(m, Method::ExchangeDeleteOk(_)).then_some(()),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AMQP topic matching by definition (`*` one word, `#` zero or more), kept independent of
    /// the broker's trie: this checks the generator's promise, not the broker.
    fn topic_matches(pattern: &[&str], key: &[&str]) -> bool {
        match pattern.split_first() {
            None => key.is_empty(),
            Some((&"#", rest)) => (0..=key.len()).any(|i| topic_matches(rest, &key[i..])),
            Some((&"*", rest)) => !key.is_empty() && topic_matches(rest, &key[1..]),
            Some((word, rest)) => key.first() == Some(word) && topic_matches(rest, &key[1..]),
        }
    }

    #[test]
    fn every_routing_key_matches_some_binding() {
        let keys = topic_routing_keys(1000);
        assert_eq!(keys.iter().collect::<HashSet<_>>().len(), 1000);
        let bindings = topic_binding_keys(1000, 1000);
        assert_eq!(bindings.iter().collect::<HashSet<_>>().len(), 1000);
        assert!(bindings.iter().filter(|b| b.contains(['*', '#'])).count() >= 100);
        let patterns: Vec<Vec<&str>> = bindings.iter().map(|b| b.split('.').collect()).collect();
        for k in &keys {
            let words: Vec<&str> = k.split('.').collect();
            let matched = patterns.iter().filter(|p| topic_matches(p, &words)).count();
            assert!(matched >= 2, "{k} matched {matched} bindings");
        }
    }

    #[test]
    fn topic_matches_follows_amqp() {
        let m = |p: &str, k: &str| {
            topic_matches(
                &p.split('.').collect::<Vec<_>>(),
                &k.split('.').collect::<Vec<_>>(),
            )
        };
        assert!(m("#.e1", "s0.m0.e1") && m("#.e1", "e1") && !m("#.e1", "s0.m0.e2"));
        assert!(m("s0.*.e1", "s0.m3.e1") && !m("s0.*.e1", "s0.e1"));
        assert!(m("*.m0.#", "s1.m0.e0") && m("*.m0.#", "s1.m0") && !m("*.m0.#", "m0.e0"));
    }
}
