//! Queues, exchanges, bindings and consumers as the API shows them: RabbitMQ 3.10's field
//! names, in its (sorted) key order, written straight into the response; and how each is
//! named, filtered and sorted by the listing rules.

use super::handlers::node_name;
use crate::broker::counters::{ExchangeCounters, MessageCounters, StatsView};
use crate::broker::{BindingView, ExchangeView, QueueView};
use crate::http::json::{Filter, ObjectWriter};
use crate::http::paginate::Listable;
use crate::protocol::FieldTable;
use serde_json::Value;

/// A raw argument table as a JSON object (`{}` if it does not decode, which a stored table
/// always does).
pub(super) fn arguments(raw: &[u8]) -> Value {
    FieldTable::parse(raw)
        .ok()
        .and_then(|t| crate::definitions::arguments::table_to_json(t).ok())
        .map_or_else(|| Value::Object(Default::default()), Value::Object)
}

impl Listable for QueueView {
    fn name(&self) -> &str {
        &self.name
    }
    fn sort_value(&self, path: &[String]) -> Option<Value> {
        Some(match path.first()?.as_str() {
            "name" => Value::from(self.name.clone()),
            "vhost" => Value::from(self.vhost.clone()),
            "messages" => Value::from(self.ready + self.unacked),
            "messages_ready" => Value::from(self.ready),
            "messages_unacknowledged" => Value::from(self.unacked),
            "consumers" => Value::from(self.consumers),
            "durable" => Value::from(self.durable),
            "arguments" => {
                let args = arguments(&self.arguments);
                return path[1..].iter().try_fold(args, |v, k| v.get(k).cloned());
            }
            _ => return None,
        })
    }
}

pub(super) fn write_queue(out: &mut Vec<u8>, q: &QueueView, filter: Filter<'_>) {
    let mut o = ObjectWriter::item(out, filter);
    o.value_with("arguments", || arguments(&q.arguments))
        .bool("auto_delete", q.auto_delete)
        .u64("consumers", q.consumers)
        .bool("durable", q.durable)
        .value_with("effective_policy_definition", || {
            Value::Object(
                q.policy
                    .as_ref()
                    .map(|p| p.definition.clone())
                    .unwrap_or_default(),
            )
        })
        .bool("exclusive", q.exclusive)
        .u64("messages", q.ready + q.unacked)
        .u64("messages_ready", q.ready)
        .u64("messages_unacknowledged", q.unacked);
    if q.stats.total != MessageCounters::default() {
        o.object("message_stats", |s| queue_stats(s, &q.stats));
    }
    o.str("name", &q.name)
        .str("node", node_name())
        .value_with("policy", || policy_name(q.policy.as_deref()))
        .str("state", "running")
        .str("type", "classic")
        .str("vhost", &q.vhost);
    o.end();
}

impl Listable for ExchangeView {
    fn name(&self) -> &str {
        &self.name
    }
    fn sort_value(&self, path: &[String]) -> Option<Value> {
        Some(match path.first()?.as_str() {
            "name" => Value::from(self.name.clone()),
            "vhost" => Value::from(self.vhost.clone()),
            "type" => Value::from(self.kind),
            "durable" => Value::from(self.durable),
            _ => return None,
        })
    }
}

pub(super) fn write_exchange(out: &mut Vec<u8>, x: &ExchangeView, filter: Filter<'_>) {
    let mut o = ObjectWriter::item(out, filter);
    o.value_with("arguments", || arguments(&x.arguments))
        .bool("auto_delete", x.auto_delete)
        .bool("durable", x.durable)
        .bool("internal", x.internal);
    if x.stats.total != ExchangeCounters::default() {
        o.object("message_stats", |s| {
            let (t, d) = (&x.stats.total, &x.stats.delta);
            pair(s, "publish_in", t.publish_in, x.stats.rate(d.publish_in));
            pair(s, "publish_out", t.publish_out, x.stats.rate(d.publish_out));
        });
    }
    o.str("name", &x.name)
        .value_with("policy", || policy_name(x.policy.as_deref()))
        .str("type", x.kind)
        .str("user_who_performed_action", "rmq-internal")
        .str("vhost", &x.vhost);
    o.end();
}

/// A count and its `_details.rate`, as RabbitMQ's message_stats pair them.
fn pair(s: &mut ObjectWriter<'_, '_>, key: &str, total: u64, rate: f64) {
    s.u64(key, total);
    s.object(&format!("{key}_details"), |d| {
        d.f64("rate", rate);
    });
}

