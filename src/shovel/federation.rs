//! What makes a shovel a federation link (RabbitMQ's federated exchange): the upstream
//! queue's name and arguments, the upstream URI tried on each attempt, the binding keys
//! kept in step with the local exchange's bindings (`BindingSync`), and the
//! `x-received-from` header with the max-hops rule. The link itself is a `Shovel` whose
//! source is the upstream queue and whose destination is the local exchange through a
//! loopback connection; only its topology step and forwarding header differ.

use super::transfer::{prepend_trace, trace_len};
use crate::broker::federation::BindingKey;
use crate::client::uri;
use crate::definitions::federation::UpstreamSpec;
use crate::definitions::shovel::{ShovelSpec, Source};
use crate::protocol::table::TableWriter;
use crate::protocol::wire::Writer;
use std::collections::{HashMap, HashSet, VecDeque};

/// RabbitMQ's federation header: one table per hop, newest first.
pub const RECEIVED_FROM: &str = "x-received-from";

/// RabbitMQ 3.10's upstream queue name (`rabbit_federation_upstream`): `federation: X ->
/// NODE`, with `:LOCALX` when the local exchange's name differs and `:VHOST:LOCALX` when the
/// vhosts differ (observed: `federation: up -> rabbit@vm:down`).
pub fn upstream_queue_name(
    upstream_exchange: &str,
    upstream_vhost: &str,
    node: &str,
    local_vhost: &str,
    local_exchange: &str,
) -> String {
    let suffix = if upstream_vhost != local_vhost {
        format!(":{local_vhost}:{local_exchange}")
    } else if upstream_exchange != local_exchange {
        format!(":{local_exchange}")
    } else {
        String::new()
    };
    format!("federation: {upstream_exchange} -> {node}{suffix}")
}

