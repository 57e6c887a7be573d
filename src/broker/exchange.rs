//! Exchanges and their bindings: each kind keeps the structure it routes with (a map for
//! direct, a list for fanout, a compiled trie for topic, parsed matchers for headers), all
//! derived from one set of bindings.

use super::handle::define_id;
use super::queue::QueueId;
use super::topic_trie::TopicTrie;
use crate::protocol::{FieldTable, FieldValue};
use std::collections::{HashMap, HashSet};

define_id!(
    /// An exchange in the broker's registry.
    ExchangeId
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeKind {
    pub fn parse(name: &[u8]) -> Option<Self> {
        Some(match name {
            b"direct" => ExchangeKind::Direct,
            b"fanout" => ExchangeKind::Fanout,
            b"topic" => ExchangeKind::Topic,
            b"headers" => ExchangeKind::Headers,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }
}

/// Where a binding sends matching messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Destination {
    Queue(QueueId),
    Exchange(ExchangeId),
}

/// A binding's identity, as RabbitMQ defines it: destination, key and arguments.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Binding {
    pub dest: Destination,
    pub key: Box<[u8]>,
    pub args: Box<[u8]>,
}

/// A headers-exchange binding compiled from its arguments.
struct HeadersMatcher {
    dest: Destination,
    any: bool,
    /// The binding's raw argument table; pairs are its entries whose keys do not start "x-".
    args: Box<[u8]>,
}

pub struct Exchange {
    pub name: Box<[u8]>,
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: Box<[u8]>,
    bindings: HashSet<Binding>,
    /// Bindings per (destination, key): the routing structures hold each pair once, however
    /// many argument tables it is bound with.
    key_refs: HashMap<(Destination, Box<[u8]>), u32>,
    direct: HashMap<Box<[u8]>, Vec<Destination>>,
    fanout: Vec<Destination>,
    topic: TopicTrie<Destination>,
    headers: Vec<HeadersMatcher>,
}

impl Exchange {
    pub fn new(
        name: Box<[u8]>,
        kind: ExchangeKind,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: Box<[u8]>,
    ) -> Self {
        Exchange {
            name,
            kind,
            durable,
            auto_delete,
            internal,
            arguments,
            bindings: HashSet::new(),
            key_refs: HashMap::new(),
            direct: HashMap::new(),
            fanout: Vec::new(),
            topic: TopicTrie::new(),
            headers: Vec::new(),
        }
    }

    pub fn has_bindings(&self) -> bool {
        !self.bindings.is_empty()
    }

    pub fn bindings(&self) -> impl Iterator<Item = &Binding> {
        self.bindings.iter()
    }

    /// Adds a binding; false if it existed already.
    pub fn bind(&mut self, b: Binding) -> bool {
        if self.bindings.contains(&b) {
            return false;
        }
        let refs = self.key_refs.entry((b.dest, b.key.clone())).or_insert(0);
        *refs += 1;
        let first_for_key = *refs == 1;
        match self.kind {
            ExchangeKind::Direct if first_for_key => {
                self.direct.entry(b.key.clone()).or_default().push(b.dest)
            }
            ExchangeKind::Fanout => self.fanout.push(b.dest),
            ExchangeKind::Topic if first_for_key => {
                self.topic.bind(&b.key, b.dest);
            }
            ExchangeKind::Headers => {
                let any = FieldTable::parse(&b.args)
                    .ok()
                    .and_then(|t| t.get(b"x-match"))
                    .is_some_and(|v| matches!(v, FieldValue::LongStr(s) if s.starts_with(b"any")));
                self.headers.push(HeadersMatcher {
                    dest: b.dest,
                    any,
                    args: b.args.clone(),
                });
            }
            _ => {}
        }
        self.bindings.insert(b);
        true
    }

    /// Removes a binding; false if there was none.
    pub fn unbind(&mut self, b: &Binding) -> bool {
        if !self.bindings.remove(b) {
            return false;
        }
        let pair = (b.dest, b.key.clone());
        let refs = self.key_refs.get_mut(&pair).map_or(0, |r| {
            *r -= 1;
            *r
        });
        if refs == 0 {
            self.key_refs.remove(&pair);
        }
        let last_for_key = refs == 0;
        match self.kind {
            ExchangeKind::Direct if last_for_key => {
                if let Some(v) = self.direct.get_mut(&b.key) {
                    v.retain(|d| *d != b.dest);
                    if v.is_empty() {
                        self.direct.remove(&b.key);
                    }
                }
            }
            ExchangeKind::Fanout => {
                if let Some(i) = self.fanout.iter().position(|d| *d == b.dest) {
                    self.fanout.swap_remove(i);
                }
            }
            ExchangeKind::Topic if last_for_key => {
                self.topic.unbind(&b.key, b.dest);
            }
            ExchangeKind::Headers => {
                if let Some(i) = self
                    .headers
                    .iter()
                    .position(|h| h.dest == b.dest && h.args == b.args)
                {
                    self.headers.swap_remove(i);
                }
            }
            _ => {}
        }
        true
    }

    /// Removes every binding to `dest`, returning them.
    pub fn unbind_destination(&mut self, dest: Destination) -> Vec<Binding> {
        let gone: Vec<Binding> = self
            .bindings
            .iter()
            .filter(|b| b.dest == dest)
            .cloned()
            .collect();
        for b in &gone {
            self.unbind(b);
        }
        gone
    }

    /// Appends the destinations a message with this key and headers is routed to.
    pub fn route(
        &self,
        routing_key: &[u8],
        headers: Option<FieldTable<'_>>,
        out: &mut Vec<Destination>,
    ) {
        match self.kind {
            ExchangeKind::Direct => {
                if let Some(d) = self.direct.get(routing_key) {
                    out.extend_from_slice(d)
                }
            }
            ExchangeKind::Fanout => out.extend_from_slice(&self.fanout),
            ExchangeKind::Topic => self.topic.match_into(routing_key, out),
            ExchangeKind::Headers => {
                let headers = headers.unwrap_or_default();
                for h in &self.headers {
                    if headers_match(h, headers) {
                        out.push(h.dest);
                    }
                }
            }
        }
    }
}

/// RabbitMQ's headers matching: x-match all (default) or any; a void binding value matches
/// on presence alone; arguments starting with "x-" are not matched.
fn headers_match(h: &HeadersMatcher, headers: FieldTable<'_>) -> bool {
    let Ok(args) = FieldTable::parse(&h.args) else {
        return false;
    };
    let mut pairs = args
        .iter()
        .filter(|(k, _)| !k.starts_with(b"x-"))
        .peekable();
    if pairs.peek().is_none() {
        return !h.any;
    }
    let mut one = |(k, v): (&[u8], FieldValue<'_>)| match headers.get(k) {
        Some(found) => v == FieldValue::Void || found == v,
        None => false,
    };
    if h.any {
        pairs.any(&mut one)
    } else {
        pairs.all(&mut one)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::handle::Registry;

    fn qids(n: usize) -> Vec<QueueId> {
        let mut r: Registry<QueueId, ()> = Registry::default();
        (0..n).map(|_| r.insert(())).collect()
    }

    fn routed(x: &Exchange, key: &str, headers: Option<FieldTable<'_>>) -> Vec<Destination> {
        let mut out = Vec::new();
        x.route(key.as_bytes(), headers, &mut out);
        out.sort();
        out.dedup();
        out
    }

    fn binding(q: QueueId, key: &str, args: &[u8]) -> Binding {
        Binding {
            dest: Destination::Queue(q),
            key: key.as_bytes().into(),
            args: args.into(),
        }
    }

    #[test]
    fn direct_routes_by_exact_key_and_survives_partial_unbind() {
        let q = qids(2);
        let mut x = Exchange::new(
            b"d"[..].into(),
            ExchangeKind::Direct,
            false,
            false,
            false,
            Box::new([]),
        );
        assert!(x.bind(binding(q[0], "info", b"")));
        assert!(x.bind(binding(q[0], "error", b"")));
        assert!(x.bind(binding(q[1], "error", b"")));
        assert!(!x.bind(binding(q[1], "error", b"")));
        assert_eq!(
            routed(&x, "error", None),
            [Destination::Queue(q[0]), Destination::Queue(q[1])]
        );
        assert_eq!(routed(&x, "info", None), [Destination::Queue(q[0])]);
        assert_eq!(routed(&x, "warning", None), []);
        assert!(x.unbind(&binding(q[0], "error", b"")));
        assert_eq!(routed(&x, "error", None), [Destination::Queue(q[1])]);
        assert_eq!(x.unbind_destination(Destination::Queue(q[0])).len(), 1);
        assert_eq!(routed(&x, "info", None), []);
    }

    #[test]
    fn fanout_ignores_the_key() {
        let q = qids(2);
        let mut x = Exchange::new(
            b"f"[..].into(),
            ExchangeKind::Fanout,
            false,
            false,
            false,
            Box::new([]),
        );
        x.bind(binding(q[0], "", b""));
        x.bind(binding(q[1], "anything", b""));
        assert_eq!(routed(&x, "whatever", None).len(), 2);
    }

    #[test]
    fn headers_match_all_and_any() {
        let q = qids(2);
        let mut x = Exchange::new(
            b"h"[..].into(),
            ExchangeKind::Headers,
            false,
            false,
            false,
            Box::new([]),
        );
        // x-match=all, format=pdf, type=report
        let all = b"\x07x-matchS\x00\x00\x00\x03all\x06formatS\x00\x00\x00\x03pdf\x04typeS\x00\x00\x00\x06report";
        let any = b"\x07x-matchS\x00\x00\x00\x03any\x06formatS\x00\x00\x00\x03pdf\x04typeS\x00\x00\x00\x03log";
        x.bind(binding(q[0], "", all));
        x.bind(binding(q[1], "", any));
        let both =
            FieldTable::parse(b"\x06formatS\x00\x00\x00\x03pdf\x04typeS\x00\x00\x00\x06report")
                .expect("t");
        let pdf_only = FieldTable::parse(b"\x06formatS\x00\x00\x00\x03pdf").expect("t");
        assert_eq!(
            routed(&x, "", Some(both)),
            [Destination::Queue(q[0]), Destination::Queue(q[1])]
        );
        assert_eq!(routed(&x, "", Some(pdf_only)), [Destination::Queue(q[1])]);
        assert_eq!(routed(&x, "", None), []);
    }
}
