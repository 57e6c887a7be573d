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

fn write(m: &Management<'_>, out: &mut Vec<u8>, per_object: bool) {
    let (mut connections, mut channels) = (0u64, 0u64);
    m.conns.each(&mut |row| {
        connections += 1;
        channels += row.session.channel_count() as u64;
    });
    let gauge = |out: &mut Vec<u8>, name: &str, help: &str, v: u64| {
        Family::begin(out, name, help, MetricType::Gauge).sample(&[], v);
    };
    let counter = |out: &mut Vec<u8>, name: &str, help: &str, v: u64| {
        Family::begin(out, name, help, MetricType::Counter).sample(&[], v);
    };
    let a = m.alarms;
    for (name, on) in [
        ("rabbitmq_alarms_file_descriptor_limit", false),
        ("rabbitmq_alarms_free_disk_space_watermark", a.disk),
        ("rabbitmq_alarms_memory_used_watermark", a.memory),
    ] {
        Family::begin(
            out,
            name,
            "is 1 if the alarm is in effect",
            MetricType::Untyped,
        )
        .sample(&[], u64::from(on));
    }
    let (open_fds, max_fds) = fds();
    gauge(
        out,
        "rabbitmq_process_open_fds",
        "Open file descriptors",
        open_fds,
    );
    gauge(
        out,
        "rabbitmq_process_max_fds",
        "Open file descriptors limit",
        max_fds,
    );
    gauge(
        out,
        "rabbitmq_process_resident_memory_bytes",
        "Memory used in bytes",
        resident_bytes(),
    );
    gauge(
        out,
        "rabbitmq_resident_memory_limit_bytes",
        "Memory high watermark in bytes",
        a.memory_limit_bytes,
    );
    if let Some(free) = a.disk_free_bytes {
        gauge(
            out,
            "rabbitmq_disk_space_available_bytes",
            "Disk space available in bytes",
            free,
        );
    }
    gauge(
        out,
        "rabbitmq_disk_space_available_limit_bytes",
        "Free disk space low watermark in bytes",
        a.disk_free_limit_bytes,
    );
    let t = m.broker.totals();
    gauge(out, "rabbitmq_queues", "Queues available", t.queues);
    gauge(
        out,
        "rabbitmq_consumers",
        "Consumers currently connected",
        t.consumers,
    );
    write_queues(m, out, per_object, t);
    write_connection_io(m, out, per_object);
    gauge(
        out,
        "rabbitmq_connections",
        "Connections currently open",
        connections,
    );
    gauge(
        out,
        "rabbitmq_channels",
        "Channels currently open",
        channels,
    );
    counter(
        out,
        "rabbitmq_connections_opened_total",
        "Total number of connections opened",
        m.stats.connections_opened,
    );
    counter(
        out,
        "rabbitmq_connections_closed_total",
        "Total number of connections closed or terminated",
        m.stats.connections_closed,
    );
    write_channels(m, out, per_object);
    write_end(out);
}

/// One open channel's figures for the channel families.
struct ChannelSample {
    name: String,
    gauges: [u64; 6],
    counts: crate::session::stats::ChannelCounters,
}

/// The channel families. As rabbitmq_prometheus, they cover the channels open now (a closed
/// channel's counts go with it): gauges per channel under its `channel` label in
/// `/metrics/per-object` (coney's API name of the channel where RabbitMQ has its pid), summed
/// in `/metrics`. The message counters are summed in both: RabbitMQ's per-object ones are
/// per channel and exchange or queue, finer than coney counts (README).
fn write_channels(m: &Management<'_>, out: &mut Vec<u8>, per_object: bool) {
    use crate::session::stats::ChannelCounters;
    let epoch = m.broker.rate_epoch();
    let mut rows: Vec<ChannelSample> = Vec::new();
    m.conns.each(&mut |row| {
        let conn = row.name();
        row.session.each_channel(epoch, |ch| {
            rows.push(ChannelSample {
                name: format!("{conn} ({})", ch.number),
                gauges: [
                    ch.consumers as u64,
                    ch.unacked as u64,
                    ch.unconfirmed,
                    ch.uncommitted as u64,
                    ch.acks_uncommitted as u64,
                    ch.global_prefetch_count.into(),
                ],
                counts: ch.stats.total,
            })
        });
    });
    let gauges = [
        ("rabbitmq_channel_consumers", "Consumers on a channel"),
        (
            "rabbitmq_channel_messages_unacked",
            "Delivered but not yet acknowledged messages",
        ),
        (
            "rabbitmq_channel_messages_unconfirmed",
            "Published but not yet confirmed messages",
        ),
        (
            "rabbitmq_channel_messages_uncommitted",
            "Messages received in a transaction but not yet committed",
        ),
        (
            "rabbitmq_channel_acks_uncommitted",
            "Message acknowledgements in a transaction not yet committed",
        ),
        (
            "rabbitmq_channel_prefetch",
            "Total limit of unacknowledged messages for all consumers on a channel",
        ),
    ];
    for (i, (name, help)) in gauges.into_iter().enumerate() {
        let mut f = Family::begin(out, name, help, MetricType::Gauge);
        if per_object {
            for r in &rows {
                f.sample(&[("channel", &r.name)], r.gauges[i]);
            }
        } else {
            f.sample(&[], rows.iter().map(|r| r.gauges[i]).sum::<u64>());
        }
    }
    type Pick = fn(&ChannelCounters) -> u64;
    let counters: [(&str, &str, Pick); 11] = [
        ("rabbitmq_channel_messages_published_total", "Total number of messages published into an exchange on a channel", |c| c.publish),
        ("rabbitmq_channel_messages_confirmed_total", "Total number of messages published into an exchange and confirmed on the channel", |c| c.confirm),
        ("rabbitmq_channel_messages_unroutable_returned_total", "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable", |c| c.return_unroutable),
        ("rabbitmq_channel_messages_unroutable_dropped_total", "Total number of messages published as non-mandatory into an exchange and dropped as unroutable", |c| c.drop_unroutable),
        ("rabbitmq_channel_get_ack_total", "Total number of messages fetched with basic.get in manual acknowledgement mode", |c| c.get),
        ("rabbitmq_channel_get_total", "Total number of messages fetched with basic.get in automatic acknowledgement mode", |c| c.get_no_ack),
        ("rabbitmq_channel_messages_delivered_ack_total", "Total number of messages delivered to consumers in manual acknowledgement mode", |c| c.deliver),
        ("rabbitmq_channel_messages_delivered_total", "Total number of messages delivered to consumers in automatic acknowledgement mode", |c| c.deliver_no_ack),
        ("rabbitmq_channel_messages_redelivered_total", "Total number of messages redelivered to consumers", |c| c.redeliver),
        ("rabbitmq_channel_messages_acked_total", "Total number of messages acknowledged by consumers", |c| c.ack),
        ("rabbitmq_channel_get_empty_total", "Total number of times basic.get operations fetched no message", |c| c.get_empty),
    ];
    for (name, help, pick) in counters {
        Family::begin(out, name, help, MetricType::Counter)
            .sample(&[], rows.iter().map(|r| pick(&r.counts)).sum::<u64>());
    }
}