/// Percent-encodes a vhost for an `amqp:///VHOST` URI (the local end).
fn encode_vhost(vhost: &str) -> String {
    let mut out = String::new();
    for b in vhost.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The local bindings' keys and which of them the upstream queue has: each change marks a
/// key to look at, and `next_ops` binds or unbinds what differs, a bounded number per call.
/// A listing of the local exchange (a new link, a resync) is taken in over several calls of
/// `relist_some`, a bounded number of keys each; until it is complete nothing is sent.
#[derive(Debug, Default)]
pub struct BindingSync {
    /// Local bindings per key (a key bound to two queues counts twice).
    desired: HashMap<BindingKey, u32>,
    /// Keys bound upstream by this link (or that may be, before a reconnect's resend).
    bound: HashSet<BindingKey>,
    /// Keys to look at, each once.
    dirty: VecDeque<BindingKey>,
    dirty_set: HashSet<BindingKey>,
    /// A listing being taken in.
    relisting: Option<Relisting>,
}

/// A listing of the local exchange's keys, taken in a bounded number of keys per call: the
/// old counts are dropped, the listed keys counted (a key not bound upstream is marked),
/// then each key bound upstream is looked at again (one no longer listed is marked).
#[derive(Debug)]
struct Relisting {
    old: std::collections::hash_map::IntoIter<BindingKey, u32>,
    listed: Vec<BindingKey>,
    desired: HashMap<BindingKey, u32>,
    /// The keys bound upstream, once the listing is counted.
    bound_left: Option<std::collections::hash_set::IntoIter<BindingKey>>,
    /// The link reconnected meanwhile.
    reconnected: bool,
}

/// One method to send upstream: bind (true) or unbind (false) this key.
pub type BindOp = (BindingKey, bool);

fn mark(dirty: &mut VecDeque<BindingKey>, dirty_set: &mut HashSet<BindingKey>, k: &BindingKey) {
    if dirty_set.insert(k.clone()) {
        dirty.push_back(k.clone());
    }
}

impl BindingSync {
    /// A link's sync, with the local exchange's keys listed (taken in by `relist_some`).
    pub fn new(keys: Vec<BindingKey>) -> Self {
        let mut s = BindingSync::default();
        s.reset(keys);
        s
    }

    fn mark(&mut self, k: &BindingKey) {
        mark(&mut self.dirty, &mut self.dirty_set, k);
    }

    /// The local exchange's keys listed again: taken in by `relist_some`, then every key
    /// either side knows has been looked at. Costs no more than moving the maps.
    pub fn reset(&mut self, keys: Vec<BindingKey>) {
        if let Some(r) = self.relisting.take() {
            // A listing that replaces one not yet taken in: the keys it had taken back.
            if let Some(left) = r.bound_left {
                self.bound.extend(left);
            }
        }
        self.relisting = Some(Relisting {
            old: std::mem::take(&mut self.desired).into_iter(),
            listed: keys,
            desired: HashMap::new(),
            bound_left: None,
            reconnected: false,
        });
    }

    /// Whether a listing is being taken in (changes must wait until it is).
    pub fn relisting(&self) -> bool {
        self.relisting.is_some()
    }

    /// Takes in up to `max` keys of the listing; returns how many units of work it did and
    /// whether the listing is still not complete.
    pub fn relist_some(&mut self, max: usize) -> (usize, bool) {
        let Some(mut r) = self.relisting.take() else {
            return (0, false);
        };
        let mut n = 0;
        while n < max && r.old.next().is_some() {
            n += 1;
        }
        while n < max {
            let Some(k) = r.listed.pop() else {
                break;
            };
            n += 1;
            if let Some(c) = r.desired.get_mut(&k) {
                *c += 1;
                continue;
            }
            if !self.bound.contains(&k) {
                mark(&mut self.dirty, &mut self.dirty_set, &k);
            }
            r.desired.insert(k, 1);
        }
        if n < max && r.bound_left.is_none() {
            r.bound_left = Some(std::mem::take(&mut self.bound).into_iter());
        }
        let mut done = false;
        if let Some(left) = r.bound_left.as_mut() {
            loop {
                if n >= max {
                    break;
                }
                let Some(k) = left.next() else {
                    done = true;
                    break;
                };
                n += 1;
                if !r.desired.contains_key(&k) {
                    mark(&mut self.dirty, &mut self.dirty_set, &k);
                }
                self.bound.insert(k);
            }
        }
        if !done {
            self.relisting = Some(r);
            return (n, true);
        }
        self.desired = r.desired;
        if r.reconnected {
            self.reconnected();
        }
        (n, false)
    }

    pub fn added(&mut self, k: BindingKey) {
        debug_assert!(self.relisting.is_none(), "a change while relisting");
        let n = self.desired.entry(k.clone()).or_insert(0);
        *n += 1;
        if *n == 1 {
            self.mark(&k);
        }
    }

    pub fn removed(&mut self, k: BindingKey) {
        debug_assert!(self.relisting.is_none(), "a change while relisting");
        let Some(n) = self.desired.get_mut(&k) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            self.desired.remove(&k);
            self.mark(&k);
        }
    }

    /// A new connection: the upstream queue may have been deleted and declared again, so
    /// every wanted key is bound again; keys bound before and no longer wanted are unbound.
    pub fn reconnected(&mut self) {
        if let Some(r) = self.relisting.as_mut() {
            r.reconnected = true;
            return;
        }
        let wanted: Vec<BindingKey> = self.desired.keys().cloned().collect();
        for k in &wanted {
            self.bound.remove(k);
        }
        let all: Vec<BindingKey> = wanted
            .into_iter()
            .chain(self.bound.iter().cloned())
            .collect();
        for k in &all {
            self.mark(k);
        }
    }

    /// Up to `max` binds and unbinds that bring the upstream queue to the local keys; none
    /// while a listing is being taken in.
    pub fn next_ops(&mut self, max: usize) -> Vec<BindOp> {
        let mut ops = Vec::new();
        if self.relisting.is_some() {
            return ops;
        }
        while ops.len() < max {
            let Some(k) = self.dirty.pop_front() else {
                break;
            };
            self.dirty_set.remove(&k);
            let want = self.desired.contains_key(&k);
            let have = self.bound.contains(&k);
            if want && !have {
                self.bound.insert(k.clone());
                ops.push((k, true));
            } else if !want && have {
                self.bound.remove(&k);
                ops.push((k, false));
            }
        }
        ops
    }

    pub fn pending(&self) -> bool {
        !self.dirty.is_empty() || self.relisting.is_some()
    }

    /// The keys bound upstream (for tests and the status).
    pub fn bound_len(&self) -> usize {
        self.bound.len()
    }
}

