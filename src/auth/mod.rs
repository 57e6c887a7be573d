//! Access control as RabbitMQ's internal backend does it: password hashes (password.rs),
//! permission patterns (pattern.rs), users, vhosts and permissions (users.rs), and the
//! per-operation checks with RabbitMQ's refusal texts (check.rs). Pure data: no sockets, no
//! broker; the session calls it at login, connection.open and each operation.
//!
//! Not yet called by the session or broker: wiring it in is issue 12's next step.

pub mod base64;
pub mod cert_subject;
pub mod check;
pub mod internal;
pub mod password;
pub mod pattern;
pub mod users;

pub use check::{Access, Refusal, Resource, ResourceKind, SourceExchange, VhostGrant};
pub use password::{HashingAlgorithm, PasswordError, PasswordHash};
pub use pattern::{PatternError, PermissionPattern};
pub use users::{
    AccessControl, AccessError, LoginRefused, Permission, TopicPermission, User, UserLimits,
    UserTag, Vhost, VhostLimits,
};
