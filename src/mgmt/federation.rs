//! The federation_management plugin's endpoints: the status listing (`/api/federation-links`,
//! `/api/federation-links/{vhost}`, and their `/state/down` forms), one row per federation
//! link with RabbitMQ 3.10's field names (observed on a 3.10.8 node): starting, running (with
//! the local connection), or error (with the reason, until the next attempt); and a link's
//! restart (`DELETE /api/federation-links/vhost/{vhost}/{id}/{node}/restart`).

use super::handlers::node_name;
use super::shovels::{json_response, timestamp};
use super::{Listing, Management};
use crate::client::uri;
use crate::http::auth::{Principal, Tags};
use crate::http::router::Route;
use crate::http::{ApiError, Method, Response, Status as HttpStatus};
use crate::shovel::{Shovel, Status};
use serde_json::{Map, Value};

pub(super) fn serves(route: &Route) -> bool {
    matches!(
        route,
        Route::FederationLinks
            | Route::FederationLinksVhost { .. }
            | Route::FederationLinksDown
            | Route::FederationLinksVhostDown { .. }
            | Route::FederationLinkRestart { .. }
    )
}

fn row(s: &Shovel) -> Option<Value> {
    let f = s.federation.as_ref()?;
    let mut o = Map::new();
    o.insert("node".into(), node_name().into());
    o.insert("exchange".into(), f.exchange.clone().into());
    o.insert(
        "upstream_exchange".into(),
        f.upstream_exchange.clone().into(),
    );
    o.insert("type".into(), "exchange".into());
    o.insert("vhost".into(), f.vhost.clone().into());
    o.insert("upstream".into(), f.upstream.clone().into());
    o.insert("id".into(), f.id.clone().into());
    let status = match s.status() {
        Status::Starting => "starting",
        Status::Running => "running",
        Status::Terminated => "error",
    };
    o.insert("status".into(), status.into());
    if s.status() == Status::Running {
        if let Some(c) = &f.local_connection {
            o.insert("local_connection".into(), c.clone().into());
        }
    }
    o.insert("uri".into(), uri::redact(&f.uri).into());
    o.insert("timestamp".into(), timestamp(s.since_ms).into());
    if s.status() == Status::Terminated {
        o.insert("error".into(), s.reason().unwrap_or("").into());
    }
    Some(Value::Object(o))
}

/// Whether `who` sees a vhost's links: administrators every vhost, other users the vhosts
/// they have permissions in (RabbitMQ's `filter_vhost`; monitoring users included).
fn visible(m: &Management<'_>, who: &Principal, vhost: &str) -> bool {
    who.tags.has(Tags::ADMINISTRATOR) || m.broker.access().grant(&who.user, vhost).is_some()
}

pub(super) fn handle(
    m: &mut Management<'_>,
    method: Method,
    route: Route,
    who: &Principal,
) -> Result<Response<Listing>, ApiError> {
    let known = |m: &Management<'_>, v: &str| m.broker.access().vhost(v).is_some();
    let (vhost, down_only) = match route {
        Route::FederationLinks => (None, false),
        Route::FederationLinksDown => (None, true),
        Route::FederationLinksVhost { vhost } | Route::FederationLinksVhostDown { vhost }
            if !known(m, &vhost) =>
        {
            return Err(ApiError::not_found())
        }
        Route::FederationLinksVhost { vhost } => (Some(vhost), false),
        Route::FederationLinksVhostDown { vhost } => (Some(vhost), true),
        Route::FederationLinkRestart { vhost, id, node } => {
            // RabbitMQ 3.10 looks the link up by id on the named node; the vhost must exist
            // but is not matched against the link's. A GET lists the vhost's links.
            let mut found = false;
            m.shovels
                .each(&mut |s| found |= s.federation.as_ref().is_some_and(|f| f.id == id));
            if !known(m, &vhost) || node != node_name() || !found {
                return Err(ApiError::not_found());
            }
            if method == Method::Delete {
                m.shovels.restart_link(&id);
                return Ok(Response::new(HttpStatus::NO_CONTENT));
            }
            (Some(vhost), false)
        }
        _ => return Err(ApiError::not_found()),
    };
    let mut rows = Vec::new();
    m.shovels.each(&mut |s| {
        // RabbitMQ's "down": neither running nor starting.
        if vhost.as_deref().is_none_or(|v| v == s.vhost)
            && visible(m, who, &s.vhost)
            && !(down_only && s.status() != Status::Terminated)
        {
            rows.extend(row(s));
        }
    });
    Ok(json_response(Value::Array(rows)))
}
