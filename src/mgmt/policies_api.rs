//! /api/policies: list, show, set and clear policies with RabbitMQ 3.10's rules: listing needs
//! a management tag and shows the vhosts the user may use; one policy, set or cleared, needs
//! policymaker (or administrator) and access to its vhost.

use super::handlers::body_json;
use super::Management;
use crate::broker::policy::Policy;
use crate::http::json::{Filter, ObjectWriter};
use crate::http::{ApiError, Response, Status};
use serde_json::Value;
use std::rc::Rc;

const NOT_AUTHORISED_OBJECT: &str = "User not authorised to access object";
const NOT_AUTHORISED_VHOST: &str = "User not authorised to access virtual host";

/// One policy in RabbitMQ's key order (vhost, name, pattern, apply-to, definition, priority).
fn write_policy(out: &mut Vec<u8>, p: &Policy) {
    let mut o = ObjectWriter::item(out, Filter::All);
    o.str("vhost", &p.vhost)
        .str("name", &p.name)
        .str("pattern", &p.pattern)
        .str("apply-to", p.apply_to.name())
        .value("definition", &Value::Object(p.definition.clone()))
        .i64("priority", p.priority);
    o.end();
}

fn array<S>(items: &[Rc<Policy>]) -> Response<S> {
    let mut out = b"[".to_vec();
    for (i, p) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_policy(&mut out, p);
    }
    out.push(b']');
    Response::json(Status::OK, out)
}

/// GET /api/policies and /api/policies/{vhost}.
pub(super) fn list<S>(
    m: &Management<'_>,
    user: &str,
    vhost: Option<&str>,
) -> Result<Response<S>, ApiError> {
    if let Some(v) = vhost {
        if m.broker.access().vhost(v).is_none() {
            return Err(ApiError::not_found());
        }
        if m.broker.api_actor(user, v).is_none() {
            return Err(ApiError::not_authorised(NOT_AUTHORISED_VHOST));
        }
    }
    let mut items = m.broker.policies(vhost);
    items.retain(|p| m.broker.api_actor(user, &p.vhost).is_some());
    Ok(array(&items))
}

/// GET /api/policies/{vhost}/{name}.
pub(super) fn show<S>(
    m: &Management<'_>,
    user: &str,
    vhost: &str,
    name: &str,
) -> Result<Response<S>, ApiError> {
    if m.broker.access().vhost(vhost).is_none() {
        return Err(ApiError::not_found());
    }
    if m.broker.api_actor(user, vhost).is_none() {
        return Err(ApiError::not_authorised(NOT_AUTHORISED_OBJECT));
    }
    let p = m
        .broker
        .policies(Some(vhost))
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(ApiError::not_found)?;
    let mut out = Vec::new();
    write_policy(&mut out, &p);
    Ok(Response::json(Status::OK, out))
}

/// PUT /api/policies/{vhost}/{name}: 201 when new, 204 when replaced.
pub(super) fn put<S>(
    m: &mut Management<'_>,
    user: &str,
    vhost: &str,
    name: &str,
    body: &[u8],
) -> Result<Response<S>, ApiError> {
    let doc = body_json(body)?;
    if m.broker.access().vhost(vhost).is_none() {
        return Err(ApiError::json(
            Status::NOT_FOUND,
            "not_found",
            "vhost_not_found",
        ));
    }
    if m.broker.api_actor(user, vhost).is_none() {
        return Err(ApiError::not_authorised(NOT_AUTHORISED_OBJECT));
    }
    let p = Policy::from_json(vhost, name, &doc).map_err(|e| ApiError::bad_request(e.0))?;
    let created = m.broker.put_policy(p);
    Ok(Response::new(if created {
        Status::CREATED
    } else {
        Status::NO_CONTENT
    }))
}

/// DELETE /api/policies/{vhost}/{name}.
pub(super) fn delete<S>(
    m: &mut Management<'_>,
    user: &str,
    vhost: &str,
    name: &str,
) -> Result<Response<S>, ApiError> {
    if m.broker.access().vhost(vhost).is_none() {
        return Err(ApiError::not_found());
    }
    if m.broker.api_actor(user, vhost).is_none() {
        return Err(ApiError::not_authorised(NOT_AUTHORISED_OBJECT));
    }
    if m.broker.delete_policy(vhost, name) {
        Ok(Response::new(Status::NO_CONTENT))
    } else {
        Err(ApiError::not_found())
    }
}
