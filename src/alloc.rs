//! A counting global allocator: the process's heap bytes in use, read by the memory alarm.
//! One relaxed atomic add per allocation, so the figure is exact and costs no syscall. Also
//! how glibc's malloc is tuned: for large message bodies, and so that no free or allocation
//! does work that piled up over many.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
/// The most `ALLOCATED` reached since `take_peak_bytes` last read it.
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// Counts `size` more bytes in use and raises the peak. A load and a store, not an atomic
/// maximum (a locked instruction per allocation): the broker allocates on one thread, and a
/// peak missed by a race with another thread only delays a trim.
#[inline(always)]
fn count_alloc(size: usize) {
    let now = ALLOCATED.fetch_add(size, Ordering::Relaxed) + size;
    if now > PEAK.load(Ordering::Relaxed) {
        PEAK.store(now, Ordering::Relaxed);
    }
}

pub struct CountingAlloc;

// SAFETY: every call forwards to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            count_alloc(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            count_alloc(layout.size());
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
            count_alloc(new_size);
        }
        p
    }
}

/// Heap bytes in use, if the binary installed `CountingAlloc`; 0 otherwise.
pub(crate) fn allocated_bytes() -> usize {
    ALLOCATED.load(Ordering::Relaxed)
}

/// The most heap in use at any moment since the last call (0 without `CountingAlloc`); the
/// next period starts from what is in use now.
pub(crate) fn take_peak_bytes() -> usize {
    PEAK.swap(ALLOCATED.load(Ordering::Relaxed), Ordering::Relaxed)
}

/// Allocations up to this size come from the heap, not from a fresh mmap each: a large body's
/// buffer then reuses pages a freed one left instead of faulting in (and having the kernel
/// zero) every page again. glibc's own sliding threshold does this too, but only until a trim
/// threshold is set; 32 MiB is the most mallopt accepts on 64-bit glibc (HEAP_MAX_SIZE / 2).
const MMAP_THRESHOLD_BYTES: i32 = 32 * 1024 * 1024;
/// Free memory at the top of the heap kept by `free` for reuse (instead of glibc's 128 KiB or
/// its sliding twice-the-mmap-threshold); the reactor hands freed memory back with
/// `malloc_trim` once the heap has stayed smaller (`Reactor::return_freed_memory`).
const TRIM_THRESHOLD_BYTES: i32 = 64 * 1024 * 1024;

/// Tunes glibc's malloc. Call once at start.
/// - Thresholds for a stream of large bodies: 16 MiB bodies cost a third less CPU (a tenth of
///   the page faults) measured with scripts/bench.sh (k).
/// - No fastbins (`M_MXFAST` 0): glibc keeps freed small chunks unmerged in fastbins and merges
///   all of them at the next large request (`malloc_consolidate`); after a queue of 500,000
///   messages was purged that one merge took 20 ms of a loop turn (tests/hostile, messages).
///   Small chunks are merged as they are freed instead; the per-thread cache still serves the
///   hot sizes without a merge.
pub fn tune_malloc() {
    // SAFETY: mallopt only changes glibc's parameters; every value is in range.
    let ok = unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
            && libc::mallopt(libc::M_MXFAST, 0) == 1
    };
    if !ok {
        log::warn!("mallopt refused coney's settings; large bodies or large frees will cost more");
    }
}
