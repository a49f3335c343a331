//! Who gets the CPU first when an audit and the command it follows want the
//! same cores.
//!
//! - The audit's bookkeeping (indexing software, compiling the redaction's
//!   patterns) must not take CPU from the command: it runs at the lowest
//!   priority, and what is left of it when the command ends is finished then.
//! - The thread that reads the kernel's ring buffer must not lose to the
//!   command: the kernel drops events when the ring is full, and a reader at
//!   the command's priority gets a thread's share of the cores. A storm from 16
//!   threads on 2 cores left a standalone audit's reader a seventeenth of
//!   them, and it lost 7 of 10 million events; the daemon's reader lost
//!   953,051. So the reader raises itself while it falls behind,
//!   and the command, not the record of it, waits. Only then: a reader raised
//!   all the time woke into the command's cores at once on every batch, and
//!   made a short storm through the daemon 4–7 ms slower (of 110).
//!
//! Linux keeps nice values per thread, and a new thread starts with its
//! creator's.

use std::{
    thread::JoinHandle,
    time::{Duration, Instant},
};

use rustix::{
    process::{getpriority_process, setpriority_process, Pid},
    thread::gettid,
};

/// A raised ring reader's nice value: weight 9,548 against a command's
/// thread's 1,024 (nice 0), the share of more than nine of the command's
/// threads.
const RAISED_NICE: i32 = -10;

/// How long a raised reader stays raised after it last fell behind: a storm
/// that goes on keeps it raised, without a system call per batch.
const CALM_AFTER: Duration = Duration::from_secs(1);

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

/// The priority of the thread that reads the ring buffer.
///
/// The kernel wakes the reader once a CPU has put 2,048 events in the ring (a
/// few hundred KiB), or its timer does: a reader that keeps up drains about
/// that much at a time. One that finds an eighth of the ring waiting has
/// fallen behind, and raises itself until it has kept up for [`CALM_AFTER`].
/// Drains come only once the audited command runs: it keeps the priority it
/// was given.
#[derive(Debug)]
pub struct ReaderPriority {
    /// Bytes found waiting in one drain that mean the reader fell behind.
    behind_at: usize,
    raised: Option<Raised>,
}

#[derive(Debug)]
struct Raised {
    thread: Pid,
    /// Its nice value before.
    restore: i32,
    last_behind: Instant,
}

impl ReaderPriority {
    pub fn for_ring_of(ring_bytes: usize) -> ReaderPriority {
        ReaderPriority { behind_at: ring_bytes / 8, raised: None }
    }

    /// Whether `drained`, the bytes of the current drain so far, say the
    /// reader has fallen behind (checked as each record is read: a reader
    /// that decodes what it reads may drain for long).
    pub fn is_behind(&self, drained: usize) -> bool {
        drained >= self.behind_at
    }

    /// The calling thread, the reader, fell behind: raises it (unless it runs
    /// at least as high already, or has not the privilege, `CAP_SYS_NICE`:
    /// what it then loses the kernel counts, and the manifest reports).
    pub fn fell_behind(&mut self) {
        let now = Instant::now();
        if let Some(raised) = &mut self.raised {
            raised.last_behind = now;
            return;
        }
        let thread = gettid();
        let Ok(restore) = getpriority_process(Some(thread)) else { return };
        if restore > RAISED_NICE && setpriority_process(Some(thread), RAISED_NICE).is_ok() {
            self.raised = Some(Raised { thread, restore, last_behind: now });
        }
    }

    /// After a drain: a reader raised that has kept up for [`CALM_AFTER`]
    /// goes back to its priority.
    pub fn drained(&mut self) {
        if self.raised.is_some() {
            self.drained_at(Instant::now());
        }
    }

    fn drained_at(&mut self, now: Instant) {
        if let Some(raised) = self.raised.take_if(|raised| now.duration_since(raised.last_behind) >= CALM_AFTER) {
            let _ = setpriority_process(Some(raised.thread), raised.restore);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On its own thread: the nice values it sets are that thread's.
    #[test]
    fn a_reader_is_raised_while_it_falls_behind_and_goes_back_once_calm() {
        std::thread::spawn(|| {
            let nice = || getpriority_process(None).expect("own nice value");
            setpriority_process(None, 3).expect("a nice value of 3");
            let mut reader = ReaderPriority::for_ring_of(8 << 20);
            assert!(!reader.is_behind(256 << 10), "a batch of a few hundred KiB is keeping up");
            assert!(reader.is_behind(1 << 20), "an eighth of the ring waiting is falling behind");
            reader.drained();
            assert_eq!(nice(), 3, "not raised before it falls behind");

            reader.fell_behind();
            assert_eq!(nice(), RAISED_NICE, "raised once behind (the tests run as root)");
            let behind = Instant::now();
            reader.drained_at(behind + CALM_AFTER / 2);
            assert_eq!(nice(), RAISED_NICE, "still raised soon after");
            reader.drained_at(behind + CALM_AFTER + Duration::from_millis(1));
            assert_eq!(nice(), 3, "back where it was once it kept up for a while");
        })
        .join()
        .expect("the reader's thread");
    }
}
