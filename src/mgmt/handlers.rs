//! The management routes: each checks its caller (RabbitMQ's tag rules), reads what it shows
//! or asks for what it changes, and answers with RabbitMQ 3.10's status codes and JSON field
//! names. Listings snapshot their rows into `Rows` and stream them (see `Listing`).

use super::{epoch_ms, Listing, Management};
use crate::http::auth::{Need, Principal};
use crate::http::json::{ArrayWriter, Columns, Filter, ObjectWriter};
use crate::http::paginate::{select, EnvelopeStyle, ListQuery, Listable, ListingStream};
use crate::http::router::Route;
use crate::http::{ApiError, Request, Response, Status};
use crate::session::info::ChannelInfo;
use serde_json::Value;
use std::net::SocketAddr;

/// The node name the API reports, RabbitMQ's `name@host` shape.
pub(super) fn node_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes, NUL-terminated when it fits.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let host = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "localhost".to_owned()
    };
    format!("coney@{host}")
}

/// A connection as listed: copied out when the request arrives.
pub(super) struct ConnSnap {
    name: String,
    peer: SocketAddr,
    local: SocketAddr,
    tls: bool,
    user: String,
    vhost: String,
    state: &'static str,
    channels: usize,
    channel_max: u16,
    frame_max: u32,
    timeout: u16,
    connected_at: u64,
    client_properties: Value,
}

pub(super) struct ChanSnap {
    conn: String,
    peer: SocketAddr,
    user: String,
    vhost: String,
    ch: ChannelInfo,
}

/// The rows of one listing.
pub(super) enum Rows {
    Connections(Vec<ConnSnap>),
    Channels(Vec<ChanSnap>),
}

impl Listable for ConnSnap {
    fn name(&self) -> &str {
        &self.name
    }
    fn sort_value(&self, path: &[String]) -> Option<Value> {
        match path.first()?.as_str() {
            "name" => Some(Value::from(self.name.clone())),
            "vhost" => Some(Value::from(self.vhost.clone())),
            "user" => Some(Value::from(self.user.clone())),
            "channels" => Some(Value::from(self.channels)),
            "connected_at" => Some(Value::from(self.connected_at)),
            _ => None,
        }
    }
}

impl ChanSnap {
    fn name(&self) -> String {
        format!("{} ({})", self.conn, self.ch.number)
    }
}

impl Listable for ChanSnap {
    fn name(&self) -> &str {
        &self.conn
    }
    fn sort_value(&self, path: &[String]) -> Option<Value> {
        match path.first()?.as_str() {
            "name" => Some(Value::from(self.name())),
            "vhost" => Some(Value::from(self.vhost.clone())),
            "number" => Some(Value::from(self.ch.number)),
            "messages_unacknowledged" => Some(Value::from(self.ch.unacked)),
            _ => None,
        }
    }
}

impl Rows {
    pub(super) fn write(&self, out: &mut Vec<u8>, i: usize, filter: Filter<'_>) {
        match self {
            Rows::Connections(v) => write_connection(out, &v[i], filter),
            Rows::Channels(v) => write_channel(out, &v[i], filter),
        }
    }
}

fn write_connection(out: &mut Vec<u8>, c: &ConnSnap, filter: Filter<'_>) {
    let mut o = ObjectWriter::item(out, filter);
    o.str("auth_mechanism", "PLAIN")
        .u64("channel_max", c.channel_max.into())
        .u64("channels", c.channels as u64)
        .value("client_properties", &c.client_properties)
        .u64("connected_at", c.connected_at)
        .u64("frame_max", c.frame_max.into())
        .str("host", &c.local.ip().to_string())
        .str("name", &c.name)
        .str("node", &node_name())
        .str("peer_host", &c.peer.ip().to_string())
        .u64("peer_port", c.peer.port().into())
        .u64("port", c.local.port().into())
        .str("protocol", "AMQP 0-9-1")
        .bool("ssl", c.tls)
        .str("state", c.state)
        .u64("timeout", c.timeout.into())
        .str("type", "network")
        .str("user", &c.user)
        .str("user_who_performed_action", &c.user)
        .str("vhost", &c.vhost);
    o.end();
}