/// A queue's message_stats: RabbitMQ 3.10's keys, in its order.
fn queue_stats(s: &mut ObjectWriter<'_, '_>, v: &StatsView<MessageCounters>) {
    let (t, d) = (&v.total, &v.delta);
    pair(s, "ack", t.ack, v.rate(d.ack));
    pair(s, "deliver", t.deliver, v.rate(d.deliver));
    pair(s, "deliver_get", t.deliver_get(), v.rate(d.deliver_get()));
    pair(
        s,
        "deliver_no_ack",
        t.deliver_no_ack,
        v.rate(d.deliver_no_ack),
    );
    pair(s, "get", t.get, v.rate(d.get));
    pair(s, "get_empty", t.get_empty, v.rate(d.get_empty));
    pair(s, "get_no_ack", t.get_no_ack, v.rate(d.get_no_ack));
    pair(s, "publish", t.publish, v.rate(d.publish));
    pair(s, "redeliver", t.redeliver, v.rate(d.redeliver));
}

/// A `policy` field: the name, or null.
fn policy_name(p: Option<&crate::broker::policy::Policy>) -> Value {
    p.map_or(Value::Null, |p| Value::from(p.name.clone()))
}

/// RabbitMQ's properties key: names one binding in a URL. The routing key alone when the
/// binding has no arguments (`~` for an empty key); with arguments, the key, `~` and a
/// digest of the arguments (RabbitMQ hashes the Erlang term; coney hashes the raw table, so
/// keys of bindings with arguments differ from RabbitMQ's but are as stable).
pub(super) fn properties_key(routing_key: &str, args: &[u8]) -> String {
    if FieldTable::parse(args).map_or(true, |t| t.is_empty()) {
        if routing_key.is_empty() {
            return "~".to_owned();
        }
        return routing_key.to_owned();
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(args);
    let mut s = format!("{routing_key}~");
    for b in &digest[..8] {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

impl Listable for BindingView {
    fn name(&self) -> &str {
        &self.source
    }
    fn sort_value(&self, path: &[String]) -> Option<Value> {
        Some(match path.first()?.as_str() {
            "vhost" => Value::from(self.vhost.clone()),
            "source" => Value::from(self.source.clone()),
            "destination" => Value::from(self.destination.clone()),
            "routing_key" => Value::from(self.routing_key.clone()),
            _ => return None,
        })
    }
}

pub(super) fn write_binding(out: &mut Vec<u8>, b: &BindingView, filter: Filter<'_>) {
    let mut o = ObjectWriter::item(out, filter);
    o.value_with("arguments", || arguments(&b.arguments))
        .str("destination", &b.destination)
        .str(
            "destination_type",
            if b.to_queue { "queue" } else { "exchange" },
        )
        .str(
            "properties_key",
            &properties_key(&b.routing_key, &b.arguments),
        )
        .str("routing_key", &b.routing_key)
        .str("source", &b.source)
        .str("vhost", &b.vhost);
    o.end();
}

/// A consumer as listed: what the broker knows joined with its channel's tag and prefetch.
pub(super) struct ConsumerSnap {
    pub(super) tag: String,
    pub(super) prefetch: u16,
    pub(super) conn_name: String,
    pub(super) peer: std::net::SocketAddr,
    pub(super) user: String,
    pub(super) view: crate::broker::ConsumerView,
}

impl Listable for ConsumerSnap {
    fn name(&self) -> &str {
        &self.tag
    }
    fn sort_value(&self, path: &[String]) -> Option<Value> {
        Some(match path.first()?.as_str() {
            "vhost" => Value::from(self.view.vhost.clone()),
            "consumer_tag" => Value::from(self.tag.clone()),
            "queue" => Value::from(self.view.queue.clone()),
            _ => return None,
        })
    }
}

pub(super) fn write_consumer(out: &mut Vec<u8>, c: &ConsumerSnap, filter: Filter<'_>) {
    let mut o = ObjectWriter::item(out, filter);
    consumer_fields(&mut o, c);
    o.end();
}

/// A consumer's keys, in /api/consumers and a channel's consumer_details.
pub(super) fn consumer_fields(o: &mut ObjectWriter<'_, '_>, c: &ConsumerSnap) {
    let v = &c.view;
    o.bool("ack_required", !v.no_ack)
        .bool("active", v.active)
        .str("activity_status", if v.active { "up" } else { "waiting" })
        .object("arguments", |a| {
            if v.priority != 0 {
                a.i64("x-priority", v.priority);
            }
        })
        .object("channel_details", |d| {
            d.str("connection_name", &c.conn_name)
                .str("name", &format!("{} ({})", c.conn_name, v.channel))
                .str("node", node_name())
                .u64("number", v.channel.into())
                .str("peer_host", &c.peer.ip().to_string())
                .u64("peer_port", c.peer.port().into())
                .str("user", &c.user);
        })
        .str("consumer_tag", &c.tag)
        .bool("exclusive", v.exclusive)
        .u64("prefetch_count", c.prefetch.into())
        .object("queue", |q| {
            q.str("name", &v.queue).str("vhost", &v.vhost);
        });
}
