//! What one user may do in one vhost, resolved once at connection.open (`VhostGrant`), and the
//! per-operation checks of RabbitMQ's "Access Control" table with its exact refusal texts.
//!
//! | AMQP 0-9-1 operation            | configure | write            | read             |
//! |---------------------------------|-----------|------------------|------------------|
//! | exchange.declare (passive=false)| exchange  |                  |                  |
//! | exchange.declare (passive=true) |           |                  |                  |
//! | exchange.declare with AE        | exchange  | exchange (AE)    | exchange         |
//! | exchange.delete                 | exchange  |                  |                  |
//! | queue.declare (passive=false)   | queue     |                  |                  |
//! | queue.declare (passive=true)    |           |                  |                  |
//! | queue.declare with DLX          | queue     | exchange (DLX)   | queue            |
//! | queue.delete                    | queue     |                  |                  |
//! | exchange.bind / unbind          |           | exchange (dest.) | exchange (source)|
//! | queue.bind / unbind             |           | queue            | exchange         |
//! | basic.publish                   |           | exchange         |                  |
//! | basic.get / consume, queue.purge|           |                  | queue            |
//!
//! Topic permissions add a check of the routing key on topic exchanges: write on publish, read
//! on (un)bind. The default exchange is named "amq.default" in checks and texts.

use super::pattern::PermissionPattern;
use super::users::{Permission, TopicPermission, User, UserLimits, UserTag, Vhost, VhostLimits};
use crate::error::AmqpError;
use crate::protocol::constants::ReplyCode;
use std::fmt;

/// The name under which the default exchange ("") is checked and reported.
pub const DEFAULT_EXCHANGE_PERMISSION_NAME: &[u8] = b"amq.default";

/// A column of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Configure,
    Write,
    Read,
}

/// The kind of a named resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    Queue,
    Exchange,
}

impl ResourceKind {
    pub fn name(self) -> &'static str {
        match self {
            ResourceKind::Queue => "queue",
            ResourceKind::Exchange => "exchange",
        }
    }
}

/// The destination of a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource<'a> {
    pub kind: ResourceKind,
    pub name: &'a [u8],
}

/// What is known of a binding's source exchange when its permissions are checked: RabbitMQ
/// checks topic read permission only when the source exists and is a topic exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceExchange {
    Absent,
    Topic,
    NotTopic,
}

/// A refused operation, with RabbitMQ's reply code and text (without the "CODE - " prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    VhostNotFound {
        vhost: String,
    },
    VhostConnectionLimit {
        vhost: String,
        user: String,
        limit: i64,
    },
    UserConnectionLimit {
        user: String,
        limit: i64,
    },
    VhostAccess {
        vhost: String,
        user: String,
    },
    ChannelLimit {
        user: String,
        limit: i64,
    },
    Resource {
        kind: ResourceKind,
        name: Vec<u8>,
        vhost: String,
        user: String,
    },
    Topic {
        routing_key: Vec<u8>,
        exchange: Vec<u8>,
        vhost: String,
        user: String,
    },
    DefaultExchange,
    UserId {
        claimed: Vec<u8>,
        user: String,
    },
    QueueLimit {
        queue: Vec<u8>,
        vhost: String,
        limit: i64,
    },
}