fn write_channel(out: &mut Vec<u8>, c: &ChanSnap, filter: Filter<'_>) {
    let mut o = ObjectWriter::item(out, filter);
    o.u64("acks_uncommitted", 0)
        .bool("confirm", c.ch.confirm)
        .object("connection_details", |d| {
            d.str("name", &c.conn)
                .str("peer_host", &c.peer.ip().to_string())
                .u64("peer_port", c.peer.port().into());
        })
        .u64("consumer_count", c.ch.consumers as u64)
        .u64("global_prefetch_count", c.ch.global_prefetch_count.into())
        .u64("messages_unacknowledged", c.ch.unacked as u64)
        .str("name", &c.name())
        .str("node", &node_name())
        .u64("number", c.ch.number.into())
        .u64("prefetch_count", c.ch.prefetch_count.into())
        .str("state", "running")
        .bool("transactional", c.ch.transactional)
        .str("user", &c.user)
        .str("vhost", &c.vhost);
    o.end();
}

/// The client properties of start-ok as JSON, as RabbitMQ shows them.
fn client_properties(t: crate::protocol::FieldTable<'_>) -> Value {
    crate::definitions::arguments::table_to_json(t)
        .map(Value::Object)
        .unwrap_or(Value::Object(Default::default()))
}

impl Management<'_> {
    fn connection_snaps(&self, vhost_of: impl Fn(&str) -> String) -> Vec<ConnSnap> {
        let mut rows = Vec::new();
        self.conns.each(&mut |row| {
            let info = row.session.info(self.now);
            if info.user.is_empty() {
                return; // still in the handshake: RabbitMQ lists connections once opened
            }
            let age = self.now.saturating_duration_since(info.opened_at);
            rows.push(ConnSnap {
                name: row.name(),
                peer: info.peer,
                local: row.local,
                tls: row.tls,
                user: info.user.to_owned(),
                vhost: vhost_of(info.user),
                state: info.state,
                channels: row.session.channel_count(),
                channel_max: info.channel_max,
                frame_max: info.frame_max,
                timeout: info.heartbeat_secs,
                connected_at: epoch_ms().saturating_sub(age.as_millis() as u64),
                client_properties: client_properties(info.client_properties),
            });
        });
        rows
    }

    fn channel_snaps(&self) -> Vec<ChanSnap> {
        let mut rows = Vec::new();
        self.conns.each(&mut |row| {
            let info = row.session.info(self.now);
            let conn = row.name();
            row.session.each_channel(|ch| {
                rows.push(ChanSnap {
                    conn: conn.clone(),
                    peer: info.peer,
                    user: info.user.to_owned(),
                    vhost: "/".to_owned(),
                    ch,
                })
            });
        });
        rows
    }
}

fn json<S>(body: Vec<u8>) -> Response<S> {
    Response::json(Status::OK, body)
}

/// A listing: the listing rules applied to `rows`, streamed.
fn listing(
    req: &Request,
    rows: Rows,
    default_sort: &[&str],
) -> Result<Response<Listing>, ApiError> {
    let q = ListQuery::parse(&req.query)?;
    let sel = match &rows {
        Rows::Connections(v) => select(v, &q, default_sort)?,
        Rows::Channels(v) => select(v, &q, default_sort)?,
    };
    let columns: Option<Columns> = q.columns.clone();
    Ok(Response::new(Status::OK)
        .header("content-type", "application/json")
        .stream(Listing {
            rows,
            stream: ListingStream::new(sel, EnvelopeStyle::Sorted),
            columns,
        }))
}

pub(super) fn handle(
    m: &mut Management<'_>,
    req: &Request,
    peer: SocketAddr,
    route: Route,
) -> Result<Response<Listing>, ApiError> {
    use crate::http::Method::{Delete, Get, Head};
    let need = match (&route, req.method) {
        (Route::WebUi, _) => {
            return super::web::file(&req.segments).ok_or_else(ApiError::not_found)
        }
        (_, Get | Head) => Need::Management,
        _ => Need::Administrator,
    };
    let who = m.authorize(req, peer, need)?;
    match (route, req.method) {
        (Route::Whoami, _) => Ok(json(whoami(&who))),
        (Route::Overview, _) => Ok(json(overview(m))),
        (Route::ClusterName, _) => {
            let mut out = Vec::new();
            let mut o = ObjectWriter::item(&mut out, Filter::All);
            o.str("name", &node_name());
            o.end();
            Ok(json(out))
        }
        (Route::HealthAlarms | Route::HealthLocalAlarms, _) => Ok(health_alarms(m.alarms)),
        (Route::Connections, _) => {
            let rows = m.connection_snaps(|_| "/".to_owned());
            listing(req, Rows::Connections(rows), &["vhost", "name"])
        }
        (Route::Connection { name }, Delete) => {
            let reason = req
                .x_reason
                .clone()
                .unwrap_or_else(|| "Closed via management plugin".to_owned());
            if m.conns.close(&name, &reason) {
                Ok(Response::new(Status::NO_CONTENT))
            } else {
                Err(ApiError::not_found())
            }
        }
        (Route::Connection { name }, _) => {
            let rows = m.connection_snaps(|_| "/".to_owned());
            let c = rows
                .iter()
                .find(|c| c.name == name)
                .ok_or_else(ApiError::not_found)?;
            let mut out = Vec::new();
            write_connection(&mut out, c, Filter::All);
            Ok(json(out))
        }
        (Route::Channels, _) => {
            let rows = m.channel_snaps();
            listing(req, Rows::Channels(rows), &["vhost", "name"])
        }
        (Route::ConnectionChannels { name }, _) => {
            let rows: Vec<ChanSnap> = m
                .channel_snaps()
                .into_iter()
                .filter(|c| c.conn == name)
                .collect();
            listing(req, Rows::Channels(rows), &["vhost", "name"])
        }
        _ => Err(ApiError::json(
            Status::NOT_IMPLEMENTED,
            "not_implemented",
            "coney does not implement this endpoint yet",
        )),
    }
}

