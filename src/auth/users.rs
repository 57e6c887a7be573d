//! The access-control tables as RabbitMQ's internal backend keeps them: users (password hash,
//! tags, limits), virtual hosts (metadata, limits), permissions per (user, vhost) and topic
//! permissions per (user, vhost, exchange). `AccessControl` owns them and is the only thing
//! that changes them; login and `connection.open` are decided here, per-operation checks by
//! the `VhostGrant` it hands out (check.rs).

use super::check::{Refusal, VhostGrant};
use super::password::{HashingAlgorithm, PasswordError, PasswordHash};
use super::pattern::{PatternError, PermissionPattern};
use std::collections::BTreeMap;
use std::fmt;

/// A user tag. The five RabbitMQ defines have variants; any other tag is kept as written
/// (RabbitMQ keeps unknown tags and shows them in listings).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UserTag {
    Administrator,
    Monitoring,
    Policymaker,
    Management,
    /// May publish with a `user_id` property naming another user.
    Impersonator,
    Other(String),
}

impl UserTag {
    pub fn parse(tag: &str) -> Self {
        match tag {
            "administrator" => UserTag::Administrator,
            "monitoring" => UserTag::Monitoring,
            "policymaker" => UserTag::Policymaker,
            "management" => UserTag::Management,
            "impersonator" => UserTag::Impersonator,
            other => UserTag::Other(other.to_owned()),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            UserTag::Administrator => "administrator",
            UserTag::Monitoring => "monitoring",
            UserTag::Policymaker => "policymaker",
            UserTag::Management => "management",
            UserTag::Impersonator => "impersonator",
            UserTag::Other(s) => s,
        }
    }
}

/// A limit as RabbitMQ stores it: absent or negative means unlimited, 0 allows nothing.
fn exceeded(limit: Option<i64>, current: usize) -> Option<i64> {
    match limit {
        Some(l) if l >= 0 && current as u64 >= l as u64 => Some(l),
        _ => None,
    }
}

/// Per-user limits (`rabbitmqctl set_user_limits`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserLimits {
    pub max_connections: Option<i64>,
    pub max_channels: Option<i64>,
}

impl UserLimits {
    /// The limit reached when the user already has `open` connections, if any.
    pub fn connections_exceeded(&self, open: usize) -> Option<i64> {
        exceeded(self.max_connections, open)
    }
    /// The limit reached when the user already has `open` channels, if any.
    pub fn channels_exceeded(&self, open: usize) -> Option<i64> {
        exceeded(self.max_channels, open)
    }
}

/// Per-vhost limits (`rabbitmqctl set_vhost_limits`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VhostLimits {
    pub max_connections: Option<i64>,
    pub max_queues: Option<i64>,
}

impl VhostLimits {
    pub fn is_empty(&self) -> bool {
        self.max_connections.is_none() && self.max_queues.is_none()
    }
    /// The limit reached when the vhost already has `open` connections, if any.
    pub fn connections_exceeded(&self, open: usize) -> Option<i64> {
        exceeded(self.max_connections, open)
    }
    /// The limit reached when the vhost already has `existing` queues, if any.
    pub fn queues_exceeded(&self, existing: usize) -> Option<i64> {
        exceeded(self.max_queues, existing)
    }
}

/// One user of the internal backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub password: PasswordHash,
    pub tags: Vec<UserTag>,
    pub limits: UserLimits,
}

impl User {
    /// A user with a freshly hashed password (sha256, RabbitMQ's default).
    pub fn with_password(
        name: &str,
        password: &str,
        tags: Vec<UserTag>,
    ) -> Result<Self, PasswordError> {
        Ok(User {
            name: name.to_owned(),
            password: PasswordHash::generate(HashingAlgorithm::DEFAULT, password.as_bytes())?,
            tags,
            limits: UserLimits::default(),
        })
    }

    pub fn has_tag(&self, tag: &UserTag) -> bool {
        self.tags.contains(tag)
    }
}

