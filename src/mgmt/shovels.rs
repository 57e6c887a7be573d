//! The runtime parameters coney keeps (`/api/parameters/{component}/...` for `shovel`,
//! `federation-upstream` and `federation-upstream-set`, and the parameter listings; any other
//! component is unknown, as on a RabbitMQ node without the plugin that registers it) and the
//! shovel_management plugin's status listing (`/api/shovels`, `/api/shovels/{vhost}`), with
//! RabbitMQ 3.10's answers.

use super::{handlers::node_name, Listing, Management};
use crate::broker::parameters::{ParameterError, COMPONENTS};
use crate::definitions::shovel::Source;
use crate::http::auth::{Principal, Tags};
use crate::http::router::Route;
use crate::http::{ApiError, Method, Request, Response, Status};
use crate::shovel::{Shovel, Status as ShovelStatus};
use serde_json::{json, Map, Value};

/// Whether `route` is served here: the parameter listings, the shovel component's
/// parameters, and the status listings.
pub(super) fn serves(route: &Route) -> bool {
    match route {
        Route::Parameters | Route::ParametersComponent { .. } => true,
        Route::ParametersComponentVhost { .. } => true,
        // Every component: one coney does not keep is refused as RabbitMQ refuses a
        // component no plugin registered.
        Route::Parameter { .. } => true,
        Route::Shovels | Route::ShovelsVhost { .. } => true,
        Route::Shovel { .. } | Route::ShovelRestart { .. } => true,
        _ => false,
    }
}

pub(super) fn json_response(v: Value) -> Response<Listing> {
    Response::json(Status::OK, v.to_string().into_bytes())
}

/// RabbitMQ's management API escapes `<` and `>` in error reasons.
fn escape_html(s: &str) -> String {
    s.replace('<', "&lt;").replace('>', "&gt;")
}

fn parameter_json(component: &str, vhost: &str, name: &str, value: &Value) -> Value {
    json!({"value": value, "vhost": vhost, "component": component, "name": name})
}

fn vhost_known(m: &Management<'_>, vhost: &str) -> Result<(), ApiError> {
    m.broker
        .access()
        .vhost(vhost)
        .map(|_| ())
        .ok_or_else(ApiError::not_found)
}

/// Whether `who` sees a vhost's shovels: administrator and monitoring see every vhost,
/// other users the vhosts they have permissions in (RabbitMQ's listing filter).
pub(super) fn sees_vhost(m: &Management<'_>, who: &Principal, vhost: &str) -> bool {
    who.tags.has(Tags::ADMINISTRATOR)
        || who.tags.has(Tags::MONITORING)
        || m.broker.access().grant(&who.user, vhost).is_some()
}

pub(super) fn handle(
    m: &mut Management<'_>,
    req: &Request,
    route: Route,
    who: &Principal,
) -> Result<Response<Listing>, ApiError> {
    match &route {
        Route::ParametersComponentVhost { vhost, .. } | Route::Parameter { vhost, .. }
            if m.broker.access().vhost(vhost).is_some() && !sees_vhost(m, who, vhost) =>
        {
            return Err(ApiError::not_authorised(
                "User not authorised to access object",
            ));
        }
        _ => {}
    }
    let list = |m: &Management<'_>, component: Option<&str>, vhost: Option<&str>| {
        let mut rows: Vec<Value> = Vec::new();
        for c in COMPONENTS
            .iter()
            .filter(|c| component.is_none_or(|w| w == **c))
        {
            rows.extend(
                m.broker
                    .parameters_of(c)
                    .filter(|(v, _, _)| vhost.is_none_or(|w| w == *v) && sees_vhost(m, who, v))
                    .map(|(v, n, val)| parameter_json(c, v, n, val)),
            );
        }
        json_response(Value::Array(rows))
    };
    let restart = matches!(route, Route::ShovelRestart { .. });
    match (route, req.method) {
        (Route::Parameters, _) => Ok(list(m, None, None)),
        (Route::ParametersComponent { component }, _) => Ok(list(m, Some(&component), None)),
        (Route::ParametersComponentVhost { component, vhost }, _) => {
            vhost_known(m, &vhost)?;
            Ok(list(m, Some(&component), Some(&vhost)))
        }
        (
            Route::Parameter {
                component,
                vhost,
                name,
            },
            Method::Put,
        ) => put(m, &component, &vhost, &name, &req.body),
        (
            Route::Parameter {
                component,
                vhost,
                name,
            },
            Method::Delete,
        ) => {
            vhost_known(m, &vhost)?;
            if m.broker.delete_parameter(&component, &vhost, &name) {
                Ok(Response::new(Status::NO_CONTENT))
            } else {
                Err(ApiError::not_found())
            }
        }
        (
            Route::Parameter {
                component,
                vhost,
                name,
            },
            _,
        ) => {
            vhost_known(m, &vhost)?;
            let value = m
                .broker
                .parameter(&component, &vhost, &name)
                .ok_or_else(ApiError::not_found)?;
            Ok(json_response(parameter_json(
                &component, &vhost, &name, value,
            )))
        }
        (Route::Shovels, _) => Ok(status_listing(m, None, who)),
        (Route::ShovelsVhost { vhost }, _) => {
            vhost_known(m, &vhost)?;
            Ok(status_listing(m, Some(&vhost), who))
        }
        (Route::Shovel { vhost, name } | Route::ShovelRestart { vhost, name }, method) => {
            // RabbitMQ 3.10: the shovel must exist among those the user may see, whatever
            // the method; a GET then lists the vhost's shovels, not only this one.
            let mut seen = false;
            m.shovels.each(&mut |s| {
                seen |= s.federation.is_none()
                    && s.kind == crate::shovel::Kind::Dynamic
                    && s.vhost == vhost
                    && s.name == name
            });
            if !seen || !status_visible(m, who, &vhost) {
                return Err(ApiError::not_found());
            }
            match (method, restart) {
                (Method::Delete, true) => {
                    m.shovels.restart(&vhost, &name);
                    Ok(Response::new(Status::NO_CONTENT))
                }
                (Method::Delete, false) => {
                    // Deleting is deleting the parameter: policymaker or administrator, as
                    // DELETE /api/parameters/shovel/V/NAME (RabbitMQ lets monitoring users
                    // do it here; coney keeps monitoring read-only).
                    if !(who.tags.has(Tags::POLICYMAKER) || who.tags.has(Tags::ADMINISTRATOR)) {
                        return Err(ApiError::not_authorised("Not policymaker user"));
                    }
                    m.broker.delete_parameter("shovel", &vhost, &name);
                    Ok(Response::new(Status::NO_CONTENT))
                }
                _ => Ok(status_listing(m, Some(&vhost), who)),
            }
        }
        _ => Err(ApiError::not_found()),
    }
}

