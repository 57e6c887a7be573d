//! Where RabbitMQ rewrites a message's properties, and how: the x-death header of a dead
//! letter (and x-first-death-*), a quorum queue's x-delivery-count, a due delayed message's
//! x-delay, and the BCC header hidden from consumers. Built with the protocol layer's property
//! and table encoders; every other property and header is kept as it was.

use super::message::Message;
use crate::protocol::properties::BasicProperties;
use crate::protocol::table::{FieldArray, TableWriter};
use crate::protocol::wire::Writer;
use crate::protocol::{FieldTable, FieldValue};
use std::borrow::Cow;

/// One dead-lettering, as x-death records it.
pub(super) struct Death<'a> {
    pub(super) queue: &'a [u8],
    pub(super) reason: &'static str,
    /// The exchange the message was published to (or dead-lettered through) last.
    pub(super) exchange: &'a [u8],
    pub(super) routing_key: &'a [u8],
    pub(super) time_secs: u64,
}

/// Encodes `old` with `headers` (a table's contents) instead of its headers, without the
/// expiration if `drop_expiration`.
fn encode(old: &BasicProperties<'_>, headers: &[u8], drop_expiration: bool) -> Vec<u8> {
    let mut p = *old;
    // Built by TableWriter just before, so it parses.
    p.headers = FieldTable::parse(headers).ok();
    if drop_expiration {
        p.expiration = None;
    }
    let mut out = Vec::with_capacity(headers.len() + 64);
    p.encode(&mut Writer::new(&mut out));
    out
}

/// Writes a table with `f` and returns its contents (without the length prefix).
fn table(f: impl FnOnce(&mut TableWriter<'_, '_>)) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = Writer::new(&mut buf);
    let mut t = TableWriter::begin(&mut w);
    f(&mut t);
    t.finish();
    buf.drain(..4);
    buf
}

fn longstr<'a>(t: FieldTable<'a>, key: &[u8]) -> Option<&'a [u8]> {
    match t.get(key) {
        Some(FieldValue::LongStr(s)) => Some(s),
        _ => None,
    }
}

/// The fields of a new x-death entry, in RabbitMQ's order for a first entry or sorted by name.
fn write_entry(
    t: &mut TableWriter<'_, '_>,
    d: &Death<'_>,
    cc: Option<FieldArray<'_>>,
    expiration: Option<&[u8]>,
    sorted: bool,
) {
    let keys = |a: &mut crate::protocol::table::ArrayWriter<'_, '_>| {
        a.longstr(d.routing_key);
        for v in cc.iter().flat_map(|cc| cc.iter()) {
            if let FieldValue::LongStr(k) = v {
                a.longstr(k);
            }
        }
    };
    t.i64("count", 1);
    if sorted {
        t.longstr("exchange", d.exchange);
        if let Some(e) = expiration {
            t.longstr("original-expiration", e);
        }
        t.longstr("queue", d.queue)
            .longstr("reason", d.reason.as_bytes())
            .array("routing-keys", keys)
            .timestamp("time", d.time_secs);
    } else {
        t.longstr("reason", d.reason.as_bytes())
            .longstr("queue", d.queue)
            .timestamp("time", d.time_secs)
            .longstr("exchange", d.exchange)
            .array("routing-keys", keys);
        if let Some(e) = expiration {
            t.longstr("original-expiration", e);
        }
    }
}

