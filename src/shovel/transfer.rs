//! What a running shovel owes its source: the deliveries published to the destination and not
//! yet confirmed there (ack-mode on-confirm), acked at the source in delivery order once
//! confirmed, with one `multiple` ack per confirmed run; and the properties of a forwarded
//! message when `dest-add-forward-headers` is set (RabbitMQ's `x-shovelled` header).

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

/// One published, unconfirmed message: its destination publish sequence number is the
/// front's plus its index (sequence numbers are consecutive on the one channel).
#[derive(Debug)]
struct InFlight {
    src_tag: u64,
    outcome: Outcome,
}

/// What the source is told after confirms arrived, in order: `(tag, true)` is basic.ack with
/// multiple up to the tag, `(tag, false)` a basic.nack of that one delivery (requeued).
pub type Settle = Vec<(u64, bool)>;

/// Deliveries published and not yet confirmed by the destination.
#[derive(Debug, Default)]
pub struct InFlightWindow {
    queue: VecDeque<InFlight>,
    /// The destination's sequence number of the front entry (1 for a fresh channel).
    front_seq: u64,
}

impl InFlightWindow {
    pub fn new() -> Self {
        InFlightWindow {
            queue: VecDeque::new(),
            front_seq: 1,
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
            outcome: Outcome::Pending,
        });
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
        let idx = seq.checked_sub(self.front_seq).map(|i| i as usize);
        if let Some(idx) = idx.filter(|&i| i < self.queue.len()) {
            let from = if multiple { 0 } else { idx };
            for e in self.queue.range_mut(from..=idx) {
                if e.outcome == Outcome::Pending {
                    e.outcome = outcome;
                }
            }
        }
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
            self.front_seq += 1;
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
pub fn forward_properties(raw: &[u8], info: &ForwardInfo) -> Option<Vec<u8>> {
    let props = BasicProperties::decode(raw).ok()?;
    let old = props.headers.unwrap_or(FieldTable::EMPTY);
    let mut table = Vec::new();
    {
        let mut w = Writer::new(&mut table);
        let mut t = TableWriter::begin(&mut w);
        let mut previous = None;
        for (k, v) in old.iter() {
            if k == b"x-shovelled" {
                previous = Some(v);
            } else {
                t.entry(k, v);
            }
        }
        t.array("x-shovelled", |a: &mut ArrayWriter<'_, '_>| {
            a.table(|e| {
                for (k, v) in &info.entries {
                    e.longstr(k, v.as_bytes());
                }
            });
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
    BasicProperties {
        headers: Some(headers),
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
}
