//! The management routes: each checks its caller (RabbitMQ's tag rules), reads what it shows
//! or asks for what it changes, and answers with RabbitMQ 3.10's status codes and JSON field
//! names. Listings snapshot their rows into `Rows` and stream them (see `Listing`).

use super::objects::{self, ConsumerSnap};
use super::{access_api, actions, epoch_ms, node, policies_api, Listing, Management};
use crate::broker::{BindingView, ExchangeView, QueueView};
use crate::http::auth::{Need, Principal, Tags};
use crate::http::json::{ArrayWriter, Columns, Filter, ObjectWriter};
use crate::http::paginate::{select, EnvelopeStyle, ListQuery, Listable, ListingStream};
use crate::http::router::{DestKind, Route};
use crate::http::{ApiError, Request, Response, Status};
use crate::net::tls::TlsInfo;
use crate::session::info::ChannelInfo;
use serde_json::Value;
use std::net::SocketAddr;

/// The node name the API reports, RabbitMQ's `name@host` shape (read once: every item of a
/// listing names its node).
pub(crate) fn node_name() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(read_node_name)
}

fn read_node_name() -> String {
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
    /// The TLS handshake's protocol, suite and client certificate, as the reactor keeps them.
    tls_info: Option<TlsInfo>,
    user: String,
    vhost: String,
    state: &'static str,
    channels: usize,
    channel_max: u16,
    frame_max: u32,
    timeout: u16,
    connected_at: u64,
    client_properties: Value,
    auth_mechanism: &'static str,
    io: crate::net::io_stats::IoCounters,
    /// Bytes per second received and sent.
    io_rates: (f64, f64),
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
    Queues(Vec<QueueView>),
    Exchanges(Vec<ExchangeView>),
    Bindings(Vec<BindingView>),
    Consumers(Vec<ConsumerSnap>),
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
            Rows::Queues(v) => objects::write_queue(out, &v[i], filter),
            Rows::Exchanges(v) => objects::write_exchange(out, &v[i], filter),
            Rows::Bindings(v) => objects::write_binding(out, &v[i], filter),
            Rows::Consumers(v) => objects::write_consumer(out, &v[i], filter),
        }
    }
}

fn write_connection(out: &mut Vec<u8>, c: &ConnSnap, filter: Filter<'_>) {
    let mut o = ObjectWriter::item(out, filter);
    connection_fields(&mut o, c, false);
    o.end();
}

/// GET /api/connections/NAME: as listed, but RabbitMQ 3.10 renders a plain connection's
/// TLS fields as "" there where the listing has null.
fn write_one_connection(out: &mut Vec<u8>, c: &ConnSnap, filter: Filter<'_>) {
    let mut o = ObjectWriter::item(out, filter);
    connection_fields(&mut o, c, true);
    o.end();
}

fn connection_fields(o: &mut ObjectWriter<'_, '_>, c: &ConnSnap, single: bool) {
    o.str("auth_mechanism", c.auth_mechanism)
        .u64("channel_max", c.channel_max.into())
        .u64("channels", c.channels as u64)
        .value("client_properties", &c.client_properties)
        .u64("connected_at", c.connected_at)
        .u64("frame_max", c.frame_max.into())
        .str("host", &c.local.ip().to_string())
        .str("name", &c.name)
        .str("node", node_name())
        .str("peer_host", &c.peer.ip().to_string())
        .u64("peer_port", c.peer.port().into())
        .u64("port", c.local.port().into())
        .str("protocol", "AMQP 0-9-1")
        .u64("recv_cnt", c.io.recv_cnt)
        .u64("recv_oct", c.io.recv_oct)
        .object("recv_oct_details", |d| {
            d.f64("rate", c.io_rates.0);
        })
        .u64("send_cnt", c.io.send_cnt)
        .u64("send_oct", c.io.send_oct)
        .object("send_oct_details", |d| {
            d.f64("rate", c.io_rates.1);
        })
        .bool("ssl", c.tls)
        .str("state", c.state)
        .u64("timeout", c.timeout.into())
        .str("type", "network")
        .str("user", &c.user)
        .str("user_who_performed_action", &c.user)
        .str("vhost", &c.vhost);
    if let Some(Value::String(n)) = c.client_properties.get("connection_name") {
        o.str("user_provided_name", n);
    }
    // RabbitMQ 3.10 reports the TLS session and the client certificate; what a connection
    // lacks (all of it on a plain one, the certificate when the client sent none) is null in
    // the listing and "" for one connection.
    let missing = |o: &mut ObjectWriter<'_, '_>, key: &str| {
        if single {
            o.str(key, "");
        } else {
            o.null(key);
        }
    };
    match &c.tls_info {
        Some(t) => {
            match &t.peer_cert {
                Some(p) => {
                    o.str("peer_cert_issuer", &p.issuer)
                        .str("peer_cert_subject", &p.subject)
                        .str("peer_cert_validity", &p.validity);
                }
                None => {
                    for key in [
                        "peer_cert_issuer",
                        "peer_cert_subject",
                        "peer_cert_validity",
                    ] {
                        missing(o, key);
                    }
                }
            }
            o.str("ssl_cipher", t.cipher)
                .str("ssl_hash", t.hash)
                .str("ssl_key_exchange", t.key_exchange)
                .str("ssl_protocol", t.protocol);
        }
        None => {
            for key in [
                "peer_cert_issuer",
                "peer_cert_subject",
                "peer_cert_validity",
                "ssl_cipher",
                "ssl_hash",
                "ssl_key_exchange",
                "ssl_protocol",
            ] {
                missing(o, key);
            }
        }
    }
}