/// One virtual host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vhost {
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    /// Queue type for declarations that name none ("classic", "quorum", "stream").
    pub default_queue_type: Option<String>,
    pub limits: VhostLimits,
}

impl Vhost {
    pub fn new(name: &str) -> Self {
        Vhost {
            name: name.to_owned(),
            description: String::new(),
            tags: Vec::new(),
            default_queue_type: None,
            limits: VhostLimits::default(),
        }
    }
}

/// configure / write / read patterns of one user in one vhost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    pub configure: PermissionPattern,
    pub write: PermissionPattern,
    pub read: PermissionPattern,
}

impl Permission {
    pub fn new(configure: &str, write: &str, read: &str) -> Result<Self, PatternError> {
        Ok(Permission {
            configure: PermissionPattern::new(configure)?,
            write: PermissionPattern::new(write)?,
            read: PermissionPattern::new(read)?,
        })
    }
}

/// write / read patterns on routing keys of one topic exchange, for one user in one vhost.
/// The sources keep `{username}` and `{vhost}`; the compiled patterns have them expanded,
/// which is possible once because both are fixed by the (user, vhost) the entry belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPermission {
    write_source: String,
    read_source: String,
    pub(super) write: PermissionPattern,
    pub(super) read: PermissionPattern,
}

impl TopicPermission {
    pub fn new(user: &str, vhost: &str, write: &str, read: &str) -> Result<Self, PatternError> {
        use super::pattern::expand_topic_variables as expand;
        Ok(TopicPermission {
            write_source: write.to_owned(),
            read_source: read.to_owned(),
            write: PermissionPattern::new(&expand(write, user, vhost))?,
            read: PermissionPattern::new(&expand(read, user, vhost))?,
        })
    }
    pub fn write_source(&self) -> &str {
        &self.write_source
    }
    pub fn read_source(&self) -> &str {
        &self.read_source
    }
}

/// Why a change to the tables was refused (RabbitMQ's `no_such_user` / `no_such_vhost`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessError {
    NoSuchUser(String),
    NoSuchVhost(String),
    Pattern(PatternError),
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccessError::NoSuchUser(u) => write!(f, "no such user '{u}'"),
            AccessError::NoSuchVhost(v) => write!(f, "no such vhost '{v}'"),
            AccessError::Pattern(e) => e.fmt(f),
        }
    }
}

impl From<PatternError> for AccessError {
    fn from(e: PatternError) -> Self {
        AccessError::Pattern(e)
    }
}

/// Why a login failed. The client is told only "Login was refused using authentication
/// mechanism …" (session's job); `log_text` is what RabbitMQ writes to its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginRefused {
    /// Unknown user, wrong password or no password set: one answer, so a client cannot tell
    /// which users exist.
    InvalidCredentials { user: String },
    /// A `loopback_users` member connecting from another address.
    LoopbackOnly { user: String },
}

impl LoginRefused {
    pub fn log_text(&self) -> String {
        match self {
            LoginRefused::InvalidCredentials { user } => {
                format!("user '{user}' - invalid credentials")
            }
            LoginRefused::LoopbackOnly { user } => {
                format!("user '{user}' can only connect via localhost")
            }
        }
    }
}

/// Users, vhosts and permissions; `generation` counts changes so that holders of a
/// `VhostGrant` can tell when theirs is stale.
#[derive(Debug, Clone, Default)]
pub struct AccessControl {
    users: BTreeMap<String, User>,
    vhosts: BTreeMap<String, Vhost>,
    permissions: BTreeMap<(String, String), Permission>,
    topic_permissions: BTreeMap<(String, String, String), TopicPermission>,
    loopback_users: Vec<String>,
    generation: u64,
}

/// The default vhost's description, as RabbitMQ creates it.
pub const DEFAULT_VHOST_DESCRIPTION: &str = "Default virtual host";

