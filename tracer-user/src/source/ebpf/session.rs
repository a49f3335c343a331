//! One audit's view of the eBPF backend, as a [`Source`]: the programs of a
//! running `reprotrace daemon` when there is one (nothing to load, nothing to
//! detach), or programs this process loads for itself.

use std::{io, path::PathBuf};

use super::{
    daemon_client::{DaemonClient, DaemonClientError},
    decode::Decoder,
    protocol::DEFAULT_SOCKET,
    EbpfError, KernelPrograms, LoadOptions, DEFAULT_RING_BUFFER_BYTES,
};
use crate::{
    event::{Event, ExistingProcess, Tid},
    launch::{self, LaunchError, LaunchSpec},
    priority,
    snapshot::{self, SnapshotError},
    source::{Counters, Launched, Source, SourceError},
};

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
    Daemon(#[from] DaemonClientError),
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// Where the programs are.
enum Programs {
    Local { programs: Box<KernelPrograms>, audit_id: u32 },
    Daemon(DaemonClient),
}

pub struct Session {
    programs: Programs,
    decoder: Decoder,
}

impl Session {
    async fn open(options: &SessionOptions) -> Result<Self, SessionError> {
        let programs = match &options.daemon {
            DaemonChoice::Never => local(&options.load)?,
            DaemonChoice::At(path) => Programs::Daemon(DaemonClient::connect(path.clone()).await?),
            DaemonChoice::Auto => match DaemonClient::connect(PathBuf::from(DEFAULT_SOCKET)).await {
                Ok(client) => Programs::Daemon(client),
                // No daemon (or a stale socket it left): load the programs here.
                Err(DaemonClientError::Connect { source, .. })
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
        Ok(Session { programs, decoder: Decoder::default() })
    }

    /// Starts `spec` held at a gate, follows it, and lets it exec: not one of
    /// its syscalls is missed.
    pub async fn launch(options: &SessionOptions, spec: &LaunchSpec) -> Result<(Session, Launched), SessionError> {
        let mut session = Session::open(options).await?;
        let child = launch::spawn_gated(spec)?;
        // Once the command has its priority, before its first event.
        session.raise_ring_reader();
        let root = child.pid();
        if let Err(err) = session.follow(&[root]).await {
            child.abandon();
            return Err(err);
        }
        let exec_error = child.open_gate().err();
        Ok((session, Launched { root, parent: Some(std::process::id()), exec_error }))
    }

    /// Follows the running processes of the trees below `roots`, which
    /// `snapshot` showed, and those born while they were being followed.
    /// Returns every process followed, with the threads followed from here: a
    /// process may come again with threads found later.
    pub async fn attach(
        options: &SessionOptions,
        roots: &[Tid],
        snapshot: Vec<ExistingProcess>,
    ) -> Result<(Session, Vec<ExistingProcess>), SessionError> {
        let mut session = Session::open(options).await?;
        session.raise_ring_reader();
        let tids: Vec<Tid> = snapshot.iter().flat_map(|process| process.threads.iter().copied()).collect();
        session.follow(&tids).await?;
        let mut followed = snapshot;
        // Tasks born between the snapshot and the following of their parent.
        loop {
            let mut found = false;
            for mut process in snapshot::snapshot_trees(roots)? {
                let new = session.follow(&process.threads).await?;
                if !new.is_empty() {
                    found = true;
                    process.threads = new;
                    followed.push(process);
                }
            }
            if !found {
                return Ok((session, followed));
            }
        }
    }

    /// Programs loaded here are read by this thread (`crate::priority`); a
    /// daemon's reader raises itself, and this process then only reads a
    /// socket, whose backlog the daemon keeps.
    fn raise_ring_reader(&self) {
        if matches!(self.programs, Programs::Local { .. }) {
            priority::raise_ring_reader();
        }
    }

    /// Follows `tids` and, from now on, every task they create. Returns those
    /// that were not followed already (by an earlier call, or by the kernel
    /// because their parent was).
    async fn follow(&mut self, tids: &[Tid]) -> Result<Vec<Tid>, SessionError> {
        match &mut self.programs {
            Programs::Local { programs, audit_id } => {
                let mut new = Vec::new();
                for &tid in tids {
                    if programs.follow(tid, *audit_id)? {
                        new.push(tid);
                    }
                }
                Ok(new)
            }
            Programs::Daemon(client) => Ok(client.follow(tids).await?),
        }
    }

    async fn finish_session(self, feed: &mut impl FnMut(Event)) -> Result<Counters, SessionError> {
        let mut decoder = self.decoder;
        match self.programs {
            Programs::Local { mut programs, .. } => {
                // Every task's last event was committed before it could be reaped.
                programs.drain(&mut |record| decoder.push(record, feed));
                let counters = programs.counters()?;
                let sees_io_uring = programs.sees_io_uring();
                programs.detach_after_exit();
                Ok(Counters {
                    lost_events: counters.lost_events,
                    untracked_children: counters.untracked_children,
                    malformed_events: decoder.malformed(),
                    sees_io_uring,
                })
            }
            Programs::Daemon(client) => {
                let counters = client.finish(&mut |record| decoder.push(record, feed)).await?;
                Ok(Counters { malformed_events: counters.malformed_events + decoder.malformed(), ..counters })
            }
        }
    }
}

impl Source for Session {
    /// Never ends by itself: the tasks it follows are the driver's to watch.
    async fn next_batch(&mut self, feed: &mut impl FnMut(Event)) -> Result<bool, SourceError> {
        let decoder = &mut self.decoder;
        match &mut self.programs {
            Programs::Local { programs, .. } => {
                programs.wait_for_events().await.map_err(SessionError::from)?;
                programs.drain(&mut |record| decoder.push(record, feed));
            }
            Programs::Daemon(client) => {
                client.next_records(&mut |record| decoder.push(record, feed)).await.map_err(SessionError::from)?;
            }
        }
        Ok(true)
    }

    /// Once every task followed has been reaped (or the user gave up); the
    /// tasks still alive go on untraced.
    async fn finish(self, feed: &mut impl FnMut(Event)) -> Result<Counters, SourceError> {
        Ok(self.finish_session(feed).await?)
    }

    /// The kernel's drop counter of our own programs (loaded for this audit).
    fn lost_so_far(&self) -> Option<u64> {
        match &self.programs {
            Programs::Local { programs, .. } => programs.counters().ok().map(|counters| counters.lost_events),
            Programs::Daemon(_) => None,
        }
    }
}

fn local(load: &LoadOptions) -> Result<Programs, EbpfError> {
    // Our own programs: one audit, which our pid names.
    Ok(Programs::Local { programs: Box::new(KernelPrograms::load(load)?), audit_id: std::process::id() })
}
