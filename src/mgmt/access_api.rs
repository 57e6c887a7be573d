//! Vhosts, users, permissions and definitions over the API: reads need a management tag,
//! changes need administrator (RabbitMQ's rules); every change goes through the broker's own
//! verbs, so it is persisted and takes effect on open connections as `rabbitmqctl` would.

use super::handlers::{body_json, created_or_replaced, json_array, json_ok};
use super::Management;
use crate::auth::users::{User, UserTag, Vhost};
use crate::definitions::document::Definitions;
use crate::http::json::{Filter, ObjectWriter};
use crate::http::{ApiError, Response, Status};
use serde_json::Value;

pub(super) fn vhosts<S>(m: &Management<'_>, only: Option<&str>) -> Result<Response<S>, ApiError> {
    let access = m.broker.access();
    let mut names: Vec<&Vhost> = access
        .vhosts()
        .filter(|v| only.is_none_or(|o| o == v.name))
        .collect();
    if only.is_some() && names.is_empty() {
        return Err(ApiError::not_found());
    }
    names.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::new();
    if only.is_none() {
        out.push(b'[');
    }
    for (i, v) in names.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let mut o = ObjectWriter::item(&mut out, Filter::All);
        o.str("description", &v.description)
            .str("name", &v.name)
            .array("tags", |a| {
                for t in &v.tags {
                    a.str(t);
                }
            })
            .bool("tracing", false);
        o.end();
    }
    if only.is_none() {
        out.push(b']');
    }
    Ok(json_ok(out))
}

pub(super) fn put_vhost<S>(
    m: &mut Management<'_>,
    name: &str,
    body: &[u8],
) -> Result<Response<S>, ApiError> {
    let doc = if body.is_empty() {
        Value::Object(Default::default())
    } else {
        body_json(body)?
    };
    let existed = m.broker.access().vhost(name).is_some();
    let mut v = m
        .broker
        .access()
        .vhost(name)
        .cloned()
        .unwrap_or_else(|| Vhost::new(name));
    if let Some(d) = doc.get("description").and_then(Value::as_str) {
        v.description = d.to_owned();
    }
    if let Some(t) = doc.get("tags") {
        v.tags = match t {
            Value::String(s) => s
                .split(',')
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect(),
            Value::Array(a) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => v.tags,
        };
    }
    m.broker.add_vhost(v);
    Ok(Response::new(if existed {
        Status::NO_CONTENT
    } else {
        Status::CREATED
    }))
}

pub(super) fn delete_vhost<S>(m: &mut Management<'_>, name: &str) -> Result<Response<S>, ApiError> {
    if m.broker.delete_vhost(name) {
        Ok(Response::new(Status::NO_CONTENT))
    } else {
        Err(ApiError::not_found())
    }
}

fn write_user(out: &mut Vec<u8>, u: &User) {
    let mut o = ObjectWriter::item(out, Filter::All);
    o.str(
        "hashing_algorithm",
        &format!("rabbit_password_hashing_{}", u.password.algorithm().name()),
    )
    .str("name", &u.name)
    .str("password_hash", &u.password.to_base64())
    .array("tags", |a| {
        for t in &u.tags {
            a.str(t.name());
        }
    })
    // RabbitMQ 3.10 shows the user's limits with the user, `{}` without any.
    .object("limits", |l| {
        for (k, n) in [
            ("max-connections", u.limits.max_connections),
            ("max-channels", u.limits.max_channels),
        ] {
            if let Some(n) = n {
                l.i64(k, n);
            }
        }
    });
    o.end();
}

pub(super) fn users<S>(m: &Management<'_>, only: Option<&str>) -> Result<Response<S>, ApiError> {
    let access = m.broker.access();
    if let Some(name) = only {
        let u = access.user(name).ok_or_else(ApiError::not_found)?;
        let mut out = Vec::new();
        write_user(&mut out, u);
        return Ok(json_ok(out));
    }
    let mut list: Vec<&User> = access.users().collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(json_array(list, write_user))
}