impl AccessControl {
    /// Empty tables; `loopback_users` defaults to RabbitMQ's ["guest"].
    pub fn new() -> Self {
        AccessControl {
            loopback_users: vec!["guest".to_owned()],
            ..Default::default()
        }
    }

    /// What RabbitMQ creates on a fresh node: vhost "/", the default user tagged
    /// administrator with ".*" ".*" ".*" on it.
    pub fn with_default_user(user: &str, password: &str) -> Result<Self, PasswordError> {
        let mut ac = Self::new();
        let mut vhost = Vhost::new("/");
        vhost.description = DEFAULT_VHOST_DESCRIPTION.to_owned();
        ac.put_vhost(vhost);
        ac.put_user(User::with_password(
            user,
            password,
            vec![UserTag::Administrator],
        )?);
        let all = Permission {
            configure: PermissionPattern::everything(),
            write: PermissionPattern::everything(),
            read: PermissionPattern::everything(),
        };
        ac.permissions
            .insert((user.to_owned(), "/".to_owned()), all);
        Ok(ac)
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn changed(&mut self) {
        self.generation += 1;
    }

    pub fn set_loopback_users(&mut self, users: Vec<String>) {
        self.loopback_users = users;
        self.changed();
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }
    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }
    pub fn vhost(&self, name: &str) -> Option<&Vhost> {
        self.vhosts.get(name)
    }
    pub fn vhosts(&self) -> impl Iterator<Item = &Vhost> {
        self.vhosts.values()
    }
    /// (user, vhost, permission), ordered by user then vhost.
    pub fn permissions(&self) -> impl Iterator<Item = (&str, &str, &Permission)> {
        self.permissions
            .iter()
            .map(|((u, v), p)| (u.as_str(), v.as_str(), p))
    }
    /// (user, vhost, exchange, topic permission), ordered by user, vhost, exchange.
    pub fn topic_permissions(&self) -> impl Iterator<Item = (&str, &str, &str, &TopicPermission)> {
        self.topic_permissions
            .iter()
            .map(|((u, v, x), p)| (u.as_str(), v.as_str(), x.as_str(), p))
    }

    /// Adds a user or replaces it (password, tags, limits); its permissions stay.
    pub fn put_user(&mut self, user: User) {
        self.users.insert(user.name.clone(), user);
        self.changed();
    }

    /// Deletes a user and all its permissions, as `rabbitmqctl delete_user`.
    pub fn delete_user(&mut self, name: &str) -> bool {
        let existed = self.users.remove(name).is_some();
        self.permissions.retain(|(u, _), _| u != name);
        self.topic_permissions.retain(|(u, _, _), _| u != name);
        self.changed();
        existed
    }

    /// Adds a vhost or replaces its metadata and limits; its permissions stay.
    pub fn put_vhost(&mut self, vhost: Vhost) {
        self.vhosts.insert(vhost.name.clone(), vhost);
        self.changed();
    }

    /// Deletes a vhost and every permission in it, as `rabbitmqctl delete_vhost`. Its
    /// entities are the broker's to delete.
    pub fn delete_vhost(&mut self, name: &str) -> bool {
        let existed = self.vhosts.remove(name).is_some();
        self.permissions.retain(|(_, v), _| v != name);
        self.topic_permissions.retain(|(_, v, _), _| v != name);
        self.changed();
        existed
    }

    fn require(&self, user: &str, vhost: &str) -> Result<(), AccessError> {
        if !self.users.contains_key(user) {
            return Err(AccessError::NoSuchUser(user.to_owned()));
        }
        if !self.vhosts.contains_key(vhost) {
            return Err(AccessError::NoSuchVhost(vhost.to_owned()));
        }
        Ok(())
    }

