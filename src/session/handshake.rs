//! The connection handshake (AMQP 0-9-1 §4.2.2 – §4.2.4): our protocol header check, start
//! with the server properties, start-ok (PLAIN or AMQPLAIN against the broker's users, with
//! RabbitMQ's loopback_users rule), tune / tune-ok negotiation and open (the vhost, its limits
//! and the user's permission there, decided by the broker).
//!
//! A refused login ends the connection (one attempt per connection, as RabbitMQ); its log line
//! names the user and the reason, never the password.

use super::{ClientCaps, Ctx, Session, State};
use crate::auth::Refusal;
use crate::error::{AmqpError, Show};
use crate::protocol::constants::FRAME_MIN_SIZE;
use crate::protocol::method::*;
use crate::protocol::table::{FieldTable, FieldValue, TableWriter};
use crate::protocol::wire::Writer;
use crate::protocol::Outbox;
use log::warn;
use std::net::SocketAddr;

/// The server-properties table of connection.start, with only capabilities coney implements.
fn server_properties() -> Vec<u8> {
    let mut v = Vec::new();
    let mut w = Writer::new(&mut v);
    let mut t = TableWriter::begin(&mut w);
    t.table("capabilities", |c| {
        c.bool("publisher_confirms", true)
            .bool("exchange_exchange_bindings", true)
            .bool("basic.nack", true)
            .bool("consumer_cancel_notify", true)
            .bool("connection.blocked", true)
            .bool("authentication_failure_close", true)
            .bool("per_consumer_qos", true);
    });
    t.longstr("product", b"coney")
        .longstr("version", env!("CARGO_PKG_VERSION").as_bytes())
        .longstr("platform", b"Rust")
        .longstr("cluster_name", b"coney@localhost")
        .longstr("copyright", b"Copyright (c) the coney authors")
        .longstr("information", b"Licensed under the MIT license");
    t.finish();
    // Drop the length prefix: FieldTable holds the contents only.
    v.split_off(4)
}

