//! `coney-perf`: the load generator's command line (RabbitMQ PerfTest's flags where they
//! exist), mapped onto its modules here. Also the idle-connection opener, the many-queues
//! declarer and the readiness prober that scripts/bench.sh uses. No load logic here. The broker's library is used only for
//! its codec (`coney::protocol`); nothing in the broker uses this program's code.

mod client;
mod histogram;
mod load;
mod probe;
mod proc_stat;
mod queues;
mod run;
mod stream;
mod topology;
mod uri;

use getopts::{Matches, Options};
use run::RunConfig;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use uri::AmqpUri;

const EXIT_USAGE: u8 = 64;
const EXIT_RUN: u8 = 1;
/// How long --wait-ready polls by default.
const WAIT_READY_SECS_DEFAULT: u64 = 60;

fn options() -> Options {
    let mut o = Options::new();
    o.optopt(
        "h",
        "uri",
        "broker URI (default amqp://guest:guest@localhost:5672/%2F)",
        "URI",
    );
    o.optopt(
        "",
        "cacert",
        "PEM file of the CA that an amqps:// broker's certificate must chain to",
        "FILE",
    );
    o.optopt("x", "producers", "producer connections (default 1)", "N");
    o.optopt(
        "y",
        "consumers",
        "consumer connections per queue (default 1)",
        "N",
    );
    o.optopt(
        "s",
        "size",
        "message body size in bytes (default 16; >= 16 carries a latency stamp)",
        "BYTES",
    );
    o.optopt("u", "queue", "queue name (default coney-perf)", "NAME");
    o.optopt(
        "e",
        "exchange",
        "exchange to publish to (default: the default exchange)",
        "NAME",
    );
    o.optopt("t", "type", "exchange type (default direct)", "TYPE");
    o.optopt(
        "k",
        "routing-key",
        "routing key (default: the queue name)",
        "KEY",
    );
    o.optflag("a", "autoack", "consume with no_ack");
    o.optopt(
        "q",
        "qos",
        "consumer prefetch count (default 0: unlimited)",
        "N",
    );
    o.optopt(
        "A",
        "multi-ack-every",
        "ack every N messages with multiple=true",
        "N",
    );
    o.optopt(
        "c",
        "confirm",
        "max unconfirmed publishes per producer (0: no confirms)",
        "N",
    );
    o.optmulti(
        "f",
        "flag",
        "message flag: persistent or mandatory (repeatable)",
        "FLAG",
    );
    o.optopt("r", "rate", "publish rate limit per producer in msg/s", "N");
    o.optopt("z", "time", "run duration in seconds", "SECS");
    o.optopt("C", "pmessages", "messages per producer", "N");
    o.optopt("D", "cmessages", "messages per consumer", "N");
    o.optflag(
        "",
        "queue-durable",
        "declare durable queues (implied by -f persistent)",
    );
    o.optopt(
        "",
        "queues",
        "N queues QUEUE-0.. bound to the exchange, consumers on each",
        "N",
    );
    o.optopt(
        "",
        "routing-keys-random",
        "publish with keys drawn from N topic keys s*.m*.e*",
        "N",
    );
    o.optopt(
        "",
        "topic-bindings",
        "bind N generated topic keys (wildcards and exact)",
        "N",
    );
    o.optopt(
        "",
        "max-priority",
        "declare queues with x-max-priority N, publish priorities 0..=N at random",
        "N",
    );
    o.optopt(
        "",
        "max-length",
        "declare queues with x-max-length N (drop-head)",
        "N",
    );
    o.optopt(
        "",
        "retry-ttl",
        "TTL + dead-letter retry loop: first deliveries are rejected into QUEUE.retry, which sends them back after MS",
        "MS",
    );
    o.optflag(
        "",
        "no-cleanup",
        "keep the queues and exchange after the run",
    );
    o.optopt(
        "",
        "broker-pid",
        "report CPU seconds and peak RSS of this process",
        "PID",
    );
    o.optflag("", "json", "print only the final JSON summary");
    o.optopt(
        "",
        "idle-connections",
        "open N idle connections (one channel each), report broker RSS",
        "N",
    );
    o.optopt(
        "",
        "idle-hold",
        "seconds to hold idle connections before closing (default 0)",
        "SECS",
    );
    o.optopt(
        "",
        "declare-queues",
        "declare N queues, each bound to amq.direct, then report broker RSS per queue and idle CPU",
        "N",
    );
    o.optopt(
        "",
        "durable-every",
        "for --declare-queues: every K-th queue is durable (default 10; 0: none)",
        "K",
    );
    o.optopt(
        "",
        "idle-secs",
        "for --declare-queues: seconds the broker is left idle for its CPU (default 10)",
        "SECS",
    );
    o.optflag(
        "",
        "wait-ready",
        "poll-connect until an AMQP handshake succeeds, report times",
    );
    o.optopt(
        "",
        "since",
        "for --wait-ready: start instant in seconds since the epoch (bash $EPOCHREALTIME)",
        "SECS",
    );
    o.optopt(
        "",
        "timeout",
        "for --wait-ready: give up after this many seconds (default 60)",
        "SECS",
    );
    o.optflag("", "help", "print this help");
    o
}