/// An existing x-death entry counted once more: its fields kept (RabbitMQ keeps the first
/// time and keys), count incremented, sorted by name.
fn write_counted(t: &mut TableWriter<'_, '_>, entry: FieldTable<'_>) {
    let count = entry
        .get(b"count")
        .and_then(|v| v.as_integer())
        .unwrap_or(0);
    let mut fields: Vec<(&[u8], FieldValue<'_>)> =
        entry.iter().filter(|(k, _)| *k != b"count").collect();
    fields.push((b"count", FieldValue::I64(count + 1)));
    fields.sort_by(|a, b| a.0.cmp(b.0));
    for (k, v) in fields {
        t.entry(k, v);
    }
}

/// Whether x-death entry `v` records a death in `queue` for `reason`.
fn same_death(v: &FieldValue<'_>, queue: &[u8], reason: &str) -> bool {
    match v {
        FieldValue::Table(t) => {
            longstr(*t, b"queue") == Some(queue)
                && longstr(*t, b"reason") == Some(reason.as_bytes())
        }
        _ => false,
    }
}

/// The new x-death value and the x-first-death-* headers (RabbitMQ's
/// update_x_death_header): one entry per (queue, reason), the latest first; a first death
/// also sets x-first-death-*.
fn death_headers(old: FieldTable<'_>, d: &Death<'_>, expiration: Option<&[u8]>) -> Vec<u8> {
    let cc = match old.get(b"CC") {
        Some(FieldValue::Array(a)) => Some(a),
        _ => None,
    };
    table(|t| match old.get(b"x-death") {
        None => {
            t.array("x-death", |a| {
                a.table(|e| write_entry(e, d, cc, expiration, false));
            });
            t.longstr("x-first-death-exchange", d.exchange)
                .longstr("x-first-death-queue", d.queue)
                .longstr("x-first-death-reason", d.reason.as_bytes());
        }
        Some(FieldValue::Array(deaths)) => {
            let matched = deaths.iter().find(|v| same_death(v, d.queue, d.reason));
            t.array("x-death", |a| {
                match matched {
                    Some(FieldValue::Table(entry)) => a.table(|e| write_counted(e, entry)),
                    _ => a.table(|e| write_entry(e, d, cc, expiration, true)),
                };
                for v in deaths.iter().filter(|v| !same_death(v, d.queue, d.reason)) {
                    a.value(v);
                }
            });
        }
        // Not an array (a client rewrote it): RabbitMQ starts it again.
        Some(_) => {
            t.array("x-death", |a| {
                a.table(|e| write_entry(e, d, cc, expiration, false));
            });
        }
    })
}

/// A dead letter's properties: x-death updated, x-first-death-* on a first death, the
/// expiration moved into x-death, and the CC and BCC headers removed when a dead-letter routing
/// key replaces the message's keys. The headers come out sorted by name, as RabbitMQ's
/// set_table_value leaves them.
pub(super) fn dead_letter_properties(
    old: &BasicProperties<'_>,
    d: &Death<'_>,
    keys_replaced: bool,
) -> Vec<u8> {
    let old_headers = old.headers.unwrap_or_default();
    let new = death_headers(old_headers, d, old.expiration);
    let new = FieldTable::parse(&new).unwrap_or_default();
    let replaced = |k: &[u8]| new.iter().any(|(n, _)| n == k);
    let dropped = |k: &[u8]| keys_replaced && (k == b"CC" || k == b"BCC");
    let mut entries: Vec<(&[u8], FieldValue<'_>)> = old_headers
        .iter()
        .filter(|(k, _)| !replaced(k) && !dropped(k))
        .chain(new.iter())
        .collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let headers = table(|t| {
        for (k, v) in entries {
            t.entry(k, v);
        }
    });
    encode(old, &headers, true)
}

/// RabbitMQ's dead-letter cycle check for target `queue`: the message already died there and
/// no death since (that one included) was a rejection.
pub(super) fn is_cycle(queue: &[u8], deaths: FieldArray<'_>) -> bool {
    for v in deaths.iter() {
        let FieldValue::Table(t) = v else {
            return false;
        };
        if longstr(t, b"reason") == Some(b"rejected") {
            return false;
        }
        if longstr(t, b"queue") == Some(queue) {
            return true;
        }
    }
    false
}

/// Decoded properties and headers of a message; None if it has no headers.
fn decoded(msg: &Message) -> Option<(BasicProperties<'_>, FieldTable<'_>)> {
    let p = BasicProperties::decode(msg.properties()).ok()?;
    let h = p.headers?;
    Some((p, h))
}

/// The properties a consumer sees: as published, but without a BCC header.
#[inline(always)]
pub(crate) fn visible_properties(msg: &Message) -> Cow<'_, [u8]> {
    if !msg.has_bcc() {
        return Cow::Borrowed(msg.properties());
    }
    without_bcc(msg)
}

#[inline(never)]
fn without_bcc(msg: &Message) -> Cow<'_, [u8]> {
    let Some((p, h)) = decoded(msg) else {
        return Cow::Borrowed(msg.properties());
    };
    let headers = table(|t| {
        for (k, v) in h.iter().filter(|(k, _)| *k != b"BCC") {
            t.entry(k, v);
        }
    });
    Cow::Owned(encode(&p, &headers, false))
}

/// The message with a quorum queue's x-delivery-count header (type l) set to `count`.
pub(super) fn with_delivery_count(msg: &Message, count: u32) -> Message {
    let Ok(p) = BasicProperties::decode(msg.properties()) else {
        return msg.clone();
    };
    let old = p.headers.unwrap_or_default();
    let headers = table(|t| {
        t.i64("x-delivery-count", count as i64);
        for (k, v) in old.iter().filter(|(k, _)| *k != b"x-delivery-count") {
            t.entry(k, v);
        }
    });
    let props = encode(&p, &headers, false);
    msg.with_properties(msg.exchange(), msg.routing_key(), &props)
}

