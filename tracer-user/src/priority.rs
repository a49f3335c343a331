//! Who gets the CPU first when an audit and the command it follows want the
//! same cores.
//!
//! - The audit's bookkeeping (indexing software, compiling the redaction's
//!   patterns) must not take CPU from the command: it runs at the lowest
//!   priority, and what is left of it when the command ends is finished then.
//! - The thread that reads the kernel's ring buffer must not lose to the
//!   command: the kernel drops events when the ring is full, and a reader at
//!   the command's priority gets a thread's share of the cores. A storm from 8
//!   threads on 2 cores left a standalone audit's reader 2/9 of them, and it
//!   lost 4.3 of 10 million events; through the daemon, 16 threads made its
//!   reader lose 2,446. Raised, it takes the CPU it needs as events come, and
//!   the command, not the record of it, waits.
//!
//! Linux keeps nice values per thread, and a new thread starts with its
//! creator's: each function sets the calling thread's own.

use std::thread::JoinHandle;

use rustix::{
    process::{getpriority_process, setpriority_process},
    thread::gettid,
};

/// The ring reader's nice value: weight 9,548 against a command's thread's
/// 1,024 (nice 0), the share of more than nine of the command's threads.
const RING_READER_NICE: i32 = -10;

/// Runs `work` on a new thread named `name`, of the lowest priority (nice
/// 19). Fails as thread creation does (a limit on tasks reached).
pub fn spawn_at_lowest_priority<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<JoinHandle<T>> {
    std::thread::Builder::new().name(name.into()).spawn(move || {
        let _ = setpriority_process(Some(gettid()), 19);
        work()
    })
}

/// Raises the calling thread, the one that reads the ring buffer, above the
/// tasks it follows (unless it runs higher already), and with it the threads
/// and processes it creates from now on: call it once the audited command
/// has been started, which must keep the priority it was given. Without the
/// privilege to raise (`CAP_SYS_NICE`), the reader stays where it is: what it
/// then loses, the kernel counts and the manifest reports.
pub fn raise_ring_reader() {
    let tid = gettid();
    if getpriority_process(Some(tid)).is_ok_and(|nice| nice > RING_READER_NICE) {
        let _ = setpriority_process(Some(tid), RING_READER_NICE);
    }
}
