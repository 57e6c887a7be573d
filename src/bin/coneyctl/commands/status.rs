//! status: rabbitmqctl 3.10's sections (Runtime, Plugins, Data directory, Config files, Log
//! file(s), Alarms, Memory, File Descriptors, Free Disk Space, Totals, Listeners) and its
//! JSON keys, filled from /api/overview, /api/nodes/NODE, its /memory and /api/vhosts. A
//! line whose value the API does not give is left out rather than guessed (the API has no
//! OS name, maintenance flag, crypto library or watermark setting, for instance).

use super::Ctx;
use crate::api::seg;
use crate::cell::json_text;
use crate::failure::Failure;
use serde_json::{json, Map, Value};

/// What the API says about the node.
struct Facts {
    overview: Value,
    node: Value,
    /// The memory breakdown, when the API has one.
    memory: Option<Value>,
    vhost_count: Option<usize>,
}

fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn list(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| json_text(x))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Bytes as rabbitmqctl shows them: gigabytes rounded to four places, Erlang's float text.
fn gb(bytes: f64) -> String {
    let rounded = (bytes / 1e9 * 1e4).round() / 1e4;
    if rounded.fract() == 0.0 {
        format!("{rounded:.1}")
    } else {
        format!("{rounded}")
    }
}

fn gather(ctx: &Ctx) -> Result<Facts, Failure> {
    let overview = ctx.api.get("/overview").map_err(|e| ctx.fail(e))?;
    let name = text(&overview, "node").unwrap_or("").to_string();
    let node = ctx
        .api
        .get(&format!("/nodes/{}", seg(&name)))
        .map_err(|e| ctx.fail(e))?;
    let memory = ctx
        .api
        .get(&format!("/nodes/{}/memory", seg(&name)))
        .ok()
        .and_then(|m| m.get("memory").cloned())
        .filter(Value::is_object);
    let vhost_count = ctx
        .api
        .get("/vhosts")
        .ok()
        .and_then(|v| v.as_array().map(Vec::len));
    Ok(Facts {
        overview,
        node,
        memory,
        vhost_count,
    })
}

pub fn run(ctx: &mut Ctx, _args: &[String]) -> Result<(), Failure> {
    let facts = gather(ctx)?;
    let name = text(&facts.overview, "node").unwrap_or("").to_string();
    if ctx.out.json() {
        ctx.out.line(&json_text(&as_json(&facts)));
        return Ok(());
    }
    ctx.out.info(&format!("Status of node {name} ..."));
    let bold = super::help::bold();
    let mut out = String::new();
    for (title, lines) in sections(&facts) {
        if bold {
            out.push_str(&format!("\x1b[1m{title}\x1b[0m\n\n"));
        } else {
            out.push_str(&format!("{title}\n\n"));
        }
        for line in lines {
            out.push_str(&line);
            out.push('\n');
        }
        out.push('\n');
    }
    out.pop();
    ctx.out.raw(out.as_bytes());
    Ok(())
}

fn sections(f: &Facts) -> Vec<(&'static str, Vec<String>)> {
    let (o, n) = (&f.overview, &f.node);
    let mut runtime = Vec::new();
    let mut push = |label: &str, value: Option<String>| {
        if let Some(v) = value {
            runtime.push(format!("{label}: {v}"));
        }
    };
    push("OS PID", text(n, "os_pid").map(str::to_string));
    push(
        "Uptime (seconds)",
        num(n, "uptime").map(|ms| (ms / 1000.0).floor().to_string()),
    );
    push(
        "RabbitMQ version",
        text(o, "rabbitmq_version").map(str::to_string),
    );
    push("Node name", text(o, "node").map(str::to_string));
    push(
        "Erlang configuration",
        text(o, "erlang_full_version").map(str::to_string),
    );
    push(
        "Erlang processes",
        num(n, "proc_used")
            .zip(num(n, "proc_total"))
            .map(|(u, t)| format!("{u} used, {t} limit")),
    );
    push(
        "Scheduler run queue",
        num(n, "run_queue").map(|q| q.to_string()),
    );
    push(
        "Cluster heartbeat timeout (net_ticktime)",
        num(n, "net_ticktime").map(|t| t.to_string()),
    );
    let bullets = |items: Vec<String>| -> Vec<String> {
        items.into_iter().map(|i| format!(" * {i}")).collect()
    };
    let mut plugins = vec!["Enabled plugins:".to_string(), String::new()];
    plugins.extend(bullets(list(n, "enabled_plugins")));
    vec![
        ("Runtime", runtime),
        ("Plugins", plugins),
        (
            "Data directory",
            text(n, "db_dir")
                .map(|d| vec![format!("Node data directory: {d}")])
                .unwrap_or_default(),
        ),
        ("Config files", bullets(list(n, "config_files"))),
        ("Log file(s)", bullets(list(n, "log_files"))),
        ("Alarms", alarms(n)),
        ("Memory", memory(n, f.memory.as_ref())),
        ("File Descriptors", descriptors(n)),
        ("Free Disk Space", disk(n)),
        ("Totals", totals(o, f.vhost_count)),
        ("Listeners", listeners(o)),
    ]
}