    /// `rabbitmqctl set_permissions -p vhost user configure write read`.
    pub fn set_permissions(
        &mut self,
        user: &str,
        vhost: &str,
        configure: &str,
        write: &str,
        read: &str,
    ) -> Result<(), AccessError> {
        self.require(user, vhost)?;
        let p = Permission::new(configure, write, read)?;
        self.permissions
            .insert((user.to_owned(), vhost.to_owned()), p);
        self.changed();
        Ok(())
    }

    pub fn clear_permissions(&mut self, user: &str, vhost: &str) -> bool {
        let existed = self
            .permissions
            .remove(&(user.to_owned(), vhost.to_owned()))
            .is_some();
        self.changed();
        existed
    }

    /// `rabbitmqctl set_topic_permissions -p vhost user exchange write read`.
    pub fn set_topic_permissions(
        &mut self,
        user: &str,
        vhost: &str,
        exchange: &str,
        write: &str,
        read: &str,
    ) -> Result<(), AccessError> {
        self.require(user, vhost)?;
        let p = TopicPermission::new(user, vhost, write, read)?;
        let key = (user.to_owned(), vhost.to_owned(), exchange.to_owned());
        self.topic_permissions.insert(key, p);
        self.changed();
        Ok(())
    }

    /// Clears one exchange's topic permissions, or all of the user's in the vhost.
    pub fn clear_topic_permissions(&mut self, user: &str, vhost: &str, exchange: Option<&str>) {
        self.topic_permissions
            .retain(|(u, v, x), _| !(u == user && v == vhost && exchange.is_none_or(|e| e == x)));
        self.changed();
    }

    /// PLAIN/AMQPLAIN login against the internal backend, then the loopback rule. An unknown
    /// user costs a hash like a known one, so timing does not tell which users exist.
    pub fn authenticate(
        &self,
        username: &str,
        password: &[u8],
        peer_is_loopback: bool,
    ) -> Result<&User, LoginRefused> {
        let refused = || LoginRefused::InvalidCredentials {
            user: username.to_owned(),
        };
        let Some(user) = self.users.get(username) else {
            let _ = PasswordHash::with_salt(HashingAlgorithm::DEFAULT, [0; 4], password);
            return Err(refused());
        };
        if !user.password.verify(password) {
            return Err(refused());
        }
        self.check_loopback(user, peer_is_loopback)
    }

    /// A login whose identity the transport proved (SASL EXTERNAL, a verified client
    /// certificate): the user must exist, no password is checked (RabbitMQ's internal
    /// backend with no password given), and `loopback_users` still applies.
    pub fn authenticate_external(
        &self,
        username: &str,
        peer_is_loopback: bool,
    ) -> Result<&User, LoginRefused> {
        let Some(user) = self.users.get(username) else {
            return Err(LoginRefused::InvalidCredentials {
                user: username.to_owned(),
            });
        };
        self.check_loopback(user, peer_is_loopback)
    }