/// One federation link's identity and federation-only state.
pub struct FedLink {
    /// The local (downstream) exchange and its vhost.
    pub exchange: String,
    pub vhost: String,
    /// The upstream parameter's name.
    pub upstream: String,
    pub upstream_exchange: String,
    pub spec: UpstreamSpec,
    /// The upstream queue.
    pub queue: String,
    /// RabbitMQ's 8-hex-digit link id (here a hash of the link's identity).
    pub id: String,
    /// The URI of the current (or last) attempt, and the next one to try.
    pub uri: String,
    next_uri: usize,
    pub sync: BindingSync,
    /// This node's name (cluster-name in x-received-from).
    node: String,
    /// The local end's connection name, once connected ("127.0.0.1:P -> 127.0.0.1:5672").
    pub local_connection: Option<String>,
}

/// What to do with a message from the upstream.
#[derive(Debug, PartialEq, Eq)]
pub enum Forward {
    /// Publish with these properties.
    Publish(Vec<u8>),
    /// It has been through max-hops brokers already: ack it, do not publish.
    Drop,
}

impl FedLink {
    pub fn new(
        vhost: &str,
        exchange: &str,
        upstream: &str,
        spec: UpstreamSpec,
        keys: Vec<BindingKey>,
        node: &str,
    ) -> Self {
        let upstream_exchange = spec.exchange.clone().unwrap_or_else(|| exchange.to_owned());
        let uri = spec.uris.first().cloned().unwrap_or_default();
        // The upstream vhost of the first URI names the queue (RabbitMQ names it from the
        // upstream's, which all its URIs share in practice).
        let upstream_vhost = uri::parse(&uri, uri::DEFAULT_VHOST)
            .map(|u| u.vhost)
            .unwrap_or_else(|_| uri::DEFAULT_VHOST.to_owned());
        let queue = upstream_queue_name(&upstream_exchange, &upstream_vhost, node, vhost, exchange);
        let id = link_id(&[vhost, exchange, upstream]);
        FedLink {
            exchange: exchange.to_owned(),
            vhost: vhost.to_owned(),
            upstream: upstream.to_owned(),
            upstream_exchange,
            spec,
            queue,
            id,
            uri,
            next_uri: 0,
            sync: BindingSync::new(keys),
            node: node.to_owned(),
            local_connection: None,
        }
    }

    /// The shovel definition that moves the upstream queue's messages into the local
    /// exchange with the upstream's ack-mode, prefetch-count and reconnect-delay.
    pub fn shovel_spec(&self) -> ShovelSpec {
        ShovelSpec {
            src_uri: self.uri.clone(),
            source: Source::Queue(self.queue.clone()),
            dest_uri: format!("amqp:///{}", encode_vhost(&self.vhost)),
            dest_exchange: Some(self.exchange.clone()),
            dest_key: None,
            dest_queue: None,
            ack_mode: self.spec.ack_mode,
            prefetch: self.spec.prefetch,
            reconnect_delay_secs: self.spec.reconnect_delay_secs,
            delete_after: crate::definitions::shovel::DeleteAfter::Never,
            add_forward_headers: false,
        }
    }

    /// The URI for the next attempt: the list in order, round and round.
    pub fn next_uri(&mut self) -> String {
        let n = self.spec.uris.len().max(1);
        self.uri = self
            .spec
            .uris
            .get(self.next_uri % n)
            .cloned()
            .unwrap_or_default();
        self.next_uri = (self.next_uri + 1) % n;
        self.uri.clone()
    }

    /// The upstream queue's arguments: x-expires and x-message-ttl from the upstream, and
    /// RabbitMQ's x-internal-purpose.
    pub fn queue_arguments(&self) -> Vec<u8> {
        let mut v = Vec::new();
        let mut w = Writer::new(&mut v);
        let mut t = TableWriter::begin(&mut w);
        if let Some(ms) = self.spec.expires_ms {
            t.i64("x-expires", ms as i64);
        }
        if let Some(ms) = self.spec.message_ttl_ms {
            t.i64("x-message-ttl", ms as i64);
        }
        t.longstr("x-internal-purpose", b"federation");
        t.finish();
        v.split_off(4)
    }

