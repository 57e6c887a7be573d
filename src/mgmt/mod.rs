//! The management API and the Prometheus endpoint as an `http::Service`: what each route
//! reads from the broker and the sessions, and which action it asks of them. Above `session`
//! in the layers (it lists connections); no sockets — the reactor hands it each request.
//!
//! A `Management` is built per call from borrows of the reactor's state, so it holds no state
//! of its own beyond what `Stats` keeps between calls (rate samples).

mod access_api;
mod actions;
pub mod conns;
mod federation;
mod handlers;
mod limits_api;
mod metrics;
mod node;
mod objects;
mod policies_api;
mod shovels;
pub mod stats;
mod web;

use crate::auth::LoginRefused;
use crate::broker::Broker;
use crate::config::Config;
use crate::http::auth::{authorize, AuthError, Authenticator, Need, Principal, Tags};
use crate::http::paginate::ListingStream;
use crate::http::router::{self, Dispatch};
use crate::http::{ApiError, Method, Progress, Request, Response, Service, Status};
pub use conns::{ConnRow, Connections};
pub(crate) use handlers::node_name;
pub use stats::Stats;
use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// The management API and web page (15672).
    Api,
    /// Prometheus metrics (15692).
    Metrics,
}

/// A listing written across loop turns: the rows as they were when the request arrived
/// (RabbitMQ's listings are a snapshot too), the order the listing rules chose, and the
/// `columns` selection.
pub struct Listing {
    rows: handlers::Rows,
    stream: ListingStream,
    columns: Option<crate::http::json::Columns>,
}

pub struct Management<'a> {
    pub endpoint: Endpoint,
    pub broker: &'a mut Broker,
    pub conns: &'a mut dyn Connections,
    pub config: &'a Config,
    pub stats: &'a Stats,
    /// Each listener's protocol (RabbitMQ's names: amqp, http, http/prometheus) and address.
    pub listeners: &'a [(&'static str, SocketAddr)],
    /// Resource alarms and what they measured last.
    pub alarms: &'a crate::resources::Alarms,
    /// The shovels, for their status and restarts.
    pub shovels: &'a mut dyn crate::shovel::ShovelList,
    /// The loop turn's clock.
    pub now: Instant,
}

impl Service for Management<'_> {
    type Stream = Listing;

    fn respond(&mut self, req: &Request, peer: SocketAddr) -> Response<Listing> {
        // The page's files, like RabbitMQ's static files, need no login; the API they call does.
        if self.endpoint == Endpoint::Api && matches!(req.method, Method::Get | Method::Head) {
            if let Some(page) = web::file(&req.segments) {
                return page;
            }
        }
        match self.endpoint {
            Endpoint::Metrics => metrics::respond(self, req),
            Endpoint::Api => match router::dispatch(req.method, &req.segments) {
                Dispatch::Refuse(e) => e.into_response(),
                Dispatch::Options { allow } => Response::new(Status::OK).header("allow", allow),
                Dispatch::Route(route) => match handlers::handle(self, req, peer, route) {
                    Ok(r) => r,
                    Err(e) => e.into_response(),
                },
            },
        }
    }

    fn produce(&mut self, l: &mut Listing, out: &mut Vec<u8>, budget: usize) -> Progress {
        let filter = crate::http::json::Filter::from(l.columns.as_ref());
        let rows = &l.rows;
        l.stream
            .produce(out, budget, |out, i| rows.write(out, i, filter))
    }
}

/// The users the API logs in: the broker's users table, checked as the AMQP handshake checks
/// it (password hash, `loopback_users`), with the user's tags.
struct Users<'a>(&'a Broker);

impl Authenticator for Users<'_> {
    fn authenticate(&self, user: &str, pass: &str, peer: &SocketAddr) -> Result<Tags, AuthError> {
        let loopback = peer.ip().is_loopback();
        match self
            .0
            .access()
            .authenticate(user, pass.as_bytes(), loopback)
        {
            Ok(u) => Ok(u
                .tags
                .iter()
                .fold(Tags::NONE, |t, tag| t.with(Tags::parse(tag.name())))),
            Err(LoginRefused::InvalidCredentials { .. }) => Err(AuthError::LoginFailed),
            Err(LoginRefused::LoopbackOnly { .. }) => Err(AuthError::NotLoopback),
        }
    }
}

impl Management<'_> {
    fn authorize(
        &self,
        req: &Request,
        peer: SocketAddr,
        need: Need,
    ) -> Result<Principal, ApiError> {
        authorize(&req.authorization, &peer, &Users(self.broker), need)
    }
}

/// Milliseconds since the epoch, as RabbitMQ's timestamps in the API.
fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
