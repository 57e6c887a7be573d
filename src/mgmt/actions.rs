//! What the API changes in the broker: declare and delete queues and exchanges, bind and
//! unbind, purge, get and publish, the aliveness test. Each acts through the broker's AMQP
//! verbs as the logged-in user in the named vhost (its permissions apply, as in RabbitMQ), and
//! maps the AMQP refusal to RabbitMQ's HTTP answer.

use super::handlers::{body_json, json_ok};
use super::objects::properties_key;
use super::Management;
use crate::broker::{Actor, ExchangeFlags, QueueFlags};
use crate::error::AmqpError;
use crate::http::json::{Filter, ObjectWriter};
use crate::http::{ApiError, Response, Status};
use crate::limits::HTTP_GET_MESSAGES_MAX;
use crate::protocol::{BasicProperties, FieldTable, ReplyCode};
use serde_json::{Map, Value};

/// RabbitMQ's HTTP answer to an AMQP refusal: 404 for what does not exist, 401 for a
/// permission, 400 with the AMQP text (without its code name) otherwise.
pub(super) fn api_error(e: AmqpError) -> ApiError {
    let reason = e
        .text
        .split_once(" - ")
        .map_or(e.text.as_str(), |(_, r)| r)
        .to_owned();
    match e.code {
        ReplyCode::NotFound => ApiError::not_found(),
        ReplyCode::AccessRefused => ApiError::not_authorised(reason),
        _ => ApiError::bad_request(reason),
    }
}

/// The logged-in user acting in `vhost`: 404 if the vhost does not exist, 401 if the user
/// has no permission there.
pub(super) fn actor(m: &Management<'_>, user: &str, vhost: &str) -> Result<Actor, ApiError> {
    if m.broker.access().vhost(vhost).is_none() {
        return Err(ApiError::not_found());
    }
    m.broker
        .api_actor(user, vhost)
        .ok_or_else(|| ApiError::not_authorised("User not authorised to access virtual host"))
}

/// A JSON `arguments` object as a raw field table.
fn arguments(doc: &Value) -> Result<Vec<u8>, ApiError> {
    match doc.get("arguments") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(map)) => crate::definitions::arguments::json_to_table(map)
            .map_err(|e| ApiError::bad_request(e.to_string())),
        Some(_) => Err(ApiError::bad_request("arguments must be an object")),
    }
}

fn flag(doc: &Value, key: &str, default: bool) -> bool {
    match doc.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => default,
    }
}

fn created<S>(existed: bool) -> Response<S> {
    Response::new(if existed {
        Status::NO_CONTENT
    } else {
        Status::CREATED
    })
}

pub(super) fn put_queue<S>(
    m: &mut Management<'_>,
    who: &Actor,
    name: &str,
    body: &[u8],
) -> Result<Response<S>, ApiError> {
    let doc = body_json(body)?;
    let args = arguments(&doc)?;
    let table = FieldTable::parse(&args).map_err(|_| ApiError::bad_request("arguments"))?;
    let passive = QueueFlags {
        passive: true,
        ..QueueFlags::default()
    };
    let existed = m
        .broker
        .declare_queue(who, name.as_bytes(), passive, FieldTable::default())
        .is_ok();
    let flags = QueueFlags {
        durable: flag(&doc, "durable", true),
        auto_delete: flag(&doc, "auto_delete", false),
        ..QueueFlags::default()
    };
    m.broker
        .declare_queue(who, name.as_bytes(), flags, table)
        .map_err(api_error)?;
    Ok(created(existed))
}

pub(super) fn delete_queue<S>(
    m: &mut Management<'_>,
    who: &Actor,
    name: &str,
    q: &crate::http::request::Query,
) -> Result<Response<S>, ApiError> {
    let if_unused = q.get("if-unused") == Some("true");
    let if_empty = q.get("if-empty") == Some("true");
    m.broker
        .delete_queue(who, name.as_bytes(), if_unused, if_empty)
        .map_err(api_error)?;
    Ok(Response::new(Status::NO_CONTENT))
}

pub(super) fn purge<S>(
    m: &mut Management<'_>,
    who: &Actor,
    name: &str,
) -> Result<Response<S>, ApiError> {
    m.broker
        .purge_queue(who, name.as_bytes())
        .map_err(api_error)?;
    Ok(Response::new(Status::NO_CONTENT))
}

