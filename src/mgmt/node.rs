//! /api/nodes and the one-node health checks: the node as RabbitMQ 3.10's API describes it,
//! with its field names and types, filled with what coney measures (memory, file
//! descriptors, disk, uptime, listeners). Erlang's own figures (processes, run queue, garbage
//! collection, Mnesia and message-store I/O) have no counterpart and are left out rather than
//! invented.

use super::handlers::node_name;
use super::metrics::{fds, resident_bytes};
use super::Management;
use crate::http::json::{Filter, ObjectWriter};
use crate::http::{ApiError, Response, Status};

/// The node object of /api/nodes (an array of one) and /api/nodes/{name}.
pub(super) fn write_node(m: &Management<'_>, out: &mut Vec<u8>) {
    let a = m.alarms;
    let (fd_used, fd_total) = fds();
    let mut sockets_used = 0u64;
    m.conns.each(&mut |_| sockets_used += 1);
    let mut o = ObjectWriter::item(out, Filter::All);
    o.array("auth_mechanisms", |arr| {
        for (name, what) in [
            ("PLAIN", "SASL PLAIN authentication mechanism"),
            ("AMQPLAIN", "QPid AMQPLAIN mechanism"),
        ] {
            arr.object(|x| {
                x.str("name", name)
                    .str("description", what)
                    .bool("enabled", true);
            });
        }
    })
    .array("cluster_links", |_| {})
    .u64("connection_closed", m.stats.connections_closed)
    .u64("connection_created", m.stats.connections_opened)
    .str("db_dir", &m.config.data_dir.display().to_string());
    if let Some(free) = a.disk_free_bytes {
        o.u64("disk_free", free);
    }
    o.bool("disk_free_alarm", a.disk)
        .u64("disk_free_limit", a.disk_free_limit_bytes)
        .array("enabled_plugins", |arr| {
            for (protocol, plugin) in [
                ("http", "rabbitmq_management"),
                ("http/prometheus", "rabbitmq_prometheus"),
            ] {
                if m.listeners.iter().any(|(p, _)| *p == protocol) {
                    arr.str(plugin);
                }
            }
        })
        .u64("fd_total", fd_total)
        .u64("fd_used", fd_used)
        .array("log_files", |arr| {
            if let Some(f) = &m.config.log_file {
                arr.str(&f.display().to_string());
            }
        })
        .bool("mem_alarm", a.memory)
        .str("mem_calculation_strategy", "rss")
        .u64("mem_limit", a.memory_limit_bytes)
        .u64("mem_used", resident_bytes())
        .str("name", node_name())
        .str("os_pid", &std::process::id().to_string())
        .array("partitions", |_| {})
        .u64("processors", processors())
        .str("rates_mode", "basic")
        .bool("running", true)
        .u64("sockets_total", fd_total)
        .u64("sockets_used", sockets_used)
        .str("type", "disc")
        .u64("uptime", uptime_ms());
    o.end();
}

/// GET /api/nodes.
pub(super) fn nodes<S>(m: &Management<'_>) -> Response<S> {
    let mut out = b"[".to_vec();
    write_node(m, &mut out);
    out.push(b']');
    Response::json(Status::OK, out)
}

/// GET /api/nodes/{name}: 404 for another name (RabbitMQ answers 500 there).
pub(super) fn node<S>(m: &Management<'_>, name: &str) -> Result<Response<S>, ApiError> {
    if name != node_name() {
        return Err(ApiError::not_found());
    }
    let mut out = Vec::new();
    write_node(m, &mut out);
    Ok(Response::json(Status::OK, out))
}

/// GET /api/nodes/{name}/memory: RabbitMQ's breakdown holds Erlang's process and table
/// categories (connection_readers, queue_procs, mnesia, ...), which coney does not have and
/// does not estimate. What it measures: `total.rss` (the resident set, the figure the memory
/// alarm's strategy `rss` names), `total.allocated` (heap bytes in use, counted by the
/// allocator, `alloc.rs`) and `code` (file-backed resident pages: the binary and its
/// libraries, /proc/self/status RssFile).
pub(super) fn memory<S>(name: &str) -> Result<Response<S>, ApiError> {
    if name != node_name() {
        return Err(ApiError::not_found());
    }
    let mut out = Vec::new();
    let mut o = ObjectWriter::item(&mut out, Filter::All);
    o.object("memory", |mem| {
        if let Some(code) = status_kb("RssFile") {
            mem.u64("code", code * 1024);
        }
        mem.str("strategy", "rss").object("total", |t| {
            t.u64("allocated", crate::alloc::allocated_bytes() as u64)
                .u64("rss", resident_bytes());
        });
    });
    o.end();
    Ok(Response::json(Status::OK, out))
}

