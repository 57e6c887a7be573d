//! Exchanges and how each kind routes: a map for direct, a list for fanout, a compiled trie
//! for topic, parsed matchers for headers. The routing structure is derived from the
//! exchange's bindings and changed only by the bindings table (`bindings.rs`), which keeps it
//! in step with them. Also the exchange's declaration arguments RabbitMQ acts on: its
//! alternate exchange.

use super::handle::define_id;
use super::queue::QueueId;
use super::topic_trie::TopicTrie;
use super::VhostId;
use crate::protocol::{FieldTable, FieldValue};
use std::collections::HashMap;

define_id!(
    /// An exchange in the broker's registry.
    ExchangeId
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeKind {
    pub(super) fn parse(name: &[u8]) -> Option<Self> {
        Some(match name {
            b"direct" => ExchangeKind::Direct,
            b"fanout" => ExchangeKind::Fanout,
            b"topic" => ExchangeKind::Topic,
            b"headers" => ExchangeKind::Headers,
            _ => return None,
        })
    }
    pub(super) fn name(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }
}

/// The exchange type of the delayed-message plugin.
pub(super) const DELAYED_TYPE: &str = "x-delayed-message";

/// Where a binding sends matching messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Destination {
    Queue(QueueId),
    Exchange(ExchangeId),
}

/// A headers-exchange binding compiled from its arguments.
pub(super) struct HeadersMatcher {
    dest: Destination,
    any: bool,
    /// The binding's raw argument table; pairs are its entries whose keys do not start "x-".
    args: Box<[u8]>,
}

/// Bindings per (destination, key): direct and topic routes hold each pair once, however many
/// argument tables it is bound with.
type KeyRefs = HashMap<(Destination, Box<[u8]>), u32>;

/// An exchange's routing structure, one shape per kind.
pub(super) enum Routes {
    Direct {
        by_key: HashMap<Box<[u8]>, Vec<Destination>>,
        refs: KeyRefs,
    },
    /// One entry per binding; the caller of `route` deduplicates.
    Fanout(Vec<Destination>),
    Topic {
        trie: TopicTrie<Destination>,
        refs: KeyRefs,
    },
    Headers(Vec<HeadersMatcher>),
}

/// Counts one more binding of (dest, key); true if it is the first.
fn add_ref(refs: &mut KeyRefs, dest: Destination, key: &[u8]) -> bool {
    let n = refs.entry((dest, key.into())).or_insert(0);
    *n += 1;
    *n == 1
}

/// Counts one binding of (dest, key) less; true if it was the last.
fn remove_ref(refs: &mut KeyRefs, dest: Destination, key: &[u8]) -> bool {
    let pair = (dest, Box::<[u8]>::from(key));
    match refs.get_mut(&pair) {
        Some(n) if *n > 1 => {
            *n -= 1;
            false
        }
        Some(_) => {
            refs.remove(&pair);
            true
        }
        None => false,
    }
}

impl Routes {
    pub(super) fn new(kind: ExchangeKind) -> Self {
        match kind {
            ExchangeKind::Direct => Routes::Direct {
                by_key: HashMap::new(),
                refs: HashMap::new(),
            },
            ExchangeKind::Fanout => Routes::Fanout(Vec::new()),
            ExchangeKind::Topic => Routes::Topic {
                trie: TopicTrie::new(),
                refs: HashMap::new(),
            },
            ExchangeKind::Headers => Routes::Headers(Vec::new()),
        }
    }

    pub(super) fn kind(&self) -> ExchangeKind {
        match self {
            Routes::Direct { .. } => ExchangeKind::Direct,
            Routes::Fanout(_) => ExchangeKind::Fanout,
            Routes::Topic { .. } => ExchangeKind::Topic,
            Routes::Headers(_) => ExchangeKind::Headers,
        }
    }