fn whoami(who: &Principal) -> Vec<u8> {
    let mut out = Vec::new();
    let mut o = ObjectWriter::item(&mut out, Filter::All);
    o.str("name", &who.user)
        .array("tags", |a: &mut ArrayWriter<'_>| {
            for t in who.tags.names() {
                a.str(t);
            }
        });
    o.end();
    out
}

/// RabbitMQ's alarms check: 200 ok, or 503 naming each resource in alarm.
fn health_alarms<S>(a: &crate::resources::Alarms) -> Response<S> {
    if !a.any() {
        return json(health_ok());
    }
    let node = node_name();
    let mut out = Vec::new();
    let mut o = ObjectWriter::item(&mut out, Filter::All);
    o.str("status", "failed")
        .str("reason", "There are alarms in effect in the cluster")
        .array("alarms", |arr| {
            for (on, resource) in [(a.memory, "memory"), (a.disk, "disk")] {
                if on {
                    arr.object(|x| {
                        x.str("node", &node).str("resource", resource);
                    });
                }
            }
        });
    o.end();
    Response::json(Status::SERVICE_UNAVAILABLE, out)
}

fn health_ok() -> Vec<u8> {
    let mut out = Vec::new();
    let mut o = ObjectWriter::item(&mut out, Filter::All);
    o.str("status", "ok");
    o.end();
    out
}

fn overview(m: &Management<'_>) -> Vec<u8> {
    let rates = m.stats.rates();
    let c = m.broker.counters();
    let (mut connections, mut channels) = (0u64, 0u64);
    m.conns.each(&mut |row| {
        connections += 1;
        channels += row.session.channel_count() as u64;
    });
    let version = env!("CARGO_PKG_VERSION");
    let node = node_name();
    let mut out = Vec::new();
    let mut o = ObjectWriter::item(&mut out, Filter::All);
    o.str("management_version", version)
        .str("rates_mode", "basic")
        .array("exchange_types", |a| {
            for (name, what) in [
                (
                    "direct",
                    "AMQP direct exchange, as per the AMQP specification",
                ),
                (
                    "fanout",
                    "AMQP fanout exchange, as per the AMQP specification",
                ),
                (
                    "headers",
                    "AMQP headers exchange, as per the AMQP specification",
                ),
                (
                    "topic",
                    "AMQP topic exchange, as per the AMQP specification",
                ),
            ] {
                a.object(|t| {
                    t.str("name", name)
                        .str("description", what)
                        .bool("enabled", true);
                });
            }
        })
        .str("product_version", version)
        .str("product_name", "coney")
        .str("rabbitmq_version", "3.10.8")
        .str("cluster_name", &node)
        .bool("disable_stats", false)
        .object("message_stats", |s| {
            let pair = |s: &mut ObjectWriter<'_, '_>, key: &str, total: u64, rate: f64| {
                s.u64(key, total);
                s.object(&format!("{key}_details"), |d| {
                    d.f64("rate", rate);
                });
            };
            pair(s, "ack", c.ack, rates.ack);
            pair(s, "deliver", c.deliver + c.deliver_no_ack, rates.deliver);
            pair(s, "deliver_get", c.deliver_get(), rates.deliver_get);
            pair(s, "get", c.get + c.get_no_ack, rates.get);
            pair(s, "publish", c.publish, rates.publish);
            pair(s, "redeliver", c.redeliver, rates.redeliver);
        })
        .object("queue_totals", |_| {})
        .object("object_totals", |t| {
            t.u64("channels", channels)
                .u64("connections", connections)
                .u64("consumers", 0)
                .u64("exchanges", 0)
                .u64("queues", 0);
        })
        .str("node", &node);
    o.end();
    out
}
