//! Who may do what, on the broker's side: it owns `AccessControl` (users, vhost metadata and
//! limits, permissions) and the open connections as access control counts them (per vhost and
//! per user, for max-connections and max-channels). `open_connection` decides connection.open
//! and hands the session an `Actor`: its connection, vhost and `VhostGrant`, which every
//! entity verb takes. Grants are shared between the connections of one user in one vhost and
//! re-resolved when the tables change (`refresh_actor`: one integer compare per method).

use super::vhost::VhostState;
use super::{Broker, ConnId, Notice, VhostId};
use crate::auth::users::DEFAULT_VHOST_DESCRIPTION;
use crate::auth::{
    AccessControl, AccessError, LoginRefused, Refusal, User, UserTag, Vhost, VhostGrant,
};
use crate::definitions::{export_access, Definitions};
use std::collections::HashMap;
use std::rc::Rc;

/// The connection id the management API acts as: no session has it (ids are slab keys far
/// below), so nothing it declares is exclusive to a live connection.
pub const API_CONN: ConnId = ConnId(u32::MAX);

/// Who performs an operation: a connection, the vhost it opened and its rights there. Made by
/// `Broker::open_connection` (or `internal_actor`), so the vhost and the grant always agree.
#[derive(Debug, Clone)]
pub struct Actor {
    pub(super) conn: ConnId,
    pub(super) vhost: VhostId,
    grant: Rc<VhostGrant>,
}

impl Actor {
    pub fn conn(&self) -> ConnId {
        self.conn
    }
    pub fn vhost(&self) -> VhostId {
        self.vhost
    }
    pub fn grant(&self) -> &VhostGrant {
        &self.grant
    }
    pub fn vhost_name(&self) -> &str {
        self.grant.vhost()
    }
    pub fn user(&self) -> &str {
        self.grant.user()
    }
}

/// What a fresh node is seeded with (RabbitMQ's `default_user`, `default_pass`,
/// `default_vhost`, `default_user_tags.*`, `default_permissions.*`). Its `Debug` hides the
/// password.
#[derive(Clone)]
pub struct DefaultData {
    pub user: String,
    pub pass: String,
    pub vhost: String,
    pub tags: Vec<String>,
    /// configure, write, read.
    pub permissions: [String; 3],
}

impl std::fmt::Debug for DefaultData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DefaultData")
            .field("user", &self.user)
            .field("pass", &"<hidden>")
            .field("vhost", &self.vhost)
            .field("tags", &self.tags)
            .field("permissions", &self.permissions)
            .finish()
    }
}

impl Default for DefaultData {
    fn default() -> Self {
        DefaultData {
            user: "guest".into(),
            pass: "guest".into(),
            vhost: "/".into(),
            tags: vec!["administrator".into()],
            permissions: [".*".into(), ".*".into(), ".*".into()],
        }
    }
}

/// An open connection as access control counts it.
#[derive(Debug)]
struct Client {
    vhost: VhostId,
    user: Box<str>,
    channels: u32,
}

/// Open connections and channels of one user, on all its connections.
#[derive(Debug, Default)]
struct UserCounts {
    connections: u32,
    channels: u32,
}

/// The open connections, their counts per vhost and per user, and the grants they share.
#[derive(Default)]
pub(super) struct Clients {
    conns: HashMap<ConnId, Client>,
    users: HashMap<Box<str>, UserCounts>,
    vhost_connections: HashMap<VhostId, u32>,
    /// One grant per (user, vhost) at `grants_generation`, shared by its connections: a
    /// grant's compiled patterns keep match caches, which should not be copied per connection.
    grants: HashMap<(String, VhostId), Rc<VhostGrant>>,
    grants_generation: u64,
}

impl Clients {
    pub(super) fn has(&self, conn: ConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    /// The open connections of a vhost.
    pub(super) fn of_vhost(&self, vhost: VhostId) -> Vec<ConnId> {
        let mut list: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.vhost == vhost)
            .map(|(&id, _)| id)
            .collect();
        list.sort_unstable();
        list
    }

