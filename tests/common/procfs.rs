//! Readers of /proc for the tests: a field of a process's status (memory sizes) and its open
//! file descriptors. Included by each test binary that measures a process
//! (`#[path = "…/common/procfs.rs"] mod procfs;`); each uses only a part of it.
#![allow(dead_code)]

use std::fmt::Display;

/// A `kB` field of /proc/PID/status, e.g. "VmRSS" or "VmSize"; `pid` may be "self".
pub fn status_kb(pid: impl Display, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Resident set size of process `pid` in bytes (VmRSS of /proc/PID/status).
pub fn proc_rss_bytes(pid: u32) -> Option<u64> {
    Some(status_kb(pid, "VmRSS")? * 1024)
}

/// Open file descriptors of process `pid` (entries of /proc/PID/fd).
pub fn proc_fd_count(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// The machine's load average over the last minute (/proc/loadavg): a canary's round trip is
/// only as good as the CPU time the machine leaves it.
pub fn loadavg_1min() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    s.split_whitespace().next()?.parse().ok()
}
