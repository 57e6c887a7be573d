//! Users, virtual hosts and permissions: add_user, change_password, set_user_tags,
//! delete_user, add_vhost, delete_vhost, set_permissions, clear_permissions. Each prints
//! rabbitmqctl 3.10's informational line, makes the API call, and on failure finds out which
//! of rabbitmqctl's errors applies (the API answers 400 `vhost_or_user_not_found` where
//! rabbitmqctl names one or the other, so the vhost is looked up afterwards).

use super::Ctx;
use crate::api::{seg, ApiError};
use crate::cell::json_string;
use crate::failure::{Failure, EX_DATAERR, EX_NOUSER, EX_SOFTWARE, EX_UNAVAILABLE};
use serde_json::{json, Value};
use std::io::{BufRead, Read};

/// The longest password line read from standard input.
const PASSWORD_BYTES_MAX: u64 = 64 * 1024;

fn no_user(name: &str) -> Failure {
    Failure::error(EX_NOUSER, format!("User \"{name}\" does not exist"))
}

/// The password argument, or one line of standard input (rabbitmqctl reads it there when
/// the argument is left out, so it stays out of the process list and shell history).
fn password(args: &[String], missing_code: u8) -> Result<String, Failure> {
    if let Some(p) = args.get(1) {
        return Ok(p.clone());
    }
    let mut line = String::new();
    let stdin = std::io::stdin();
    let read = stdin
        .lock()
        .take(PASSWORD_BYTES_MAX)
        .read_line(&mut line)
        .unwrap_or(0);
    let line = line.trim_end_matches(['\n', '\r']);
    if read == 0 || line.is_empty() {
        return Err(Failure::error(
            missing_code,
            "Password is not provided via argument or stdin",
        ));
    }
    Ok(line.to_string())
}

/// The user's record, or rabbitmqctl's "does not exist".
fn get_user(ctx: &Ctx, name: &str) -> Result<Value, Failure> {
    ctx.api
        .get(&format!("/users/{}", seg(name)))
        .map_err(|e| match e.status() {
            Some(404) => no_user(name),
            _ => ctx.fail(e),
        })
}

/// Tags as the API's PUT takes them: comma-separated.
fn tags_field(user: &Value) -> String {
    match user.get("tags") {
        Some(Value::Array(tags)) => tags
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    }
}

pub fn add_user(ctx: &mut Ctx, args: &[String]) -> Result<(), Failure> {
    let name = &args[0];
    ctx.out.info(&format!("Adding user \"{name}\" ..."));
    let password = password(args, EX_DATAERR)?;
    match ctx.api.get(&format!("/users/{}", seg(name))) {
        Ok(_) => {
            return Err(Failure::error(
                EX_SOFTWARE,
                format!("User \"{name}\" already exists"),
            ))
        }
        Err(e) if e.status() == Some(404) => {}
        Err(e) => return Err(ctx.fail(e)),
    }
    let body = json!({"password": password, "tags": ""});
    ctx.api
        .put(&format!("/users/{}", seg(name)), &body)
        .map_err(|e| ctx.fail(e))?;
    let done = "Done. Don't forget to grant the user permissions to some virtual hosts! \
                See 'coneyctl help set_permissions' to learn more.";
    if ctx.out.json() {
        let node = ctx.node_name()?;
        ctx.out.line(&format!(
            "{{\"message\":{},\"node\":{},\"status\":\"ok\"}}",
            json_string(done),
            json_string(&node)
        ));
    } else {
        ctx.out.info(done);
    }
    Ok(())
}

pub fn change_password(ctx: &mut Ctx, args: &[String]) -> Result<(), Failure> {
    let name = &args[0];
    ctx.out
        .info(&format!("Changing password for user \"{name}\" ..."));
    let password = password(args, EX_SOFTWARE)?;
    let user = get_user(ctx, name)?;
    let body = json!({"password": password, "tags": tags_field(&user)});
    ctx.api
        .put(&format!("/users/{}", seg(name)), &body)
        .map_err(|e| ctx.fail(e))?;
    ctx.done()
}

pub fn set_user_tags(ctx: &mut Ctx, args: &[String]) -> Result<(), Failure> {
    let (name, tags) = (&args[0], &args[1..]);
    ctx.out.info(&format!(
        "Setting tags for user \"{name}\" to [{}] ...",
        tags.join(", ")
    ));
    let user = get_user(ctx, name)?;
    // Keeping the stored hash keeps the password: the API's PUT replaces the whole user.
    let body = json!({
        "password_hash": user.get("password_hash").cloned().unwrap_or(json!("")),
        "hashing_algorithm": user.get("hashing_algorithm").cloned()
            .unwrap_or(json!("rabbit_password_hashing_sha256")),
        "tags": tags.join(","),
    });
    ctx.api
        .put(&format!("/users/{}", seg(name)), &body)
        .map_err(|e| ctx.fail(e))?;
    ctx.done()
}

