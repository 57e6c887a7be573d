//! set_parameter and clear_parameter (runtime parameters: shovel, federation-upstream,
//! federation-upstream-set, ...), over `/api/parameters/{component}/{vhost}/{name}`. The value
//! is checked to be JSON here, as rabbitmqctl decodes it before calling the node; the
//! component and the value's keys are validated by the broker, whose reason is printed as
//! rabbitmqctl prints it. list_parameters is a listing (listing.rs).

use super::policies::unescape_html;
use super::Ctx;
use crate::api::{seg, ApiError};
use crate::failure::{Failure, EX_DATAERR, EX_UNAVAILABLE};
use serde_json::{json, Value};

fn path(ctx: &Ctx, component: &str, name: &str) -> String {
    format!(
        "/parameters/{}/{}/{}",
        seg(component),
        seg(ctx.vhost()),
        seg(name)
    )
}

pub fn set_parameter(ctx: &mut Ctx, args: &[String]) -> Result<(), Failure> {
    let (component, name, value) = (&args[0], &args[1], &args[2]);
    ctx.out.info(&format!(
        "Setting runtime parameter \"{name}\" for component \"{component}\" to \"{value}\" in \
         vhost \"{}\" ...",
        ctx.vhost()
    ));
    let value: Value = serde_json::from_str(value)
        .map_err(|e| Failure::error(EX_UNAVAILABLE, format!("JSON decoding error. Reason: {e}")))?;
    let body = json!({
        "component": component,
        "vhost": ctx.vhost(),
        "name": name,
        "value": value,
    });
    match ctx.api.put(&path(ctx, component, name), &body) {
        Ok(()) => ctx.done(),
        // The API checks the vhost before the value; rabbitmqctl validates first, so a bad
        // value in a missing vhost is reported differently (README lists it).
        Err(ApiError::Status { status: 404, .. }) => Err(Failure::bare(
            EX_DATAERR,
            format!("Virtual host '{}' does not exist", ctx.vhost()),
        )),
        Err(ApiError::Status {
            status: 400,
            reason,
            ..
        }) => Err(Failure::error(EX_UNAVAILABLE, unescape_html(&reason))),
        Err(e) => Err(ctx.fail(e)),
    }
}

pub fn clear_parameter(ctx: &mut Ctx, args: &[String]) -> Result<(), Failure> {
    let (component, name) = (&args[0], &args[1]);
    ctx.out.info(&format!(
        "Clearing runtime parameter \"{name}\" for component \"{component}\" on vhost \"{}\" ...",
        ctx.vhost()
    ));
    match ctx.api.delete(&path(ctx, component, name), &[]) {
        Ok(()) => ctx.done(),
        // rabbitmqctl says the same for an unknown component, vhost or name.
        Err(ApiError::Status { status: 404, .. }) => {
            Err(Failure::error(EX_UNAVAILABLE, "Parameter does not exist"))
        }
        Err(e) => Err(ctx.fail(e)),
    }
}