    fn check_loopback<'a>(
        &self,
        user: &'a User,
        peer_is_loopback: bool,
    ) -> Result<&'a User, LoginRefused> {
        let username = user.name.as_str();
        if !peer_is_loopback && self.loopback_users.iter().any(|u| u == username) {
            return Err(LoginRefused::LoopbackOnly {
                user: username.to_owned(),
            });
        }
        Ok(user)
    }

    /// connection.open in RabbitMQ's order: the vhost exists, its connection limit, the
    /// user's connection limit, then the user has some permission in it. `vhost_connections`
    /// and `user_connections` count the connections already open (not this one).
    pub fn open_vhost(
        &self,
        username: &str,
        vhost: &str,
        vhost_connections: usize,
        user_connections: usize,
    ) -> Result<VhostGrant, Refusal> {
        self.check_open(username, vhost, vhost_connections, user_connections)?;
        self.grant(username, vhost)
            .ok_or_else(|| Refusal::VhostAccess {
                vhost: vhost.to_owned(),
                user: username.to_owned(),
            })
    }

    /// The refusals of `open_vhost`, without building the grant (whose holder may have one of
    /// this generation already).
    pub fn check_open(
        &self,
        username: &str,
        vhost: &str,
        vhost_connections: usize,
        user_connections: usize,
    ) -> Result<(), Refusal> {
        let Some(v) = self.vhosts.get(vhost) else {
            return Err(Refusal::VhostNotFound {
                vhost: vhost.to_owned(),
            });
        };
        if let Some(limit) = v.limits.connections_exceeded(vhost_connections) {
            return Err(Refusal::VhostConnectionLimit {
                vhost: vhost.to_owned(),
                user: username.to_owned(),
                limit,
            });
        }
        let user = self.users.get(username);
        let user_limits = user.map(|u| u.limits).unwrap_or_default();
        if let Some(limit) = user_limits.connections_exceeded(user_connections) {
            return Err(Refusal::UserConnectionLimit {
                user: username.to_owned(),
                limit,
            });
        }
        let key = (username.to_owned(), vhost.to_owned());
        if user.is_none() || !self.permissions.contains_key(&key) {
            return Err(Refusal::VhostAccess {
                vhost: vhost.to_owned(),
                user: username.to_owned(),
            });
        }
        Ok(())
    }

    /// The user's rights in the vhost at this generation; None if the user, the vhost or the
    /// user's permission there does not exist.
    pub fn grant(&self, username: &str, vhost: &str) -> Option<VhostGrant> {
        let user = self.users.get(username)?;
        let v = self.vhosts.get(vhost)?;
        let permission = self
            .permissions
            .get(&(username.to_owned(), vhost.to_owned()))?;
        Some(VhostGrant::new(
            user,
            v,
            permission.clone(),
            self.topics_of(username, vhost),
            self.generation,
        ))
    }

    /// The rights of a connection that stays open after its user's permission (or the user)
    /// went: nothing is allowed, as in a permission of "" "" "". None if the vhost went.
    pub fn grant_nothing(&self, username: &str, vhost: &str) -> Option<VhostGrant> {
        let v = self.vhosts.get(vhost)?;
        let nobody = User {
            name: username.to_owned(),
            password: PasswordHash::none(HashingAlgorithm::DEFAULT),
            tags: Vec::new(),
            limits: self
                .users
                .get(username)
                .map(|u| u.limits)
                .unwrap_or_default(),
        };
        let none = Permission {
            configure: PermissionPattern::nothing(),
            write: PermissionPattern::nothing(),
            read: PermissionPattern::nothing(),
        };
        Some(VhostGrant::new(
            &nobody,
            v,
            none,
            Vec::new(),
            self.generation,
        ))
    }

    /// Every right in the vhost, for what the broker does itself (definitions import): the
    /// acting user is RabbitMQ's "rmq-internal".
    pub fn grant_internal(&self, vhost: &str) -> Option<VhostGrant> {
        let v = self.vhosts.get(vhost)?;
        let internal = User {
            name: INTERNAL_USER.to_owned(),
            password: PasswordHash::none(HashingAlgorithm::DEFAULT),
            tags: vec![UserTag::Impersonator],
            limits: UserLimits::default(),
        };
        let all = Permission {
            configure: PermissionPattern::everything(),
            write: PermissionPattern::everything(),
            read: PermissionPattern::everything(),
        };
        Some(VhostGrant::new(
            &internal,
            v,
            all,
            Vec::new(),
            self.generation,
        ))
    }

    fn topics_of(&self, username: &str, vhost: &str) -> Vec<(String, TopicPermission)> {
        self.topic_permissions
            .range((username.to_owned(), vhost.to_owned(), String::new())..)
            .take_while(|((u, v, _), _)| u == username && v == vhost)
            .map(|((_, _, x), p)| (x.clone(), p.clone()))
            .collect()
    }

    /// Whether there is nothing in the tables: a fresh node, which gets the default vhost and
    /// user (RabbitMQ's `rabbit_table:needs_default_data`).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.vhosts.is_empty() && self.permissions.is_empty()
    }

    /// The users that may log in only from a loopback address.
    pub fn loopback_users(&self) -> &[String] {
        &self.loopback_users
    }
}

