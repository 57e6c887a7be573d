//! purge_queue, delete_queue and close_connection. delete_queue reports the queue's ready
//! messages as the API counted them just before the delete (the API's DELETE does not say
//! how many it removed; RabbitMQ's counts may lag by its statistics interval).
//! close_connection takes the connection's API name (`list_connections name`), where
//! rabbitmqctl takes an Erlang pid, and passes the reason as the API's `X-Reason`.

use super::Ctx;
use crate::api::{seg, ApiError};
use crate::cell::json_string;
use crate::failure::{Failure, EX_UNAVAILABLE, EX_USAGE};

pub fn purge_queue(ctx: &mut Ctx, args: &[String]) -> Result<(), Failure> {
    let queue = &args[0];
    ctx.out.info(&format!(
        "Purging queue '{queue}' in vhost '{}' ...",
        ctx.vhost()
    ));
    let path = format!("/queues/{}/{}/contents", seg(ctx.vhost()), seg(queue));
    match ctx.api.delete(&path, &[]) {
        Ok(()) => ctx.done(),
        Err(ApiError::Status { status: 404, .. }) => {
            Err(Failure::error(EX_UNAVAILABLE, "not_found"))
        }
        Err(e) => Err(ctx.fail(e)),
    }
}

pub fn delete_queue(ctx: &mut Ctx, args: &[String]) -> Result<(), Failure> {
    let queue = &args[0];
    ctx.out.info(&format!(
        "Deleting queue '{queue}' on vhost '{}' ...",
        ctx.vhost()
    ));
    let path = format!("/queues/{}/{}", seg(ctx.vhost()), seg(queue));
    let not_found = |e: ApiError| match e.status() {
        Some(404) => Failure::error(EX_USAGE, "Queue not found"),
        _ => ctx.fail(e),
    };
    let before = ctx.api.get(&path).map_err(not_found)?;
    ctx.api.delete(&path, &[]).map_err(not_found)?;
    let ready = before
        .get("messages_ready")
        .and_then(|m| m.as_u64())
        .unwrap_or(0);
    let message = format!("Queue was successfully deleted with {ready} ready messages");
    if ctx.out.json() {
        ctx.out
            .line(&format!("{{\"message\":{}}}", json_string(&message)));
    } else {
        ctx.out.line(&message);
    }
    Ok(())
}

pub fn close_connection(ctx: &mut Ctx, args: &[String]) -> Result<(), Failure> {
    let (name, reason) = (&args[0], &args[1]);
    ctx.out
        .info(&format!("Closing connection {name}, reason: {reason}..."));
    let path = format!("/connections/{}", seg(name));
    match ctx.api.delete(&path, &[("X-Reason", reason)]) {
        Ok(()) => ctx.done(),
        Err(ApiError::Status { status: 404, .. }) => Err(Failure::error(
            EX_UNAVAILABLE,
            format!(
                "no connection named '{name}' (coneyctl takes the name list_connections name shows)"
            ),
        )),
        Err(e) => Err(ctx.fail(e)),
    }
}
