//! CPU priority of background admission work.
//!
//! Admitting plugins (copying, hashing, probing, opening) is background work;
//! the async runtime's worker threads must keep getting the CPU when a timer or
//! an I/O event wakes them. So the probe child, the admission thread and the
//! opener thread run at nice [`BACKGROUND_NICE`]: on an idle core they run at
//! full speed; when a runtime worker wakes up it is preferred.
//!
//! On Linux the nice value is per thread (`setpriority(PRIO_PROCESS, tid)`), so
//! lowering one thread's priority leaves the rest of the process alone. An
//! unprivileged thread cannot raise its priority back, so only threads created
//! for admission work are lowered, never pooled ones.

/// Nice value of background admission threads and of the probe child.
pub const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's CPU priority to [`BACKGROUND_NICE`] (never
/// raises it). Best effort: failure leaves the priority unchanged.
pub fn lower_current_thread() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions; setpriority on our own thread id
        // only changes this thread's scheduling priority and reports failure
        // through its return value, which we ignore (best effort).
        unsafe {
            let tid = libc::gettid();
            let current = libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t);
            if current < BACKGROUND_NICE {
                libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, BACKGROUND_NICE);
            }
        }
    }
}
