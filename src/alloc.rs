//! A counting global allocator: the process's heap bytes in use, read by the memory alarm.
//! One relaxed atomic add per allocation, so the figure is exact and costs no syscall. And
//! the settings of glibc's malloc that keep a free from costing one loop turn the work of many.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

pub struct CountingAlloc;

// SAFETY: every call forwards to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
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
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
            ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

/// Heap bytes in use, if the binary installed `CountingAlloc`; 0 otherwise.
pub(crate) fn allocated_bytes() -> usize {
    ALLOCATED.load(Ordering::Relaxed)
}

/// Sets glibc's malloc so that no single allocation or free does work that piled up over
/// many (`tune_malloc` is called once, first thing in `main`):
/// - no fastbins (`M_MXFAST` 0): glibc keeps freed small chunks unmerged in fastbins and merges
///   all of them at the next large request (`malloc_consolidate`); after a queue of 500,000
///   messages was purged that one merge took 20 ms of a loop turn (tests/hostile, messages).
///   Small chunks are merged as they are freed instead; the per-thread cache still serves the
///   hot sizes without a merge.
/// - a fixed mmap threshold (`MALLOC_MMAP_THRESHOLD_BYTES`): glibc raises its threshold up to
///   32 MiB as large buffers are freed, after which a queue or table growing past a few MiB
///   is copied to a new heap block (memcpy and a page fault per page, 10 ms for a queue of
///   500,000); above the fixed threshold blocks are mmapped and grow by mremap, without a copy.
pub fn tune_malloc() {
    use crate::limits::MALLOC_MMAP_THRESHOLD_BYTES;
    // SAFETY: mallopt only changes allocator parameters; both values are valid for glibc
    // 2.17 and later (a refused setting returns 0 and leaves the default).
    unsafe {
        libc::mallopt(libc::M_MXFAST, 0);
        libc::mallopt(
            libc::M_MMAP_THRESHOLD,
            MALLOC_MMAP_THRESHOLD_BYTES as libc::c_int,
        );
    }
}