/// PUT /api/users/NAME: `password` (hashed here) or `password_hash`, and `tags` as a comma
/// list or an array. RabbitMQ 3.10 requires one of the two password keys for a new user.
pub(super) fn put_user<S>(
    m: &mut Management<'_>,
    name: &str,
    body: &[u8],
) -> Result<Response<S>, ApiError> {
    let doc = body_json(body)?;
    let tags: Vec<UserTag> = match doc.get("tags") {
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(UserTag::parse)
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(UserTag::parse)
            .collect(),
        _ => Vec::new(),
    };
    let existing = m.broker.access().user(name).cloned();
    let mut user = match (
        doc.get("password").and_then(Value::as_str),
        doc.get("password_hash").and_then(Value::as_str),
    ) {
        (Some(p), _) => User::with_password(name, p, tags.clone())
            .map_err(|e| ApiError::bad_request(e.to_string()))?,
        (None, Some(h)) => {
            use crate::auth::password::{HashingAlgorithm, PasswordHash};
            let algo = existing
                .as_ref()
                .map_or(HashingAlgorithm::DEFAULT, |u| u.password.algorithm());
            User {
                name: name.to_owned(),
                password: PasswordHash::from_base64(algo, h)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?,
                tags: Vec::new(),
                limits: Default::default(),
            }
        }
        (None, None) => match existing.clone() {
            Some(u) => u,
            None => {
                return Err(ApiError::bad_request(
                    "key_missing: password or password_hash",
                ))
            }
        },
    };
    user.tags = tags;
    if let Some(old) = &existing {
        user.limits = old.limits.clone();
    }
    m.broker.put_user(user);
    Ok(Response::new(if existing.is_some() {
        Status::NO_CONTENT
    } else {
        Status::CREATED
    }))
}

pub(super) fn delete_user<S>(m: &mut Management<'_>, name: &str) -> Result<Response<S>, ApiError> {
    if m.broker.delete_user(name) {
        Ok(Response::new(Status::NO_CONTENT))
    } else {
        Err(ApiError::not_found())
    }
}

/// Permissions, all or filtered by vhost and/or user.
pub(super) fn permissions<S>(
    m: &Management<'_>,
    vhost: Option<&str>,
    user: Option<&str>,
    single: bool,
) -> Result<Response<S>, ApiError> {
    let access = m.broker.access();
    // A user's or vhost's permissions when it does not exist: 404, as RabbitMQ 3.10.
    if user.is_some_and(|u| access.user(u).is_none())
        || vhost.is_some_and(|v| access.vhost(v).is_none())
    {
        return Err(ApiError::not_found());
    }
    let mut rows: Vec<(&str, &str, &crate::auth::users::Permission)> = access
        .permissions()
        .filter(|(u, v, _)| user.is_none_or(|x| x == *u) && vhost.is_none_or(|x| x == *v))
        .collect();
    rows.sort_by(|a, b| (a.1, a.0).cmp(&(b.1, b.0)));
    let write = |out: &mut Vec<u8>, (u, v, p): &(&str, &str, &crate::auth::users::Permission)| {
        let mut o = ObjectWriter::item(out, Filter::All);
        o.str("configure", p.configure.source())
            .str("read", p.read.source())
            .str("user", u)
            .str("vhost", v)
            .str("write", p.write.source());
        o.end();
    };
    let mut out = Vec::new();
    if single {
        let row = rows.first().ok_or_else(ApiError::not_found)?;
        write(&mut out, row);
        return Ok(json_ok(out));
    }
    out.push(b'[');
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(&mut out, r);
    }
    out.push(b']');
    Ok(json_ok(out))
}

pub(super) fn put_permission<S>(
    m: &mut Management<'_>,
    vhost: &str,
    user: &str,
    body: &[u8],
) -> Result<Response<S>, ApiError> {
    let doc = body_json(body)?;
    let get = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or("");
    if m.broker.access().vhost(vhost).is_none() || m.broker.access().user(user).is_none() {
        // RabbitMQ 3.10's answer for either (coneyctl asks which, as rabbitmqctl tells).
        return Err(ApiError::bad_request("vhost_or_user_not_found"));
    }
    let existed = m
        .broker
        .access()
        .permissions()
        .any(|(u, v, _)| u == user && v == vhost);
    m.broker
        .set_permissions(user, vhost, get("configure"), get("write"), get("read"))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(created_or_replaced(existed))
}

pub(super) fn delete_permission<S>(
    m: &mut Management<'_>,
    vhost: &str,
    user: &str,
) -> Result<Response<S>, ApiError> {
    if m.broker.clear_permissions(user, vhost) {
        Ok(Response::new(Status::NO_CONTENT))
    } else {
        Err(ApiError::not_found())
    }
}

/// The users without any permission entry (`/api/users/without-permissions`).
pub(super) fn users_without_permissions<S>(m: &Management<'_>) -> Response<S> {
    let access = m.broker.access();
    let mut list: Vec<&User> = access
        .users()
        .filter(|u| !access.permissions().any(|(n, _, _)| n == u.name))
        .collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    json_array(list, write_user)
}

