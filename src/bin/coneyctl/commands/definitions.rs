//! export_definitions and import_definitions through /api/definitions, to a file or standard
//! output (`-`) and from a file or standard input. The export is the API's document written
//! as rabbitmqctl writes its own: compact JSON, keys sorted, no newline at the end. (RabbitMQ
//! builds the two documents differently: its API adds `product_name`, `product_version`,
//! exchanges' `internal` and the `internal_cluster_id` parameter, and leaves out queues'
//! `type` and vhosts' `limits` and `metadata`; coneyctl passes on what the API gives.)

use super::Ctx;
use crate::api::ApiError;
use crate::cell::json_text;
use crate::failure::{Failure, EX_DATAERR};
use crate::http::BODY_BYTES_MAX;
use serde_json::Value;
use std::io::Read;
use std::path::Path;

fn check_format(ctx: &Ctx) -> Result<(), Failure> {
    match ctx.options.specific("format") {
        None | Some("json") => Ok(()),
        Some(other) => Err(Failure::usage(format!(
            "--format {other} is not supported by coneyctl: the management API exchanges JSON"
        ))),
    }
}

pub fn export(ctx: &mut Ctx, args: &[String]) -> Result<(), Failure> {
    check_format(ctx)?;
    let target = &args[0];
    if target != "-" {
        let dir = Path::new(target)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.is_dir() {
            return Err(Failure::bad_argument(format!(
                "Directory {} does not exist",
                dir.display()
            )));
        }
        ctx.out.info(&format!(
            "Exporting definitions in JSON to a file at \"{target}\" ..."
        ));
    }
    let document = ctx.api.get("/definitions").map_err(|e| ctx.fail(e))?;
    let text = json_text(&document);
    if target == "-" {
        ctx.out.raw(text.as_bytes());
        return Ok(());
    }
    std::fs::write(target, text)
        .map_err(|e| Failure::error(EX_DATAERR, format!("cannot write {target}: {e}")))?;
    ctx.done()
}

/// Reads at most BODY_BYTES_MAX + 1 bytes, so an oversized input is noticed, not truncated.
fn read_bounded(r: impl Read, what: &str) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    r.take(BODY_BYTES_MAX as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Failure::error(EX_DATAERR, format!("cannot read {what}: {e}")))?;
    if bytes.len() > BODY_BYTES_MAX {
        return Err(Failure::error(
            EX_DATAERR,
            format!("{what} is larger than {BODY_BYTES_MAX} bytes"),
        ));
    }
    Ok(bytes)
}

pub fn import(ctx: &mut Ctx, args: &[String]) -> Result<(), Failure> {
    check_format(ctx)?;
    let source = &args[0];
    let bytes = if source == "-" {
        ctx.out
            .info("Importing definitions in JSON from standard input ...");
        read_bounded(std::io::stdin().lock(), "standard input")?
    } else {
        let file = std::fs::File::open(source).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Failure::bad_argument(format!("File {source} does not exist"))
            }
            _ => Failure::bad_argument(format!("File {source} cannot be read: {e}")),
        })?;
        ctx.out.info(&format!(
            "Importing definitions in JSON from a file at \"{source}\" ..."
        ));
        read_bounded(file, source)?
    };
    if let Err(e) = serde_json::from_slice::<Value>(&bytes) {
        return Err(Failure::error(
            EX_DATAERR,
            format!("Failed to deserialise input (format: JSON) (error: {e})"),
        ));
    }
    match ctx.api.post_raw("/definitions", &bytes) {
        Ok(()) => {}
        Err(ApiError::Status {
            status: 400,
            reason,
            ..
        }) => {
            return Err(Failure::error(
                EX_DATAERR,
                format!("the broker refused the definitions: {reason}"),
            ))
        }
        Err(e) => return Err(ctx.fail(e)),
    }
    // rabbitmqctl's words, kept for scripts that look for them; through the API the import
    // has finished by now.
    ctx.out.info(
        "Successfully started definition import. This process is asynchronous and can take some time.",
    );
    ctx.done()
}