impl Refusal {
    /// 530 closes the connection, 403 and 406 the channel (RabbitMQ's choices).
    pub fn code(&self) -> ReplyCode {
        match self {
            Refusal::VhostNotFound { .. }
            | Refusal::VhostConnectionLimit { .. }
            | Refusal::UserConnectionLimit { .. }
            | Refusal::VhostAccess { .. }
            | Refusal::ChannelLimit { .. } => ReplyCode::NotAllowed,
            Refusal::Resource { .. } | Refusal::Topic { .. } | Refusal::DefaultExchange => {
                ReplyCode::AccessRefused
            }
            Refusal::UserId { .. } | Refusal::QueueLimit { .. } => ReplyCode::PreconditionFailed,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match self {
            Refusal::VhostNotFound { vhost } => write!(f, "vhost {vhost} not found"),
            Refusal::VhostConnectionLimit { vhost, user, limit } => write!(
                f,
                "access to vhost '{vhost}' refused for user '{user}': connection limit ({limit}) is reached"
            ),
            Refusal::UserConnectionLimit { user, limit } => write!(
                f,
                "connection refused for user '{user}': user connection limit ({limit}) is reached"
            ),
            Refusal::VhostAccess { vhost, user } => {
                write!(f, "access to vhost '{vhost}' refused for user '{user}'")
            }
            Refusal::ChannelLimit { user, limit } => write!(
                f,
                "number of channels opened for user '{user}' has reached the maximum allowed user limit of ({limit})"
            ),
            Refusal::Resource { kind, name, vhost, user } => write!(
                f,
                "access to {} '{}' in vhost '{vhost}' refused for user '{user}'",
                kind.name(),
                s(name)
            ),
            Refusal::Topic { routing_key, exchange, vhost, user } => write!(
                f,
                "access to topic '{}' in exchange '{}' in vhost '{vhost}' refused for user '{user}'",
                s(routing_key),
                s(exchange)
            ),
            Refusal::DefaultExchange => f.write_str("operation not permitted on the default exchange"),
            Refusal::UserId { claimed, user } => write!(
                f,
                "user_id property set to '{}' but authenticated user was '{user}'",
                s(claimed)
            ),
            Refusal::QueueLimit { queue, vhost, limit } => write!(
                f,
                "cannot declare queue '{}': queue limit in vhost '{vhost}' ({limit}) is reached",
                s(queue)
            ),
        }
    }
}

impl From<Refusal> for AmqpError {
    fn from(r: Refusal) -> Self {
        AmqpError::new(r.code(), r)
    }
}

/// One user's rights in one vhost, copied out of `AccessControl` at connection.open (the
/// compiled patterns are shared, not recompiled). `generation` tells whether the tables have
/// changed since; the holder re-resolves when they have.
#[derive(Debug, Clone)]
pub struct VhostGrant {
    user: String,
    vhost: String,
    impersonator: bool,
    permission: Permission,
    topics: Vec<(String, TopicPermission)>,
    vhost_limits: VhostLimits,
    user_limits: UserLimits,
    default_queue_type: Option<String>,
    generation: u64,
}

/// Maps the default exchange to the name RabbitMQ checks it under.
fn permission_name(kind: ResourceKind, name: &[u8]) -> &[u8] {
    if kind == ResourceKind::Exchange && name.is_empty() {
        DEFAULT_EXCHANGE_PERMISSION_NAME
    } else {
        name
    }
}

impl VhostGrant {
    pub(super) fn new(
        user: &User,
        vhost: &Vhost,
        permission: Permission,
        topics: Vec<(String, TopicPermission)>,
        generation: u64,
    ) -> Self {
        VhostGrant {
            user: user.name.clone(),
            vhost: vhost.name.clone(),
            impersonator: user.has_tag(&UserTag::Impersonator),
            permission,
            topics,
            vhost_limits: vhost.limits,
            user_limits: user.limits,
            default_queue_type: vhost.default_queue_type.clone(),
            generation,
        }
    }

    pub fn user(&self) -> &str {
        &self.user
    }
    pub fn vhost(&self) -> &str {
        &self.vhost
    }
    /// The `AccessControl::generation` this grant was resolved at.
    pub fn generation(&self) -> u64 {
        self.generation
    }
    /// The vhost's default queue type, for declarations that name none.
    pub fn default_queue_type(&self) -> Option<&str> {
        self.default_queue_type.as_deref()
    }

    fn pattern(&self, access: Access) -> &PermissionPattern {
        match access {
            Access::Configure => &self.permission.configure,
            Access::Write => &self.permission.write,
            Access::Read => &self.permission.read,
        }
    }

    /// One cell of the table: may this user `access` the named resource?
    pub fn check(&self, access: Access, kind: ResourceKind, name: &[u8]) -> Result<(), Refusal> {
        let name = permission_name(kind, name);
        if self.pattern(access).is_match(name) {
            return Ok(());
        }
        Err(Refusal::Resource {
            kind,
            name: name.to_vec(),
            vhost: self.vhost.clone(),
            user: self.user.clone(),
        })
    }