pub(super) fn put_exchange<S>(
    m: &mut Management<'_>,
    who: &Actor,
    name: &str,
    body: &[u8],
) -> Result<Response<S>, ApiError> {
    let doc = body_json(body)?;
    let kind = doc
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("key_missing: type"))?;
    let args = arguments(&doc)?;
    let table = FieldTable::parse(&args).map_err(|_| ApiError::bad_request("arguments"))?;
    let exists = m
        .broker
        .exchange_views(Some(who.vhost_name()))
        .iter()
        .any(|x| x.name == name);
    let flags = ExchangeFlags {
        passive: false,
        durable: flag(&doc, "durable", true),
        auto_delete: flag(&doc, "auto_delete", false),
        internal: flag(&doc, "internal", false),
    };
    m.broker
        .declare_exchange(who, name.as_bytes(), kind.as_bytes(), flags, table)
        .map_err(api_error)?;
    Ok(created(exists))
}

pub(super) fn delete_exchange<S>(
    m: &mut Management<'_>,
    who: &Actor,
    name: &str,
    q: &crate::http::request::Query,
) -> Result<Response<S>, ApiError> {
    let if_unused = q.get("if-unused") == Some("true");
    m.broker
        .delete_exchange(who, name.as_bytes(), if_unused)
        .map_err(api_error)?;
    Ok(Response::new(Status::NO_CONTENT))
}

/// The API names the default exchange `amq.default`.
fn exchange_name(name: &str) -> &str {
    if name == "amq.default" {
        ""
    } else {
        name
    }
}

/// POST /api/bindings/v/e/SOURCE/{q|e}/DEST: 201 with the new binding's Location.
pub(super) fn bind<S>(
    m: &mut Management<'_>,
    who: &Actor,
    source: &str,
    to_queue: bool,
    dest: &str,
    body: &[u8],
) -> Result<Response<S>, ApiError> {
    let doc = body_json(body)?;
    let key = doc.get("routing_key").and_then(Value::as_str).unwrap_or("");
    let args = arguments(&doc)?;
    let table = FieldTable::parse(&args).map_err(|_| ApiError::bad_request("arguments"))?;
    let src = exchange_name(source).as_bytes();
    let r = if to_queue {
        m.broker
            .bind_queue(who, dest.as_bytes(), src, key.as_bytes(), table)
    } else {
        m.broker
            .bind_exchange(who, dest.as_bytes(), src, key.as_bytes(), table)
    };
    r.map_err(api_error)?;
    let location = format!(
        "{}/{}",
        urlencode(dest),
        urlencode(&properties_key(key, &args))
    );
    Ok(Response::new(Status::CREATED).header("location", location))
}

