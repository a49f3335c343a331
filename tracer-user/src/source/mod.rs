//! Where events come from, and the one seam where every source meets the
//! pipeline: a [`Source`] follows an audit's processes and yields their
//! [`Event`]s, backend-neutral, in the order the facts happened.
//!
//! - [`ebpf`]: the kernel programs (loaded here or by `reprotrace daemon`),
//!   their ring buffer records decoded;
//! - [`strace`]: `strace -f`, its log parsed while strace writes it.
//!
//! A source is made by launching a command under it ([`Launched`]) or by
//! attaching it to running processes (which it returns as
//! [`ExistingProcess`]es); the drivers in `run` and `attach` then build the
//! pipeline and feed it what [`Source::next_batch`] yields, whatever the
//! source. No source knows the pipeline.

pub mod ebpf;
pub mod strace;

use std::future::Future;

use crate::{
    event::{Event, Tid},
    launch::LaunchError,
};

/// What a source counted that its events cannot tell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Events lost on the way (the kernel's ring buffer was full, it had no
    /// memory for a call's state, or a daemon's client did not keep up): the
    /// manifest may miss facts.
    pub lost_events: u64,
    /// Processes the kernel could not follow (its table of traced tasks was
    /// full, or no memory for the entry).
    pub untracked_children: u64,
    /// Records or log lines that could not be understood.
    pub malformed_events: u64,
    /// The source reports what io_uring requests do (strace does not: an
    /// audit whose tasks set up an io_uring then misses facts).
    pub sees_io_uring: bool,
}

/// Why a source stopped yielding events.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Ebpf(#[from] ebpf::session::SessionError),
    #[error(transparent)]
    Strace(#[from] strace::StraceError),
}

/// A command a source started: the process to follow from, and its parent.
#[derive(Debug)]
pub struct Launched {
    pub root: Tid,
    /// reprotrace, or strace when strace started the command.
    pub parent: Option<Tid>,
    /// The command could not be executed (its audit still says what happened).
    pub exec_error: Option<LaunchError>,
}

/// Events from one audit's processes.
///
/// `feed` is called with each event, in order; the driver owns whatever the
/// events go to.
pub trait Source {
    /// Waits for events and hands those that arrived to `feed`. Returns
    /// `false` once the source has ended and nothing more will come (strace
    /// exited), `true` otherwise. Cancel-safe: an event is fed exactly once.
    fn next_batch(&mut self, feed: &mut impl FnMut(Event)) -> impl Future<Output = Result<bool, SourceError>>;

    /// Stops following the processes (they go on running where the source
    /// can leave them running), hands every event still on its way to `feed`,
    /// and says what was lost.
    fn finish(self, feed: &mut impl FnMut(Event)) -> impl Future<Output = Result<Counters, SourceError>>;

    /// Events lost so far, for the status line; `None` when only
    /// [`Source::finish`] can say (a daemon counts them).
    fn lost_so_far(&self) -> Option<u64>;
}

impl SourceError {
    /// The backend whose events stopped, as the user knows it.
    fn backend(&self) -> &'static str {
        match self {
            SourceError::Ebpf(_) => "eBPF",
            SourceError::Strace(_) => "strace",
        }
    }
}

/// The events stopped coming (a daemon went away): the audit goes on without
/// them, and its manifest is marked incomplete.
pub fn warn_stream_lost(err: &SourceError) {
    eprintln!(
        "reprotrace: warning: lost the {} event stream: {err}; the manifest has what arrived before",
        err.backend()
    );
}

/// [`Source::finish`]; when that fails, says so and counts the audit as
/// interrupted: the manifest still has what arrived.
pub async fn finish_or_warn(source: impl Source, feed: &mut impl FnMut(Event), interrupted: &mut bool) -> Counters {
    source.finish(feed).await.unwrap_or_else(|err| {
        warn_stream_lost(&err);
        *interrupted = true;
        Counters::default()
    })
}
