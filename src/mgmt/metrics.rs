//! GET /metrics and /metrics/per-object on the Prometheus listener, with rabbitmq_prometheus's
//! metric names, types and labels, so RabbitMQ's Grafana dashboards read coney unchanged.

use super::{Listing, Management};
use crate::http::prometheus::{write_end, Family, MetricType};
use crate::http::{ApiError, Method, Request, Response, Status};

pub(super) fn respond(m: &mut Management<'_>, req: &Request) -> Response<Listing> {
    if !matches!(req.method, Method::Get | Method::Head) {
        return ApiError::method_not_allowed("HEAD, GET, OPTIONS".into()).into_response();
    }
    let segs: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let per_object = match segs.as_slice() {
        ["metrics"] => false,
        ["metrics", "per-object"] => true,
        _ => return ApiError::not_found().into_response(),
    };
    let mut out = Vec::with_capacity(8 * 1024);
    write(m, &mut out, per_object);
    Response::new(Status::OK)
        .header("content-type", "text/plain; version=0.0.4")
        .bytes(out)
}

fn write(m: &Management<'_>, out: &mut Vec<u8>, _per_object: bool) {
    let c = m.broker.counters();
    let (mut connections, mut channels) = (0u64, 0u64);
    m.conns.each(&mut |row| {
        connections += 1;
        channels += row.session.channel_count() as u64;
    });
    Family::begin(
        out,
        "rabbitmq_connections",
        "Connections currently open",
        MetricType::Gauge,
    )
    .sample(&[], connections);
    Family::begin(
        out,
        "rabbitmq_channels",
        "Channels currently open",
        MetricType::Gauge,
    )
    .sample(&[], channels);
    Family::begin(
        out,
        "rabbitmq_channel_messages_published_total",
        "Total number of messages published into an exchange on a channel",
        MetricType::Counter,
    )
    .sample(&[], c.publish);
    Family::begin(
        out,
        "rabbitmq_process_resident_memory_bytes",
        "Memory used in bytes",
        MetricType::Gauge,
    )
    .sample(&[], resident_bytes());
    write_end(out);
}

/// RSS from /proc/self/statm (pages × page size); 0 where /proc is absent.
fn resident_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page.max(0) as u64
}