/// A due delayed message: its x-delay header becomes -delay (signed 32-bit), as the
/// delayed-message plugin marks what it released.
pub(super) fn with_delay_released(msg: &Message, delay_ms: u64) -> Message {
    let Some((p, h)) = decoded(msg) else {
        return msg.clone();
    };
    let mark = -(delay_ms.min(i32::MAX as u64) as i32);
    let headers = table(|t| {
        for (k, v) in h.iter() {
            if k == b"x-delay" {
                t.i32("x-delay", mark);
            } else {
                t.entry(k, v);
            }
        }
    });
    let props = encode(&p, &headers, false);
    msg.with_properties(msg.exchange(), msg.routing_key(), &props)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn death<'a>(queue: &'a [u8], reason: &'static str) -> Death<'a> {
        Death {
            queue,
            reason,
            exchange: b"x",
            routing_key: b"rk",
            time_secs: 1_700_000_000,
        }
    }

    /// The names of a table's entries, in wire order.
    fn names(t: FieldTable<'_>) -> Vec<String> {
        t.iter()
            .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
            .collect()
    }

    /// Dead-letters properties `raw` from `queue` for `reason`; the new encoded properties.
    fn die(raw: &[u8], queue: &[u8], reason: &'static str) -> Vec<u8> {
        let p = BasicProperties::decode(raw).expect("properties");
        dead_letter_properties(&p, &death(queue, reason), false)
    }

    fn deaths(raw: &[u8]) -> Vec<FieldTable<'_>> {
        let p = BasicProperties::decode(raw).expect("properties");
        let Some(FieldValue::Array(a)) = p.headers.and_then(|h| h.get(b"x-death")) else {
            panic!("no x-death");
        };
        a.iter()
            .map(|v| match v {
                FieldValue::Table(t) => t,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn x_death_first_in_rabbitmqs_order_then_sorted_and_counted() {
        let mut raw = Vec::new();
        BasicProperties {
            expiration: Some(b"60000"),
            ..Default::default()
        }
        .encode(&mut Writer::new(&mut raw));
        let once = die(&raw, b"a", "rejected");
        let p = BasicProperties::decode(&once).expect("decode");
        assert_eq!(p.expiration, None, "the expiration moves into x-death");
        assert_eq!(
            names(p.headers.expect("headers")),
            [
                "x-death",
                "x-first-death-exchange",
                "x-first-death-queue",
                "x-first-death-reason"
            ]
        );
        assert_eq!(
            names(deaths(&once)[0]),
            [
                "count",
                "reason",
                "queue",
                "time",
                "exchange",
                "routing-keys",
                "original-expiration"
            ]
        );
        let twice = die(&once, b"b", "expired");
        let d = deaths(&twice);
        assert_eq!(d.len(), 2);
        assert_eq!(
            names(d[0]),
            [
                "count",
                "exchange",
                "queue",
                "reason",
                "routing-keys",
                "time"
            ]
        );
        assert_eq!(
            d[1].raw(),
            deaths(&once)[0].raw(),
            "older entries stay as they were"
        );
        let thrice = die(&twice, b"a", "rejected");
        let d = deaths(&thrice);
        assert_eq!(d[0].get(b"count"), Some(FieldValue::I64(2)));
        assert_eq!(d[0].get(b"queue"), Some(FieldValue::LongStr(b"a")));
        assert_eq!(
            names(d[0])[..3],
            ["count", "exchange", "original-expiration"]
        );
    }

    #[test]
    fn cycles_are_deaths_without_a_rejection() {
        let mut raw = Vec::new();
        BasicProperties::default().encode(&mut Writer::new(&mut raw));
        let expired = die(&die(&raw, b"a", "expired"), b"b", "maxlen");
        let p = BasicProperties::decode(&expired).expect("decode");
        let Some(FieldValue::Array(a)) = p.headers.and_then(|h| h.get(b"x-death")) else {
            panic!("no x-death")
        };
        assert!(is_cycle(b"a", a) && is_cycle(b"b", a) && !is_cycle(b"c", a));
        let rejected = die(&die(&raw, b"a", "expired"), b"b", "rejected");
        let p = BasicProperties::decode(&rejected).expect("decode");
        let Some(FieldValue::Array(a)) = p.headers.and_then(|h| h.get(b"x-death")) else {
            panic!("no x-death")
        };
        assert!(!is_cycle(b"a", a), "a rejection since makes it no cycle");
    }
}
