//! What a running shovel owes its source: the deliveries published to the destination and not
//! yet confirmed there (ack-mode on-confirm), acked at the source in delivery order once
//! confirmed, with one `multiple` ack per confirmed run; and the trace header a forwarded
//! message gets (the shovel's `x-shovelled`, federation's `x-received-from`).

use crate::protocol::properties::BasicProperties;
use crate::protocol::table::{ArrayWriter, TableWriter};
use crate::protocol::wire::Writer;
use crate::protocol::{FieldTable, FieldValue};
use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Pending,
    Confirmed,
    Refused,
}

/// One message the source delivered and the link has not acked yet: published to the
/// destination as sequence number `seq`, or not forwarded (`skip`: max-hops), which is
/// settled as soon as everything before it is. Skipped entries carry the sequence number of
/// the publish before them, so `seq` never decreases along the window.
#[derive(Debug)]
struct InFlight {
    src_tag: u64,
    seq: u64,
    skip: bool,
    outcome: Outcome,
}

/// What the source is told after confirms arrived, in order: `(tag, true)` is basic.ack with
/// multiple up to the tag, `(tag, false)` a basic.nack of that one delivery (requeued).
pub type Settle = Vec<(u64, bool)>;

/// Deliveries published and not yet confirmed by the destination.
#[derive(Debug, Default)]
pub struct InFlightWindow {
    queue: VecDeque<InFlight>,
    /// The destination's sequence number of the next publish (1 on a fresh channel).
    next_seq: u64,
}