/// The acting user of what the broker does itself, named as in RabbitMQ's logs.
pub const INTERNAL_USER: &str = "rmq-internal";

#[cfg(test)]
mod tests {
    use super::*;

    fn ac() -> AccessControl {
        let mut ac = AccessControl::with_default_user("guest", "guest").unwrap();
        ac.put_vhost(Vhost::new("v1"));
        ac.put_user(User::with_password("u", "p", vec![]).unwrap());
        ac
    }

    /// A fresh node's tables: "/" described as RabbitMQ does, guest an administrator with
    /// everything on "/" and limited to loopback.
    #[test]
    fn defaults_are_rabbitmqs() {
        let ac = ac();
        assert_eq!(ac.vhost("/").unwrap().description, "Default virtual host");
        let guest = ac.user("guest").unwrap();
        assert_eq!(guest.tags, vec![UserTag::Administrator]);
        assert_eq!(guest.password.algorithm(), HashingAlgorithm::Sha256);
        assert!(ac.authenticate("guest", b"guest", true).is_ok());
        assert_eq!(
            ac.authenticate("guest", b"guest", false)
                .unwrap_err()
                .log_text(),
            "user 'guest' can only connect via localhost"
        );
        let g = ac.open_vhost("guest", "/", 0, 0).unwrap();
        assert!(g.check_queue_declare(b"anything").is_ok());
    }

    /// Wrong password, unknown user and no password all give RabbitMQ's one log text.
    #[test]
    fn login_failures_look_alike() {
        let mut ac = ac();
        let mut locked = User::with_password("locked", "x", vec![]).unwrap();
        locked.password = PasswordHash::none(HashingAlgorithm::Sha256);
        ac.put_user(locked);
        for (u, p) in [
            ("u", "wrong"),
            ("nobody", "p"),
            ("locked", ""),
            ("locked", "x"),
        ] {
            assert_eq!(
                ac.authenticate(u, p.as_bytes(), true)
                    .unwrap_err()
                    .log_text(),
                format!("user '{u}' - invalid credentials")
            );
        }
        assert!(
            ac.authenticate("u", b"p", false).is_ok(),
            "only guest is loopback-only"
        );
        ac.set_loopback_users(vec![]);
        assert!(ac.authenticate("guest", b"guest", false).is_ok());
    }

    /// connection.open refusals in RabbitMQ's order and words (530 NOT_ALLOWED, texts
    /// checked on RabbitMQ 3.10 with pika).
    #[test]
    fn open_vhost_order_and_texts() {
        let mut ac = ac();
        let text = |r: Result<VhostGrant, Refusal>| r.unwrap_err().to_string();
        assert_eq!(
            text(ac.open_vhost("guest", "nope", 0, 0)),
            "vhost nope not found"
        );
        assert_eq!(
            text(ac.open_vhost("u", "/", 0, 0)),
            "access to vhost '/' refused for user 'u'"
        );
        ac.set_permissions("u", "v1", "", "", "").unwrap();
        assert!(
            ac.open_vhost("u", "v1", 0, 0).is_ok(),
            "any permission entry opens the vhost"
        );
        let mut v1 = ac.vhost("v1").unwrap().clone();
        v1.limits.max_connections = Some(1);
        ac.put_vhost(v1);
        assert_eq!(
            text(ac.open_vhost("guest", "v1", 1, 0)),
            "access to vhost 'v1' refused for user 'guest': connection limit (1) is reached"
        );
        // The vhost limit comes before the permission check.
        assert_eq!(
            text(ac.open_vhost("u", "v1", 1, 0)),
            "access to vhost 'v1' refused for user 'u': connection limit (1) is reached"
        );
        let mut u = ac.user("u").unwrap().clone();
        u.limits.max_connections = Some(1);
        ac.put_user(u);
        assert_eq!(
            text(ac.open_vhost("u", "v1", 0, 1)),
            "connection refused for user 'u': user connection limit (1) is reached"
        );
        let mut v1 = ac.vhost("v1").unwrap().clone();
        v1.limits.max_connections = Some(-1);
        ac.put_vhost(v1);
        assert!(
            ac.open_vhost("guest", "v1", 1_000_000, 0).is_err(),
            "guest has no permission in v1"
        );
    }