fn put(
    m: &mut Management<'_>,
    component: &str,
    vhost: &str,
    name: &str,
    body: &[u8],
) -> Result<Response<Listing>, ApiError> {
    let doc: Value = serde_json::from_slice(body).map_err(|_| ApiError::bad_request("not_json"))?;
    let Some(value) = doc.get("value").cloned() else {
        return Err(ApiError::bad_request("[{key_missing,value}]"));
    };
    if !COMPONENTS.contains(&component) {
        // RabbitMQ looks the vhost up first, then validates (rabbitmqctl set_parameter shows
        // this reason).
        vhost_known(m, vhost)
            .map_err(|_| ApiError::json(Status::NOT_FOUND, "not_found", "vhost_not_found"))?;
        return Err(ApiError::bad_request(escape_html(&format!(
            "Validation failed\n\ncomponent {component} not found\n"
        ))));
    }
    match m.broker.set_parameter(component, vhost, name, value) {
        Ok(true) => Ok(Response::new(Status::CREATED)),
        Ok(false) => Ok(Response::new(Status::NO_CONTENT)),
        Err(ParameterError::NoVhost) => Err(ApiError::json(
            Status::NOT_FOUND,
            "not_found",
            "vhost_not_found",
        )),
        Err(ParameterError::Invalid(lines)) => Err(ApiError::bad_request(escape_html(&format!(
            "Validation failed\n\n{lines}"
        )))),
        Err(ParameterError::TooMany(max)) => Err(ApiError::bad_request(format!(
            "at most {max} parameters of component {component}"
        ))),
    }
}

/// A status row as RabbitMQ 3.10's shovel_management writes it: the definition's ends only
/// while running, the reason when terminated.
fn status_row(s: &Shovel) -> Value {
    let mut o = Map::new();
    o.insert("node".into(), node_name().into());
    o.insert("timestamp".into(), timestamp(s.since_ms).into());
    o.insert("name".into(), s.name.clone().into());
    o.insert("vhost".into(), s.vhost.clone().into());
    o.insert("type".into(), s.kind.name().into());
    o.insert("state".into(), s.status().name().into());
    match s.status() {
        ShovelStatus::Running => {
            let (src, dest) = s.uris();
            o.insert("src_uri".into(), src.into());
            o.insert("src_protocol".into(), "amqp091".into());
            o.insert("dest_protocol".into(), "amqp091".into());
            o.insert("dest_uri".into(), dest.into());
            match &s.spec.source {
                Source::Queue(q) => {
                    o.insert("src_queue".into(), q.clone().into());
                }
                Source::Exchange { exchange, key } => {
                    o.insert("src_exchange".into(), exchange.clone().into());
                    o.insert("src_exchange_key".into(), key.clone().into());
                }
            }
            match (&s.spec.dest_queue, &s.spec.dest_exchange) {
                (Some(q), _) => {
                    o.insert("dest_queue".into(), q.clone().into());
                }
                (None, Some(x)) => {
                    o.insert("dest_exchange".into(), x.clone().into());
                    if let Some(k) = &s.spec.dest_key {
                        o.insert("dest_exchange_key".into(), k.clone().into());
                    }
                }
                (None, None) => {}
            }
        }
        ShovelStatus::Terminated => {
            o.insert("reason".into(), s.reason().unwrap_or("").into());
        }
        ShovelStatus::Starting => {}
    }
    Value::Object(o)
}

/// Whether `who` sees a vhost's shovels in the status listing: RabbitMQ 3.10's
/// shovel_management lists the vhosts the user has permissions in, for administrators and
/// monitoring users too (unlike the parameter listings, where they see every vhost).
fn status_visible(m: &Management<'_>, who: &Principal, vhost: &str) -> bool {
    m.broker.access().grant(&who.user, vhost).is_some()
}

fn status_listing(m: &Management<'_>, vhost: Option<&str>, who: &Principal) -> Response<Listing> {
    let mut rows = Vec::new();
    m.shovels.each(&mut |s| {
        if s.federation.is_none()
            && vhost.is_none_or(|v| v == s.vhost)
            && status_visible(m, who, &s.vhost)
        {
            rows.push(status_row(s));
        }
    });
    json_response(Value::Array(rows))
}

/// "YYYY-MM-DD HH:MM:SS" (UTC) as RabbitMQ's shovel status shows the last change.
pub(super) fn timestamp(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_civil_dates() {
        assert_eq!(timestamp(0), "1970-01-01 00:00:00");
        assert_eq!(timestamp(1_796_318_715_000), "2026-12-03 17:25:15");
    }
}