/// Topic permissions: all, a vhost's, a user's, or one user's in one vhost (`single`: 404
/// when there are none, as RabbitMQ 3.10; the others list `[]`). A user or vhost named that
/// does not exist is 404.
pub(super) fn topic_permissions<S>(
    m: &Management<'_>,
    vhost: Option<&str>,
    user: Option<&str>,
    single: bool,
) -> Result<Response<S>, ApiError> {
    let access = m.broker.access();
    if user.is_some_and(|u| access.user(u).is_none())
        || vhost.is_some_and(|v| access.vhost(v).is_none())
    {
        return Err(ApiError::not_found());
    }
    let rows: Vec<_> = access
        .topic_permissions()
        .filter(|(u, v, _, _)| user.is_none_or(|x| x == *u) && vhost.is_none_or(|x| x == *v))
        .collect();
    if single && rows.is_empty() {
        return Err(ApiError::not_found());
    }
    Ok(json_array(rows, |out, (u, v, x, p)| {
        let mut o = ObjectWriter::item(out, Filter::All);
        o.str("user", u)
            .str("vhost", v)
            .str("exchange", x)
            .str("write", p.write_source())
            .str("read", p.read_source());
        o.end();
    }))
}

/// PUT /api/topic-permissions/V/U: `exchange`, `write` and `read`, each required (RabbitMQ
/// 3.10's `[{key_missing,K}]` text names the missing ones); 201 when the user had no topic
/// permission in the vhost, 204 otherwise (RabbitMQ counts per user and vhost).
pub(super) fn put_topic_permission<S>(
    m: &mut Management<'_>,
    vhost: &str,
    user: &str,
    body: &[u8],
) -> Result<Response<S>, ApiError> {
    let doc = body_json(body)?;
    let missing: Vec<String> = ["exchange", "write", "read"]
        .iter()
        .filter(|k| doc.get(**k).is_none())
        .map(|k| format!("{{key_missing,{k}}}"))
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::bad_request(format!("[{}]", missing.join(","))));
    }
    let text = |k: &str| match doc.get(k) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(ApiError::bad_request(format!("{k} must be a string"))),
    };
    let (exchange, write, read) = (text("exchange")?, text("write")?, text("read")?);
    if m.broker.access().vhost(vhost).is_none() || m.broker.access().user(user).is_none() {
        return Err(ApiError::bad_request("vhost_or_user_not_found"));
    }
    let existed = m
        .broker
        .access()
        .topic_permissions()
        .any(|(u, v, _, _)| u == user && v == vhost);
    m.broker
        .set_topic_permissions(user, vhost, &exchange, &write, &read)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(created_or_replaced(existed))
}

/// DELETE /api/topic-permissions/V/U: every topic permission of the user in the vhost.
pub(super) fn delete_topic_permission<S>(
    m: &mut Management<'_>,
    vhost: &str,
    user: &str,
) -> Result<Response<S>, ApiError> {
    if m.broker.clear_topic_permissions(user, vhost) {
        Ok(Response::new(Status::NO_CONTENT))
    } else {
        Err(ApiError::not_found())
    }
}

pub(super) fn definitions<S>(
    m: &Management<'_>,
    vhost: Option<&str>,
) -> Result<Response<S>, ApiError> {
    let mut d = m.broker.export_definitions().map_err(|e| {
        ApiError::json(
            Status::INTERNAL_SERVER_ERROR,
            "internal_error",
            e.to_string(),
        )
    })?;
    if let Some(v) = vhost {
        if m.broker.access().vhost(v).is_none() {
            return Err(ApiError::not_found());
        }
        d.queues.retain(|q| q.vhost == v);
        d.exchanges.retain(|x| x.vhost == v);
        d.bindings.retain(|b| b.vhost == v);
        d.policies.retain(|p| p.vhost == v);
        d.users.clear();
        d.vhosts.clear();
        d.permissions.clear();
        d.topic_permissions.clear();
    }
    Ok(json_ok(d.to_json().into_bytes()))
}

/// POST /api/definitions: RabbitMQ's import (all or nothing as far as the document's own
/// checks go; entities that exist already are skipped as RabbitMQ skips them).
pub(super) fn import_definitions<S>(
    m: &mut Management<'_>,
    body: &[u8],
) -> Result<Response<S>, ApiError> {
    let doc = Definitions::parse(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    m.broker
        .import_definitions(&doc, false)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Response::new(Status::NO_CONTENT))
}
