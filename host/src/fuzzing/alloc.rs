//! The allocation meter of the proptest fuzzers: the host's unit tests run with
//! a global allocator that counts, per thread, the bytes live and their peak,
//! so a fuzzer can check that decoding N bytes never holds much more than N
//! bytes (a length field that claims 4 GiB must be refused before anything of
//! that size is allocated).

// The initializers below are `const` already; clippy's check misreads the
// macro's Windows expansion (seen with the distribution's cargo 1.96).
#![cfg_attr(windows, allow(clippy::missing_const_for_thread_local))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting.
struct Metered;

thread_local! {
    /// Bytes allocated minus bytes freed by this thread (frees of memory
    /// allocated elsewhere can make it negative; only differences matter).
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// The highest [`LIVE`] since the last [`peak_during`] began.
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn grew(bytes: usize) {
    // `try_with`: the allocator also runs while this thread's locals are torn down.
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(bytes as isize);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn shrank(bytes: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(bytes as isize)));
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged and only updates this thread's counters (const-initialized
// thread-locals without destructors, which never allocate).
unsafe impl GlobalAlloc for Metered {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: the caller's contract for `GlobalAlloc::alloc`, forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: the caller's contract for `GlobalAlloc::alloc_zeroed`, forwarded.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrank(layout.size());
        // SAFETY: the caller's contract for `GlobalAlloc::dealloc`, forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Counted as the new block arriving before the old one leaves: the peak
        // a copying reallocation really has.
        grew(new_size);
        shrank(layout.size());
        // SAFETY: the caller's contract for `GlobalAlloc::realloc`, forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static METERED: Metered = Metered;

/// Runs `f` and returns its result with the most bytes it held at once on this
/// thread (beyond what was live when it started).
pub fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(start));
    let result = f();
    let peak = PEAK.with(Cell::get);
    (result, peak.saturating_sub(start).max(0) as usize)
}
