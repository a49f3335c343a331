//! Threads for an audit's bookkeeping (indexing software, compiling the
//! redaction's patterns) while the command runs: they must not take CPU from
//! the command being audited, so they run at the lowest priority, and what
//! is left of their work when the command ends is finished then.

use std::thread::JoinHandle;

/// Runs `work` on a new thread named `name`, of the lowest priority (nice
/// 19; Linux keeps nice values per thread: the new thread's own id). Fails
/// as thread creation does (a limit on tasks reached).
pub fn spawn_at_lowest_priority<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<JoinHandle<T>> {
    std::thread::Builder::new().name(name.into()).spawn(move || {
        let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19);
        work()
    })
}
