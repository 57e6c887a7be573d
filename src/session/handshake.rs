//! The connection handshake (AMQP 0-9-1 §4.2.2 – §4.2.4): our protocol header check, start
//! with the server properties, start-ok (PLAIN or AMQPLAIN against the broker's users, or
//! EXTERNAL with the TLS client certificate's name as rabbitmq_auth_mechanism_ssl does it;
//! RabbitMQ's loopback_users rule for all), tune / tune-ok negotiation and open (the vhost, its limits
//! and the user's permission there, decided by the broker).
//!
//! A refused login ends the connection (one attempt per connection, as RabbitMQ); its log line
//! names the user and the reason, never the password.

use super::{ClientCaps, Ctx, Session, State};
use crate::auth::cert_subject::login_name;
use crate::auth::Refusal;
use crate::config::{AuthMechanism, Config, TlsVerify};
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

/// The credentials of a PLAIN or AMQPLAIN start-ok response, None if it is malformed.
fn credentials(mechanism: AuthMechanism, response: &[u8]) -> Option<Credentials<'_>> {
    match mechanism {
        AuthMechanism::Plain => {
            // authzid NUL authcid NUL passwd
            let mut parts = response.split(|&b| b == 0);
            let _authzid = parts.next();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(u), Some(p), None) => Some((u, p)),
                _ => None,
            }
        }
        AuthMechanism::Amqplain => {
            // A field table without its length prefix: LOGIN and PASSWORD.
            FieldTable::parse(response).ok().and_then(|t| {
                match (t.get(b"LOGIN"), t.get(b"PASSWORD")) {
                    (Some(FieldValue::LongStr(u)), Some(FieldValue::LongStr(p))) => Some((u, p)),
                    _ => None,
                }
            })
        }
        AuthMechanism::External => None,
    }
}

/// What the byte transport below proved about the peer. `net` sets it before the session's
/// first byte (a TLS handshake is complete before any plaintext), so connection.start knows
/// whether EXTERNAL may be offered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Transport {
    #[default]
    Plain,
    /// TLS, with the client's certificate (DER, end entity) when it sent one; rustls has
    /// verified it against `ssl_options.cacertfile`.
    Tls { peer_cert: Option<Box<[u8]>> },
}

impl Session {
    /// A wrong protocol header: answer with ours and close (spec §4.2.2).
    pub(super) fn reject_header(&mut self, out: &mut Outbox) {
        out.protocol_header();
        self.close_reason = Some("bad protocol header".into());
        self.state = State::Closed;
    }

    /// Called by `net` before the first byte is handed in.
    pub fn set_transport(&mut self, transport: Transport) {
        self.transport = transport;
    }

    /// The mechanisms connection.start lists: the configured ones in the config's order
    /// (RabbitMQ lists them in its registry's order, which differs from node to node);
    /// EXTERNAL only over TLS, and there with or without a client certificate, as
    /// rabbitmq_auth_mechanism_ssl offers it (so a client without one is told why it fails).
    fn offers(&self, config: &Config, m: AuthMechanism) -> bool {
        config.auth_mechanisms.contains(&m)
            && (m != AuthMechanism::External || matches!(self.transport, Transport::Tls { .. }))
    }