    /// Limits: absent or negative is unlimited, 0 allows nothing.
    #[test]
    fn limit_semantics() {
        let l = VhostLimits {
            max_connections: Some(0),
            max_queues: Some(-1),
        };
        assert_eq!(l.connections_exceeded(0), Some(0));
        assert_eq!(l.queues_exceeded(usize::MAX), None);
        assert_eq!(VhostLimits::default().connections_exceeded(9), None);
        let u = UserLimits {
            max_connections: Some(2),
            max_channels: Some(2),
        };
        assert_eq!(u.connections_exceeded(1), None);
        assert_eq!(u.connections_exceeded(2), Some(2));
    }

    /// Deleting a user or vhost takes its permissions with it; permissions need both to
    /// exist; every change bumps the generation.
    #[test]
    fn deletes_cascade_and_changes_are_counted() {
        let mut ac = ac();
        assert_eq!(
            ac.set_permissions("ghost", "/", ".*", ".*", ".*"),
            Err(AccessError::NoSuchUser("ghost".into()))
        );
        assert_eq!(
            ac.set_permissions("u", "nope", ".*", ".*", ".*"),
            Err(AccessError::NoSuchVhost("nope".into()))
        );
        assert!(matches!(
            ac.set_permissions("u", "/", "(", ".*", ".*"),
            Err(AccessError::Pattern(_))
        ));
        let g0 = ac.generation();
        ac.set_permissions("u", "v1", ".*", ".*", ".*").unwrap();
        ac.set_topic_permissions("u", "v1", "amq.topic", ".*", ".*")
            .unwrap();
        assert!(ac.generation() > g0);
        assert!(ac.delete_vhost("v1"));
        assert_eq!(ac.permissions().filter(|(u, _, _)| *u == "u").count(), 0);
        assert_eq!(ac.topic_permissions().count(), 0);
        ac.set_permissions("u", "/", ".*", ".*", ".*").unwrap();
        assert!(ac.delete_user("u"));
        assert_eq!(ac.permissions().count(), 1, "only guest's remains");
    }

    /// A grant carries the topic permissions of its own (user, vhost) only, with variables
    /// expanded for that pair.
    #[test]
    fn grant_collects_own_topic_permissions() {
        let mut ac = ac();
        ac.put_vhost(Vhost::new("v"));
        ac.put_vhost(Vhost::new("v\u{1}"));
        for v in ["/", "v", "v\u{1}"] {
            ac.set_permissions("u", v, ".*", ".*", ".*").unwrap();
        }
        ac.set_topic_permissions("u", "v", "t1", "^{username}\\.{vhost}$", ".*")
            .unwrap();
        ac.set_topic_permissions("u", "v\u{1}", "t1", "^$", "^$")
            .unwrap();
        ac.set_topic_permissions("u", "/", "t2", "^$", "^$")
            .unwrap();
        let g = ac.open_vhost("u", "v", 0, 0).unwrap();
        assert!(g.check_topic_write(b"t1", b"u.v").is_ok());
        assert!(g.check_topic_write(b"t1", b"x.v").is_err());
        assert!(
            g.check_topic_write(b"t2", b"anything").is_ok(),
            "t2 is restricted in '/' only"
        );
        let (_, _, _, p) = ac
            .topic_permissions()
            .find(|(_, v, _, _)| *v == "v")
            .unwrap();
        assert_eq!(p.write_source(), "^{username}\\.{vhost}$");
    }
}