    /// Adds a binding the bindings table has just recorded (it never adds one twice).
    pub(super) fn add(&mut self, dest: Destination, key: &[u8], args: &[u8]) {
        match self {
            Routes::Direct { by_key, refs } => {
                if add_ref(refs, dest, key) {
                    by_key.entry(key.into()).or_default().push(dest);
                }
            }
            Routes::Fanout(dests) => dests.push(dest),
            Routes::Topic { trie, refs } => {
                if add_ref(refs, dest, key) {
                    trie.bind(key, dest);
                }
            }
            Routes::Headers(matchers) => {
                let any = FieldTable::parse(args)
                    .ok()
                    .and_then(|t| t.get(b"x-match"))
                    .is_some_and(|v| matches!(v, FieldValue::LongStr(s) if s.starts_with(b"any")));
                matchers.push(HeadersMatcher {
                    dest,
                    any,
                    args: args.into(),
                });
            }
        }
    }

    /// Removes a binding the bindings table has just dropped.
    pub(super) fn remove(&mut self, dest: Destination, key: &[u8], args: &[u8]) {
        match self {
            Routes::Direct { by_key, refs } => {
                if remove_ref(refs, dest, key) {
                    if let Some(v) = by_key.get_mut(key) {
                        v.retain(|d| *d != dest);
                        if v.is_empty() {
                            by_key.remove(key);
                        }
                    }
                }
            }
            Routes::Fanout(dests) => {
                if let Some(i) = dests.iter().position(|d| *d == dest) {
                    dests.swap_remove(i);
                }
            }
            Routes::Topic { trie, refs } => {
                if remove_ref(refs, dest, key) {
                    trie.unbind(key, dest);
                }
            }
            Routes::Headers(matchers) => {
                if let Some(i) = matchers
                    .iter()
                    .position(|h| h.dest == dest && &*h.args == args)
                {
                    matchers.swap_remove(i);
                }
            }
        }
    }

    /// Appends the destinations a message with this key and headers is routed to.
    pub(super) fn route(
        &self,
        routing_key: &[u8],
        headers: &mut MessageHeaders<'_>,
        out: &mut Vec<Destination>,
    ) {
        match self {
            Routes::Direct { by_key, .. } => {
                if let Some(d) = by_key.get(routing_key) {
                    out.extend_from_slice(d)
                }
            }
            Routes::Fanout(dests) => out.extend_from_slice(dests),
            Routes::Topic { trie, .. } => {
                trie.match_into(routing_key, out);
            }
            Routes::Headers(matchers) => {
                for h in matchers {
                    if headers_match(h, headers) {
                        out.push(h.dest);
                    }
                }
            }
        }
    }
}

pub(super) struct Exchange {
    pub(super) vhost: VhostId,
    pub(super) name: Box<[u8]>,
    pub(super) durable: bool,
    pub(super) auto_delete: bool,
    pub(super) internal: bool,
    pub(super) arguments: Box<[u8]>,
    /// The `alternate-exchange` argument: where messages go that this exchange routes nowhere.
    /// Kept by name, as RabbitMQ does: it may be declared later, or deleted and redeclared.
    pub(super) alternate: Option<Box<[u8]>>,
    pub(super) routes: Routes,
    /// An x-delayed-message exchange (routing like its x-delayed-type, `routes`' kind).
    pub(super) delayed: bool,
    /// Where a durable delayed exchange keeps its held persistent messages in the store.
    pub(super) delayed_store_id: Option<u32>,
    /// The policy applied to the exchange (its alternate-exchange, when the arguments name
    /// none, is `alternate`).
    pub(super) policy: Option<std::rc::Rc<super::policy::Policy>>,
    /// publish_in and publish_out, one add per event.
    pub(super) stats: super::counters::Sampled<super::counters::ExchangeCounters>,
}

impl Exchange {
    pub(super) fn new(
        vhost: VhostId,
        name: Box<[u8]>,
        kind: ExchangeKind,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: Box<[u8]>,
    ) -> Self {
        let alternate = declared_alternate(&arguments);
        Exchange {
            vhost,
            name,
            durable,
            auto_delete,
            internal,
            arguments,
            alternate,
            routes: Routes::new(kind),
            delayed: false,
            delayed_store_id: None,
            policy: None,
            stats: Default::default(),
        }
    }

    /// Applies `policy` (or none): the alternate-exchange argument wins over the policy's.
    pub(super) fn set_policy(&mut self, policy: Option<std::rc::Rc<super::policy::Policy>>) {
        self.alternate = declared_alternate(&self.arguments).or_else(|| {
            policy
                .as_ref()
                .and_then(|p| p.parsed.alternate_exchange.clone())
        });
        self.policy = policy;
    }