pub fn delete_user(ctx: &mut Ctx, args: &[String]) -> Result<(), Failure> {
    let name = &args[0];
    ctx.out.info(&format!("Deleting user \"{name}\" ..."));
    ctx.api
        .delete(&format!("/users/{}", seg(name)), &[])
        .map_err(|e| match e.status() {
            Some(404) => no_user(name),
            _ => ctx.fail(e),
        })?;
    ctx.done()
}

pub fn add_vhost(ctx: &mut Ctx, args: &[String]) -> Result<(), Failure> {
    let name = &args[0];
    ctx.out.info(&format!("Adding vhost \"{name}\" ..."));
    let path = format!("/vhosts/{}", seg(name));
    // As rabbitmqctl, adding a vhost that exists succeeds and changes nothing; the API's PUT
    // would reset its description and tags.
    match ctx.api.get(&path) {
        Ok(_) => return ctx.done(),
        Err(e) if e.status() == Some(404) => {}
        Err(e) => return Err(ctx.fail(e)),
    }
    ctx.api.put(&path, &json!({})).map_err(|e| ctx.fail(e))?;
    ctx.done()
}

pub fn delete_vhost(ctx: &mut Ctx, args: &[String]) -> Result<(), Failure> {
    let name = &args[0];
    ctx.out.info(&format!("Deleting vhost \"{name}\" ..."));
    ctx.api
        .delete(&format!("/vhosts/{}", seg(name)), &[])
        .map_err(|e| match e.status() {
            Some(404) => Failure::bare(EX_DATAERR, format!("Virtual host '{name}' does not exist")),
            _ => ctx.fail(e),
        })?;
    ctx.done()
}

/// Which of the vhost and the user is missing, in rabbitmqctl's words; None if both exist.
fn missing_vhost_or_user(ctx: &Ctx, user: &str) -> Result<Option<Failure>, Failure> {
    let vhost = ctx.vhost();
    for (path, failure) in [
        (
            format!("/vhosts/{}", seg(vhost)),
            Failure::error(
                EX_UNAVAILABLE,
                format!("Virtual host {vhost} does not exist"),
            ),
        ),
        (
            format!("/users/{}", seg(user)),
            Failure::error(EX_NOUSER, format!("User {user} does not exist")),
        ),
    ] {
        match ctx.api.get(&path) {
            Ok(_) => {}
            Err(e) if e.status() == Some(404) => return Ok(Some(failure)),
            Err(e) => return Err(ctx.fail(e)),
        }
    }
    Ok(None)
}

pub fn set_permissions(ctx: &mut Ctx, args: &[String]) -> Result<(), Failure> {
    let user = &args[0];
    ctx.out.info(&format!(
        "Setting permissions for user \"{user}\" in vhost \"{}\" ...",
        ctx.vhost()
    ));
    let body = json!({"configure": args[1], "write": args[2], "read": args[3]});
    let path = format!("/permissions/{}/{}", seg(ctx.vhost()), seg(user));
    match ctx.api.put(&path, &body) {
        Ok(()) => ctx.done(),
        Err(ApiError::Status {
            status: 400,
            reason,
            ..
        }) => match missing_vhost_or_user(ctx, user)? {
            Some(failure) => Err(failure),
            None => Err(Failure::error(EX_DATAERR, reason)),
        },
        Err(e) => Err(ctx.fail(e)),
    }
}

pub fn clear_permissions(ctx: &mut Ctx, args: &[String]) -> Result<(), Failure> {
    let user = &args[0];
    ctx.out.info(&format!(
        "Clearing permissions for user \"{user}\" in vhost \"{}\" ...",
        ctx.vhost()
    ));
    let path = format!("/permissions/{}/{}", seg(ctx.vhost()), seg(user));
    match ctx.api.delete(&path, &[]) {
        Ok(()) => ctx.done(),
        // Clearing permissions a user does not have succeeds, as in rabbitmqctl.
        Err(e) if e.status() == Some(404) => match missing_vhost_or_user(ctx, user)? {
            Some(failure) => Err(failure),
            None => ctx.done(),
        },
        Err(e) => Err(ctx.fail(e)),
    }
}