/// rabbitmq_prometheus's connection traffic counters: summed (`/metrics`) or one per
/// connection (`/metrics/per-object`) under rabbitmq_prometheus's label for it, `channel`
/// (there the connection's Erlang pid; here its API name).
fn write_connection_io(m: &Management<'_>, out: &mut Vec<u8>, per_object: bool) {
    use crate::net::io_stats::IoCounters;
    type Pick = fn(&IoCounters) -> u64;
    let families: [(&str, &str, Pick); 4] = [
        (
            "rabbitmq_connection_incoming_bytes_total",
            "Total number of bytes received on a connection",
            |c| c.recv_oct,
        ),
        (
            "rabbitmq_connection_outgoing_bytes_total",
            "Total number of bytes sent on a connection",
            |c| c.send_oct,
        ),
        (
            "rabbitmq_connection_incoming_packets_total",
            "Total number of packets received on a connection",
            |c| c.recv_cnt,
        ),
        (
            "rabbitmq_connection_outgoing_packets_total",
            "Total number of packets sent on a connection",
            |c| c.send_cnt,
        ),
    ];
    let mut rows: Vec<(String, IoCounters)> = Vec::new();
    m.conns.each(&mut |row| rows.push((row.name(), row.io.now)));
    for (name, help, pick) in families {
        let mut f = Family::begin(out, name, help, MetricType::Counter);
        if per_object {
            for (conn, io) in &rows {
                f.sample(&[("channel", conn)], pick(io));
            }
        } else {
            f.sample(&[], rows.iter().map(|(_, io)| pick(io)).sum::<u64>());
        }
    }
}

/// The queue families: one sample each, summed over queues (`/metrics`, as
/// rabbitmq_prometheus aggregates by default), or one per queue labelled with its vhost and
/// name (`/metrics/per-object`).
fn write_queues(m: &Management<'_>, out: &mut Vec<u8>, per_object: bool, t: crate::broker::Totals) {
    type Pick = fn(&crate::broker::QueueView) -> u64;
    let families: [(&str, &str, Pick, u64); 4] = [
        (
            "rabbitmq_queue_messages_ready",
            "Messages ready to be delivered to consumers",
            |q| q.ready,
            t.ready,
        ),
        (
            "rabbitmq_queue_messages_unacked",
            "Messages delivered to consumers but not yet acknowledged",
            |q| q.unacked,
            t.unacked,
        ),
        (
            "rabbitmq_queue_messages",
            "Sum of ready and unacknowledged messages - total queue depth",
            |q| q.ready + q.unacked,
            t.ready + t.unacked,
        ),
        (
            "rabbitmq_queue_consumers",
            "Consumers on a queue",
            |q| q.consumers,
            t.consumers,
        ),
    ];
    if !per_object {
        for (name, help, _, total) in families {
            Family::begin(out, name, help, MetricType::Gauge).sample(&[], total);
        }
        return;
    }
    let queues = m.broker.queue_views(None);
    for (name, help, pick, _) in families {
        let mut f = Family::begin(out, name, help, MetricType::Gauge);
        for q in &queues {
            f.sample(&[("vhost", &q.vhost), ("queue", &q.name)], pick(q));
        }
    }
}

/// Open file descriptors (entries of /proc/self/fd) and the soft limit.
pub(super) fn fds() -> (u64, u64) {
    let open = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given.
    let max = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur
    } else {
        0
    };
    (open, max)
}

/// RSS from /proc/self/statm (pages × page size); 0 where /proc is absent.
pub(super) fn resident_bytes() -> u64 {
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
