//! The federation_management plugin's status listing (`/api/federation-links`,
//! `/api/federation-links/{vhost}`): one row per federation link with RabbitMQ 3.10's field
//! names (observed on a 3.10.8 node): starting, running (with the local connection), or
//! error (with the reason, until the next attempt).

use super::handlers::node_name;
use super::shovels::{json_response, sees_vhost, timestamp};
use super::{Listing, Management};
use crate::client::uri;
use crate::http::auth::Principal;
use crate::http::router::Route;
use crate::http::{ApiError, Response};
use crate::shovel::{Shovel, Status};
use serde_json::{Map, Value};

pub(super) fn serves(route: &Route) -> bool {
    matches!(
        route,
        Route::FederationLinks | Route::FederationLinksVhost { .. }
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

pub(super) fn handle(
    m: &Management<'_>,
    route: Route,
    who: &Principal,
) -> Result<Response<Listing>, ApiError> {
    let vhost = match route {
        Route::FederationLinksVhost { vhost } => {
            if m.broker.access().vhost(&vhost).is_none() {
                return Err(ApiError::not_found());
            }
            Some(vhost)
        }
        _ => None,
    };
    let mut rows = Vec::new();
    m.shovels.each(&mut |s| {
        if vhost.as_deref().is_none_or(|v| v == s.vhost) && sees_vhost(m, who, &s.vhost) {
            rows.extend(row(s));
        }
    });
    Ok(json_response(Value::Array(rows)))
}
