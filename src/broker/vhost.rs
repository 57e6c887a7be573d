//! Virtual hosts as the broker keeps them: each one's names of exchanges and queues (the same
//! name in two vhosts is two entities), created with RabbitMQ's predeclared exchanges and
//! deleted with everything in it, its connections closed. A vhost's metadata and limits live
//! in `AccessControl`; `add_vhost` and `delete_vhost` change both together, so the two never
//! disagree on which vhosts exist.

use super::exchange::{Exchange, ExchangeId};
use super::handle::define_id;
use super::queue::QueueId;
use super::{Actor, Broker, Notice, STANDARD_EXCHANGES};
use crate::auth::Vhost;
use crate::error::AmqpError;
use crate::protocol::ReplyCode;
use std::collections::HashMap;

define_id!(
    /// A virtual host in the broker's registry.
    VhostId
);

/// One vhost's names: the only way from a name on the wire to an entity.
pub(super) struct VhostState {
    pub(super) name: Box<str>,
    pub(super) exchanges: HashMap<Box<[u8]>, ExchangeId>,
    pub(super) queues: HashMap<Box<[u8]>, QueueId>,
}

/// RabbitMQ's text when a connection's vhost is deleted under it (320 CONNECTION_FORCED).
fn vhost_deleted(name: &str) -> String {
    format!("vhost '{name}' is deleted")
}

impl Broker {
    /// The vhost named `name`, if it exists.
    pub fn vhost_id(&self, name: &str) -> Option<VhostId> {
        self.vhost_ids.get(name).copied()
    }

    /// The names of the actor's vhost. A vhost deleted while the connection's close is on its
    /// way ends the connection as RabbitMQ does.
    pub(super) fn names(&self, who: &Actor) -> Result<&VhostState, AmqpError> {
        self.vhosts.get(who.vhost).ok_or_else(|| {
            AmqpError::new(ReplyCode::ConnectionForced, vhost_deleted(who.vhost_name()))
        })
    }

    /// The vhost's names, mutable; None if it is gone.
    pub(super) fn names_mut(&mut self, id: VhostId) -> Option<&mut VhostState> {
        self.vhosts.get_mut(id)
    }

    /// Creates a vhost with its standard exchanges, or updates the metadata and limits of an
    /// existing one (RabbitMQ's `put_vhost`).
    pub fn add_vhost(&mut self, vhost: Vhost) -> VhostId {
        let name = vhost.name.clone();
        self.access.put_vhost(vhost);
        self.record_access();
        self.vhost_names(&name)
    }

    /// The names of vhost `name`, created with the standard exchanges if there are none yet
    /// (the vhost itself is in `AccessControl` already).
    pub(super) fn vhost_names(&mut self, name: &str) -> VhostId {
        if let Some(id) = self.vhost_id(name) {
            return id;
        }
        let id = self.vhosts.insert(VhostState {
            name: name.into(),
            exchanges: HashMap::new(),
            queues: HashMap::new(),
        });
        self.vhost_ids.insert(name.into(), id);
        for (x, kind) in STANDARD_EXCHANGES {
            self.insert_exchange(Exchange::new(
                id,
                x.as_bytes().into(),
                kind,
                true,
                false,
                false,
                Box::new([]),
            ));
        }
        id
    }

    /// Deletes a vhost as `rabbitmqctl delete_vhost`: its queues (and their messages),
    /// exchanges and bindings, the permissions in it, and its connections, which are closed
    /// with 320 "vhost 'NAME' is deleted". False if there was no such vhost.
    pub fn delete_vhost(&mut self, name: &str) -> bool {
        let Some(id) = self.vhost_ids.remove(name) else {
            return false;
        };
        self.access.delete_vhost(name);
        self.drop_vhost_parameters(name);
        self.record_access();
        self.drop_vhost_policies(name);
        if let Some(v) = self.vhosts.get(id) {
            let queues: Vec<QueueId> = v.queues.values().copied().collect();
            for q in queues {
                self.remove_queue(q);
            }
        }
        if let Some(v) = self.vhosts.get(id) {
            let exchanges: Vec<ExchangeId> = v.exchanges.values().copied().collect();
            for x in exchanges {
                self.remove_exchange(x);
            }
        }
        self.vhosts.remove(id);
        let reason = vhost_deleted(name);
        for conn in self.clients.of_vhost(id) {
            self.notices.push(Notice::ConnectionForced {
                conn,
                reason: reason.clone(),
            });
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ConnId, QueueFlags};
    use super::*;
    use crate::broker::message::Message;
    use crate::protocol::FieldTable;

    /// Deleting a vhost deletes its queues, exchanges and bindings, closes its connections
    /// with RabbitMQ's 320 text, and leaves another vhost's entities of the same names alone.
    #[test]
    fn delete_vhost_takes_its_entities_and_connections() {
        let mut b = Broker::new();
        b.add_vhost(Vhost::new("v"));
        b.set_permissions("guest", "v", ".*", ".*", ".*")
            .expect("permit");
        let (c1, c2) = (ConnId(1), ConnId(2));
        let in_v = b.open_connection(c1, "guest", "v").expect("open v");
        let in_root = b.open_connection(c2, "guest", "/").expect("open /");
        for who in [&in_v, &in_root] {
            b.declare_queue(who, b"q", QueueFlags::default(), FieldTable::EMPTY)
                .expect("declare");
            b.declare_exchange(who, b"x", b"fanout", Default::default(), FieldTable::EMPTY)
                .expect("exchange");
            b.bind_queue(who, b"q", b"x", b"", FieldTable::EMPTY)
                .expect("bind");
        }
        let queues = b.queues.len();
        assert!(b.delete_vhost("v"));
        assert!(!b.delete_vhost("v"), "gone already");
        assert_eq!(b.queues.len(), queues - 1);
        assert!(b.vhost_id("v").is_none() && b.access().vhost("v").is_none());
        let notices: Vec<Notice> = b.drain_notices().collect();
        assert_eq!(
            notices,
            [Notice::ConnectionForced {
                conn: c1,
                reason: "vhost 'v' is deleted".into()
            }]
        );
        let e = b.purge_queue(&in_v, b"q").expect_err("vhost gone");
        assert_eq!(e.text, "CONNECTION_FORCED - vhost 'v' is deleted");
        let m = Message::new(b"x", b"", &[0, 0], b"still routed in /", false);
        let target = b.publish_target(&in_root, b"x").expect("x in /");
        let props = crate::broker::PublishProps::default();
        assert_eq!(b.publish(target, &m, props).queues, 1);
        b.connection_closed(c1);
        b.connection_closed(c2);
        b.assert_consistent();
        assert!(!b.holds_anything_of(c1) && !b.holds_anything_of(c2));
    }
}