fn num<T: std::str::FromStr>(m: &Matches, name: &str) -> Result<Option<T>, String> {
    match m.opt_str(name) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| format!("--{name}: '{v}' is not a valid number")),
    }
}

fn run_config(m: &Matches) -> Result<RunConfig, String> {
    let mut c = RunConfig::default();
    if let Some(u) = m.opt_str("uri") {
        c.uri = AmqpUri::parse(&u)?;
    }
    c.producers = num(m, "producers")?.unwrap_or(c.producers);
    c.consumers = num(m, "consumers")?.unwrap_or(c.consumers);
    c.body_bytes = num(m, "size")?.unwrap_or(c.body_bytes);
    c.queue = m.opt_str("queue").unwrap_or(c.queue);
    c.exchange = m.opt_str("exchange").unwrap_or(c.exchange);
    c.exchange_type = m.opt_str("type").unwrap_or(c.exchange_type);
    c.routing_key = m.opt_str("routing-key");
    c.autoack = m.opt_present("autoack");
    c.prefetch = num(m, "qos")?.unwrap_or(0);
    c.multi_ack_every = num(m, "multi-ack-every")?.unwrap_or(0);
    c.confirm_window = num(m, "confirm")?.unwrap_or(0);
    for f in m.opt_strs("flag") {
        match f.to_ascii_lowercase().as_str() {
            "persistent" => c.persistent = true,
            "mandatory" => c.mandatory = true,
            other => {
                return Err(format!(
                    "-f: unknown flag '{other}' (persistent, mandatory)"
                ))
            }
        }
    }
    c.rate_per_producer = num(m, "rate")?.unwrap_or(0.0);
    c.duration = num::<f64>(m, "time")?.map(Duration::from_secs_f64);
    c.producer_count = num(m, "pmessages")?;
    c.consumer_count = num(m, "cmessages")?;
    c.queue_durable = m.opt_present("queue-durable") || c.persistent;
    c.queues = num(m, "queues")?.unwrap_or(1).max(1);
    c.routing_keys_random = num(m, "routing-keys-random")?.unwrap_or(0);
    c.topic_bindings = num(m, "topic-bindings")?.unwrap_or(0);
    c.max_priority = num(m, "max-priority")?;
    c.max_length = num(m, "max-length")?;
    c.retry_ttl_ms = num(m, "retry-ttl")?;
    if c.retry_ttl_ms.is_some() && c.autoack {
        return Err("--retry-ttl needs manual acks (no -a): first deliveries are rejected".into());
    }
    c.cleanup = !m.opt_present("no-cleanup");
    c.broker_pid = num(m, "broker-pid")?;
    c.json_only = m.opt_present("json");
    if c.exchange.is_empty() && (c.queues > 1 || c.topic_bindings > 0 || c.routing_keys_random > 0)
    {
        return Err(
            "--queues, --topic-bindings and --routing-keys-random need an exchange (-e)".into(),
        );
    }
    if c.duration.is_some_and(|d| d.as_secs() > run::RUN_SECS_MAX) {
        return Err(format!("-z: at most {} seconds", run::RUN_SECS_MAX));
    }
    if !c.autoack && c.prefetch > 0 && c.multi_ack_every > c.prefetch as u32 {
        // Acking only every N > prefetch messages would wait forever for the N-th delivery.
        eprintln!(
            "coney-perf: -A {} exceeds -q {}; acking every {} instead",
            c.multi_ack_every, c.prefetch, c.prefetch
        );
        c.multi_ack_every = c.prefetch as u32;
    }
    if c.body_bytes < load::STAMP_BYTES && !c.json_only {
        eprintln!(
            "coney-perf: bodies under {} bytes carry no timestamp; latency is not measured",
            load::STAMP_BYTES
        );
    }
    Ok(c)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let opts = options();
    let m = match opts.parse(&args[1..]) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("coney-perf: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if m.opt_present("help") {
        print!(
            "{}",
            opts.usage(
                "Usage: coney-perf [options]\n\nAMQP 0-9-1 load generator (PerfTest flags)."
            )
        );
        return ExitCode::SUCCESS;
    }
    if let Some(ca) = m.opt_str("cacert") {
        if let Err(e) = stream::set_ca_file(&ca) {
            eprintln!("coney-perf: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    }
    let outcome = if m.opt_present("wait-ready") {
        wait_ready(&m)
    } else if m.opt_present("idle-connections") {
        idle(&m)
    } else if m.opt_present("declare-queues") {
        declare_queues(&m)
    } else {
        run_config(&m).and_then(|c| run::run(c).map(|s| println!("{}", s.to_json())))
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.starts_with("usage:") => {
            eprintln!("coney-perf: {e}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(e) => {
            eprintln!("coney-perf: {e}");
            ExitCode::from(EXIT_RUN)
        }
    }
}

fn uri_of(m: &Matches) -> Result<AmqpUri, String> {
    m.opt_str("uri")
        .map_or(Ok(AmqpUri::default()), |u| AmqpUri::parse(&u))
}

fn idle(m: &Matches) -> Result<(), String> {
    let uri = uri_of(m)?;
    let n: usize = num(m, "idle-connections")?.unwrap_or(0);
    let hold: f64 = num(m, "idle-hold")?.unwrap_or(0.0);
    let pid: Option<u32> = num(m, "broker-pid")?;
    let s = probe::idle_connections(&uri, n, Duration::from_secs_f64(hold), pid);
    println!("{}", s.to_json());
    Ok(())
}

fn declare_queues(m: &Matches) -> Result<(), String> {
    let uri = uri_of(m)?;
    let n: usize = num(m, "declare-queues")?.unwrap_or(0);
    let every: usize = num(m, "durable-every")?.unwrap_or(10);
    let idle: f64 = num(m, "idle-secs")?.unwrap_or(10.0);
    if idle > run::RUN_SECS_MAX as f64 {
        return Err(format!("--idle-secs: at most {}", run::RUN_SECS_MAX));
    }
    let pid: Option<u32> = num(m, "broker-pid")?;
    let s = queues::many_queues(&uri, n, every, Duration::from_secs_f64(idle), pid)?;
    println!("{}", s.to_json());
    Ok(())
}

fn wait_ready(m: &Matches) -> Result<(), String> {
    let uri = uri_of(m)?;
    let since = match num::<f64>(m, "since")? {
        Some(s) => UNIX_EPOCH + Duration::from_secs_f64(s),
        None => SystemTime::now(),
    };
    let timeout = num(m, "timeout")?.unwrap_or(WAIT_READY_SECS_DEFAULT);
    let (tcp_ms, amqp_ms) = probe::wait_ready(&uri, since, Duration::from_secs(timeout))?;
    println!("{{\"tcp_accept_ms\":{tcp_ms:.1},\"amqp_open_ms\":{amqp_ms:.1}}}");
    Ok(())
}