    fn of_user(&self, user: &str) -> Vec<ConnId> {
        let mut list: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| &*c.user == user)
            .map(|(&id, _)| id)
            .collect();
        list.sort_unstable();
        list
    }

    fn open(&mut self, conn: ConnId, vhost: VhostId, user: &str) {
        let old = self.conns.insert(
            conn,
            Client {
                vhost,
                user: user.into(),
                channels: 0,
            },
        );
        debug_assert!(old.is_none(), "connection opened twice");
        self.users.entry(user.into()).or_default().connections += 1;
        *self.vhost_connections.entry(vhost).or_default() += 1;
    }

    fn close(&mut self, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if let Some(u) = self.users.get_mut(&c.user) {
            u.connections -= 1;
            u.channels -= c.channels;
            if u.connections == 0 {
                self.users.remove(&c.user);
            }
        }
        if let Some(n) = self.vhost_connections.get_mut(&c.vhost) {
            *n -= 1;
            if *n == 0 {
                self.vhost_connections.remove(&c.vhost);
            }
        }
    }

    fn user_counts(&self, user: &str) -> (usize, usize) {
        self.users
            .get(user)
            .map_or((0, 0), |u| (u.connections as usize, u.channels as usize))
    }

    /// Checks that the counts add up to the connections recorded.
    pub(super) fn assert_consistent(&self, vhosts: &super::handle::Registry<VhostId, VhostState>) {
        let mut users: HashMap<&str, (u32, u32)> = HashMap::new();
        let mut per_vhost: HashMap<VhostId, u32> = HashMap::new();
        for c in self.conns.values() {
            let u = users.entry(&c.user).or_default();
            u.0 += 1;
            u.1 += c.channels;
            *per_vhost.entry(c.vhost).or_default() += 1;
            assert!(
                vhosts.get(c.vhost).is_some(),
                "an open connection's vhost is gone"
            );
        }
        for (name, counts) in &self.users {
            let want = users.get(&**name).copied().unwrap_or_default();
            assert_eq!(
                (counts.connections, counts.channels),
                want,
                "user counts off"
            );
        }
        assert_eq!(users.len(), self.users.len(), "user counts missing");
        assert_eq!(per_vhost, self.vhost_connections, "vhost counts off");
    }
}

impl Broker {
    /// The users, vhosts and permissions (read-only: changes go through the broker's verbs,
    /// which keep vhosts and persistence in step).
    pub fn access(&self) -> &AccessControl {
        &self.access
    }

    /// Whether the node is fresh: no users, vhosts or permissions yet.
    pub fn needs_default_data(&self) -> bool {
        self.access.is_empty()
    }

    /// Seeds a fresh node as RabbitMQ's `insert_default_data`: the default vhost, the default
    /// user with its tags, and its permissions in that vhost.
    pub fn insert_default_data(&mut self, d: &DefaultData) -> Result<(), String> {
        let mut vhost = Vhost::new(&d.vhost);
        vhost.description = DEFAULT_VHOST_DESCRIPTION.to_owned();
        let tags = d.tags.iter().map(|t| UserTag::parse(t)).collect();
        let user = User::with_password(&d.user, &d.pass, tags).map_err(|e| e.to_string())?;
        self.add_vhost(vhost);
        self.put_user(user);
        let [c, w, r] = &d.permissions;
        self.set_permissions(&d.user, &d.vhost, c, w, r)
            .map_err(|e| e.to_string())
    }

    /// The users that may log in from a loopback address only (config, not persisted).
    pub fn set_loopback_users(&mut self, users: Vec<String>) {
        self.access.set_loopback_users(users);
    }

    /// PLAIN/AMQPLAIN login against the users table and the loopback rule.
    pub fn authenticate(
        &self,
        user: &str,
        password: &[u8],
        peer_is_loopback: bool,
    ) -> Result<(), LoginRefused> {
        self.access
            .authenticate(user, password, peer_is_loopback)
            .map(|_| ())
    }

    /// SASL EXTERNAL: the user named by a verified client certificate exists and may log
    /// in from this peer; no password.
    pub fn authenticate_external(
        &self,
        user: &str,
        peer_is_loopback: bool,
    ) -> Result<(), LoginRefused> {
        self.access
            .authenticate_external(user, peer_is_loopback)
            .map(|_| ())
    }

    /// connection.open: the vhost exists, the vhost's and the user's connection limits, the
    /// user's permission there (RabbitMQ's order and texts). The connection counts from now
    /// until `connection_closed`.
    pub fn open_connection(
        &mut self,
        conn: ConnId,
        user: &str,
        vhost: &str,
    ) -> Result<Actor, Refusal> {
        let vid = self.vhost_id(vhost);
        let vhost_connections = vid.map_or(0, |v| {
            self.clients.vhost_connections.get(&v).copied().unwrap_or(0) as usize
        });
        let (user_connections, _) = self.clients.user_counts(user);
        self.access
            .check_open(user, vhost, vhost_connections, user_connections)?;
        let refused = || Refusal::VhostAccess {
            vhost: vhost.to_owned(),
            user: user.to_owned(),
        };
        let vid = vid.ok_or_else(refused)?;
        let grant = self.shared_grant(user, vid).ok_or_else(refused)?;
        self.clients.open(conn, vid, user);
        Ok(Actor {
            conn,
            vhost: vid,
            grant,
        })
    }