    fn topic(&self, access: Access, exchange: &[u8], routing_key: &[u8]) -> Result<(), Refusal> {
        let Some((_, p)) = self.topics.iter().find(|(x, _)| x.as_bytes() == exchange) else {
            return Ok(());
        };
        let pattern = if access == Access::Write {
            &p.write
        } else {
            &p.read
        };
        if pattern.is_match(routing_key) {
            return Ok(());
        }
        Err(Refusal::Topic {
            routing_key: routing_key.to_vec(),
            exchange: exchange.to_vec(),
            vhost: self.vhost.clone(),
            user: self.user.clone(),
        })
    }

    /// exchange.declare, passive=false: configure on the exchange (existing or not).
    pub fn check_exchange_declare(&self, exchange: &[u8]) -> Result<(), Refusal> {
        self.check(Access::Configure, ResourceKind::Exchange, exchange)
    }

    /// A new exchange with an `alternate-exchange` argument: read on the exchange, then write
    /// on the alternate. Checked only when the exchange is created.
    pub fn check_alternate_exchange(
        &self,
        exchange: &[u8],
        alternate: &[u8],
    ) -> Result<(), Refusal> {
        self.check(Access::Read, ResourceKind::Exchange, exchange)?;
        self.check(Access::Write, ResourceKind::Exchange, alternate)
    }

    /// exchange.delete: configure (after RabbitMQ's default-exchange and `amq.` refusals).
    pub fn check_exchange_delete(&self, exchange: &[u8]) -> Result<(), Refusal> {
        self.check(Access::Configure, ResourceKind::Exchange, exchange)
    }

    /// queue.declare, passive=false: configure on the actual name (the server-chosen
    /// `amq.gen-…` one for ""), whether or not the queue exists.
    pub fn check_queue_declare(&self, queue: &[u8]) -> Result<(), Refusal> {
        self.check(Access::Configure, ResourceKind::Queue, queue)
    }

    /// A new queue with `x-dead-letter-exchange`: read on the queue, then write on the
    /// dead-letter exchange ("" is amq.default). Checked after the queue limit, only when the
    /// queue is created.
    pub fn check_dead_letter_exchange(&self, queue: &[u8], dlx: &[u8]) -> Result<(), Refusal> {
        self.check(Access::Read, ResourceKind::Queue, queue)?;
        self.check(Access::Write, ResourceKind::Exchange, dlx)
    }

    /// queue.delete: configure, also for a queue that does not exist.
    pub fn check_queue_delete(&self, queue: &[u8]) -> Result<(), Refusal> {
        self.check(Access::Configure, ResourceKind::Queue, queue)
    }

    /// queue.purge: read.
    pub fn check_queue_purge(&self, queue: &[u8]) -> Result<(), Refusal> {
        self.check(Access::Read, ResourceKind::Queue, queue)
    }

    /// basic.get: read.
    pub fn check_basic_get(&self, queue: &[u8]) -> Result<(), Refusal> {
        self.check(Access::Read, ResourceKind::Queue, queue)
    }

    /// basic.consume: read.
    pub fn check_basic_consume(&self, queue: &[u8]) -> Result<(), Refusal> {
        self.check(Access::Read, ResourceKind::Queue, queue)
    }

    /// queue.bind, queue.unbind, exchange.bind, exchange.unbind, in RabbitMQ's order: write on
    /// the destination, neither end the default exchange, read on the source, then (source
    /// exists and is a topic exchange) topic read on the routing key. Existence of the
    /// destination is checked after all of these.
    pub fn check_bind(
        &self,
        destination: Resource<'_>,
        source: &[u8],
        routing_key: &[u8],
        source_exchange: SourceExchange,
    ) -> Result<(), Refusal> {
        self.check(Access::Write, destination.kind, destination.name)?;
        let dest_is_default =
            destination.kind == ResourceKind::Exchange && destination.name.is_empty();
        if dest_is_default || source.is_empty() {
            return Err(Refusal::DefaultExchange);
        }
        self.check(Access::Read, ResourceKind::Exchange, source)?;
        if source_exchange == SourceExchange::Topic {
            self.check_topic_read(source, routing_key)?;
        }
        Ok(())
    }

