//! HTTP for the management API and Prometheus metrics, as pure code a reactor drives: no
//! sockets, no clock reads. `conn` is the HTTP/1.1 connection state machine (bytes in, bytes
//! out, deadlines), `request`/`response`/`status` its vocabulary, `router` RabbitMQ's
//! management paths, `paginate` and `json` its listing rules and object writers, `auth` Basic
//! credentials and tags, `prometheus` the text exposition format.

pub mod auth;
pub mod conn;
pub mod error;
pub mod json;
pub mod paginate;
pub mod prometheus;
#[cfg(test)]
mod replay;
pub mod request;
pub mod response;
pub mod router;
pub mod status;

pub use conn::{HttpConn, Service};
pub use error::ApiError;
pub use request::{Method, Request};
pub use response::{Body, Progress, Response};
pub use status::Status;