    /// Full rights in `vhost` for what the broker does itself (definitions import), acting as
    /// connection `conn` (the owner of any exclusive queue it declares). Not counted as a
    /// connection.
    pub fn internal_actor(&self, conn: ConnId, vhost: &str) -> Option<Actor> {
        let vid = self.vhost_id(vhost)?;
        let grant = self.access.grant_internal(vhost)?;
        Some(Actor {
            conn,
            vhost: vid,
            grant: Rc::new(grant),
        })
    }

    /// The management API acting for `user` in `vhost`, with that user's permissions there;
    /// not counted as a connection. None when the vhost does not exist or the user has no
    /// permission in it (RabbitMQ's API then refuses with 401).
    pub fn api_actor(&self, user: &str, vhost: &str) -> Option<Actor> {
        let vid = self.vhost_id(vhost)?;
        let grant = self.access.grant(user, vhost)?;
        Some(Actor {
            conn: API_CONN,
            vhost: vid,
            grant: Rc::new(grant),
        })
    }

    /// The grant of `user` in `vhost` at the current generation, shared.
    fn shared_grant(&mut self, user: &str, vhost: VhostId) -> Option<Rc<VhostGrant>> {
        let generation = self.access.generation();
        if self.clients.grants_generation != generation {
            self.clients.grants.clear();
            self.clients.grants_generation = generation;
        }
        let key = (user.to_owned(), vhost);
        if let Some(g) = self.clients.grants.get(&key) {
            return Some(g.clone());
        }
        let name = &self.vhosts.get(vhost)?.name;
        let grant = Rc::new(self.access.grant(user, name)?);
        self.clients.grants.insert(key, grant.clone());
        Some(grant)
    }

    /// Brings an actor's grant up to date after users or permissions changed: changes take
    /// effect at the connection's next operation. Its user's permission (or the user) gone,
    /// the connection keeps a grant that allows nothing, as RabbitMQ leaves such a connection
    /// open with every check failing.
    #[inline]
    pub fn refresh_actor(&mut self, a: &mut Actor) {
        if a.grant.generation() != self.access.generation() {
            self.regrant(a);
        }
    }

    #[cold]
    fn regrant(&mut self, a: &mut Actor) {
        let user = a.user().to_owned();
        if let Some(g) = self.shared_grant(&user, a.vhost) {
            a.grant = g;
        } else if let Some(g) = self.access.grant_nothing(&user, a.vhost_name()) {
            a.grant = Rc::new(g);
        }
    }

    /// channel.open: the user's max-channels over all its connections (530, connection-level).
    pub fn channel_opened(&mut self, a: &Actor) -> Result<(), Refusal> {
        let (_, open) = self.clients.user_counts(a.user());
        a.grant.check_channel_limit(open)?;
        if let Some(c) = self.clients.conns.get_mut(&a.conn) {
            c.channels += 1;
            if let Some(u) = self.clients.users.get_mut(&c.user) {
                u.channels += 1;
            }
        }
        Ok(())
    }

    /// A channel of `conn` closed (either side).
    pub fn channel_closed(&mut self, conn: ConnId) {
        if let Some(c) = self.clients.conns.get_mut(&conn) {
            if c.channels > 0 {
                c.channels -= 1;
                if let Some(u) = self.clients.users.get_mut(&c.user) {
                    u.channels -= 1;
                }
            }
        }
    }

    /// The connection no longer counts towards its vhost's and user's limits.
    pub(super) fn forget_connection(&mut self, conn: ConnId) {
        self.clients.close(conn);
    }

    /// Adds a user or replaces its password hash, tags and limits.
    pub fn put_user(&mut self, user: User) {
        self.access.put_user(user);
        self.record_access();
    }

    /// Deletes a user with its permissions; its connections are closed with 320 "user 'NAME'
    /// is deleted", as RabbitMQ does.
    pub fn delete_user(&mut self, name: &str) -> bool {
        let existed = self.access.delete_user(name);
        self.record_access();
        let reason = format!("user '{name}' is deleted");
        for conn in self.clients.of_user(name) {
            self.notices.push(Notice::ConnectionForced {
                conn,
                reason: reason.clone(),
            });
        }
        existed
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
        self.access
            .set_permissions(user, vhost, configure, write, read)?;
        self.record_access();
        Ok(())
    }

    /// `rabbitmqctl clear_permissions -p vhost user`; false if there were none.
    pub fn clear_permissions(&mut self, user: &str, vhost: &str) -> bool {
        let existed = self.access.clear_permissions(user, vhost);
        self.record_access();
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
        self.access
            .set_topic_permissions(user, vhost, exchange, write, read)?;
        self.record_access();
        Ok(())
    }