fn is_loopback(addr: &SocketAddr) -> bool {
    match addr {
        SocketAddr::V4(a) => a.ip().is_loopback(),
        SocketAddr::V6(a) => {
            a.ip().is_loopback() || a.ip().to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// A user name and password as a start-ok response carries them.
type Credentials<'a> = (&'a [u8], &'a [u8]);

/// The credentials of a start-ok response, None if it is malformed.
fn credentials<'a>(
    mechanism: &[u8],
    response: &'a [u8],
) -> Result<Option<Credentials<'a>>, AmqpError> {
    match mechanism {
        b"PLAIN" => {
            // authzid NUL authcid NUL passwd
            let mut parts = response.split(|&b| b == 0);
            let _authzid = parts.next();
            Ok(match (parts.next(), parts.next(), parts.next()) {
                (Some(u), Some(p), None) => Some((u, p)),
                _ => None,
            })
        }
        b"AMQPLAIN" => {
            // A field table without its length prefix: LOGIN and PASSWORD.
            Ok(FieldTable::parse(response).ok().and_then(|t| {
                match (t.get(b"LOGIN"), t.get(b"PASSWORD")) {
                    (Some(FieldValue::LongStr(u)), Some(FieldValue::LongStr(p))) => Some((u, p)),
                    _ => None,
                }
            }))
        }
        other => Err(AmqpError::command_invalid(format_args!(
            "unknown authentication mechanism '{}'",
            Show(other)
        ))),
    }
}

impl Session {
    /// A wrong protocol header: answer with ours and close (spec §4.2.2).
    pub(super) fn reject_header(&mut self, out: &mut Outbox) {
        out.protocol_header();
        self.close_reason = Some("bad protocol header".into());
        self.state = State::Closed;
    }

    pub(super) fn send_start(&mut self, out: &mut Outbox) {
        let props = server_properties();
        let start = ConnectionStart {
            version_major: 0,
            version_minor: 9,
            server_properties: FieldTable::parse(&props).unwrap_or_default(),
            mechanisms: b"PLAIN AMQPLAIN",
            locales: b"en_US",
        };
        out.method(0, &Method::ConnectionStart(start));
        self.state = State::AwaitingStartOk;
    }

    pub(super) fn start_ok(
        &mut self,
        out: &mut Outbox,
        s: ConnectionStartOk<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        if let Some(FieldValue::Table(caps)) = s.client_properties.get(b"capabilities") {
            let on = |k: &[u8]| caps.get(k) == Some(FieldValue::Bool(true));
            self.caps = ClientCaps {
                consumer_cancel_notify: on(b"consumer_cancel_notify"),
                connection_blocked: on(b"connection.blocked"),
                authentication_failure_close: on(b"authentication_failure_close"),
            };
        }
        self.client_properties = s.client_properties.raw().into();
        if let Some(FieldValue::LongStr(p)) = s.client_properties.get(b"product") {
            self.client_product = String::from_utf8_lossy(p).into_owned();
        }
        let creds = credentials(s.mechanism, s.response)?;
        let mechanism = String::from_utf8_lossy(s.mechanism).into_owned();
        let refused = || {
            AmqpError::access_refused(format_args!(
                "Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."
            ))
        };
        let Some((user, pass)) = creds else {
            return Err(refused());
        };
        let user_s = String::from_utf8_lossy(user).into_owned();
        self.internal = crate::auth::internal::is_internal(user, pass) && is_loopback(&self.peer);
        if self.internal {
            // coney's own shovel reaching this broker (`amqp://`): full rights, as RabbitMQ's
            // direct connection has.
        } else if let Err(r) = ctx
            .broker
            .authenticate(&user_s, pass, is_loopback(&self.peer))
        {
            warn!(
                "[conn {}] {} login refused ({mechanism}): {}",
                self.id.0,
                self.peer,
                r.log_text()
            );
            return Err(refused());
        }
        self.user = user_s;
        let tune = ConnectionTune {
            channel_max: ctx.config.channel_max,
            frame_max: ctx.config.frame_max,
            heartbeat: ctx.config.heartbeat_secs,
        };
        out.method(0, &Method::ConnectionTune(tune));
        self.state = State::AwaitingTuneOk;
        Ok(())
    }

    pub(super) fn tune_ok(
        &mut self,
        t: ConnectionTuneOk,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        let server_frame_max = ctx.config.frame_max;
        let frame_max = if t.frame_max == 0 {
            server_frame_max
        } else {
            t.frame_max
        };
        if frame_max < FRAME_MIN_SIZE {
            return Err(AmqpError::not_allowed(format_args!(
                "frame_max={frame_max} < {FRAME_MIN_SIZE} min size"
            )));
        }
        if frame_max > server_frame_max {
            return Err(AmqpError::not_allowed(format_args!(
                "frame_max={frame_max} > {server_frame_max} max size"
            )));
        }
        let channel_max = if t.channel_max == 0 {
            ctx.config.channel_max
        } else {
            t.channel_max.min(ctx.config.channel_max)
        };
        self.frame_max = frame_max;
        self.channel_max = channel_max;
        self.heartbeat_secs = t.heartbeat;
        self.state = State::AwaitingOpen;
        Ok(())
    }

    /// connection.open: the broker decides (the vhost exists, its connection limit and the
    /// user's, the user's permission there) and gives the rights every channel acts with.
    pub(super) fn open(
        &mut self,
        out: &mut Outbox,
        o: ConnectionOpen<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        let Ok(vhost) = std::str::from_utf8(o.virtual_host) else {
            let vhost = String::from_utf8_lossy(o.virtual_host).into_owned();
            return Err(Refusal::VhostNotFound { vhost }.into());
        };
        let actor = if self.internal {
            ctx.broker
                .internal_actor(self.id, vhost)
                .ok_or_else(|| Refusal::VhostNotFound {
                    vhost: vhost.to_owned(),
                })?
        } else {
            ctx.broker.open_connection(self.id, &self.user, vhost)?
        };
        out.method(
            0,
            &Method::ConnectionOpenOk(ConnectionOpenOk { known_hosts: b"" }),
        );
        self.state = State::Open;
        // A shovel's own connection is logged by the shovel's state changes; at every
        // retry while its other end is down it would add two lines a second here.
        let level = if self.internal {
            log::Level::Debug
        } else {
            log::Level::Info
        };
        log::log!(
            level,
            "[conn {}] accepted {} user '{}' vhost '{}' client '{}'",
            self.id.0,
            self.peer,
            self.user,
            actor.vhost_name(),
            self.client_product
        );
        self.actor = Some(actor);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{Broker, ConnId};
    use crate::config::Config;
    use crate::protocol::constants::PROTOCOL_HEADER;
    use crate::protocol::frame::{self, parse_frame, Parsed};
    use std::time::Instant;

    /// The client's first bytes: protocol header and start-ok with PLAIN credentials,
    /// advertising authentication_failure_close or not.
    fn client_start(user: &str, password: &str, failure_close: bool) -> Vec<u8> {
        let mut props = Vec::new();
        let mut w = Writer::new(&mut props);
        let mut t = TableWriter::begin(&mut w);
        t.table("capabilities", |c| {
            c.bool("authentication_failure_close", failure_close);
        });
        t.finish();
        let props = props.split_off(4);
        let response = format!("\0{user}\0{password}");
        let start_ok = ConnectionStartOk {
            client_properties: FieldTable::parse(&props).expect("table"),
            mechanism: b"PLAIN",
            response: response.as_bytes(),
            locale: b"en_US",
        };
        let mut out = PROTOCOL_HEADER.to_vec();
        frame::write_method(&mut out, 0, &Method::ConnectionStartOk(start_ok));
        out
    }

    /// Feeds the client's start to a session from `peer`; returns the methods it wrote (as
    /// class/method ids with a close's code and text) and whether it is closed.
    fn login(peer: &str, user: &str, password: &str, failure_close: bool) -> Vec<String> {
        let mut broker = Broker::new();
        let config = Config::default();
        let now = Instant::now();
        let mut s = Session::new(ConnId(1), peer.parse().expect("peer"), &config, now);
        let mut ctx = Ctx {
            broker: &mut broker,
            config: &config,
            now,
            alarm: None,
        };
        let mut out = Outbox::default();
        let input = client_start(user, password, failure_close);
        s.handle_input(&mut out, &input, &mut ctx);
        let mut written = Vec::new();
        out.write_to(&mut written).expect("a Vec takes all");
        let mut methods = Vec::new();
        let mut rest = &written[..];
        while let Ok(Parsed::Frame { frame, len }) = parse_frame(rest, 0) {
            rest = &rest[len..];
            match Method::decode(frame.payload).expect("method") {
                Method::ConnectionClose(c) => methods.push(format!(
                    "close {} {}",
                    c.reply_code,
                    String::from_utf8_lossy(c.reply_text)
                )),
                m => methods.push(m.name().to_string()),
            }
        }
        if s.is_closed() {
            methods.push("socket closed".into());
        }
        methods
    }

    /// guest may log in from loopback only (RabbitMQ's loopback_users); refused elsewhere with
    /// the one login-refused text, or, for a client without authentication_failure_close, by
    /// dropping the socket. Another user may log in from anywhere.
    #[test]
    fn guest_is_refused_from_other_addresses() {
        let refused = "close 403 ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.";
        let from = |peer, user, failure_close| login(peer, user, "guest", failure_close);
        assert_eq!(
            from("127.0.0.1:4000", "guest", true),
            ["connection.start", "connection.tune"]
        );
        assert_eq!(
            from("[::ffff:127.0.0.1]:4000", "guest", true),
            ["connection.start", "connection.tune"]
        );
        assert_eq!(
            from("192.0.2.7:4000", "guest", true),
            ["connection.start", refused]
        );
        assert_eq!(
            from("192.0.2.7:4000", "guest", false),
            ["connection.start", "socket closed"]
        );
        assert_eq!(
            login("192.0.2.7:4000", "guest", "wrong", true),
            ["connection.start", refused]
        );
    }
}