fn write_channel(out: &mut Vec<u8>, c: &ChanSnap, filter: Filter<'_>) {
    let mut o = ObjectWriter::item(out, filter);
    channel_fields(&mut o, c);
    o.end();
}

/// GET /api/channels/NAME: the listing's keys with the channel's consumers, and RabbitMQ's
/// per-queue and per-exchange `deliveries` and `publishes`, which its basic rates mode (and
/// so coney) leaves empty.
fn write_one_channel(out: &mut Vec<u8>, c: &ChanSnap, consumers: &[ConsumerSnap]) {
    let mut o = ObjectWriter::item(out, Filter::All);
    channel_fields(&mut o, c);
    o.array("consumer_details", |a| {
        for k in consumers {
            a.object(|o| objects::consumer_fields(o, k));
        }
    })
    .array("deliveries", |_| {})
    .array("publishes", |_| {});
    o.end();
}

fn channel_fields(o: &mut ObjectWriter<'_, '_>, c: &ChanSnap) {
    o.u64("acks_uncommitted", c.ch.acks_uncommitted as u64)
        .bool("confirm", c.ch.confirm)
        .object("connection_details", |d| {
            d.str("name", &c.conn)
                .str("peer_host", &c.peer.ip().to_string())
                .u64("peer_port", c.peer.port().into());
        })
        .u64("consumer_count", c.ch.consumers as u64)
        .u64("global_prefetch_count", c.ch.global_prefetch_count.into())
        .u64("messages_unacknowledged", c.ch.unacked as u64)
        .u64("messages_uncommitted", c.ch.uncommitted as u64)
        .u64("messages_unconfirmed", c.ch.unconfirmed)
        .str("name", &c.name())
        .str("node", node_name())
        .u64("number", c.ch.number.into())
        .u64("prefetch_count", c.ch.prefetch_count.into())
        .str("state", "running")
        .bool("transactional", c.ch.transactional)
        .str("user", &c.user)
        .str("user_who_performed_action", &c.user)
        .str("vhost", &c.vhost);
    let v = &c.ch.stats;
    let (t, d) = (&v.total, &v.delta);
    if !(t.published() || t.delivered()) {
        return; // RabbitMQ shows message_stats once something happened on the channel
    }
    o.object("message_stats", |s| {
        let mut pair = |key: &str, total: u64, delta: u64| {
            s.u64(key, total);
            s.object(&format!("{key}_details"), |r| {
                r.f64("rate", v.rate(delta));
            });
        };
        if t.delivered() {
            pair("ack", t.ack, d.ack);
            pair("deliver", t.deliver, d.deliver);
            pair("deliver_get", t.deliver_get(), d.deliver_get());
            pair("deliver_no_ack", t.deliver_no_ack, d.deliver_no_ack);
            pair("get", t.get, d.get);
            pair("get_empty", t.get_empty, d.get_empty);
            pair("get_no_ack", t.get_no_ack, d.get_no_ack);
            pair("redeliver", t.redeliver, d.redeliver);
        }
        if t.published() {
            pair("confirm", t.confirm, d.confirm);
            pair("drop_unroutable", t.drop_unroutable, d.drop_unroutable);
            pair("publish", t.publish, d.publish);
            pair(
                "return_unroutable",
                t.return_unroutable,
                d.return_unroutable,
            );
        }
    });
}

