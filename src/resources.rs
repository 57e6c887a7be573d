//! Resource alarms as RabbitMQ has them: memory above the high watermark, or free disk below
//! the limit. While either is raised, publishing connections are sent connection.blocked and
//! are not read; consumers keep draining. Checked cheaply: memory every loop turn from the
//! counting allocator, disk once a second with statvfs.

use crate::alloc::allocated_bytes;
use crate::config::{Config, MemoryWatermark};
use log::warn;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// An alarm clears only this far below its trigger, so it does not flap every turn.
const HYSTERESIS_PERCENT: u64 = 5;

/// The machine's memory, or the cgroup's limit if lower (containers, systemd slices).
pub fn total_memory_bytes() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let machine = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(u64::MAX, |kb| kb * 1024);
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .filter_map(|p| std::fs::read_to_string(p).ok())
    .filter_map(|s| s.trim().parse::<u64>().ok())
    .min()
    .unwrap_or(u64::MAX);
    machine.min(cgroup)
}

/// Free bytes available to us on the filesystem holding `dir`.
pub fn free_disk_bytes(dir: &Path) -> Option<u64> {
    let c = CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we pass; the path is NUL-terminated.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return None;
        }
        Some(st.f_bavail as u64 * st.f_frsize as u64)
    }
}

pub struct Alarms {
    pub memory_limit_bytes: u64,
    pub disk_free_limit_bytes: u64,
    pub memory: bool,
    pub disk: bool,
    /// Free bytes on the data dir's filesystem at the last check (reported by the API).
    pub disk_free_bytes: Option<u64>,
}

impl Alarms {
    pub fn new(config: &Config) -> Self {
        let memory_limit_bytes = match config.vm_memory_high_watermark {
            MemoryWatermark::Absolute(b) => b,
            MemoryWatermark::Relative(f) => (total_memory_bytes() as f64 * f) as u64,
        };
        Alarms {
            memory_limit_bytes,
            disk_free_limit_bytes: config.disk_free_limit_bytes,
            memory: false,
            disk: false,
            disk_free_bytes: None,
        }
    }

    pub fn any(&self) -> bool {
        self.memory || self.disk
    }

    /// The reason connection.blocked gives.
    pub fn reason(&self) -> &'static str {
        if self.memory {
            "low on memory"
        } else {
            "low on disk"
        }
    }

    /// Re-evaluates the memory alarm; returns true if it changed.
    pub fn check_memory(&mut self) -> bool {
        let used = allocated_bytes() as u64;
        let limit = self.memory_limit_bytes;
        let was = self.memory;
        if !was && used > limit {
            warn!("memory alarm set: {used} bytes in use, high watermark {limit}; blocking publishers");
            self.memory = true;
        } else if was && used < limit - limit * HYSTERESIS_PERCENT / 100 {
            warn!("memory alarm cleared: {used} bytes in use");
            self.memory = false;
        }
        was != self.memory
    }

    /// Re-evaluates the disk alarm; returns true if it changed.
    pub fn check_disk(&mut self, dir: &Path) -> bool {
        match free_disk_bytes(dir) {
            Some(free) => self.update_disk(free, dir),
            None => false,
        }
    }

    /// The disk alarm given `free` bytes on the data dir's filesystem; true if it changed.
    fn update_disk(&mut self, free: u64, dir: &Path) -> bool {
        self.disk_free_bytes = Some(free);
        let limit = self.disk_free_limit_bytes;
        let was = self.disk;
        if !was && free < limit {
            warn!(
                "disk alarm set: {free} bytes free on {}, limit {limit}; blocking publishers",
                dir.display()
            );
            self.disk = true;
        } else if was && free > limit + limit * HYSTERESIS_PERCENT / 100 {
            warn!("disk alarm cleared: {free} bytes free");
            self.disk = false;
        }
        was != self.disk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The disk alarm is raised below the limit and cleared once free space is back above it
    /// (with 5% hysteresis); tests/durability/test_disk_alarm.py proves it on a real tmpfs.
    #[test]
    fn the_disk_alarm_clears_when_space_returns() {
        let mut a = Alarms {
            memory_limit_bytes: u64::MAX,
            disk_free_limit_bytes: 1000,
            memory: false,
            disk: false,
            disk_free_bytes: None,
        };
        let dir = Path::new("/data");
        assert!(!a.update_disk(5000, dir) && !a.disk);
        assert!(a.update_disk(999, dir) && a.disk, "below the limit: raised");
        assert!(
            !a.update_disk(1020, dir) && a.disk,
            "within the hysteresis: still raised"
        );
        assert!(
            a.update_disk(1051, dir) && !a.disk,
            "space returned: cleared"
        );
        assert!(a.update_disk(10, dir) && a.disk, "and raised again");
    }
}