    pub(super) fn send_start(&mut self, out: &mut Outbox, config: &Config) {
        let props = server_properties();
        let offered: Vec<&str> = config
            .auth_mechanisms
            .iter()
            .copied()
            .filter(|&m| self.offers(config, m))
            .map(AuthMechanism::name)
            .collect();
        let mechanisms = offered.join(" ");
        let start = ConnectionStart {
            version_major: 0,
            version_minor: 9,
            server_properties: FieldTable::parse(&props).unwrap_or_default(),
            mechanisms: mechanisms.as_bytes(),
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
        let name = Show(s.mechanism);
        // RabbitMQ treats a mechanism it cannot use as a handshake error: the socket just
        // closes, whatever the client's capabilities.
        let Some(mechanism) = AuthMechanism::from_name(s.mechanism) else {
            self.drop_in_handshake(format!("unknown authentication mechanism '{name}'"));
            return Ok(());
        };
        if !self.offers(ctx.config, mechanism) {
            self.drop_in_handshake(format!("invalid authentication mechanism '{name}'"));
            return Ok(());
        }
        let user = self.login(mechanism, s.response, ctx);
        let mechanism = mechanism.name();
        let user = user.map_err(|reason| {
            warn!(
                "[conn {}] {} login refused ({mechanism}): {reason}",
                self.id.0, self.peer
            );
            AmqpError::access_refused(format_args!(
                "Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."
            ))
        })?;
        self.user = user;
        self.auth_mechanism = mechanism;
        let tune = ConnectionTune {
            channel_max: ctx.config.channel_max,
            frame_max: ctx.config.frame_max,
            heartbeat: ctx.config.heartbeat_secs,
        };
        out.method(0, &Method::ConnectionTune(tune));
        self.state = State::AwaitingTuneOk;
        Ok(())
    }

    /// The user a start-ok logs in as, or why not (for the log only).
    fn login(
        &mut self,
        mechanism: AuthMechanism,
        response: &[u8],
        ctx: &mut Ctx<'_>,
    ) -> Result<String, String> {
        let loopback = is_loopback(&self.peer);
        if mechanism == AuthMechanism::External {
            let user = self.certificate_user(ctx.config)?;
            return match ctx.broker.authenticate_external(&user, loopback) {
                Ok(()) => Ok(user),
                Err(r) => Err(r.log_text()),
            };
        }
        let Some((user, pass)) = credentials(mechanism, response) else {
            return Err("malformed response".to_owned());
        };
        if crate::auth::internal::is_internal(user, pass) && loopback {
            // coney's own shovel reaching this broker (`amqp://`): full rights, as RabbitMQ's
            // direct connection has.
            self.internal = true;
            return Ok(String::from_utf8_lossy(user).into_owned());
        }
        let user = String::from_utf8_lossy(user).into_owned();
        match ctx.broker.authenticate(&user, pass, loopback) {
            Ok(()) => Ok(user),
            Err(r) => Err(r.log_text()),
        }
    }

    /// The user name SASL EXTERNAL takes from the client certificate, or the reason there is
    /// none in RabbitMQ's words (rabbit_auth_mechanism_ssl, rabbit_ssl).
    fn certificate_user(&self, config: &Config) -> Result<String, String> {
        let Transport::Tls { peer_cert } = &self.transport else {
            return Err("not SSL connection".into());
        };
        let Some(cert) = peer_cert else {
            return Err("connection peer presented no TLS (x.509) certificate".into());
        };
        if config.tls.verify != TlsVerify::Peer {
            return Err("TLS configuration is unsafe".into());
        }
        login_name(cert, config.ssl_cert_login_from).ok_or_else(|| "no name found".into())
    }

    /// Ends the connection during the handshake without a word, as RabbitMQ does for a
    /// handshake error.
    fn drop_in_handshake(&mut self, reason: String) {
        warn!(
            "[conn {}] {} handshake error: {reason}",
            self.id.0, self.peer
        );
        self.close_reason = Some(reason);
        self.state = State::Closed;
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
        let response = format!("\0{user}\0{password}");
        client_start_with(b"PLAIN", response.as_bytes(), failure_close)
    }

    fn client_start_with(mechanism: &[u8], response: &[u8], failure_close: bool) -> Vec<u8> {
        let mut props = Vec::new();
        let mut w = Writer::new(&mut props);
        let mut t = TableWriter::begin(&mut w);
        t.table("capabilities", |c| {
            c.bool("authentication_failure_close", failure_close);
        });
        t.finish();
        let props = props.split_off(4);
        let start_ok = ConnectionStartOk {
            client_properties: FieldTable::parse(&props).expect("table"),
            mechanism,
            response,
            locale: b"en_US",
        };
        let mut out = PROTOCOL_HEADER.to_vec();
        frame::write_method(&mut out, 0, &Method::ConnectionStartOk(start_ok));
        out
    }

    /// Feeds the client's start to a session from `peer`; returns the methods it wrote (as
    /// class/method ids with a close's code and text) and whether it is closed.
    fn login(peer: &str, user: &str, password: &str, failure_close: bool) -> Vec<String> {
        let input = client_start(user, password, failure_close);
        exchange(peer, &Config::default(), Transport::Plain, &input)
    }

    /// Feeds `input` to a session on `transport` from `peer`; connection.start shows as
    /// "start MECHANISMS".
    fn exchange(peer: &str, config: &Config, transport: Transport, input: &[u8]) -> Vec<String> {
        let mut broker = Broker::new();
        let now = Instant::now();
        let mut s = Session::new(ConnId(1), peer.parse().expect("peer"), config, now);
        s.set_transport(transport);
        let mut ctx = Ctx {
            broker: &mut broker,
            config,
            now,
            alarm: None,
        };
        let mut out = Outbox::default();
        s.handle_input(&mut out, input, &mut ctx);
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
                Method::ConnectionStart(st) => {
                    methods.push(format!("start {}", String::from_utf8_lossy(st.mechanisms)))
                }
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
        let start = "start PLAIN AMQPLAIN";
        assert_eq!(
            from("127.0.0.1:4000", "guest", true),
            [start, "connection.tune"]
        );
        assert_eq!(
            from("[::ffff:127.0.0.1]:4000", "guest", true),
            [start, "connection.tune"]
        );
        assert_eq!(from("192.0.2.7:4000", "guest", true), [start, refused]);
        assert_eq!(
            from("192.0.2.7:4000", "guest", false),
            [start, "socket closed"]
        );
        assert_eq!(
            login("192.0.2.7:4000", "guest", "wrong", true),
            [start, refused]
        );
    }

    /// SASL EXTERNAL: offered in the configured order on TLS only; the certificate's CN
    /// (common_name mode) logs in as guest from loopback, and loopback_users still refuses
    /// guest from elsewhere; a certificate-less TLS client and an unknown name are refused
    /// with the one text; on the plain port, choosing EXTERNAL drops the socket unanswered.
    #[test]
    fn external_login_follows_the_certificate_and_loopback_users() {
        let mut config = Config::default();
        config.auth_mechanisms = vec![AuthMechanism::External, AuthMechanism::Plain];
        config.ssl_cert_login_from = crate::config::CertLoginFrom::CommonName;
        config.tls.verify = TlsVerify::Peer;
        let guest_cert = include_bytes!("../../tests/fixtures/client-certs/c1.der");
        let tls = |cert: Option<&[u8]>| Transport::Tls {
            peer_cert: cert.map(Box::from),
        };
        let input = client_start_with(b"EXTERNAL", b"", true);
        let refused = "close 403 ACCESS_REFUSED - Login was refused using authentication mechanism EXTERNAL. For details see the broker logfile.";
        let start = "start EXTERNAL PLAIN";
        let run = |peer, transport| exchange(peer, &config, transport, &input);
        assert_eq!(
            run("127.0.0.1:4000", tls(Some(guest_cert))),
            [start, "connection.tune"]
        );
        assert_eq!(
            run("192.0.2.7:4000", tls(Some(guest_cert))),
            [start, refused]
        );
        assert_eq!(run("127.0.0.1:4000", tls(None)), [start, refused]);
        let dn = {
            let mut c = config.clone();
            c.ssl_cert_login_from = crate::config::CertLoginFrom::DistinguishedName;
            c
        };
        // The DN "O=client,CN=guest" is no user.
        assert_eq!(
            exchange("127.0.0.1:4000", &dn, tls(Some(guest_cert)), &input),
            [start, refused]
        );
        assert_eq!(
            run("127.0.0.1:4000", Transport::Plain),
            ["start PLAIN", "socket closed"]
        );
    }
}