    /// `rabbitmqctl clear_topic_permissions -p vhost user`: all of the user's topic
    /// permissions in the vhost; false if there were none.
    pub fn clear_topic_permissions(&mut self, user: &str, vhost: &str) -> bool {
        let existed = self
            .access
            .topic_permissions()
            .any(|(u, v, _, _)| u == user && v == vhost);
        if existed {
            self.access.clear_topic_permissions(user, vhost, None);
            self.record_access();
        }
        existed
    }

    /// Replaces the access tables with `next` (an import applied to a copy of them): vhosts it
    /// adds are created with their standard exchanges. Vhosts are never removed this way.
    pub(super) fn replace_access(&mut self, next: AccessControl) {
        self.install_access(next);
        self.record_access();
    }

    /// `replace_access` without telling the store (the tables were just read from it).
    pub(super) fn install_access(&mut self, next: AccessControl) {
        let loopback = self.access.loopback_users().to_vec();
        self.access = next;
        self.access.set_loopback_users(loopback);
        let names: Vec<String> = self.access.vhosts().map(|v| v.name.clone()).collect();
        for name in names {
            self.vhost_names(&name);
        }
    }

    /// Users, vhosts, permissions, topic permissions and vhost limits into `defs`, as
    /// RabbitMQ exports them.
    pub(super) fn export_access(&self, defs: &mut Definitions) {
        export_access(&self.access, defs);
        self.export_parameters(defs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::FieldTable;

    fn user(b: &mut Broker, name: &str) {
        b.put_user(User::with_password(name, "p", vec![]).expect("hash"));
        b.set_permissions(name, "/", ".*", ".*", ".*")
            .expect("permit");
    }

    /// Two connections of one user in one vhost share one grant; a permission change reaches
    /// an open connection at its next operation; a user whose permission went keeps a grant
    /// that allows nothing.
    #[test]
    fn grants_are_shared_and_follow_changes() {
        let mut b = Broker::new();
        user(&mut b, "u");
        let mut a1 = b.open_connection(ConnId(1), "u", "/").expect("open");
        let a2 = b.open_connection(ConnId(2), "u", "/").expect("open");
        assert!(Rc::ptr_eq(&a1.grant, &a2.grant));
        b.set_permissions("u", "/", "^mine$", ".*", ".*")
            .expect("narrow");
        b.refresh_actor(&mut a1);
        let e = b
            .declare_queue(&a1, b"other", Default::default(), FieldTable::EMPTY)
            .expect_err("403");
        assert_eq!(
            e.text,
            "ACCESS_REFUSED - access to queue 'other' in vhost '/' refused for user 'u'"
        );
        b.access.clear_permissions("u", "/");
        b.refresh_actor(&mut a1);
        assert!(a1.grant().check_basic_publish(b"").is_err());
        b.connection_closed(ConnId(1));
        b.connection_closed(ConnId(2));
        b.assert_consistent();
    }

    /// Channels count per user over its connections and are given back with the channel or
    /// the connection; deleting a user closes its connections with RabbitMQ's text.
    #[test]
    fn channels_count_per_user_and_deleted_users_are_disconnected() {
        let mut b = Broker::new();
        user(&mut b, "u");
        let mut u = b.access().user("u").cloned().expect("u");
        u.limits.max_channels = Some(2);
        b.put_user(u);
        let a1 = b.open_connection(ConnId(1), "u", "/").expect("open");
        let a2 = b.open_connection(ConnId(2), "u", "/").expect("open");
        b.channel_opened(&a1).expect("1st");
        b.channel_opened(&a2).expect("2nd");
        let e = b.channel_opened(&a2).expect_err("3rd");
        assert_eq!(
            e.to_string(),
            "number of channels opened for user 'u' has reached the maximum allowed user limit of (2)"
        );
        b.channel_closed(ConnId(2));
        b.channel_opened(&a1).expect("room again");
        b.connection_closed(ConnId(1));
        b.channel_opened(&a2)
            .expect("connection 1's channels given back");
        b.assert_consistent();
        assert!(b.delete_user("u"));
        let notices: Vec<Notice> = b.drain_notices().collect();
        assert_eq!(
            notices,
            [Notice::ConnectionForced {
                conn: ConnId(2),
                reason: "user 'u' is deleted".into()
            }]
        );
    }

    /// A fresh broker is seeded as RabbitMQ seeds a node; an emptied one needs seeding.
    #[test]
    fn default_data_is_rabbitmqs() {
        let b = Broker::new();
        assert!(!b.needs_default_data());
        assert!(b.authenticate("guest", b"guest", true).is_ok());
        assert!(
            b.authenticate("guest", b"guest", false).is_err(),
            "loopback only"
        );
        let guest = b.access().user("guest").expect("guest");
        assert_eq!(guest.tags, [UserTag::Administrator]);
        assert_eq!(
            b.access().vhost("/").map(|v| v.description.as_str()),
            Some("Default virtual host")
        );
        assert!(Broker::empty().needs_default_data());
    }
}