impl InFlightWindow {
    pub fn new() -> Self {
        InFlightWindow {
            queue: VecDeque::new(),
            next_seq: 1,
        }
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// A delivery was published to the destination as the next sequence number.
    pub fn published(&mut self, src_tag: u64) {
        self.queue.push_back(InFlight {
            src_tag,
            seq: self.next_seq,
            skip: false,
            outcome: Outcome::Pending,
        });
        self.next_seq += 1;
    }

    /// A delivery was not forwarded: it is acked once everything before it is settled.
    pub fn skipped(&mut self, src_tag: u64) -> Settle {
        self.queue.push_back(InFlight {
            src_tag,
            seq: self.next_seq - 1,
            skip: true,
            outcome: Outcome::Confirmed,
        });
        self.drain()
    }

    /// The destination confirmed (`ok`) or refused `seq` (and every earlier one when
    /// `multiple`). Returns what to tell the source; entries behind an unconfirmed one wait.
    pub fn confirm(&mut self, seq: u64, multiple: bool, ok: bool) -> Settle {
        let outcome = if ok {
            Outcome::Confirmed
        } else {
            Outcome::Refused
        };
        // A tag the window does not hold (a peer's mistake) changes nothing.
        let idx = self.queue.partition_point(|e| e.seq < seq);
        let held = self.queue.get(idx).is_some_and(|e| e.seq == seq && !e.skip);
        if held {
            let from = if multiple { 0 } else { idx };
            for e in self.queue.range_mut(from..=idx) {
                if e.outcome == Outcome::Pending {
                    e.outcome = outcome;
                }
            }
        }
        self.drain()
    }

    /// Takes the settled entries off the front.
    fn drain(&mut self) -> Settle {
        let mut settle = Settle::new();
        let mut ack = None;
        while let Some(front) = self.queue.front() {
            match front.outcome {
                Outcome::Pending => break,
                Outcome::Confirmed => ack = Some(front.src_tag),
                Outcome::Refused => {
                    // A multiple ack past a refused delivery would ack it too.
                    settle.extend(ack.take().map(|t| (t, true)));
                    settle.push((front.src_tag, false));
                }
            }
            self.queue.pop_front();
        }
        settle.extend(ack.map(|t| (t, true)));
        settle
    }
}

/// The `x-shovelled` entry RabbitMQ 3.10's shovel adds, in its key order.
pub struct ForwardInfo {
    pub entries: Vec<(&'static str, String)>,
}

/// The message's properties with a new `x-shovelled` table prepended to the header's array
/// (other headers kept in place). None when the properties cannot be decoded (the broker
/// delivered them, so this does not happen; the message is then forwarded unchanged).
///
/// Beside RabbitMQ's keys the table carries `redelivered`, the flag of the source's
/// delivery (as federation's `x-received-from` does): a copy that may have been forwarded
/// before (the source requeued it after a destination or a connection went away) says so,
/// so a consumer can find every duplicate a shovel's at-least-once transfer makes.
pub fn forward_properties(raw: &[u8], info: &ForwardInfo, redelivered: bool) -> Option<Vec<u8>> {
    prepend_trace(raw, "x-shovelled", false, &mut |e| {
        for (k, v) in &info.entries {
            e.longstr(k, v.as_bytes());
        }
        e.bool("redelivered", redelivered);
    })
}

/// How many tables the message's `header` array holds (0 without one).
pub fn trace_len(raw: &[u8], header: &str) -> Option<usize> {
    let props = BasicProperties::decode(raw).ok()?;
    match props.headers.and_then(|h| h.get(header.as_bytes())) {
        Some(FieldValue::Array(a)) => Some(a.iter().count()),
        _ => Some(0),
    }
}

/// The properties with a table written by `entry` prepended to the `header` array (as
/// RabbitMQ's `prepend_table_header`: an existing array is kept behind it), and without
/// user-id when `clear_user_id`. None when the properties cannot be decoded.
pub fn prepend_trace(
    raw: &[u8],
    header: &str,
    clear_user_id: bool,
    entry: &mut dyn FnMut(&mut TableWriter<'_, '_>),
) -> Option<Vec<u8>> {
    let props = BasicProperties::decode(raw).ok()?;
    let old = props.headers.unwrap_or(FieldTable::EMPTY);
    let mut table = Vec::new();
    {
        let mut w = Writer::new(&mut table);
        let mut t = TableWriter::begin(&mut w);
        let mut previous = None;
        for (k, v) in old.iter() {
            if k == header.as_bytes() {
                previous = Some(v);
            } else {
                t.entry(k, v);
            }
        }
        t.array(header, |a: &mut ArrayWriter<'_, '_>| {
            a.table(|e| entry(e));
            if let Some(FieldValue::Array(prev)) = previous {
                for v in prev.iter() {
                    a.value(v);
                }
            }
        });
        t.finish();
    }
    let headers = FieldTable::parse(&table[4..]).ok()?;
    let mut out = Vec::with_capacity(raw.len() + table.len());
    let user_id = if clear_user_id { None } else { props.user_id };
    BasicProperties {
        headers: Some(headers),
        user_id,
        ..props
    }
    .encode(&mut Writer::new(&mut out));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Confirms out of order settle the source in order: one multiple ack per confirmed run,
    /// refused ones nacked, nothing acked behind an unconfirmed message.
    #[test]
    fn confirms_settle_in_order() {
        let mut w = InFlightWindow::new();
        for tag in 10..15 {
            w.published(tag);
        }
        assert_eq!(w.confirm(2, false, true), vec![]);
        assert_eq!(w.confirm(1, false, true), vec![(11, true)]);
        assert_eq!(w.confirm(4, false, false), vec![], "seq 3 is still pending");
        assert_eq!(
            w.confirm(5, true, true),
            vec![(12, true), (13, false), (14, true)]
        );
        assert!(w.is_empty());
        w.published(20);
        assert_eq!(
            w.confirm(99, false, true),
            vec![],
            "unknown tags change nothing"
        );
        assert_eq!(w.confirm(0, true, true), vec![]);
        assert_eq!(w.confirm(6, true, true), vec![(20, true)]);
        assert_eq!(w.confirm(7, true, true), vec![], "an empty window");
    }

    /// A message not forwarded (max-hops) is acked in order with the published ones: at
    /// once on an empty window, else with the confirm of the publish before it.
    #[test]
    fn skipped_messages_settle_in_order() {
        let mut w = InFlightWindow::new();
        assert_eq!(w.skipped(1), vec![(1, true)]);
        w.published(2);
        assert_eq!(w.skipped(3), vec![], "behind an unconfirmed publish");
        w.published(4);
        assert_eq!(w.confirm(1, false, true), vec![(3, true)]);
        assert_eq!(w.confirm(2, false, false), vec![(4, false)]);
        assert!(w.is_empty());
    }
}