/// The client properties of start-ok as JSON, as RabbitMQ shows them.
fn client_properties(t: crate::protocol::FieldTable<'_>) -> Value {
    crate::definitions::arguments::table_to_json(t)
        .map(Value::Object)
        .unwrap_or(Value::Object(Default::default()))
}

impl Management<'_> {
    /// The user of the opened connection called `name`, whoever may see it.
    fn connection_owner(&self, name: &str) -> Option<String> {
        let mut owner = None;
        self.conns.each(&mut |row| {
            let info = row.session.info(self.now);
            if !info.vhost.is_empty() && owner.is_none() && row.name() == name {
                owner = Some(info.user.to_owned());
            }
        });
        owner
    }

    /// The user of the connection whose channel is called `name`, whoever may see it.
    fn channel_owner(&self, name: &str) -> Option<String> {
        let (conn, number) = name.strip_suffix(')')?.rsplit_once(" (")?;
        let number: u16 = number.parse().ok()?;
        let mut owner = None;
        let epoch = self.broker.rate_epoch();
        self.conns.each(&mut |row| {
            if owner.is_some() || row.name() != conn {
                return;
            }
            row.session.each_channel(epoch, |ch| {
                if ch.number == number {
                    owner = Some(row.session.user().to_owned());
                }
            });
        });
        owner
    }

    /// The connections `who` may see (RabbitMQ's `filter_user`).
    fn connection_snaps(&self, who: &Principal) -> Vec<ConnSnap> {
        let mut rows = Vec::new();
        self.conns.each(&mut |row| {
            let info = row.session.info(self.now);
            if info.vhost.is_empty() {
                return; // still in the handshake: RabbitMQ lists connections once opened
            }
            if !sees_user(who, info.user) {
                return;
            }
            let age = self.now.saturating_duration_since(info.opened_at);
            rows.push(ConnSnap {
                name: row.name(),
                peer: info.peer,
                local: row.local,
                tls: row.tls,
                tls_info: row.tls_info.cloned(),
                user: info.user.to_owned(),
                vhost: info.vhost.to_owned(),
                state: info.state,
                channels: row.session.channel_count(),
                channel_max: info.channel_max,
                frame_max: info.frame_max,
                timeout: info.heartbeat_secs,
                connected_at: epoch_ms().saturating_sub(age.as_millis() as u64),
                client_properties: client_properties(info.client_properties),
                auth_mechanism: info.auth_mechanism,
                io: row.io.now,
                io_rates: row.io.rates(),
            });
        });
        rows
    }

    /// The channels `who` may see: those of the connections it may see.
    fn channel_snaps(&self, who: &Principal) -> Vec<ChanSnap> {
        let epoch = self.broker.rate_epoch();
        let mut rows = Vec::new();
        self.conns.each(&mut |row| {
            let info = row.session.info(self.now);
            if !sees_user(who, info.user) {
                return;
            }
            let conn = row.name();
            row.session.each_channel(epoch, |ch| {
                rows.push(ChanSnap {
                    conn: conn.clone(),
                    peer: info.peer,
                    user: info.user.to_owned(),
                    vhost: info.vhost.to_owned(),
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
        Rows::Queues(v) => select(v, &q, default_sort)?,
        Rows::Exchanges(v) => select(v, &q, default_sort)?,
        Rows::Bindings(v) => select(v, &q, default_sort)?,
        Rows::Consumers(v) => select(v, &q, default_sort)?,
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

/// A request body as JSON: 400 `not_json` as RabbitMQ when it does not parse.
pub(super) fn body_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_slice(body).map_err(|_| ApiError::bad_request("not_json"))
}

pub(super) fn json_ok<S>(body: Vec<u8>) -> Response<S> {
    json(body)
}

/// A JSON array of `items`, each written by `write`, answered 200.
pub(super) fn json_array<S, T>(
    items: impl IntoIterator<Item = T>,
    mut write: impl FnMut(&mut Vec<u8>, T),
) -> Response<S> {
    let mut out = vec![b'['];
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(&mut out, item);
    }
    out.push(b']');
    json(out)
}

/// 204 when the object existed before a PUT, 201 when the PUT created it (RabbitMQ's codes).
pub(super) fn created_or_replaced<S>(existed: bool) -> Response<S> {
    Response::new(if existed {
        Status::NO_CONTENT
    } else {
        Status::CREATED
    })
}

impl Management<'_> {
    fn consumer_snaps(&self, who: &Principal, vhost: Option<&str>) -> Vec<ConsumerSnap> {
        let mut rows = Vec::new();
        self.conns.each(&mut |row| {
            let info = row.session.info(self.now);
            if !sees_user(who, info.user) {
                return;
            }
            let conn_name = row.name();
            row.session.each_consumer(|_, id, tag, prefetch| {
                let Some(view) = self.broker.consumer_view(id) else {
                    return;
                };
                if vhost.is_some_and(|v| v != view.vhost) {
                    return;
                }
                rows.push(ConsumerSnap {
                    tag: String::from_utf8_lossy(tag).into_owned(),
                    prefetch,
                    conn_name: conn_name.clone(),
                    peer: info.peer,
                    user: info.user.to_owned(),
                    view,
                });
            });
        });
        rows
    }
}

/// One object of a listing by name, written whole.
fn one<T>(
    items: &[T],
    found: impl Fn(&T) -> bool,
    write: impl Fn(&mut Vec<u8>, &T, Filter<'_>),
) -> Result<Response<Listing>, ApiError> {
    let item = items
        .iter()
        .find(|i| found(i))
        .ok_or_else(ApiError::not_found)?;
    let mut out = Vec::new();
    write(&mut out, item, Filter::All);
    Ok(json(out))
}

fn bindings_listing(
    req: &Request,
    mut rows: Vec<BindingView>,
    keep: impl Fn(&BindingView) -> bool,
) -> Result<Response<Listing>, ApiError> {
    rows.retain(|b| keep(b));
    listing(req, Rows::Bindings(rows), &[])
}

pub(super) fn handle(
    m: &mut Management<'_>,
    req: &Request,
    peer: SocketAddr,
    route: Route,
) -> Result<Response<Listing>, ApiError> {
    use crate::http::Method::{Delete, Get, Head, Post, Put};
    let need = match (&route, req.method) {
        (Route::WebUi, _) => {
            return super::web::file(&req.segments).ok_or_else(ApiError::not_found)
        }
        // The page's OAuth settings, read before logging in (RabbitMQ 3.10 without OAuth).
        (Route::Auth, Get | Head) => {
            return Ok(json(
                br#"{"enable_uaa":false,"uaa_client_id":"","uaa_location":""}"#.to_vec(),
            ))
        }
        (
            Route::Vhosts
            | Route::Vhost { .. }
            | Route::Users
            | Route::User { .. }
            | Route::UsersWithoutPermissions
            | Route::Permissions
            | Route::Permission { .. }
            | Route::TopicPermissions
            | Route::TopicPermission { .. }
            | Route::VhostTopicPermissions { .. }
            | Route::UserTopicPermissions { .. }
            | Route::Definitions
            | Route::DefinitionsVhost { .. },
            _,
        ) => Need::Administrator,
        // RabbitMQ: runtime parameters need policymaker (or administrator), reading included.
        (
            Route::Parameters
            | Route::ParametersComponent { .. }
            | Route::ParametersComponentVhost { .. }
            | Route::Parameter { .. },
            _,
        ) => Need::Policymaker,
        // The shovel_management plugin's status: monitoring or administrator.
        (Route::Shovels | Route::ShovelsVhost { .. }, _) => Need::Monitor,
        (Route::Shovel { .. } | Route::ShovelRestart { .. }, _) => Need::Monitor,
        // The federation_management plugin's status: monitoring or administrator.
        (
            Route::FederationLinks
            | Route::FederationLinksVhost { .. }
            | Route::FederationLinksDown
            | Route::FederationLinksVhostDown { .. }
            | Route::FederationLinkRestart { .. },
            _,
        ) => Need::Monitor,
        (Route::Policy { .. }, _) => Need::Policymaker,
        (_, Get | Head) => Need::Management,
        (
            Route::Queue { .. }
            | Route::QueueContents { .. }
            | Route::QueueGet { .. }
            | Route::Exchange { .. }
            | Route::ExchangePublish { .. }
            | Route::BindingsBetween { .. }
            | Route::Binding { .. }
            | Route::Connection { .. }
            | Route::ConnectionsOfUser { .. },
            _,
        ) => Need::Management,
        _ => Need::Administrator,
    };
    // RabbitMQ lets monitoring users read everything but change nothing.
    let who = m.authorize(req, peer, need)?;
    let reader_only = who.tags.has(Tags::MONITORING)
        && !who.tags.has(Tags::ADMINISTRATOR)
        && !who.tags.has(Tags::MANAGEMENT)
        && !who.tags.has(Tags::POLICYMAKER);
    if reader_only && !matches!(req.method, Get | Head) {
        return Err(ApiError::not_authorised("Not management user"));
    }
    let user = who.user.clone();
    if super::shovels::serves(&route) {
        return super::shovels::handle(m, req, route, &who);
    }
    if super::federation::serves(&route) {
        return super::federation::handle(m, req.method, route, &who);
    }
    match (route, req.method) {
        (Route::Whoami, _) => Ok(json(whoami(&who))),
        (Route::Overview, _) => Ok(json(overview(m))),
        (Route::ClusterName, _) => {
            let mut out = Vec::new();
            let mut o = ObjectWriter::item(&mut out, Filter::All);
            o.str("name", node_name());
            o.end();
            Ok(json(out))
        }
        (Route::HealthAlarms | Route::HealthLocalAlarms, _) => Ok(health_alarms(m.alarms)),
        (Route::AlivenessTest { vhost }, _) => {
            let a = actions::actor(m, &user, &vhost)?;
            actions::aliveness(m, &a)
        }
        (Route::Connections, _) => {
            let rows = m.connection_snaps(&who);
            listing(req, Rows::Connections(rows), &["vhost", "name"])
        }
        (Route::VhostConnections { vhost }, _) => {
            let rows = m
                .connection_snaps(&who)
                .into_iter()
                .filter(|c| c.vhost == vhost)
                .collect();
            listing(req, Rows::Connections(rows), &["vhost", "name"])
        }
        // A user's connections: the user itself, or monitoring or administrator (RabbitMQ
        // 3.10 answers a management user 500 here); DELETE closes them all.
        (Route::ConnectionsOfUser { user }, method) => {
            if !sees_user(&who, &user) {
                return Err(ApiError::not_authorised(NOT_YOURS));
            }
            let rows: Vec<_> = m
                .connection_snaps(&who)
                .into_iter()
                .filter(|c| c.user == user)
                .collect();
            if method != Delete {
                return listing(req, Rows::Connections(rows), &["vhost", "name"]);
            }
            if !(who.tags.has(Tags::ADMINISTRATOR) || who.user == user) {
                return Err(ApiError::not_authorised(NOT_YOURS));
            }
            let reason = req
                .x_reason
                .clone()
                .unwrap_or_else(|| "Closed via management plugin".to_owned());
            for c in &rows {
                m.conns.close(&c.name, &reason);
            }
            Ok(Response::new(Status::NO_CONTENT))
        }
        (Route::Connection { name }, Delete) => {
            let owner = m.connection_owner(&name).ok_or_else(ApiError::not_found)?;
            if !(who.tags.has(Tags::ADMINISTRATOR) || who.user == owner) {
                return Err(ApiError::not_authorised(NOT_YOURS));
            }
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
            let owner = m.connection_owner(&name).ok_or_else(ApiError::not_found)?;
            if !sees_user(&who, &owner) {
                return Err(ApiError::not_authorised(NOT_YOURS));
            }
            let rows = m.connection_snaps(&who);
            one(&rows, |c| c.name == name, write_one_connection)
        }
        (Route::Channels, _) => {
            let rows = m.channel_snaps(&who);
            listing(req, Rows::Channels(rows), &["vhost", "name"])
        }
        (Route::Channel { name }, _) => {
            let owner = m.channel_owner(&name).ok_or_else(ApiError::not_found)?;
            if !sees_user(&who, &owner) {
                return Err(ApiError::not_authorised(NOT_YOURS));
            }
            let rows = m.channel_snaps(&who);
            let c = rows
                .iter()
                .find(|c| c.name() == name)
                .ok_or_else(ApiError::not_found)?;
            let consumers: Vec<ConsumerSnap> = m
                .consumer_snaps(&who, None)
                .into_iter()
                .filter(|k| k.conn_name == c.conn && k.view.channel == c.ch.number)
                .collect();
            let mut out = Vec::new();
            write_one_channel(&mut out, c, &consumers);
            Ok(json(out))
        }
        (Route::VhostChannels { vhost }, _) => {
            let rows = m
                .channel_snaps(&who)
                .into_iter()
                .filter(|c| c.vhost == vhost)
                .collect();
            listing(req, Rows::Channels(rows), &["vhost", "name"])
        }
        (Route::ConnectionChannels { name }, _) => {
            let rows = m
                .channel_snaps(&who)
                .into_iter()
                .filter(|c| c.conn == name)
                .collect();
            listing(req, Rows::Channels(rows), &["vhost", "name"])
        }
        (Route::Consumers, _) => listing(
            req,
            Rows::Consumers(m.consumer_snaps(&who, None)),
            &["vhost", "queue"],
        ),
        (Route::ConsumersVhost { vhost }, _) => listing(
            req,
            Rows::Consumers(m.consumer_snaps(&who, Some(&vhost))),
            &["vhost", "queue"],
        ),
        (Route::Queues, _) => listing(
            req,
            Rows::Queues(m.broker.queue_views(None)),
            &["vhost", "name"],
        ),
        (Route::QueuesVhost { vhost }, _) => {
            vhost_exists(m, &vhost)?;
            listing(
                req,
                Rows::Queues(m.broker.queue_views(Some(&vhost))),
                &["vhost", "name"],
            )
        }
        (Route::Queue { vhost, name }, Put) => {
            let a = actions::actor(m, &user, &vhost)?;
            actions::put_queue(m, &a, &name, &req.body)
        }
        (Route::Queue { vhost, name }, Delete) => {
            let a = actions::actor(m, &user, &vhost)?;
            actions::delete_queue(m, &a, &name, &req.query)
        }
        (Route::Queue { vhost, name }, _) => {
            vhost_exists(m, &vhost)?;
            one(
                &m.broker.queue_views(Some(&vhost)),
                |q| q.name == name,
                objects::write_queue,
            )
        }
        (Route::QueueContents { vhost, name }, _) => {
            let a = actions::actor(m, &user, &vhost)?;
            actions::purge(m, &a, &name)
        }
        (Route::QueueGet { vhost, name }, Post) => {
            let a = actions::actor(m, &user, &vhost)?;
            actions::get(m, &a, &name, &req.body)
        }
        (Route::QueueBindings { vhost, name }, _) => {
            vhost_exists(m, &vhost)?;
            let rows = m.broker.binding_views(Some(&vhost));
            bindings_listing(req, rows, |b| b.to_queue && b.destination == name)
        }
        (Route::Exchanges, _) => listing(
            req,
            Rows::Exchanges(m.broker.exchange_views(None)),
            &["vhost", "name"],
        ),
        (Route::ExchangesVhost { vhost }, _) => {
            vhost_exists(m, &vhost)?;
            listing(
                req,
                Rows::Exchanges(m.broker.exchange_views(Some(&vhost))),
                &["vhost", "name"],
            )
        }
        (Route::Exchange { vhost, name }, Put) => {
            let a = actions::actor(m, &user, &vhost)?;
            actions::put_exchange(m, &a, &name, &req.body)
        }
        (Route::Exchange { vhost, name }, Delete) => {
            let a = actions::actor(m, &user, &vhost)?;
            actions::delete_exchange(m, &a, &name, &req.query)
        }
        (Route::Exchange { vhost, name }, _) => {
            vhost_exists(m, &vhost)?;
            let shown = if name == "amq.default" {
                String::new()
            } else {
                name
            };
            one(
                &m.broker.exchange_views(Some(&vhost)),
                |x| x.name == shown,
                objects::write_exchange,
            )
        }
        (Route::ExchangePublish { vhost, name }, Post) => {
            let a = actions::actor(m, &user, &vhost)?;
            actions::publish(m, &a, &name, &req.body)
        }
        (Route::ExchangeBindingsSource { vhost, name }, _) => {
            vhost_exists(m, &vhost)?;
            bindings_listing(req, m.broker.binding_views(Some(&vhost)), |b| {
                b.source == name
            })
        }
        (Route::ExchangeBindingsDestination { vhost, name }, _) => {
            vhost_exists(m, &vhost)?;
            bindings_listing(req, m.broker.binding_views(Some(&vhost)), |b| {
                !b.to_queue && b.destination == name
            })
        }
        (Route::Bindings, _) => bindings_listing(req, m.broker.binding_views(None), |_| true),
        (Route::BindingsVhost { vhost }, _) => {
            vhost_exists(m, &vhost)?;
            bindings_listing(req, m.broker.binding_views(Some(&vhost)), |_| true)
        }
        (
            Route::BindingsBetween {
                vhost,
                source,
                kind,
                destination,
            },
            Post,
        ) => {
            let a = actions::actor(m, &user, &vhost)?;
            actions::bind(
                m,
                &a,
                &source,
                kind == DestKind::Queue,
                &destination,
                &req.body,
            )
        }
        (
            Route::BindingsBetween {
                vhost,
                source,
                kind,
                destination,
            },
            _,
        ) => {
            vhost_exists(m, &vhost)?;
            let to_queue = kind == DestKind::Queue;
            bindings_listing(req, m.broker.binding_views(Some(&vhost)), |b| {
                b.source == source && b.to_queue == to_queue && b.destination == destination
            })
        }
        (
            Route::Binding {
                vhost,
                source,
                kind,
                destination,
                props,
            },
            Delete,
        ) => {
            let a = actions::actor(m, &user, &vhost)?;
            actions::unbind(
                m,
                &a,
                &source,
                kind == DestKind::Queue,
                &destination,
                &props,
            )
        }
        (
            Route::Binding {
                vhost,
                source,
                kind,
                destination,
                props,
            },
            _,
        ) => {
            vhost_exists(m, &vhost)?;
            let to_queue = kind == DestKind::Queue;
            one(
                &m.broker.binding_views(Some(&vhost)),
                |b| {
                    b.source == source
                        && b.to_queue == to_queue
                        && b.destination == destination
                        && objects::properties_key(&b.routing_key, &b.arguments) == props
                },
                objects::write_binding,
            )
        }
        (Route::Vhosts, _) => access_api::vhosts(m, None),
        (Route::Vhost { vhost }, Put) => access_api::put_vhost(m, &vhost, &req.body),
        (Route::Vhost { vhost }, Delete) => access_api::delete_vhost(m, &vhost),
        (Route::Vhost { vhost }, _) => access_api::vhosts(m, Some(&vhost)),
        (Route::VhostPermissions { vhost }, _) => {
            access_api::permissions(m, Some(&vhost), None, false)
        }
        (Route::Users, _) => access_api::users(m, None),
        (Route::UsersWithoutPermissions, _) => Ok(access_api::users_without_permissions(m)),
        (Route::VhostLimits, _) => super::limits_api::vhost_limits(m, &who, None),
        (Route::VhostLimitsVhost { vhost }, _) => {
            super::limits_api::vhost_limits(m, &who, Some(&vhost))
        }
        (Route::VhostLimit { vhost, name }, Put) => {
            super::limits_api::set_vhost_limit(m, &vhost, &name, Some(&req.body))
        }
        (Route::VhostLimit { vhost, name }, _) => {
            super::limits_api::set_vhost_limit(m, &vhost, &name, None)
        }
        (Route::UserLimits, _) => super::limits_api::user_limits(m, &who, None),
        (Route::UserLimitsUser { user }, _) => super::limits_api::user_limits(m, &who, Some(&user)),
        (Route::UserLimit { user, name }, Put) => {
            super::limits_api::set_user_limit(m, &user, &name, Some(&req.body))
        }
        (Route::UserLimit { user, name }, _) => {
            super::limits_api::set_user_limit(m, &user, &name, None)
        }
        (Route::TopicPermissions, _) => access_api::topic_permissions(m, None, None, false),
        (Route::VhostTopicPermissions { vhost }, _) => {
            access_api::topic_permissions(m, Some(&vhost), None, false)
        }
        (Route::UserTopicPermissions { user }, _) => {
            access_api::topic_permissions(m, None, Some(&user), false)
        }
        (Route::TopicPermission { vhost, user }, Put) => {
            access_api::put_topic_permission(m, &vhost, &user, &req.body)
        }
        (Route::TopicPermission { vhost, user }, Delete) => {
            access_api::delete_topic_permission(m, &vhost, &user)
        }
        (Route::TopicPermission { vhost, user }, _) => {
            access_api::topic_permissions(m, Some(&vhost), Some(&user), true)
        }
        // coney's page loads no plugin scripts.
        (Route::Extensions, _) => Ok(json(b"[]".to_vec())),
        (Route::HealthchecksNodeNamed { node }, _) if node == node_name() => {
            Ok(node::virtual_hosts())
        }
        (Route::HealthchecksNodeNamed { .. }, _) => Err(ApiError::not_found()),
        (Route::User { name }, Put) => access_api::put_user(m, &name, &req.body),
        (Route::User { name }, Delete) => access_api::delete_user(m, &name),
        (Route::User { name }, _) => access_api::users(m, Some(&name)),
        (Route::UserPermissions { user }, _) => {
            access_api::permissions(m, None, Some(&user), false)
        }
        (Route::Permissions, _) => access_api::permissions(m, None, None, false),
        (Route::Permission { vhost, user }, Put) => {
            access_api::put_permission(m, &vhost, &user, &req.body)
        }
        (Route::Permission { vhost, user }, Delete) => {
            access_api::delete_permission(m, &vhost, &user)
        }
        (Route::Permission { vhost, user }, _) => {
            access_api::permissions(m, Some(&vhost), Some(&user), true)
        }
        (Route::Definitions, Post) => access_api::import_definitions(m, &req.body),
        (Route::Definitions, _) => access_api::definitions(m, None),
        (Route::DefinitionsVhost { vhost }, _) => access_api::definitions(m, Some(&vhost)),
        (Route::Nodes, _) => Ok(node::nodes(m)),
        (Route::Node { node: name }, _) => node::node(m, &name),
        (
            Route::NodeMemory {
                node: name,
                relative: false,
            },
            _,
        ) => node::memory(&name),
        (Route::HealthVirtualHosts | Route::HealthchecksNode, _) => Ok(node::virtual_hosts()),
        (Route::HealthQuorumCritical | Route::HealthMirrorSyncCritical, _) => {
            Ok(node::single_node())
        }
        (Route::HealthPortListener { port }, _) => node::port_listener(m, &port),
        (Route::HealthProtocolListener { protocol }, _) => {
            Ok(node::protocol_listener(m, &protocol))
        }
        (Route::HealthCertificateExpiration { within, unit }, _) => {
            node::certificate_expiration(m, &within, &unit)
        }
        (Route::Policies, _) => policies_api::list(m, &user, None),
        (Route::PoliciesVhost { vhost }, _) => policies_api::list(m, &user, Some(&vhost)),
        (Route::Policy { vhost, name }, Put) => {
            policies_api::put(m, &user, &vhost, &name, &req.body)
        }
        (Route::Policy { vhost, name }, Delete) => policies_api::delete(m, &user, &vhost, &name),
        (Route::Policy { vhost, name }, _) => policies_api::show(m, &user, &vhost, &name),
        _ => Err(ApiError::json(
            Status::NOT_IMPLEMENTED,
            "not_implemented",
            "coney does not implement this endpoint (see README: management API)",
        )),
    }
}

/// RabbitMQ's refusal when a user names another user's connection.
const NOT_YOURS: &str = "User not authorised to access object";

/// Whether `who` sees what `user` owns: its own, or everything with monitoring or
/// administrator (RabbitMQ's `filter_user` and `is_authorized_user`).
fn sees_user(who: &Principal, user: &str) -> bool {
    who.tags.has(Tags::MONITORING) || who.tags.has(Tags::ADMINISTRATOR) || who.user == user
}

fn vhost_exists(m: &Management<'_>, vhost: &str) -> Result<(), ApiError> {
    m.broker
        .access()
        .vhost(vhost)
        .map(|_| ())
        .ok_or_else(ApiError::not_found)
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
    let totals = m.broker.totals();
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
        .object("queue_totals", |q| {
            q.u64("messages", totals.ready + totals.unacked)
                .u64("messages_ready", totals.ready)
                .u64("messages_unacknowledged", totals.unacked);
        })
        .object("object_totals", |t| {
            t.u64("channels", channels)
                .u64("connections", connections)
                .u64("consumers", totals.consumers)
                .u64("exchanges", totals.exchanges)
                .u64("queues", totals.queues);
        })
        .str("node", &node)
        .array("listeners", |a| {
            for (protocol, addr) in m.listeners {
                a.object(|l| {
                    l.str("node", &node)
                        .str("protocol", protocol)
                        .str("ip_address", &addr.ip().to_string())
                        .u64("port", addr.port().into());
                });
            }
        });
    o.end();
    out
}
