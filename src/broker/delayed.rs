//! The x-delayed-message exchange type, as RabbitMQ's delayed-message plugin does it: the
//! exchange routes like its x-delayed-type, but a message reaching it with an integer x-delay
//! header in 1..=2^32-1 ms is held instead and routed through it when due, with x-delay turned
//! into -delay. A held persistent message of a durable delayed exchange is in the store (the
//! exchange has a store number like a queue), so it is released after a restart at its
//! original due time; transient ones are lost with the process, as in the plugin.

use super::exchange::ExchangeId;
use super::headers;
use super::message::Message;
use super::routing::RouteKeys;
use super::Broker;
use crate::protocol::{BasicProperties, FieldTable};
use crate::store::StoreRef;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// The longest delay the plugin honours (Erlang's timer limit); longer ones route at once.
const DELAY_MAX_MS: i64 = 4_294_967_295;

/// A message held by a delayed exchange until `due`.
struct Held {
    due: u64,
    /// Order among messages due at the same time: publish order.
    seq: u64,
    exchange: ExchangeId,
    msg: Message,
    delay_ms: u64,
    expiration_ms: Option<u64>,
    store: Option<StoreRef>,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// Messages held by delayed exchanges, earliest due first.
#[derive(Default)]
pub(super) struct Delayed {
    heap: BinaryHeap<Reverse<Held>>,
    next_seq: u64,
}

/// The delay a message asks for: its x-delay header, if an integer within the plugin's range.
pub(super) fn delay_of(headers: Option<FieldTable<'_>>) -> Option<u64> {
    let v = headers?.get(b"x-delay")?;
    let ms = v.as_integer()?;
    (ms > 0 && ms <= DELAY_MAX_MS).then_some(ms as u64)
}

/// The delay recorded in a stored message's properties (recovery).
fn delay_in(msg: &Message) -> Option<u64> {
    let p = BasicProperties::decode(msg.properties()).ok()?;
    delay_of(p.headers)
}

impl Broker {
    /// Holds `msg` in delayed exchange `x` for `delay_ms` (it has reached `x` with that
    /// x-delay); a persistent message of a durable delayed exchange goes to the store.
    pub(super) fn hold(
        &mut self,
        x: ExchangeId,
        msg: &Message,
        delay_ms: u64,
        expiration_ms: Option<u64>,
    ) {
        let store_id = self.exchanges.get(x).and_then(|e| e.delayed_store_id);
        let store = match store_id {
            Some(queue) if msg.persistent => self
                .store
                .publish(msg, &[queue], self.clock_ms)
                .map(|loc| StoreRef::at(loc, queue)),
            _ => None,
        };
        self.push_held(
            x,
            msg.clone(),
            self.clock_ms.saturating_add(delay_ms),
            delay_ms,
            expiration_ms,
            store,
        );
    }

    fn push_held(
        &mut self,
        exchange: ExchangeId,
        msg: Message,
        due: u64,
        delay_ms: u64,
        expiration_ms: Option<u64>,
        store: Option<StoreRef>,
    ) {
        let seq = self.delayed.next_seq;
        self.delayed.next_seq += 1;
        self.delayed.heap.push(Reverse(Held {
            due,
            seq,
            exchange,
            msg,
            delay_ms,
            expiration_ms,
            store,
        }));
    }

    /// A held message recovered from the store: due at its publish time plus its x-delay.
    pub(super) fn recover_held(
        &mut self,
        exchange: ExchangeId,
        msg: Message,
        published_ms: u64,
        store: StoreRef,
    ) {
        let delay_ms = delay_in(&msg).unwrap_or(0);
        let expiration_ms = super::expiry::expiration_of(&msg);
        self.push_held(
            exchange,
            msg,
            published_ms.saturating_add(delay_ms),
            delay_ms,
            expiration_ms,
            Some(store),
        );
    }

    /// When the next held message falls due.
    pub(super) fn delayed_due(&self) -> Option<u64> {
        self.delayed.heap.peek().map(|Reverse(h)| h.due)
    }

    /// Routes the held messages that are due, within the turn's budget: through their
    /// exchange, marked released; then the held copy's store record is acked.
    pub(super) fn release_delayed(&mut self) {
        while self.budget > 0 {
            match self.delayed.heap.peek() {
                Some(Reverse(h)) if h.due <= self.clock_ms => {}
                _ => return,
            }
            let Some(Reverse(h)) = self.delayed.heap.pop() else {
                return;
            };
            self.budget -= 1;
            if self.exchanges.get(h.exchange).is_some() {
                let msg = headers::with_delay_released(&h.msg, h.delay_ms);
                let headers = BasicProperties::decode(msg.properties())
                    .ok()
                    .and_then(|p| p.headers);
                let keys = RouteKeys::of(msg.routing_key(), headers);
                let mut dests = self.take_route_dests();
                self.collect_destinations(h.exchange, keys, headers, &mut dests);
                self.enqueue_all(&mut dests, &msg, h.expiration_ms);
                self.put_route_dests(dests);
            }
            if let Some(r) = h.store {
                self.store.ack(r);
            }
        }
    }
}
