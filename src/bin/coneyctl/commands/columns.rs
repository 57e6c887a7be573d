//! The columns each listing offers: rabbitmqctl 3.10's info-key names, where each comes
//! from in the management API's JSON, and how it is shown. Keys rabbitmqctl has but the API
//! does not expose are listed apart so that asking for one says so instead of "unknown".
//! Where rabbitmqctl shows an Erlang process id (a connection's or channel's `pid`, a
//! consumer's `channel_pid`) the API has no pid, and the column shows the API's name for the
//! connection or channel: the name `close_connection` takes.

use crate::cell::Kind;

/// Where a column's value is in one object of the API's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A top-level field.
    Field(&'static str),
    /// A field of a nested object: `["queue", "name"]`.
    Path(&'static str, &'static str),
    /// The same text on every row (a binding's source is always an exchange).
    Const(&'static str),
}

impl Source {
    /// The top-level field to ask the API for (`columns=`), if any.
    pub fn api_field(&self) -> Option<&'static str> {
        match self {
            Source::Field(f) | Source::Path(f, _) => Some(f),
            Source::Const(_) => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub source: Source,
    pub kind: Kind,
}

const fn plain(name: &'static str) -> Column {
    Column {
        name,
        source: Source::Field(name),
        kind: Kind::Plain,
    }
}

const fn from(name: &'static str, field: &'static str, kind: Kind) -> Column {
    Column {
        name,
        source: Source::Field(field),
        kind,
    }
}

const fn nested(name: &'static str, outer: &'static str, inner: &'static str) -> Column {
    Column {
        name,
        source: Source::Path(outer, inner),
        kind: Kind::Plain,
    }
}

pub const QUEUE: &[Column] = &[
    plain("name"),
    plain("durable"),
    plain("auto_delete"),
    from("arguments", "arguments", Kind::Table),
    plain("policy"),
    plain("exclusive"),
    plain("messages"),
    plain("messages_ready"),
    plain("messages_unacknowledged"),
    plain("messages_ram"),
    plain("messages_ready_ram"),
    plain("messages_unacknowledged_ram"),
    plain("messages_persistent"),
    plain("message_bytes"),
    plain("message_bytes_ready"),
    plain("message_bytes_unacknowledged"),
    plain("message_bytes_ram"),
    plain("message_bytes_persistent"),
    plain("consumers"),
    plain("memory"),
    plain("state"),
    plain("type"),
];
pub const QUEUE_DEFAULT: &[&str] = &["name", "messages"];
pub const QUEUE_NOT_IN_API: &[&str] = &[
    "pid",
    "owner_pid",
    "exclusive_consumer_pid",
    "exclusive_consumer_tag",
    "consumer_utilisation",
    "consumer_capacity",
    "head_message_timestamp",
    "slave_pids",
    "synchronised_slave_pids",
    "leader",
    "members",
    "online",
    "disk_reads",
    "disk_writes",
];

pub const EXCHANGE: &[Column] = &[
    plain("name"),
    plain("type"),
    plain("durable"),
    plain("auto_delete"),
    plain("internal"),
    from("arguments", "arguments", Kind::Table),
    plain("policy"),
];
pub const EXCHANGE_DEFAULT: &[&str] = &["name", "type"];

pub const BINDING: &[Column] = &[
    from("source_name", "source", Kind::Plain),
    Column {
        name: "source_kind",
        source: Source::Const("exchange"),
        kind: Kind::Plain,
    },
    from("destination_name", "destination", Kind::Plain),
    from("destination_kind", "destination_type", Kind::Plain),
    plain("routing_key"),
    from("arguments", "arguments", Kind::Table),
];
pub const BINDING_DEFAULT: &[&str] = &[
    "source_name",
    "source_kind",
    "destination_name",
    "destination_kind",
    "routing_key",
    "arguments",
];

pub const CONNECTION: &[Column] = &[
    from("pid", "name", Kind::Plain),
    plain("name"),
    plain("user"),
    plain("vhost"),
    from("host", "host", Kind::Ip),
    plain("port"),
    from("peer_host", "peer_host", Kind::Ip),
    plain("peer_port"),
    plain("state"),
    plain("channels"),
    from("protocol", "protocol", Kind::Protocol),
    plain("auth_mechanism"),
    plain("ssl"),
    plain("ssl_protocol"),
    plain("ssl_key_exchange"),
    plain("ssl_cipher"),
    plain("ssl_hash"),
    plain("peer_cert_subject"),
    plain("peer_cert_issuer"),
    plain("peer_cert_validity"),
    plain("timeout"),
    plain("frame_max"),
    plain("channel_max"),
    from("client_properties", "client_properties", Kind::Table),
    plain("recv_oct"),
    plain("recv_cnt"),
    plain("send_oct"),
    plain("send_cnt"),
    plain("send_pend"),
    plain("connected_at"),
];
pub const CONNECTION_DEFAULT: &[&str] = &["user", "peer_host", "peer_port", "state"];

pub const CHANNEL: &[Column] = &[
    from("pid", "name", Kind::Plain),
    nested("connection", "connection_details", "name"),
    plain("name"),
    plain("number"),
    plain("user"),
    plain("vhost"),
    plain("transactional"),
    plain("confirm"),
    plain("consumer_count"),
    plain("messages_unacknowledged"),
    plain("messages_uncommitted"),
    plain("acks_uncommitted"),
    plain("messages_unconfirmed"),
    plain("prefetch_count"),
    plain("global_prefetch_count"),
];
pub const CHANNEL_DEFAULT: &[&str] = &["pid", "user", "consumer_count", "messages_unacknowledged"];

pub const CONSUMER: &[Column] = &[
    nested("queue_name", "queue", "name"),
    nested("channel_pid", "channel_details", "name"),
    plain("consumer_tag"),
    plain("ack_required"),
    plain("prefetch_count"),
    plain("active"),
    plain("activity_status"),
    from("arguments", "arguments", Kind::Table),
];
pub const CONSUMER_DEFAULT: &[&str] = &[
    "queue_name",
    "channel_pid",
    "consumer_tag",
    "ack_required",
    "prefetch_count",
    "active",
    "arguments",
];

pub const USER: &[Column] = &[
    from("user", "name", Kind::Plain),
    from("tags", "tags", Kind::Tags),
];
pub const USER_DEFAULT: &[&str] = &["user", "tags"];

pub const VHOST: &[Column] = &[
    plain("name"),
    plain("description"),
    from("tags", "tags", Kind::Tags),
    plain("default_queue_type"),
    plain("tracing"),
];
pub const VHOST_DEFAULT: &[&str] = &["name"];
pub const VHOST_NOT_IN_API: &[&str] = &["metadata", "cluster_state"];

pub const PERMISSION: &[Column] = &[
    plain("user"),
    plain("configure"),
    plain("write"),
    plain("read"),
];
pub const PERMISSION_DEFAULT: &[&str] = &["user", "configure", "write", "read"];

pub const USER_PERMISSION: &[Column] = &[
    plain("vhost"),
    plain("configure"),
    plain("write"),
    plain("read"),
];
pub const USER_PERMISSION_DEFAULT: &[&str] = &["vhost", "configure", "write", "read"];

pub const POLICY: &[Column] = &[
    plain("vhost"),
    plain("name"),
    plain("pattern"),
    plain("apply-to"),
    from("definition", "definition", Kind::JsonText),
    plain("priority"),
];
pub const POLICY_DEFAULT: &[&str] = &[
    "vhost",
    "name",
    "pattern",
    "apply-to",
    "definition",
    "priority",
];

pub const PARAMETER: &[Column] = &[
    plain("component"),
    plain("name"),
    from("value", "value", Kind::JsonText),
];
pub const PARAMETER_DEFAULT: &[&str] = &["component", "name", "value"];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every default column exists, no column is offered twice, and no column is both offered
    /// and declared missing from the API.
    #[test]
    fn tables_are_consistent() {
        let tables: &[(&[Column], &[&str], &[&str])] = &[
            (QUEUE, QUEUE_DEFAULT, QUEUE_NOT_IN_API),
            (EXCHANGE, EXCHANGE_DEFAULT, &[]),
            (BINDING, BINDING_DEFAULT, &[]),
            (CONNECTION, CONNECTION_DEFAULT, &[]),
            (CHANNEL, CHANNEL_DEFAULT, &[]),
            (CONSUMER, CONSUMER_DEFAULT, &[]),
            (USER, USER_DEFAULT, &[]),
            (VHOST, VHOST_DEFAULT, VHOST_NOT_IN_API),
            (PERMISSION, PERMISSION_DEFAULT, &[]),
            (USER_PERMISSION, USER_PERMISSION_DEFAULT, &[]),
            (POLICY, POLICY_DEFAULT, &[]),
            (PARAMETER, PARAMETER_DEFAULT, &[]),
        ];
        for (columns, defaults, missing) in tables {
            for d in *defaults {
                assert!(columns.iter().any(|c| c.name == *d), "default {d}");
            }
            for (i, c) in columns.iter().enumerate() {
                assert!(!columns[..i].iter().any(|o| o.name == c.name), "{}", c.name);
                assert!(!missing.contains(&c.name), "{}", c.name);
            }
        }
    }
}