    pub(super) fn kind(&self) -> ExchangeKind {
        self.routes.kind()
    }

    /// A policy federates it: its binding changes are recorded for the links.
    pub(super) fn federated(&self) -> bool {
        self.policy
            .as_ref()
            .is_some_and(|p| p.parsed.federation.is_some())
    }

    /// The exchange type as declared.
    pub(super) fn type_name(&self) -> &'static str {
        if self.delayed {
            DELAYED_TYPE
        } else {
            self.kind().name()
        }
    }
}

/// The alternate exchange a raw argument table names.
fn declared_alternate(arguments: &[u8]) -> Option<Box<[u8]>> {
    match FieldTable::parse(arguments).map(|t| t.get(ALTERNATE_EXCHANGE)) {
        Ok(Some(FieldValue::LongStr(name))) => Some(name.into()),
        _ => None,
    }
}

/// The declaration argument naming an exchange's alternate exchange.
pub(super) const ALTERNATE_EXCHANGE: &[u8] = b"alternate-exchange";

/// The exchange declaration arguments RabbitMQ compares on redeclare (its
/// `rabbit_exchange_type:assert_args_equivalence` for the built-in types).
pub(super) const COMPARED_ARGUMENTS: [&[u8]; 1] = [ALTERNATE_EXCHANGE];

/// Lookups answered by scanning the headers before they are sorted: a message routed through
/// one small headers binding is not sorted for nothing.
const HEADER_SCANS_BEFORE_SORT: u32 = 16;

/// A message's headers as headers exchanges look them up. A binding's pair used to scan every
/// header, so 200 bindings of 500 pairs against 2,000 headers cost 100 million comparisons per
/// publish; now, after a few scans, the headers are sorted by key once per publish and each
/// pair costs a binary search: O(H log H + pairs × log H).
pub(super) struct MessageHeaders<'a> {
    table: FieldTable<'a>,
    scans: u32,
    /// (key, value) by key; equal keys keep their order, so the first wins as in `FieldTable::get`.
    sorted: Option<Vec<(&'a [u8], FieldValue<'a>)>>,
}

impl<'a> MessageHeaders<'a> {
    pub(super) fn new(table: Option<FieldTable<'a>>) -> Self {
        MessageHeaders {
            table: table.unwrap_or_default(),
            scans: 0,
            sorted: None,
        }
    }

