//! RabbitMQ's definitions format: the JSON document (document.rs), queue/exchange/binding
//! arguments between JSON and AMQP field tables (arguments.rs), and users, vhosts and
//! permissions between the document and `auth::AccessControl` (access.rs). No files, no
//! broker: callers bring the bytes and apply the entities.
//!
//! Not yet used by the broker or the config loader: that is issue 12's next step (import at
//! start from `load_definitions`, export to a file) and issue 14's (migration).

pub mod access;
pub mod arguments;
pub mod document;

pub use access::{export_access, import_access, ImportError};
pub use arguments::{json_to_table, table_to_json, ArgumentError};
pub use document::{Definitions, DefinitionsError};
pub mod federation;
pub mod shovel;