fn alarms(n: &Value) -> Vec<String> {
    let node = text(n, "name").unwrap_or("");
    let mut lines = Vec::new();
    if n.get("mem_alarm") == Some(&Value::Bool(true)) {
        lines.push(format!("Memory alarm on node {node}"));
    }
    if n.get("disk_free_alarm") == Some(&Value::Bool(true)) {
        lines.push(format!("Free disk space alarm on node {node}"));
    }
    if lines.is_empty() {
        lines.push("(none)".into());
    }
    lines
}

fn memory(n: &Value, breakdown: Option<&Value>) -> Vec<String> {
    let mut lines = Vec::new();
    let used = num(n, "mem_used");
    if let Some(u) = used {
        lines.push(format!("Total memory used: {} gb", gb(u)));
    }
    if let Some(s) = text(n, "mem_calculation_strategy") {
        lines.push(format!("Calculation strategy: {s}"));
    }
    if let Some(l) = num(n, "mem_limit") {
        lines.push(format!("Memory high watermark: {} gb", gb(l)));
    }
    let (Some(Value::Object(parts)), Some(total)) = (breakdown, used) else {
        return lines;
    };
    let mut parts: Vec<(&String, f64)> = parts
        .iter()
        .filter_map(|(k, v)| v.as_f64().map(|b| (k, b)))
        .collect();
    parts.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    lines.push(String::new());
    for (k, b) in parts {
        let percent = if total > 0.0 {
            (b / total * 1e4).round() / 100.0
        } else {
            0.0
        };
        let percent = if percent.fract() == 0.0 {
            format!("{percent:.1}")
        } else {
            format!("{percent}")
        };
        lines.push(format!("{k}: {} gb ({percent} %)", gb(b)));
    }
    lines
}

fn descriptors(n: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    if let (Some(u), Some(t)) = (num(n, "fd_used"), num(n, "fd_total")) {
        lines.push(format!("Total: {u}, limit: {t}"));
    }
    if let (Some(u), Some(t)) = (num(n, "sockets_used"), num(n, "sockets_total")) {
        lines.push(format!("Sockets: {u}, limit: {t}"));
    }
    lines
}

fn disk(n: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(l) = num(n, "disk_free_limit") {
        lines.push(format!("Low free disk space watermark: {} gb", gb(l)));
    }
    if let Some(f) = num(n, "disk_free") {
        lines.push(format!("Free disk space: {} gb", gb(f)));
    }
    lines
}

fn totals(o: &Value, vhosts: Option<usize>) -> Vec<String> {
    let t = o.get("object_totals").unwrap_or(&Value::Null);
    let mut lines = Vec::new();
    if let Some(c) = num(t, "connections") {
        lines.push(format!("Connection count: {c}"));
    }
    if let Some(q) = num(t, "queues") {
        lines.push(format!("Queue count: {q}"));
    }
    if let Some(v) = vhosts {
        lines.push(format!("Virtual host count: {v}"));
    }
    lines
}

/// rabbitmqctl's words for what a listener is for.
fn purpose(protocol: &str) -> &str {
    match protocol {
        "amqp" => "AMQP 0-9-1 and AMQP 1.0",
        "amqp/ssl" => "AMQP 0-9-1 and AMQP 1.0 over TLS",
        "http" => "HTTP API",
        "http/prometheus" => "Prometheus exporter API over HTTP",
        "clustering" => "inter-node and CLI tool communication",
        other => other,
    }
}

/// The listeners the API lists; the management API's own (its "contexts") when they are not
/// among them.
fn listener_list(o: &Value) -> Vec<(String, String, String)> {
    let mut all = Vec::new();
    for l in o
        .get("listeners")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        all.push((
            text(l, "ip_address").unwrap_or("").to_string(),
            l.get("port").map(json_text).unwrap_or_default(),
            text(l, "protocol").unwrap_or("").to_string(),
        ));
    }
    if all
        .iter()
        .any(|(_, _, protocol)| protocol.starts_with("http"))
    {
        return all;
    }
    for c in o
        .get("contexts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let port = match c.get("port") {
            Some(Value::String(p)) => p.clone(),
            Some(other) => json_text(other),
            None => continue,
        };
        all.push((text(c, "ip").unwrap_or("").to_string(), port, "http".into()));
    }
    all
}

fn listeners(o: &Value) -> Vec<String> {
    listener_list(o)
        .into_iter()
        .map(|(ip, port, protocol)| {
            format!(
                "Interface: {ip}, port: {port}, protocol: {protocol}, purpose: {}",
                purpose(&protocol)
            )
        })
        .collect()
}