    /// basic.publish: write on the exchange, before its existence is checked.
    pub fn check_basic_publish(&self, exchange: &[u8]) -> Result<(), Refusal> {
        self.check(Access::Write, ResourceKind::Exchange, exchange)
    }

    /// Topic write on a publish to a topic exchange (after the exchange was found and is not
    /// internal). No topic permission for that exchange allows every key.
    pub fn check_topic_write(&self, exchange: &[u8], routing_key: &[u8]) -> Result<(), Refusal> {
        self.topic(Access::Write, exchange, routing_key)
    }

    /// Topic read on a binding key of a topic exchange.
    pub fn check_topic_read(&self, exchange: &[u8], routing_key: &[u8]) -> Result<(), Refusal> {
        self.topic(Access::Read, exchange, routing_key)
    }

    /// The `user_id` property of a publish must name the user, unless it is an impersonator.
    pub fn check_user_id(&self, claimed: &[u8]) -> Result<(), Refusal> {
        if claimed == self.user.as_bytes() || self.impersonator {
            return Ok(());
        }
        Err(Refusal::UserId {
            claimed: claimed.to_vec(),
            user: self.user.clone(),
        })
    }

    /// A new queue when the vhost already holds `existing` queues (max-queues).
    pub fn check_queue_limit(&self, queue: &[u8], existing: usize) -> Result<(), Refusal> {
        match self.vhost_limits.queues_exceeded(existing) {
            None => Ok(()),
            Some(limit) => Err(Refusal::QueueLimit {
                queue: queue.to_vec(),
                vhost: self.vhost.clone(),
                limit,
            }),
        }
    }