/// A `kB` line of /proc/self/status ("RssFile:   1234 kB"); None where it is absent.
fn status_kb(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| {
        l.strip_prefix(key)
            .is_some_and(|rest| rest.starts_with(':'))
    })?;
    line[key.len() + 1..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn processors() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as u64
}

/// Milliseconds since the process started: its start time in /proc/self/stat (clock ticks
/// after boot) against /proc/uptime; 0 where /proc is absent.
fn uptime_ms() -> u64 {
    let boot_secs = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok());
    // The command name (field 2) may hold spaces; fields after its ')' are plain.
    let start_ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 1..];
            rest.split_whitespace().nth(19)?.parse::<f64>().ok()
        });
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    match (boot_secs, start_ticks) {
        (Some(up), Some(start)) => ((up - start / hz).max(0.0) * 1000.0) as u64,
        _ => 0,
    }
}

/// 200 `{"status":"ok", ...}` with what `write` adds.
fn ok_with<S>(write: impl FnOnce(&mut ObjectWriter<'_, '_>)) -> Response<S> {
    let mut out = Vec::new();
    let mut o = ObjectWriter::item(&mut out, Filter::All);
    o.str("status", "ok");
    write(&mut o);
    o.end();
    Response::json(Status::OK, out)
}

/// The quorum- and mirror-critical checks: a single node is never critical.
pub(super) fn single_node<S>() -> Response<S> {
    ok_with(|o| {
        o.str("reason", "single node cluster");
    })
}

/// Every vhost runs on coney's one node.
pub(super) fn virtual_hosts<S>() -> Response<S> {
    ok_with(|_| {})
}

/// port-listener/{port}: ok if a listener is on it, else 503 listing the ports.
pub(super) fn port_listener<S>(m: &Management<'_>, port: &str) -> Result<Response<S>, ApiError> {
    let port: u16 = port
        .parse()
        .map_err(|_| ApiError::bad_request("Invalid port"))?;
    if m.listeners.iter().any(|(_, a)| a.port() == port) {
        return Ok(ok_with(|o| {
            o.u64("port", port.into());
        }));
    }
    let mut out = Vec::new();
    let mut o = ObjectWriter::item(&mut out, Filter::All);
    o.str("status", "failed")
        .str("reason", "No active listener")
        .u64("missing", port.into())
        .array("ports", |arr| {
            let mut ports: Vec<u16> = m.listeners.iter().map(|(_, a)| a.port()).collect();
            ports.sort_unstable();
            for p in ports {
                arr.value(&serde_json::Value::from(p));
            }
        });
    o.end();
    Ok(Response::json(Status::SERVICE_UNAVAILABLE, out))
}

/// protocol-listener/{protocol}: RabbitMQ's aliases (amqp091, amqp0-9-1, amqps).
pub(super) fn protocol_listener<S>(m: &Management<'_>, protocol: &str) -> Response<S> {
    let wanted = match protocol {
        "amqp091" | "amqp0-9-1" | "amqp0.9.1" | "amqp0_9_1" => "amqp",
        "amqps" | "amqp091/ssl" => "amqp/ssl",
        other => other,
    };
    if m.listeners.iter().any(|(p, _)| *p == wanted) {
        return ok_with(|o| {
            o.str("protocol", wanted);
        });
    }
    let mut out = Vec::new();
    let mut o = ObjectWriter::item(&mut out, Filter::All);
    o.str("status", "failed")
        .str("reason", "No active listener")
        .str("missing", wanted)
        .array("protocols", |arr| {
            for (p, _) in m.listeners {
                arr.str(p);
            }
        });
    o.end();
    Response::json(Status::SERVICE_UNAVAILABLE, out)
}

/// certificate-expiration/{n}/{unit}: RabbitMQ's unit check; ok when no listener uses TLS.
/// With TLS, coney cannot read its certificates' expiry yet and says so (501).
pub(super) fn certificate_expiration<S>(
    m: &Management<'_>,
    within: &str,
    unit: &str,
) -> Result<Response<S>, ApiError> {
    if within.parse::<u64>().is_err() {
        return Err(ApiError::bad_request("Invalid time"));
    }
    if !matches!(unit, "days" | "weeks" | "months" | "years") {
        return Err(ApiError::bad_request(
            "Time unit not recognised. Supported units: days, weeks, months, years.",
        ));
    }
    if m.listeners.iter().any(|(p, _)| p.contains("ssl")) {
        return Err(ApiError::json(
            Status::NOT_IMPLEMENTED,
            "not_implemented",
            "coney does not read its TLS certificates' expiry yet",
        ));
    }
    Ok(ok_with(|_| {}))
}