/// rabbitmqctl's status JSON keys, for those the API can fill.
fn as_json(f: &Facts) -> Value {
    let (o, n) = (&f.overview, &f.node);
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.to_string(), v);
        }
    };
    let get = |v: &Value, k: &str| v.get(k).cloned();
    put("active_plugins", get(n, "enabled_plugins"));
    let mut alarms = Vec::new();
    if n.get("mem_alarm") == Some(&Value::Bool(true)) {
        alarms.push(json!("memory"));
    }
    if n.get("disk_free_alarm") == Some(&Value::Bool(true)) {
        alarms.push(json!("disk"));
    }
    put("alarms", Some(Value::Array(alarms)));
    put("config_files", get(n, "config_files"));
    put("data_directory", get(n, "db_dir"));
    put("disk_free", get(n, "disk_free"));
    put("disk_free_limit", get(n, "disk_free_limit"));
    put("erlang_version", get(o, "erlang_full_version"));
    put(
        "file_descriptors",
        Some(
            json!({"sockets_limit": get(n, "sockets_total"), "sockets_used": get(n, "sockets_used"),
                    "total_limit": get(n, "fd_total"), "total_used": get(n, "fd_used")}),
        ),
    );
    let listeners: Vec<Value> = listener_list(o)
        .into_iter()
        .map(|(ip, port, protocol)| {
            json!({"interface": ip, "node": get(o, "node"),
                   "port": port.parse::<u64>().map(Value::from).unwrap_or(Value::String(port)),
                   "purpose": purpose(&protocol), "protocol": protocol})
        })
        .collect();
    put("listeners", Some(Value::Array(listeners)));
    put("log_files", get(n, "log_files"));
    put("memory", f.memory.clone());
    put("net_ticktime", get(n, "net_ticktime"));
    put(
        "pid",
        text(n, "os_pid")
            .and_then(|p| p.parse::<u64>().ok())
            .map(Value::from),
    );
    put(
        "processes",
        Some(json!({"limit": get(n, "proc_total"), "used": get(n, "proc_used")})),
    );
    put("rabbitmq_version", get(o, "rabbitmq_version"));
    put("run_queue", get(n, "run_queue"));
    let t = o.get("object_totals").cloned().unwrap_or(Value::Null);
    put(
        "totals",
        Some(
            json!({"connection_count": t.get("connections"), "queue_count": t.get("queues"),
                    "virtual_host_count": f.vhost_count}),
        ),
    );
    put(
        "uptime",
        num(n, "uptime").map(|ms| json!((ms / 1000.0).floor() as u64)),
    );
    put(
        "vm_memory_calculation_strategy",
        get(n, "mem_calculation_strategy"),
    );
    put("vm_memory_high_watermark_limit", get(n, "mem_limit"));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes read as rabbitmqctl's: gigabytes to four places, `0.0` for nothing.
    #[test]
    fn gigabytes() {
        assert_eq!(gb(134_500_000.0), "0.1345");
        assert_eq!(gb(10_110_396_006.0), "10.1104");
        assert_eq!(gb(0.0), "0.0");
        assert_eq!(gb(10_000_000.0), "0.01");
    }

    /// Sections come from the API's fields; absent fields leave their lines out.
    #[test]
    fn sections_from_api_fields() {
        let facts = Facts {
            overview: json!({"node": "rabbit@h", "rabbitmq_version": "3.10.8",
                             "object_totals": {"connections": 1, "queues": 2},
                             "listeners": [{"ip_address": "127.0.0.1", "port": 5672, "protocol": "amqp"}],
                             "contexts": [{"ip": "127.0.0.1", "port": "15672"}]}),
            node: json!({"name": "rabbit@h", "os_pid": "42", "uptime": 1500,
                         "fd_used": 3, "fd_total": 1024, "mem_alarm": true}),
            memory: None,
            vhost_count: Some(1),
        };
        let s = sections(&facts);
        let get = |t: &str| s.iter().find(|(title, _)| *title == t).unwrap().1.clone();
        assert_eq!(get("Runtime")[..2], ["OS PID: 42", "Uptime (seconds): 1"]);
        assert_eq!(get("Alarms"), ["Memory alarm on node rabbit@h"]);
        assert_eq!(get("File Descriptors"), ["Total: 3, limit: 1024"]);
        assert_eq!(
            get("Totals"),
            [
                "Connection count: 1",
                "Queue count: 2",
                "Virtual host count: 1"
            ]
        );
        assert_eq!(
            get("Listeners"),
            [
                "Interface: 127.0.0.1, port: 5672, protocol: amqp, purpose: AMQP 0-9-1 and AMQP 1.0",
                "Interface: 127.0.0.1, port: 15672, protocol: http, purpose: HTTP API"
            ]
        );
        let j = as_json(&facts);
        assert_eq!(j["pid"], json!(42));
        assert_eq!(j["alarms"], json!(["memory"]));
    }
}
