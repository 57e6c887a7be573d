//! Vhost and user limits through the API (`/api/vhost-limits`, `/api/user-limits`), with
//! RabbitMQ 3.10's answers (observed on a 3.10.8 node): listings of the vhosts or users that
//! have limits, PUT of one limit (`{"value": N}`, 204 whether new or not) and DELETE of one
//! (204 whether it was set or not). The limits themselves are the access tables' and act at
//! the next connection.open, queue.declare or channel.open.

use super::handlers::{body_json, json_array};
use super::Management;
use crate::auth::users::{UserLimits, VhostLimits};
use crate::http::auth::{Principal, Tags};
use crate::http::json::{Filter, ObjectWriter};
use crate::http::{ApiError, Response, Status};
use serde_json::Value;

/// A JSON value as Erlang prints the term RabbitMQ decoded it to, for its validation texts.
fn erlang_term(v: &Value) -> String {
    match v {
        Value::String(s) => format!("<<\"{s}\">>"),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

/// The `value` of a PUT: a whole number, else RabbitMQ's reason (which `wrap` dresses as the
/// endpoint does). A fraction is refused too: coney's limits are counts.
fn limit_value(body: &[u8], name: &str, wrap: impl Fn(String) -> String) -> Result<i64, ApiError> {
    let doc = body_json(body)?;
    let Some(v) = doc.get("value") else {
        return Err(ApiError::bad_request("[{key_missing,value}]"));
    };
    match v {
        Value::Number(n) => n.as_i64().ok_or_else(|| {
            ApiError::bad_request(wrap(format!(
                "{name} should be a whole number, actually was {n}"
            )))
        }),
        other => Err(ApiError::bad_request(wrap(format!(
            "{name} should be a number, actually was {}",
            erlang_term(other)
        )))),
    }
}

fn unrecognised(name: &str, value: &[u8], what: &str) -> String {
    let v = body_json(value)
        .ok()
        .and_then(|d| d.get("value").map(erlang_term))
        .unwrap_or_else(|| "undefined".into());
    format!("Unrecognised terms [{{<<\"{name}\">>,{v}}}] in {what}")
}

fn write_pairs(o: &mut ObjectWriter<'_, '_>, pairs: &[(&str, Option<i64>)]) {
    o.object("value", |v| {
        for (k, n) in pairs {
            if let Some(n) = n {
                v.i64(k, *n);
            }
        }
    });
}

fn vhost_pairs(l: &VhostLimits) -> [(&'static str, Option<i64>); 2] {
    [
        ("max-connections", l.max_connections),
        ("max-queues", l.max_queues),
    ]
}

fn user_pairs(l: &UserLimits) -> [(&'static str, Option<i64>); 2] {
    [
        ("max-connections", l.max_connections),
        ("max-channels", l.max_channels),
    ]
}

/// GET /api/vhost-limits[/V]: the vhosts with limits the user may see (administrator and
/// monitoring every one, others those they have permissions in); a missing vhost is 404.
pub(super) fn vhost_limits<S>(
    m: &Management<'_>,
    who: &Principal,
    only: Option<&str>,
) -> Result<Response<S>, ApiError> {
    let access = m.broker.access();
    if only.is_some_and(|v| access.vhost(v).is_none()) {
        return Err(ApiError::not_found());
    }
    let all = who.tags.has(Tags::ADMINISTRATOR) || who.tags.has(Tags::MONITORING);
    let rows = access.vhosts().filter(|v| {
        only.is_none_or(|o| o == v.name)
            && !v.limits.is_empty()
            && (all || access.grant(&who.user, &v.name).is_some())
    });
    Ok(json_array(rows, |out, v| {
        let mut o = ObjectWriter::item(out, Filter::All);
        o.str("vhost", &v.name);
        write_pairs(&mut o, &vhost_pairs(&v.limits));
        o.end();
    }))
}

/// PUT or DELETE (`value` None) /api/vhost-limits/V/NAME.
pub(super) fn set_vhost_limit<S>(
    m: &mut Management<'_>,
    vhost: &str,
    name: &str,
    body: Option<&[u8]>,
) -> Result<Response<S>, ApiError> {
    let validation = |r: String| format!("Validation failed\n\n{r}\n");
    let value = match body {
        Some(b) => Some(limit_value(b, name, validation)?),
        None => None,
    };
    let Some(mut v) = m.broker.access().vhost(vhost).cloned() else {
        return Err(ApiError::json(
            Status::NOT_FOUND,
            "not_found",
            "vhost_not_found",
        ));
    };
    match name {
        "max-connections" => v.limits.max_connections = value,
        "max-queues" => v.limits.max_queues = value,
        _ if body.is_none() => return Ok(Response::new(Status::NO_CONTENT)),
        _ => {
            let text = unrecognised(name, body.unwrap_or_default(), "limits");
            return Err(ApiError::bad_request(validation(text)));
        }
    }
    m.broker.add_vhost(v);
    Ok(Response::new(Status::NO_CONTENT))
}

/// GET /api/user-limits[/U]: the users with limits (administrator and monitoring see every
/// user, others themselves); a missing user is 404.
pub(super) fn user_limits<S>(
    m: &Management<'_>,
    who: &Principal,
    only: Option<&str>,
) -> Result<Response<S>, ApiError> {
    let access = m.broker.access();
    if only.is_some_and(|u| access.user(u).is_none()) {
        return Err(ApiError::not_found());
    }
    let all = who.tags.has(Tags::ADMINISTRATOR) || who.tags.has(Tags::MONITORING);
    let mut users: Vec<_> = access
        .users()
        .filter(|u| only.is_none_or(|o| o == u.name))
        .filter(|u| u.limits != UserLimits::default() && (all || u.name == who.user))
        .collect();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(json_array(users, |out, u| {
        let mut o = ObjectWriter::item(out, Filter::All);
        o.str("user", &u.name);
        write_pairs(&mut o, &user_pairs(&u.limits));
        o.end();
    }))
}

/// PUT or DELETE (`value` None) /api/user-limits/U/NAME.
pub(super) fn set_user_limit<S>(
    m: &mut Management<'_>,
    user: &str,
    name: &str,
    body: Option<&[u8]>,
) -> Result<Response<S>, ApiError> {
    let value = match body {
        Some(b) => Some(limit_value(b, name, |r| r)?),
        None => None,
    };
    let Some(mut u) = m.broker.access().user(user).cloned() else {
        if body.is_none() {
            return Ok(Response::new(Status::NO_CONTENT));
        }
        // RabbitMQ 3.10's reason is the JSON list ["no_such_user", USER]; the API's errors
        // carry text, so coney says the same as one string.
        return Err(ApiError::bad_request(format!("no_such_user {user}")));
    };
    match name {
        "max-connections" => u.limits.max_connections = value,
        "max-channels" => u.limits.max_channels = value,
        _ if body.is_none() => return Ok(Response::new(Status::NO_CONTENT)),
        _ => {
            let text = unrecognised(name, body.unwrap_or_default(), "user-limits");
            return Err(ApiError::bad_request(text));
        }
    }
    m.broker.put_user(u);
    Ok(Response::new(Status::NO_CONTENT))
}