/// DELETE /api/bindings/v/e/SOURCE/{q|e}/DEST/PROPS.
pub(super) fn unbind<S>(
    m: &mut Management<'_>,
    who: &Actor,
    source: &str,
    to_queue: bool,
    dest: &str,
    props: &str,
) -> Result<Response<S>, ApiError> {
    let found = m
        .broker
        .binding_views(Some(who.vhost_name()))
        .into_iter()
        .find(|b| {
            b.source == source
                && b.destination == dest
                && b.to_queue == to_queue
                && properties_key(&b.routing_key, &b.arguments) == props
        })
        .ok_or_else(ApiError::not_found)?;
    let table = FieldTable::parse(&found.arguments).unwrap_or_default();
    let (src, key) = (source.as_bytes(), found.routing_key.as_bytes());
    let r = if to_queue {
        m.broker.unbind_queue(who, dest.as_bytes(), src, key, table)
    } else {
        m.broker
            .unbind_exchange(who, dest.as_bytes(), src, key, table)
    };
    r.map_err(api_error)?;
    Ok(Response::new(Status::NO_CONTENT))
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// POST /api/exchanges/v/NAME/publish: `{"routed": bool}`.
pub(super) fn publish<S>(
    m: &mut Management<'_>,
    who: &Actor,
    exchange: &str,
    body: &[u8],
) -> Result<Response<S>, ApiError> {
    let doc = body_json(body)?;
    let key = doc.get("routing_key").and_then(Value::as_str).unwrap_or("");
    let payload = doc.get("payload").and_then(Value::as_str).unwrap_or("");
    let body = match doc
        .get("payload_encoding")
        .and_then(Value::as_str)
        .unwrap_or("string")
    {
        "string" => payload.as_bytes().to_vec(),
        "base64" => crate::http::request::base64_decode(payload.as_bytes())
            .ok_or_else(|| ApiError::bad_request("payload is not base64"))?,
        other => {
            return Err(ApiError::bad_request(format!(
                "unsupported payload_encoding {other}"
            )))
        }
    };
    let props = doc
        .get("properties")
        .cloned()
        .unwrap_or(Value::Object(Map::new()));
    let (raw_props, persistent) = encode_properties(&props)?;
    let name = exchange_name(exchange);
    who.grant()
        .check_basic_publish(name.as_bytes())
        .map_err(|r| api_error(r.into()))?;
    let target = m
        .broker
        .publish_target(who, name.as_bytes())
        .map_err(api_error)?;
    let msg = crate::broker::message::Message::new(
        name.as_bytes(),
        key.as_bytes(),
        &raw_props,
        &body,
        persistent,
    );
    let props = crate::session::publish_props(&msg).map_err(api_error)?;
    let routed = m.broker.publish(target, &msg, props);
    let mut out = Vec::new();
    let mut o = ObjectWriter::item(&mut out, Filter::All);
    o.bool("routed", routed.queues > 0);
    o.end();
    Ok(json_ok(out))
}

/// The API's `properties` object as AMQP basic properties (flags word and list).
fn encode_properties(p: &Value) -> Result<(Vec<u8>, bool), ApiError> {
    let s = |k: &str| p.get(k).and_then(Value::as_str).map(str::as_bytes);
    let headers_raw = match p.get("headers") {
        Some(Value::Object(h)) => Some(
            crate::definitions::arguments::json_to_table(h)
                .map_err(|e| ApiError::bad_request(e.to_string()))?,
        ),
        _ => None,
    };
    let headers = match &headers_raw {
        Some(raw) => Some(FieldTable::parse(raw).map_err(|_| ApiError::bad_request("headers"))?),
        None => None,
    };
    let props = BasicProperties {
        content_type: s("content_type"),
        content_encoding: s("content_encoding"),
        headers,
        delivery_mode: p
            .get("delivery_mode")
            .and_then(Value::as_u64)
            .map(|d| d as u8),
        priority: p
            .get("priority")
            .and_then(Value::as_u64)
            .map(|d| d.min(255) as u8),
        correlation_id: s("correlation_id"),
        reply_to: s("reply_to"),
        expiration: s("expiration"),
        message_id: s("message_id"),
        timestamp: p.get("timestamp").and_then(Value::as_u64),
        kind: s("type"),
        user_id: s("user_id"),
        app_id: s("app_id"),
        cluster_id: None,
    };
    let mut raw = Vec::new();
    props.encode(&mut crate::protocol::wire::Writer::new(&mut raw));
    Ok((raw, props.is_persistent()))
}

/// Basic properties as the API shows them (only those set).
fn properties_json(raw: &[u8]) -> Value {
    let mut o = Map::new();
    let Ok(p) = BasicProperties::decode(raw) else {
        return Value::Object(o);
    };
    let text = |b: &[u8]| Value::from(String::from_utf8_lossy(b).into_owned());
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            o.insert(k.to_owned(), v);
        }
    };
    put("app_id", p.app_id.map(text));
    put("content_encoding", p.content_encoding.map(text));
    put("content_type", p.content_type.map(text));
    put("correlation_id", p.correlation_id.map(text));
    put("delivery_mode", p.delivery_mode.map(Value::from));
    put("expiration", p.expiration.map(text));
    put(
        "headers",
        p.headers
            .and_then(|h| crate::definitions::arguments::table_to_json(h).ok())
            .map(Value::Object),
    );
    put("message_id", p.message_id.map(text));
    put("priority", p.priority.map(Value::from));
    put("reply_to", p.reply_to.map(text));
    put("timestamp", p.timestamp.map(Value::from));
    put("type", p.kind.map(text));
    put("user_id", p.user_id.map(text));
    Value::Object(o)
}

