//! Threads for an audit's bookkeeping (indexing software, compiling the
//! redaction's patterns) while the command runs: they must not take CPU from
//! the command being audited, so they run at the lowest priority, and what
//! is left of their work when the command ends is finished then.

use std::thread::JoinHandle;

/// Runs `work` on a new thread of the lowest priority (nice 19; Linux keeps
/// nice values per thread: the new thread's own id).
pub fn spawn_at_lowest_priority<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    std::thread::spawn(move || {
        let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19);
        work()
    })
}