    /// The value of the first header named `key`.
    fn get(&mut self, key: &[u8]) -> Option<FieldValue<'a>> {
        if self.sorted.is_none() {
            if self.scans < HEADER_SCANS_BEFORE_SORT {
                self.scans += 1;
                return self.table.get(key);
            }
            let mut v: Vec<_> = self.table.iter().collect();
            v.sort_by(|a, b| a.0.cmp(b.0));
            self.sorted = Some(v);
        }
        let sorted = self.sorted.as_deref()?;
        let at = sorted.partition_point(|(k, _)| *k < key);
        sorted.get(at).filter(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

/// RabbitMQ's headers matching: x-match all (default) or any; a void binding value matches
/// on presence alone; arguments starting with "x-" are not matched.
fn headers_match(h: &HeadersMatcher, headers: &mut MessageHeaders<'_>) -> bool {
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

    fn qids(n: usize) -> Vec<Destination> {
        let mut r: Registry<QueueId, ()> = Registry::default();
        (0..n).map(|_| Destination::Queue(r.insert(()))).collect()
    }

    fn routed(r: &Routes, key: &str, headers: Option<FieldTable<'_>>) -> Vec<Destination> {
        let mut out = Vec::new();
        r.route(key.as_bytes(), &mut MessageHeaders::new(headers), &mut out);
        out.sort();
        out.dedup();
        out
    }

    #[test]
    fn direct_routes_by_exact_key_and_survives_partial_unbind() {
        let q = qids(2);
        let mut r = Routes::new(ExchangeKind::Direct);
        r.add(q[0], b"info", b"");
        r.add(q[0], b"error", b"");
        r.add(q[1], b"error", b"");
        // The same (destination, key) under other arguments: routed once, removed last.
        r.add(q[1], b"error", b"\x01aS\x00\x00\x00\x01b");
        assert_eq!(routed(&r, "error", None), [q[0], q[1]]);
        assert_eq!(routed(&r, "info", None), [q[0]]);
        assert_eq!(routed(&r, "warning", None), []);
        r.remove(q[0], b"error", b"");
        r.remove(q[1], b"error", b"");
        assert_eq!(routed(&r, "error", None), [q[1]]);
        r.remove(q[1], b"error", b"\x01aS\x00\x00\x00\x01b");
        assert_eq!(routed(&r, "error", None), []);
        r.remove(q[0], b"info", b"");
        assert_eq!(routed(&r, "info", None), []);
    }

    #[test]
    fn fanout_ignores_the_key() {
        let q = qids(2);
        let mut r = Routes::new(ExchangeKind::Fanout);
        r.add(q[0], b"", b"");
        r.add(q[1], b"anything", b"");
        assert_eq!(routed(&r, "whatever", None).len(), 2);
    }

    #[test]
    fn headers_match_all_and_any() {
        let q = qids(2);
        let mut r = Routes::new(ExchangeKind::Headers);
        // x-match=all, format=pdf, type=report
        let all = b"\x07x-matchS\x00\x00\x00\x03all\x06formatS\x00\x00\x00\x03pdf\x04typeS\x00\x00\x00\x06report";
        let any = b"\x07x-matchS\x00\x00\x00\x03any\x06formatS\x00\x00\x00\x03pdf\x04typeS\x00\x00\x00\x03log";
        r.add(q[0], b"", all);
        r.add(q[1], b"", any);
        let both =
            FieldTable::parse(b"\x06formatS\x00\x00\x00\x03pdf\x04typeS\x00\x00\x00\x06report")
                .expect("t");
        let pdf_only = FieldTable::parse(b"\x06formatS\x00\x00\x00\x03pdf").expect("t");
        assert_eq!(routed(&r, "", Some(both)), [q[0], q[1]]);
        assert_eq!(routed(&r, "", Some(pdf_only)), [q[1]]);
        assert_eq!(routed(&r, "", None), []);
        r.remove(q[1], b"", any);
        assert_eq!(routed(&r, "", Some(pdf_only)), []);
    }

    fn entry(out: &mut Vec<u8>, key: &str, value: &str) {
        out.push(key.len() as u8);
        out.extend_from_slice(key.as_bytes());
        out.push(b'S');
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }

    /// Past a few lookups the headers are sorted once per publish: a binding of many pairs still
    /// matches exactly, and of two headers with one name the first counts, as with a scan.
    #[test]
    fn headers_match_many_pairs_and_the_first_of_duplicate_keys() {
        let q = qids(2);
        let mut r = Routes::new(ExchangeKind::Headers);
        let mut all = Vec::new();
        entry(&mut all, "x-match", "all");
        for i in 0..40 {
            entry(&mut all, &format!("k{i}"), "v");
        }
        r.add(q[0], b"", &all);
        let mut dup = Vec::new();
        entry(&mut dup, "dup", "first");
        r.add(q[1], b"", &dup);
        let mut headers = Vec::new();
        for i in (0..40).rev() {
            entry(&mut headers, &format!("k{i}"), "v");
        }
        let mut first_wins = headers.clone();
        entry(&mut first_wins, "dup", "first");
        entry(&mut first_wins, "dup", "second");
        let t = FieldTable::parse(&first_wins).expect("t");
        assert_eq!(routed(&r, "", Some(t)), [q[0], q[1]]);
        let mut second = headers.clone();
        entry(&mut second, "dup", "second");
        entry(&mut second, "dup", "first");
        let t = FieldTable::parse(&second).expect("t");
        assert_eq!(routed(&r, "", Some(t)), [q[0]]);
        let mut missing_one = Vec::new();
        for i in 1..40 {
            entry(&mut missing_one, &format!("k{i}"), "v");
        }
        let t = FieldTable::parse(&missing_one).expect("t");
        assert_eq!(routed(&r, "", Some(t)), []);
    }
}