/// POST /api/queues/v/NAME/get: up to `count` messages (at most HTTP_GET_MESSAGES_MAX),
/// settled by `ackmode` once all are taken, as RabbitMQ's channel does it.
pub(super) fn get<S>(
    m: &mut Management<'_>,
    who: &Actor,
    name: &str,
    body: &[u8],
) -> Result<Response<S>, ApiError> {
    let doc = body_json(body)?;
    let count = doc
        .get("count")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .min(HTTP_GET_MESSAGES_MAX);
    let mode = doc
        .get("ackmode")
        .and_then(Value::as_str)
        .unwrap_or("ack_requeue_true");
    let (requeue, acked) = match mode {
        "ack_requeue_true" | "reject_requeue_true" => (true, false),
        "ack_requeue_false" => (false, true),
        "reject_requeue_false" => (false, false),
        other => return Err(ApiError::bad_request(format!("Unknown ackmode: {other}"))),
    };
    let auto = doc
        .get("encoding")
        .and_then(Value::as_str)
        .unwrap_or("auto")
        == "auto";
    let truncate = doc
        .get("truncate")
        .and_then(Value::as_u64)
        .map(|t| t as usize);
    let mut taken = Vec::new();
    for _ in 0..count {
        match m
            .broker
            .get(who, name.as_bytes(), false)
            .map_err(api_error)?
        {
            Some(g) => taken.push(g),
            None => break,
        }
    }
    let mut out = vec![b'['];
    for (i, g) in taken.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let msg = g.message.message();
        let body = msg.body();
        let shown = &body[..truncate.map_or(body.len(), |t| t.min(body.len()))];
        let (payload, encoding) = match (auto, std::str::from_utf8(shown)) {
            (true, Ok(s)) => (s.to_owned(), "string"),
            _ => (crate::auth::base64::encode(shown), "base64"),
        };
        let mut o = ObjectWriter::item(&mut out, Filter::All);
        o.u64("payload_bytes", body.len() as u64)
            .bool("redelivered", g.message.redelivered())
            .str("exchange", &String::from_utf8_lossy(msg.exchange()))
            .str("routing_key", &String::from_utf8_lossy(msg.routing_key()))
            .u64("message_count", g.message_count.into())
            .value("properties", &properties_json(msg.properties()))
            .str("payload", &payload)
            .str("payload_encoding", encoding);
        o.end();
    }
    out.push(b']');
    // Settled last-first, so requeued messages go back in their order.
    for g in taken.into_iter().rev() {
        if requeue {
            m.broker.requeue(g.queue, g.message);
        } else {
            if acked {
                m.broker.ack(g.queue, g.message);
            } else {
                m.broker.reject(g.queue, g.message);
            }
        }
    }
    Ok(json_ok(out))
}

/// GET /api/aliveness-test/VHOST: declares `aliveness-test`, publishes to it and gets the
/// message back, as RabbitMQ does.
pub(super) fn aliveness<S>(m: &mut Management<'_>, who: &Actor) -> Result<Response<S>, ApiError> {
    const QUEUE: &[u8] = b"aliveness-test";
    let flags = QueueFlags {
        durable: false,
        ..QueueFlags::default()
    };
    m.broker
        .declare_queue(who, QUEUE, flags, FieldTable::default())
        .map_err(api_error)?;
    let target = m.broker.publish_target(who, b"").map_err(api_error)?;
    let msg = crate::broker::message::Message::new(b"", QUEUE, &[0, 0], b"test_message", false);
    m.broker
        .publish(target, &msg, crate::broker::PublishProps::default());
    let got = m.broker.get(who, QUEUE, true).map_err(api_error)?;
    let ok = got.is_some_and(|g| g.message.message().body() == b"test_message");
    let mut out = Vec::new();
    let mut o = ObjectWriter::item(&mut out, Filter::All);
    if ok {
        o.str("status", "ok");
    } else {
        o.str("status", "failed")
            .str("reason", "aliveness-test message not received");
    }
    o.end();
    Ok(if ok {
        json_ok(out)
    } else {
        Response::json(Status::SERVICE_UNAVAILABLE, out)
    })
}