    /// A new channel when the user already has `open` channels on all its connections
    /// (max-channels).
    pub fn check_channel_limit(&self, open: usize) -> Result<(), Refusal> {
        match self.user_limits.channels_exceeded(open) {
            None => Ok(()),
            Some(limit) => Err(Refusal::ChannelLimit {
                user: self.user.clone(),
                limit,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::users::AccessControl;

    /// The users of the pika session against RabbitMQ 3.10 (see the module tests below),
    /// with the same permissions.
    fn node() -> AccessControl {
        let mut ac = AccessControl::with_default_user("guest", "guest").unwrap();
        let perms = [
            ("u_empty", "", "", ""),
            ("u_anchor", "q", ".*", ".*"),
            ("u_gen", "^amq\\.gen.*", ".*", ".*"),
            ("u_rw", ".*", "^dst", "^src"),
            ("u_ae1", ".*", "^ae-ok", "^$"),
            ("u_ae2", ".*", "^ae-ok", ".*"),
            ("u_dflt", ".*", "^amq\\.default$", ".*"),
            ("u_x", ".*", "^x$", ".*"),
            ("u_t", ".*", ".*", ".*"),
            ("u_imp", ".*", ".*", ".*"),
            ("u_uni", "^\\w+$", "^é", ".*"),
        ];
        for (u, c, w, r) in perms {
            let tags = if u == "u_imp" {
                vec![UserTag::Impersonator]
            } else {
                vec![]
            };
            ac.put_user(User::with_password(u, "p", tags).unwrap());
            ac.set_permissions(u, "/", c, w, r).unwrap();
        }
        ac.set_topic_permissions("u_t", "/", "amq.topic", "^{username}\\.", "^{vhost}-r$")
            .unwrap();
        ac.set_topic_permissions("u_t", "/", "tx3", "^{client_id}$", "")
            .unwrap();
        ac.set_topic_permissions("u_t", "/", "txd", "^nothing$", "^nothing$")
            .unwrap();
        ac
    }

    fn text(r: Result<(), Refusal>) -> String {
        match r {
            Ok(()) => "ok".into(),
            Err(e) => format!("{} {}", e.code().code(), e),
        }
    }

    const Q: ResourceKind = ResourceKind::Queue;
    const X: ResourceKind = ResourceKind::Exchange;
    fn q(name: &str) -> Resource<'_> {
        Resource {
            kind: Q,
            name: name.as_bytes(),
        }
    }
    fn x(name: &str) -> Resource<'_> {
        Resource {
            kind: X,
            name: name.as_bytes(),
        }
    }

    /// Asserts one outcome observed on RabbitMQ 3.10.8 with pika 1.3.2 (as "ok" or "CODE
    /// text", `{u}` standing for "in vhost '/' refused for user 'USER'"). Rows decided on
    /// RabbitMQ by something other than permissions (404s, equivalence) are left out.
    fn observed(
        ac: &AccessControl,
        user: &str,
        check: impl Fn(&VhostGrant) -> Result<(), Refusal>,
        want: &str,
    ) {
        let g = ac.open_vhost(user, "/", 0, 0).unwrap();
        let want = want.replace("{u}", &format!("in vhost '/' refused for user '{user}'"));
        assert_eq!(text(check(&g)), want, "{user}");
    }

    /// Declare and delete: configure on the actual name, "" patterns allow nothing,
    /// patterns are unanchored, "^amq\.gen.*" allows server-named queues.
    #[test]
    fn declare_and_delete_as_rabbitmq() {
        let ac = node();
        let gen = b"amq.gen-IUNVIp2XcrhbksV3Sjn3Jg";
        observed(
            &ac,
            "u_empty",
            |g| g.check_queue_declare(gen),
            "403 access to queue 'amq.gen-IUNVIp2XcrhbksV3Sjn3Jg' {u}",
        );
        observed(
            &ac,
            "u_empty",
            |g| g.check_queue_declare(b"q"),
            "403 access to queue 'q' {u}",
        );
        observed(
            &ac,
            "u_empty",
            |g| g.check_exchange_declare(b"e1"),
            "403 access to exchange 'e1' {u}",
        );
        observed(
            &ac,
            "u_empty",
            |g| g.check_queue_delete(b"pre"),
            "403 access to queue 'pre' {u}",
        );
        observed(
            &ac,
            "u_empty",
            |g| g.check_queue_delete(b"nosuchq"),
            "403 access to queue 'nosuchq' {u}",
        );
        observed(
            &ac,
            "u_empty",
            |g| g.check_exchange_delete(b"srcx"),
            "403 access to exchange 'srcx' {u}",
        );
        observed(&ac, "u_anchor", |g| g.check_queue_declare(b"xqx"), "ok");
        observed(
            &ac,
            "u_anchor",
            |g| g.check_queue_declare(b"abc"),
            "403 access to queue 'abc' {u}",
        );
        observed(
            &ac,
            "u_gen",
            |g| g.check_queue_declare(b"amq.gen-abc"),
            "ok",
        );
        observed(
            &ac,
            "u_gen",
            |g| g.check_queue_declare(b"q"),
            "403 access to queue 'q' {u}",
        );
        observed(
            &ac,
            "u_uni",
            |g| g.check_queue_declare("é".as_bytes()),
            "403 access to queue 'é' {u}",
        );
        observed(&ac, "u_uni", |g| g.check_queue_declare(b"abc_1"), "ok");
    }

    /// Bindings: write on the destination first, then the default exchange, then read on
    /// the source; exchange-to-exchange bindings the same way.
    #[test]
    fn bind_as_rabbitmq() {
        let ac = node();
        use SourceExchange::{Absent, NotTopic, Topic};
        observed(
            &ac,
            "u_rw",
            |g| g.check_bind(q("dstq"), b"srcx", b"k", NotTopic),
            "ok",
        );
        observed(
            &ac,
            "u_rw",
            |g| g.check_bind(q("otherq"), b"srcx", b"k", Topic),
            "403 access to queue 'otherq' {u}",
        );
        observed(
            &ac,
            "u_rw",
            |g| g.check_bind(q("dstq"), b"otherx", b"k", NotTopic),
            "403 access to exchange 'otherx' {u}",
        );
        observed(
            &ac,
            "u_rw",
            |g| g.check_bind(q("otherq"), b"otherx", b"k", NotTopic),
            "403 access to queue 'otherq' {u}",
        );
        observed(
            &ac,
            "u_rw",
            |g| g.check_bind(q("dstq"), b"", b"k", NotTopic),
            "403 operation not permitted on the default exchange",
        );
        observed(
            &ac,
            "u_rw",
            |g| g.check_bind(q("dstq"), b"srcnosuch", b"k", Absent),
            "ok",
        );
        observed(
            &ac,
            "u_rw",
            |g| g.check_bind(q("nosuchq"), b"srcx", b"k", Topic),
            "403 access to queue 'nosuchq' {u}",
        );
        observed(
            &ac,
            "u_rw",
            |g| g.check_bind(x("dstx"), b"srcx", b"k", Topic),
            "ok",
        );
        observed(
            &ac,
            "u_rw",
            |g| g.check_bind(x("otherx"), b"srcx", b"k", Topic),
            "403 access to exchange 'otherx' {u}",
        );
        observed(
            &ac,
            "u_rw",
            |g| g.check_bind(x("dstx"), b"otherx", b"k", NotTopic),
            "403 access to exchange 'otherx' {u}",
        );
    }

    /// Publish, get, consume, purge; the default exchange is checked as 'amq.default'.
    #[test]
    fn publish_and_read_as_rabbitmq() {
        let ac = node();
        observed(
            &ac,
            "u_empty",
            |g| g.check_basic_publish(b""),
            "403 access to exchange 'amq.default' {u}",
        );
        observed(&ac, "u_dflt", |g| g.check_basic_publish(b""), "ok");
        observed(
            &ac,
            "u_x",
            |g| g.check_basic_publish(b""),
            "403 access to exchange 'amq.default' {u}",
        );
        observed(
            &ac,
            "u_rw",
            |g| g.check_basic_publish(b"srcx"),
            "403 access to exchange 'srcx' {u}",
        );
        observed(&ac, "u_rw", |g| g.check_basic_publish(b"dstx"), "ok");
        observed(
            &ac,
            "u_rw",
            |g| g.check_basic_publish(b"nosuch"),
            "403 access to exchange 'nosuch' {u}",
        );
        observed(&ac, "u_rw", |g| g.check_basic_publish(b"dstnosuch"), "ok");
        observed(
            &ac,
            "u_uni",
            |g| g.check_basic_publish("é1".as_bytes()),
            "ok",
        );
        observed(&ac, "u_rw", |g| g.check_basic_get(b"srcq"), "ok");
        observed(
            &ac,
            "u_rw",
            |g| g.check_basic_get(b"dstq"),
            "403 access to queue 'dstq' {u}",
        );
        observed(
            &ac,
            "u_rw",
            |g| g.check_basic_consume(b"dstq"),
            "403 access to queue 'dstq' {u}",
        );
        observed(
            &ac,
            "u_rw",
            |g| g.check_queue_purge(b"dstq"),
            "403 access to queue 'dstq' {u}",
        );
        observed(&ac, "u_rw", |g| g.check_queue_purge(b"srcq"), "ok");
    }

    /// Alternate and dead-letter exchanges: read on the declared entity, write on the other.
    #[test]
    fn alternate_and_dead_letter_exchanges_as_rabbitmq() {
        let ac = node();
        observed(
            &ac,
            "u_ae1",
            |g| g.check_alternate_exchange(b"xa", b"ae-ok"),
            "403 access to exchange 'xa' {u}",
        );
        observed(
            &ac,
            "u_ae2",
            |g| g.check_alternate_exchange(b"xa2", b"ae-no"),
            "403 access to exchange 'ae-no' {u}",
        );
        observed(
            &ac,
            "u_ae2",
            |g| g.check_alternate_exchange(b"xa3", b"ae-ok"),
            "ok",
        );
        observed(
            &ac,
            "u_ae1",
            |g| g.check_dead_letter_exchange(b"qd", b"ae-ok"),
            "403 access to queue 'qd' {u}",
        );
        observed(
            &ac,
            "u_ae2",
            |g| g.check_dead_letter_exchange(b"qd2", b"dlx-no"),
            "403 access to exchange 'dlx-no' {u}",
        );
        observed(
            &ac,
            "u_ae2",
            |g| g.check_dead_letter_exchange(b"qd3", b""),
            "403 access to exchange 'amq.default' {u}",
        );
    }

    /// Topic permissions ({username} and {vhost} expanded, {client_id} literal, "" meaning
    /// only the empty key, no entry allowing all) and the user_id property.
    #[test]
    fn topic_permissions_and_user_id_as_rabbitmq() {
        let ac = node();
        use SourceExchange::{NotTopic, Topic};
        let topic = |k: &str, x: &str| format!("403 access to topic '{k}' in exchange '{x}' {{u}}");
        observed(
            &ac,
            "u_t",
            |g| g.check_topic_write(b"amq.topic", b"u_t.a"),
            "ok",
        );
        observed(
            &ac,
            "u_t",
            |g| g.check_topic_write(b"amq.topic", b"x.a"),
            &topic("x.a", "amq.topic"),
        );
        observed(
            &ac,
            "u_t",
            |g| g.check_bind(q("pre"), b"amq.topic", b"/-r", Topic),
            "ok",
        );
        observed(
            &ac,
            "u_t",
            |g| g.check_bind(q("pre"), b"amq.topic", b"other", Topic),
            &topic("other", "amq.topic"),
        );
        observed(
            &ac,
            "u_t",
            |g| g.check_topic_write(b"tx3", b"{client_id}"),
            "ok",
        );
        observed(
            &ac,
            "u_t",
            |g| g.check_topic_write(b"tx3", b"cid1"),
            &topic("cid1", "tx3"),
        );
        observed(
            &ac,
            "u_t",
            |g| g.check_bind(q("pre"), b"tx3", b"", Topic),
            "ok",
        );
        observed(
            &ac,
            "u_t",
            |g| g.check_bind(q("pre"), b"tx3", b"a", Topic),
            &topic("a", "tx3"),
        );
        observed(
            &ac,
            "u_t",
            |g| g.check_bind(q("pre"), b"txd", b"other", NotTopic),
            "ok",
        );
        observed(
            &ac,
            "u_t",
            |g| g.check_user_id(b"someone"),
            "406 user_id property set to 'someone' but authenticated user was 'u_t'",
        );
        observed(&ac, "u_t", |g| g.check_user_id(b"u_t"), "ok");
        observed(&ac, "u_imp", |g| g.check_user_id(b"someone"), "ok");
    }

    /// Limits refusals carry RabbitMQ's texts and codes (406 for queues, 530 for channels).
    #[test]
    fn limit_refusals() {
        let mut ac = node();
        let mut v = ac.vhost("/").unwrap().clone();
        v.limits.max_queues = Some(1);
        ac.put_vhost(v);
        let mut u = ac.user("u_t").unwrap().clone();
        u.limits.max_channels = Some(2);
        ac.put_user(u);
        let g = ac.open_vhost("u_t", "/", 0, 0).unwrap();
        assert_eq!(g.check_queue_limit(b"a1", 0), Ok(()));
        assert_eq!(
            text(g.check_queue_limit(b"a2", 1)),
            "406 cannot declare queue 'a2': queue limit in vhost '/' (1) is reached"
        );
        assert_eq!(g.check_channel_limit(1), Ok(()));
        assert_eq!(
            text(g.check_channel_limit(2)),
            "530 number of channels opened for user 'u_t' has reached the maximum allowed user limit of (2)"
        );
    }

    /// A refusal becomes the AmqpError the session sends, prefix included.
    #[test]
    fn refusal_to_amqp_error() {
        let e: AmqpError = Refusal::DefaultExchange.into();
        assert_eq!(e.code, ReplyCode::AccessRefused);
        assert_eq!(
            e.text,
            "ACCESS_REFUSED - operation not permitted on the default exchange"
        );
        let e: AmqpError = Refusal::VhostNotFound {
            vhost: "nope".into(),
        }
        .into();
        assert_eq!(e.text, "NOT_ALLOWED - vhost nope not found");
    }

    /// A grant remembers the generation it was resolved at, and the vhost's queue type.
    #[test]
    fn grant_generation_tracks_changes() {
        let mut ac = node();
        let g = ac.open_vhost("u_t", "/", 0, 0).unwrap();
        assert_eq!(g.generation(), ac.generation());
        assert_eq!(
            (g.user(), g.vhost(), g.default_queue_type()),
            ("u_t", "/", None)
        );
        ac.clear_permissions("u_t", "/");
        assert_ne!(g.generation(), ac.generation());
        assert!(ac.open_vhost("u_t", "/", 0, 0).is_err());
    }
}
