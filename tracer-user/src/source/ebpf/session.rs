//! One audit's view of the eBPF backend: the programs of a running
//! `reprotrace daemon` when there is one (nothing to load, nothing to detach),
//! or programs this process loads for itself.

use std::{io, path::PathBuf};

use super::{
    decode,
    protocol::{AuditCounters, DEFAULT_SOCKET},
    remote::{RemoteError, RemoteSource},
    EbpfError, EbpfSource, LoadOptions, DEFAULT_RING_BUFFER_BYTES,
};
use crate::event::{Event, Tid};

/// Whether to use a daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DaemonChoice {
    /// The daemon at the default socket if one runs, else load the programs here.
    Auto,
    /// The daemon at this socket, or fail.
    At(PathBuf),
    /// Load the programs here.
    Never,
}

pub struct SessionOptions {
    /// For programs loaded here (a daemon has its own).
    pub load: LoadOptions,
    pub daemon: DaemonChoice,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Ebpf(#[from] EbpfError),
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

enum Programs {
    Local { source: Box<EbpfSource>, audit_id: u32 },
    Daemon(RemoteSource),
}

pub struct Session {
    programs: Programs,
    /// Records that could not be decoded.
    malformed: u64,
}

impl Session {
    pub async fn open(options: &SessionOptions) -> Result<Self, SessionError> {
        let programs = match &options.daemon {
            DaemonChoice::Never => local(&options.load)?,
            DaemonChoice::At(path) => Programs::Daemon(RemoteSource::connect(path.clone()).await?),
            DaemonChoice::Auto => match RemoteSource::connect(PathBuf::from(DEFAULT_SOCKET)).await {
                Ok(remote) => Programs::Daemon(remote),
                // No daemon (or a stale socket it left): load the programs here.
                Err(RemoteError::Connect { source, .. })
                    if matches!(source.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused) =>
                {
                    local(&options.load)?
                }
                Err(err) => return Err(err.into()),
            },
        };
        if matches!(programs, Programs::Daemon(_)) && options.load.ring_buffer_bytes != DEFAULT_RING_BUFFER_BYTES {
            eprintln!(
                "reprotrace: warning: the daemon's ring buffer serves this audit; --ring-buffer-size applies to \
                 programs this process loads (--no-daemon) or to `reprotrace daemon`"
            );
        }
        Ok(Session { programs, malformed: 0 })
    }

    /// Whether a daemon serves this audit.
    pub fn uses_daemon(&self) -> bool {
        matches!(self.programs, Programs::Daemon(_))
    }

    /// Follows `tids` and, from now on, every task they create. Returns those
    /// that were not followed already (by an earlier call, or by the kernel
    /// because their parent was).
    pub async fn follow(&mut self, tids: &[Tid]) -> Result<Vec<Tid>, SessionError> {
        match &mut self.programs {
            Programs::Local { source, audit_id } => {
                let mut new = Vec::new();
                for &tid in tids {
                    if source.follow(tid, *audit_id)? {
                        new.push(tid);
                    }
                }
                Ok(new)
            }
            Programs::Daemon(remote) => Ok(remote.follow(tids).await?),
        }
    }

    /// Waits for events, then hands those that arrived to `sink`. Returns the
    /// number of records read. Cancel-safe.
    pub async fn next_batch(&mut self, sink: &mut impl FnMut(Event)) -> Result<usize, SessionError> {
        let malformed = &mut self.malformed;
        match &mut self.programs {
            Programs::Local { source, .. } => {
                source.wait_for_events().await?;
                Ok(source.drain(&mut |record| decode_into(record, malformed, sink)))
            }
            Programs::Daemon(remote) => {
                Ok(remote.next_records(&mut |record| decode_into(record, malformed, sink)).await?)
            }
        }
    }

    /// Ends the audit once every task followed has been reaped (or the user
    /// gave up): hands the events still on their way to `sink`, and returns
    /// what was lost.
    pub async fn finish(self, sink: &mut impl FnMut(Event)) -> Result<AuditCounters, SessionError> {
        let mut malformed = self.malformed;
        match self.programs {
            Programs::Local { mut source, .. } => {
                // Every task's last event was committed before it could be reaped.
                source.drain(&mut |record| decode_into(record, &mut malformed, sink));
                let counters = source.counters()?;
                source.detach_after_exit();
                Ok(AuditCounters {
                    lost_events: counters.lost_events,
                    untracked_children: counters.untracked_children,
                    malformed_events: malformed,
                })
            }
            Programs::Daemon(remote) => {
                let counters = remote.finish(&mut |record| decode_into(record, &mut malformed, sink)).await?;
                Ok(AuditCounters { malformed_events: counters.malformed_events + malformed, ..counters })
            }
        }
    }

    /// [`Session::finish`], or `None` after saying why the events stopped:
    /// the audit still writes what it saw.
    pub async fn finish_or_warn(self, sink: &mut impl FnMut(Event)) -> Option<AuditCounters> {
        self.finish(sink).await.inspect_err(warn_stream_lost).ok()
    }
}

/// The events stopped coming (the daemon went away): the audit goes on
/// without them, and its manifest is marked incomplete.
pub fn warn_stream_lost(err: &SessionError) {
    eprintln!("reprotrace: warning: lost the eBPF event stream: {err}; the manifest has what arrived before");
}

fn local(load: &LoadOptions) -> Result<Programs, EbpfError> {
    // Our own programs: one audit, which our pid names.
    Ok(Programs::Local { source: Box::new(EbpfSource::load(load)?), audit_id: std::process::id() })
}

/// Decodes one record for the pipeline. Every record is this audit's: our own
/// programs follow no one else, and the daemon routes by audit id.
fn decode_into(record: &[u8], malformed: &mut u64, sink: &mut impl FnMut(Event)) {
    match decode::decode(record) {
        Ok(event) => sink(event),
        Err(_) => *malformed += 1,
    }
}