    /// The message from the upstream as it is published locally: `x-received-from` with
    /// this hop prepended (uri without credentials, the local exchange, redelivered, this
    /// node, the local vhost: RabbitMQ 3.10's table, observed), user-id cleared unless
    /// trust-user-id; dropped when it has already made max-hops hops. None when the
    /// properties cannot be decoded (forwarded unchanged, as the shovel does).
    pub fn forward(&self, props: &[u8], redelivered: bool) -> Option<Forward> {
        if trace_len(props, RECEIVED_FROM)? >= self.spec.max_hops as usize {
            return Some(Forward::Drop);
        }
        let uri = uri::redact(&self.uri);
        let out = prepend_trace(props, RECEIVED_FROM, !self.spec.trust_user_id, &mut |e| {
            e.longstr("uri", uri.as_bytes())
                .longstr("exchange", self.exchange.as_bytes())
                .bool("redelivered", redelivered)
                .longstr("cluster-name", self.node.as_bytes())
                .longstr("vhost", self.vhost.as_bytes());
        })?;
        Some(Forward::Publish(out))
    }
}

/// An 8-hex-digit id from the link's identity (FNV-1a), stable across restarts.
fn link_id(parts: &[&str]) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for p in parts {
        for b in p.bytes().chain([0]) {
            h ^= b as u32;
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    format!("{h:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definitions::federation::parse_upstream;
    use crate::protocol::properties::BasicProperties;
    use crate::protocol::{FieldTable, FieldValue};
    use serde_json::json;

    fn key(k: &str) -> BindingKey {
        (k.as_bytes().into(), Box::from([] as [u8; 0]))
    }

    /// Takes a listing in, a few keys at a time.
    fn settle(s: &mut BindingSync) {
        let mut calls = 0;
        while s.relist_some(2).1 {
            assert!(s.next_ops(10).is_empty(), "nothing is sent while relisting");
            calls += 1;
            assert!(calls < 1000);
        }
    }

    /// RabbitMQ 3.10's names, as observed with rabbitmqctl list_queues.
    #[test]
    fn upstream_queue_names_are_rabbitmqs() {
        assert_eq!(
            upstream_queue_name("up", "/", "rabbit@vm", "/", "down"),
            "federation: up -> rabbit@vm:down"
        );
        assert_eq!(
            upstream_queue_name("x", "/", "n", "/", "x"),
            "federation: x -> n"
        );
        assert_eq!(
            upstream_queue_name("x", "/", "n", "v", "x"),
            "federation: x -> n:v:x"
        );
    }

    /// Binding changes become the binds and unbinds that differ: a key bound twice locally
    /// is bound once upstream and unbound only when its last binding goes; a key added and
    /// removed before the link sent anything costs nothing; the bound is respected.
    #[test]
    fn binding_diff() {
        let mut s = BindingSync::new(vec![key("a"), key("a"), key("b")]);
        assert!(
            s.pending() && s.next_ops(10).is_empty(),
            "the listing first"
        );
        settle(&mut s);
        let mut first = s.next_ops(10);
        first.sort();
        assert_eq!(first, vec![(key("a"), true), (key("b"), true)]);
        s.removed(key("a"));
        assert_eq!(s.next_ops(10), vec![], "a is still bound once");
        s.removed(key("a"));
        s.added(key("c"));
        s.removed(key("c"));
        assert_eq!(s.next_ops(10), vec![(key("a"), false)]);
        assert!(!s.pending());
        for i in 0..5 {
            s.added(key(&format!("k{i}")));
        }
        assert_eq!(s.next_ops(2).len(), 2);
        assert!(s.pending());
        assert_eq!(s.next_ops(10).len(), 3);
        assert_eq!(s.bound_len(), 6);
        s.removed(key("b"));
        s.reconnected();
        let mut again = s.next_ops(100);
        again.sort();
        assert_eq!(again.len(), 6, "5 rebound, b unbound: {again:?}");
        assert!(again.contains(&(key("b"), false)));
        s.reset(vec![key("k0")]);
        s.reconnected();
        settle(&mut s);
        let mut last = s.next_ops(100);
        last.sort();
        assert_eq!(
            last,
            vec![
                (key("k0"), true),
                (key("k1"), false),
                (key("k2"), false),
                (key("k3"), false),
                (key("k4"), false)
            ],
            "k0 bound again after the reconnect, k1..k4 unbound"
        );
    }

    fn link(value: serde_json::Value) -> FedLink {
        let spec = parse_upstream("u", &value).expect("valid");
        let mut l = FedLink::new("/", "down", "u", spec, vec![], "coney@vm");
        l.next_uri();
        l
    }

    fn props(headers: &[u8], user_id: Option<&[u8]>) -> Vec<u8> {
        let mut out = Vec::new();
        BasicProperties {
            headers: Some(FieldTable::parse(headers).expect("table")),
            user_id,
            ..Default::default()
        }
        .encode(&mut Writer::new(&mut out));
        out
    }

    fn hops(raw: &[u8]) -> Vec<String> {
        let p = BasicProperties::decode(raw).expect("props");
        let Some(FieldValue::Array(a)) = p.headers.and_then(|h| h.get(b"x-received-from")) else {
            return vec![];
        };
        a.iter()
            .map(|v| match v {
                FieldValue::Table(t) => match t.get(b"uri") {
                    Some(FieldValue::LongStr(s)) => String::from_utf8_lossy(s).into_owned(),
                    _ => String::new(),
                },
                _ => String::new(),
            })
            .collect()
    }

    /// x-received-from gets this hop first (password removed), user-id is cleared, and a
    /// message that made max-hops hops already is dropped.
    #[test]
    fn received_from_and_max_hops() {
        let l = link(json!({"uri": "amqp://u:secret@h:5672", "max-hops": 2}));
        let Some(Forward::Publish(once)) = l.forward(&props(&[], Some(b"bob")), true) else {
            panic!("forwarded");
        };
        assert_eq!(hops(&once), vec!["amqp://h:5672"]);
        let p = BasicProperties::decode(&once).expect("props");
        assert_eq!(p.user_id, None, "trust-user-id false clears user-id");
        let t = p.headers.expect("headers");
        let Some(FieldValue::Array(a)) = t.get(b"x-received-from") else {
            panic!("array")
        };
        let Some(FieldValue::Table(e)) = a.iter().next() else {
            panic!("table")
        };
        let keys: Vec<_> = e
            .iter()
            .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
            .collect();
        assert_eq!(
            keys,
            ["uri", "exchange", "redelivered", "cluster-name", "vhost"]
        );
        assert_eq!(e.get(b"redelivered"), Some(FieldValue::Bool(true)));
        assert_eq!(e.get(b"exchange"), Some(FieldValue::LongStr(b"down")));
        assert_eq!(
            e.get(b"cluster-name"),
            Some(FieldValue::LongStr(b"coney@vm"))
        );
        let Some(Forward::Publish(twice)) = l.forward(&once, false) else {
            panic!("second hop forwarded");
        };
        assert_eq!(hops(&twice), vec!["amqp://h:5672", "amqp://h:5672"]);
        assert_eq!(
            l.forward(&twice, false),
            Some(Forward::Drop),
            "max-hops 2 reached"
        );
        let one = link(json!({"uri": "amqp://h", "trust-user-id": true}));
        assert_eq!(
            one.forward(&once, false),
            Some(Forward::Drop),
            "max-hops 1 by default"
        );
        let Some(Forward::Publish(kept)) = one.forward(&props(&[], Some(b"bob")), false) else {
            panic!("forwarded");
        };
        let p = BasicProperties::decode(&kept).expect("props");
        assert_eq!(p.user_id, Some(b"bob".as_slice()), "trust-user-id keeps it");
    }

    /// URIs are tried in order, round and round; the local end is the link's vhost.
    #[test]
    fn uris_rotate_and_local_end() {
        let mut l = link(json!({"uri": ["amqp://a", "amqp://b"]}));
        assert_eq!(l.uri, "amqp://a");
        assert_eq!(l.next_uri(), "amqp://b");
        assert_eq!(l.next_uri(), "amqp://a");
        let s = FedLink::new("a/b", "x", "u", l.spec.clone(), vec![], "n").shovel_spec();
        assert_eq!(s.dest_uri, "amqp:///a%2Fb");
        assert_eq!(s.dest_exchange.as_deref(), Some("x"));
        assert_eq!(s.dest_key, None);
    }
}
