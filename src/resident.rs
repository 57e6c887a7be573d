//! Hands back, once start-up is over, the page mappings that start-up code left behind.
//!
//! The kernel maps a file's pages 64 KiB around each page a process touches ("fault-around"),
//! so the option parsing, store opening and definitions code that runs once at start leaves
//! some 3 MB of the binary's and libc's pages counted in the idle broker's RSS. They are clean
//! pages of files (the page cache keeps them): dropping the mappings (`MADV_DONTNEED`) frees
//! nothing the machine needs and changes no data, and the loop maps again, from the page cache
//! and without disk I/O, only the code it runs. Only mappings that cannot hold a private copy
//! of a page are dropped: read-only, file-backed, private, and `Anonymous: 0 kB` (a
//! relocated read-only segment such as RELRO has copied pages and is left alone).

use std::fs;

/// One mapping of /proc/self/smaps while its fields are read.
struct Mapping {
    start: usize,
    len: usize,
    /// Read-only, private, backed by a file.
    eligible: bool,
    rss_kb: u64,
    anon_kb: u64,
}

impl Mapping {
    /// Parses a header line ("start-end perms offset dev inode path"); None for a field line.
    fn from_header(line: &str) -> Option<Mapping> {
        let mut parts = line.split_whitespace();
        let (start, end) = parts.next()?.split_once('-')?;
        let start = usize::from_str_radix(start, 16).ok()?;
        let end = usize::from_str_radix(end, 16).ok()?;
        let perms = parts.next()?.as_bytes();
        let inode = parts.nth(2)?;
        let path = parts.next().unwrap_or("");
        let eligible = perms.len() == 4
            && perms[0] == b'r'
            && perms[1] == b'-'
            && perms[3] == b'p'
            && inode != "0"
            && path.starts_with('/');
        Some(Mapping {
            start,
            len: end.checked_sub(start)?,
            eligible,
            rss_kb: 0,
            anon_kb: 0,
        })
    }

    fn droppable(&self) -> bool {
        self.eligible && self.anon_kb == 0 && self.rss_kb > 0
    }
}

/// The kB figure of a field line such as "Rss:     1234 kB".
fn field_kb(line: &str, name: &str) -> Option<u64> {
    line.strip_prefix(name)?
        .strip_prefix(':')?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The mappings `drop_startup_pages` may drop, from the text of /proc/self/smaps.
fn droppable(smaps: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut current: Option<Mapping> = None;
    for line in smaps.lines() {
        if let Some(next) = Mapping::from_header(line) {
            if let Some(m) = current.replace(next) {
                if m.droppable() {
                    out.push((m.start, m.len));
                }
            }
        } else if let Some(m) = current.as_mut() {
            if let Some(kb) = field_kb(line, "Rss") {
                m.rss_kb = kb;
            } else if let Some(kb) = field_kb(line, "Anonymous") {
                m.anon_kb = kb;
            }
        }
    }
    if let Some(m) = current {
        if m.droppable() {
            out.push((m.start, m.len));
        }
    }
    out
}

/// Drops the mappings of the clean file pages in read-only mappings; returns how many
/// mappings were dropped. Linux only; elsewhere, or if smaps cannot be read, does nothing.
pub fn drop_startup_pages() -> usize {
    let Ok(smaps) = fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    let mut dropped = 0;
    for (start, len) in droppable(&smaps) {
        // SAFETY: the range is one whole read-only private file mapping with no anonymous
        // (copied) page, as smaps reported it just now: MADV_DONTNEED only removes its
        // page-table entries, and the next access (from any thread) maps the same file page
        // again, so no memory the program reads changes.
        let rc = unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        if rc == 0 {
            dropped += 1;
        }
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0a0000000-55d0a0100000 r--p 00000000 08:01 1234 /usr/bin/coney
Rss:                 576 kB
Anonymous:             0 kB
55d0a0100000-55d0a0500000 r-xp 00100000 08:01 1234 /usr/bin/coney
Rss:                2840 kB
Anonymous:             0 kB
55d0a0500000-55d0a0510000 r--p 00500000 08:01 1234 /usr/bin/coney
Rss:                  68 kB
Anonymous:            68 kB
55d0a0510000-55d0a0511000 rw-p 00510000 08:01 1234 /usr/bin/coney
Rss:                   4 kB
Anonymous:             4 kB
7f0000000000-7f0000001000 r--p 00000000 00:00 0 
Rss:                   4 kB
Anonymous:             0 kB
7f0000002000-7f0000003000 r--s 00000000 08:01 99 /tmp/shared
Rss:                   4 kB
Anonymous:             0 kB
7f0000004000-7f0000006000 r-xp 00000000 00:00 0 [vdso]
Rss:                   8 kB
Anonymous:             0 kB
7f0000010000-7f0000020000 r-xp 00000000 08:01 77 /usr/lib/libc.so.6
Rss:                  64 kB
Anonymous:             0 kB
";

    /// Only read-only private file mappings without copied pages are dropped: not RELRO
    /// (anonymous pages), not data, not anonymous or shared memory, not the vdso.
    #[test]
    fn only_clean_read_only_file_mappings_are_dropped() {
        assert_eq!(
            droppable(SMAPS),
            vec![
                (0x55d0a0000000, 0x100000),
                (0x55d0a0100000, 0x400000),
                (0x7f0000010000, 0x10000),
            ]
        );
    }

    fn status_kb(field: &str) -> u64 {
        let status = fs::read_to_string("/proc/self/status").unwrap();
        status.lines().find_map(|l| field_kb(l, field)).unwrap()
    }

    /// In this test process the drop leaves fewer file pages mapped, and code and constants
    /// still run and read as before.
    #[test]
    fn dropping_lowers_file_rss_and_keeps_code_working() {
        static TABLE: [u64; 4] = [3, 1, 4, 1];
        let before = status_kb("RssFile");
        assert!(drop_startup_pages() > 0);
        let after = status_kb("RssFile");
        assert!(after < before, "RssFile {before} -> {after} kB");
        assert_eq!(TABLE.iter().sum::<u64>(), 9);
        assert_eq!(format!("{}", 42), "42");
    }
}
