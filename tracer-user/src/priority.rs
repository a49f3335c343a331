//! Who gets the CPU first when an audit and the command it follows want the
//! same cores.
//!
//! - The audit's bookkeeping (indexing software, compiling the redaction's
//!   patterns) must not take CPU from the command: it runs at the lowest
//!   priority, and what is left of it when the command ends is finished then.
//! - The thread that reads the kernel's ring buffer must not lose to the
//!   command: the kernel drops events when the ring is full, and a reader at
//!   the command's priority gets a thread's share of the cores. A burst of
//!   400,000 stats from 16 threads on 2 cores lost 200,000–250,000 of them
//!   in every run, through a 16 MiB ring. So the reader is raised before the
//!   command's first event, and the command, not the record of it, waits. A
//!   reader raised only at its first record lost most of such a burst in 1
//!   run of 17: that first record waited for it at the command's priority;
//!   one raised only once it found an eighth of the ring waiting lost events
//!   in 5 of 16.
//!
//! Linux keeps nice values per thread, and a new thread starts with its
//! creator's.

use std::thread::JoinHandle;

use rustix::{
    process::{getpriority_process, setpriority_process},
    thread::gettid,
};

/// A raised ring reader's nice value: weight 9,548 against a command's
/// thread's 1,024 (nice 0), the share of more than nine of the command's
/// threads.
const RAISED_NICE: i32 = -10;

/// Runs `work` on a new thread named `name`, of the lowest priority (nice
/// 19). Fails as thread creation does (a limit on tasks reached).
pub fn spawn_at_lowest_priority<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<JoinHandle<T>> {
    std::thread::Builder::new().name(name.into()).spawn(move || {
        let _ = setpriority_process(Some(gettid()), 19);
        // A new thread may start on its creator's CPU, at its priority, and
        // keep it for a whole time slice once lowered: the audit's start
        // then waited 1.2–1.7 ms for it in three of eight starts on a
        // virtual AMD host (0.05–0.2 ms in twelve of twelve with the yield).
        std::thread::yield_now();
        work()
    })
}

/// Gives each thread it is called on the calling thread's priority now: a
/// new thread starts with its creator's, and the runtime's blocking threads
/// (`tokio::runtime::Builder::on_thread_start`) may be started by a raised
/// reader, whose priority is not theirs to keep.
pub fn for_threads_started_later() -> impl Fn() + Send + Sync + 'static {
    let nice = getpriority_process(None).ok();
    move || {
        if let Some(nice) = nice {
            let _ = setpriority_process(Some(gettid()), nice);
        }
    }
}

/// Raises the calling thread, the one that reads the ring buffer, above the
/// tasks it follows (unless it runs at least as high already, or has not the
/// privilege, `CAP_SYS_NICE`: what it then loses the kernel counts, and the
/// manifest reports). Call it once the audited command has been started, so
/// that it keeps the priority it was given, and before its first event.
pub fn raise_ring_reader() {
    let thread = gettid();
    if getpriority_process(Some(thread)).is_ok_and(|nice| nice > RAISED_NICE) {
        let _ = setpriority_process(Some(thread), RAISED_NICE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On its own thread: the nice values it sets are that thread's.
    #[test]
    fn a_ring_reader_is_raised_and_the_threads_it_starts_are_not() {
        std::thread::spawn(|| {
            let nice = || getpriority_process(None).expect("own nice value");
            setpriority_process(None, 3).expect("a nice value of 3");
            let as_now = for_threads_started_later();
            raise_ring_reader();
            assert_eq!(nice(), RAISED_NICE, "raised (the tests run as root)");
            let started = std::thread::spawn(move || {
                as_now();
                getpriority_process(None).expect("a nice value")
            });
            assert_eq!(started.join().expect("a thread"), 3, "a thread started later keeps the process's priority");
            setpriority_process(None, RAISED_NICE - 1).expect("higher still");
            raise_ring_reader();
            assert_eq!(nice(), RAISED_NICE - 1, "a reader running higher is not lowered");
        })
        .join()
        .expect("the reader's thread");
    }
}
