//! set_policy and clear_policy. The definition is checked to be JSON here (as rabbitmqctl
//! decodes it before calling the node); its keys, the pattern and apply-to are validated by
//! the broker, whose reason is printed as rabbitmqctl prints it.

use super::Ctx;
use crate::api::{seg, ApiError};
use crate::failure::{Failure, EX_DATAERR, EX_UNAVAILABLE};
use serde_json::{json, Value};

/// The API's reasons are HTML-escaped (`&lt;&lt;"key"&gt;&gt;`); rabbitmqctl shows them raw.
pub(super) fn unescape_html(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

pub fn set_policy(ctx: &mut Ctx, args: &[String]) -> Result<(), Failure> {
    let (name, pattern, definition) = (&args[0], &args[1], &args[2]);
    let priority_text = ctx.options.specific("priority").unwrap_or("0").to_string();
    let priority: i64 = priority_text.parse().map_err(|_| {
        Failure::usage(format!(
            "Invalid options for this command:\n--priority : {priority_text}"
        ))
    })?;
    let apply_to = ctx
        .options
        .specific("apply-to")
        .unwrap_or("all")
        .to_string();
    ctx.out.info(&format!(
        "Setting policy \"{name}\" for pattern \"{pattern}\" to \"{definition}\" with priority \
         \"{priority_text}\" for vhost \"{}\" ...",
        ctx.vhost()
    ));
    let definition: Value = serde_json::from_str(definition)
        .map_err(|e| Failure::error(EX_UNAVAILABLE, format!("JSON decoding error. Reason: {e}")))?;
    let body = json!({
        "pattern": pattern,
        "definition": definition,
        "priority": priority,
        "apply-to": apply_to,
    });
    let path = format!("/policies/{}/{}", seg(ctx.vhost()), seg(name));
    match ctx.api.put(&path, &body) {
        Ok(()) => ctx.done(),
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

pub fn clear_policy(ctx: &mut Ctx, args: &[String]) -> Result<(), Failure> {
    let name = &args[0];
    ctx.out.info(&format!(
        "Clearing policy \"{name}\" on vhost \"{}\" ...",
        ctx.vhost()
    ));
    let path = format!("/policies/{}/{}", seg(ctx.vhost()), seg(name));
    match ctx.api.delete(&path, &[]) {
        Ok(()) => ctx.done(),
        Err(ApiError::Status { status: 404, .. }) => {
            Err(Failure::error(EX_UNAVAILABLE, "Parameter does not exist"))
        }
        Err(e) => Err(ctx.fail(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The broker's HTML-escaped reason reads as rabbitmqctl prints it.
    #[test]
    fn reasons_are_unescaped() {
        assert_eq!(
            unescape_html("[{&lt;&lt;\"bogus\"&gt;&gt;,1}] are not recognised"),
            "[{<<\"bogus\">>,1}] are not recognised"
        );
        assert_eq!(unescape_html("a &amp;lt; b"), "a &lt; b");
    }
}
