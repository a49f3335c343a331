//! `reprotrace daemon`: keeps the eBPF programs loaded and attached, and serves
//! audits over a Unix socket (protocol: [`crate::source::ebpf::protocol`]).
//!
//! Loading and attaching 67 tracepoint programs costs a fifth of a second, and
//! detaching them seconds of kernel time (an RCU grace period per syscall
//! tracepoint, under a mutex the next load waits on). A short audit should pay
//! neither: with the daemon running, `reprotrace run` and `attach` only connect.
//!
//! Every audit gets an id; the kernel tags its tasks and their events with it,
//! and the daemon routes each ring buffer record to its audit undecoded. The
//! ring buffer is shared, so a drop cannot be pinned on one audit: every audit
//! running when the kernel dropped hears of it (its manifest then says it may be
//! incomplete), which over-reports but never hides a loss.
//!
//! The socket is root's unless the daemon runs with `--allow-users`: then any
//! local user may connect, and may follow only processes it owns (every uid
//! of the task its own, as for ptrace), checked with the peer's credentials
//! (`SO_PEERCRED`) at each request. A Dask worker run by an ordinary user
//! audits itself that way.

use std::{
    collections::HashMap,
    io,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use bytes::BytesMut;
use tokio::{
    io::AsyncReadExt,
    net::{unix::OwnedReadHalf, UnixListener, UnixStream},
    sync::mpsc,
};

mod backlog;

use backlog::{Backlog, Queued};

use crate::{
    interrupts::Signals,
    priority, privilege,
    source::{
        ebpf::{
            decode,
            protocol::{self, Reply, Request},
            KernelCounters, KernelPrograms, LoadOptions,
        },
        Counters,
    },
};

/// Bytes of events gathered for a client before they are queued for it: a
/// drain can take the whole ring buffer, which then goes out in pieces.
const BATCH_BYTES: usize = 1 << 20;

pub struct DaemonSettings {
    pub socket: PathBuf,
    pub load: LoadOptions,
    /// Detach the programs after this long without an audit (`None`: never).
    pub idle_detach: Option<Duration>,
    /// Let every local user connect, to follow its own processes.
    pub allow_users: bool,
    pub quiet: bool,
}

/// The programs' attachment, which an idle daemon gives up.
struct Attachment {
    /// Since when no audit has been running (while attached).
    idle_since: Option<Instant>,
    /// The thread detaching the programs, if they were detached.
    detaching: Option<std::thread::JoinHandle<()>>,
}

impl Attachment {
    /// Attaches the programs again if an idle spell detached them.
    fn ensure(&mut self, source: &mut KernelPrograms, quiet: bool) -> anyhow::Result<()> {
        if source.is_attached() {
            return Ok(());
        }
        // An attach would queue behind the detach in the kernel anyway.
        if let Some(detaching) = self.detaching.take() {
            let _ = detaching.join();
        }
        source.attach()?;
        if !quiet {
            eprintln!("reprotrace: daemon: programs attached again");
        }
        Ok(())
    }
}

/// One audit being served.
struct Client {
    /// What waits for the client's socket.
    backlog: Backlog,
    /// Frames gathered during the current drain, queued together.
    batch: BytesMut,
    /// The events in `batch`.
    batch_records: u64,
    counters_at_start: KernelCounters,
    /// The connected user: root may follow any task, others their own.
    uid: u32,
    /// Records dropped because the client did not keep up (its backlog full).
    overflowed: u64,
    /// Records that could not be attributed to any audit while this one ran.
    malformed: u64,
    records: u64,
}

impl Client {
    fn push(&mut self, record: &[u8]) {
        protocol::encode_event(&mut self.batch, record);
        self.batch_records += 1;
        if self.batch.len() >= BATCH_BYTES {
            self.flush();
        }
    }

    fn flush(&mut self) {
        self.queue(false);
    }

    /// Queues the batch; `must_keep`: it ends with a reply, which is never
    /// dropped (see [`Backlog::push`]).
    fn queue(&mut self, must_keep: bool) {
        if self.batch.is_empty() {
            return;
        }
        let frames = self.batch.split().freeze();
        let records = std::mem::take(&mut self.batch_records);
        match self.backlog.push(frames, must_keep) {
            Queued::Yes => self.records += records,
            Queued::Dropped => self.overflowed += records,
        }
    }

    fn reply(&mut self, reply: Reply) {
        // After the events gathered so far, so the stream stays in order.
        reply.encode(&mut self.batch);
        self.queue(true);
    }
}

/// What a connection's reader tells the main loop.
enum Incoming {
    Request(Request),
    /// The audit hung up, or spoke nonsense.
    Gone(Option<String>),
}

pub async fn serve(settings: DaemonSettings) -> anyhow::Result<i32> {
    // Listen first: a second daemon says so before loading anything.
    let listener = listen(&settings.socket, settings.allow_users)?;
    let mut source = match KernelPrograms::load(&settings.load) {
        Ok(source) => source,
        Err(err) => {
            let _ = std::fs::remove_file(&settings.socket);
            return Err(err.into());
        }
    };
    // This thread reads the ring buffer, for every audit, from before the
    // first one's first event.
    priority::raise_ring_reader();
    let mut signals = Signals::new()?;
    if !settings.quiet {
        let idle = match settings.idle_detach {
            Some(after) => format!("detached after {} s without an audit", after.as_secs_f64()),
            None => "attached until it stops".to_string(),
        };
        let users = if settings.allow_users { "every user, for its own processes" } else { "root only" };
        eprintln!(
            "reprotrace: daemon ready on {} ({users}; {} programs, {idle}; {} MiB ring buffer); Ctrl-C or SIGTERM stops it",
            settings.socket.display(),
            tracer_common::programs().count(),
            settings.load.ring_buffer_bytes >> 20,
        );
    }
    let mut attachment = Attachment { idle_since: Some(Instant::now()), detaching: None };
    let (incoming_tx, mut incoming_rx) = mpsc::unbounded_channel::<(u32, Incoming)>();
    let mut clients: HashMap<u32, Client> = HashMap::new();
    let mut next_audit_id: u32 = 1;
    let outcome = loop {
        let attached = source.is_attached();
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        eprintln!("reprotrace: daemon: accepting a connection: {err}");
                        continue;
                    }
                };
                if let Err(err) = attachment.ensure(&mut source, settings.quiet) {
                    eprintln!("reprotrace: daemon: refused a connection: cannot attach the programs: {err:#}");
                    continue;
                }
                let audit_id = next_audit_id;
                // From 1 to u32::MAX - 1: the kernel stores an audit plus one.
                next_audit_id = next_audit_id % (u32::MAX - 1) + 1;
                match admit(stream, audit_id, &source, incoming_tx.clone(), settings.allow_users) {
                    Ok(client) => {
                        attachment.idle_since = None;
                        if !settings.quiet {
                            eprintln!("reprotrace: daemon: audit {audit_id} connected");
                        }
                        clients.insert(audit_id, client);
                    }
                    Err(err) => eprintln!("reprotrace: daemon: refused a connection: {err}"),
                }
            }
            ready = source.wait_for_events() => {
                if let Err(err) = ready {
                    break Err(err.into());
                }
                route(&mut source, &mut clients);
            }
            Some((audit_id, incoming)) = incoming_rx.recv() => {
                handle(&mut source, &mut clients, audit_id, incoming, settings.quiet);
                if clients.is_empty() {
                    attachment.idle_since = Some(Instant::now());
                }
            }
            () = idle_deadline(&attachment, settings.idle_detach, attached) => {
                // Attached programs put every syscall on the host through the
                // tracepoint path: an idle daemon should not cost anyone anything.
                attachment.detaching = Some(source.detach_in_background());
                if !settings.quiet {
                    eprintln!("reprotrace: daemon: no audit for a while: programs detached until the next one");
                }
            }
            _ = signals.next() => break Ok(0),
        }
    };
    // Audits still connected see the connection close and mark their manifests incomplete.
    drop(clients);
    if let Err(err) = std::fs::remove_file(&settings.socket) {
        eprintln!("reprotrace: daemon: could not remove {}: {err}", settings.socket.display());
    }
    source.detach_after_exit();
    outcome
}

/// Resolves when the programs have been idle long enough to detach; never
/// while an audit runs, after they are detached, or when told never to.
async fn idle_deadline(attachment: &Attachment, idle_detach: Option<Duration>, attached: bool) {
    match (attachment.idle_since, idle_detach) {
        (Some(since), Some(after)) if attached => tokio::time::sleep_until((since + after).into()).await,
        _ => std::future::pending().await,
    }
}

/// Binds the socket, root-only unless `allow_users`, replacing one a dead
/// daemon left behind.
fn listen(path: &Path, allow_users: bool) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if let Ok(metadata) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !metadata.file_type().is_socket() {
            bail!("{} exists and is not a socket: give --socket a path for the daemon's socket", path.display());
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("a reprotrace daemon already listens on {}; stop it first, or use another --socket", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing the stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path).with_context(|| format!("listening on {}", path.display()))?;
    let mode = if allow_users { 0o666 } else { 0o600 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the permissions of {}", path.display()))?;
    Ok(listener)
}

/// Greets a new audit and starts its reader and writer.
fn admit(
    stream: UnixStream,
    audit_id: u32,
    source: &KernelPrograms,
    incoming: mpsc::UnboundedSender<(u32, Incoming)>,
    allow_users: bool,
) -> anyhow::Result<Client> {
    // Without --allow-users the socket is root-only; the check says why when
    // someone loosened it.
    let peer = stream.peer_cred().context("reading the peer's credentials")?;
    if peer.uid() != 0 && !allow_users {
        bail!(
            "uid {} is not root: only root may trace through this daemon (start it with --allow-users to let users audit their own processes)",
            peer.uid()
        );
    }
    let (reader, writer) = stream.into_split();
    let backlog = Backlog::start(writer);
    tokio::spawn(read_requests(reader, audit_id, incoming));
    let mut client = Client {
        backlog,
        batch: BytesMut::new(),
        batch_records: 0,
        counters_at_start: source.counters()?,
        uid: peer.uid(),
        overflowed: 0,
        malformed: 0,
        records: 0,
    };
    client.reply(Reply::Hello { version: protocol::VERSION });
    Ok(client)
}

async fn read_requests(mut reader: OwnedReadHalf, audit_id: u32, incoming: mpsc::UnboundedSender<(u32, Incoming)>) {
    let mut input = BytesMut::with_capacity(4096);
    let gone = loop {
        match protocol::next_frame(&mut input) {
            Ok(Some((tag, payload))) => match Request::decode(tag, payload) {
                Ok(request) => {
                    let finished = request == Request::Finish;
                    if incoming.send((audit_id, Incoming::Request(request))).is_err() || finished {
                        return;
                    }
                    continue;
                }
                Err(err) => break Some(err.to_string()),
            },
            Ok(None) => {}
            Err(err) => break Some(err.to_string()),
        }
        match reader.read_buf(&mut input).await {
            Ok(0) => break None,
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset => break None,
            Err(err) => break Some(err.to_string()),
        }
    };
    let _ = incoming.send((audit_id, Incoming::Gone(gone)));
}

/// Hands every record in the ring buffer to its audit. (A user's audit is
/// not given what a setuid or setgid program it ran did: the kernel stops
/// following such a process at its exec, see `set_user_audit`.)
fn route(source: &mut KernelPrograms, clients: &mut HashMap<u32, Client>) {
    source.drain(&mut |record| match decode::audit_id(record) {
        Some(audit_id) => {
            // No client: the late event of an audit that ended (a task it left behind).
            if let Some(client) = clients.get_mut(&audit_id) {
                client.push(record);
            }
        }
        None => clients.values_mut().for_each(|client| client.malformed += 1),
    });
    clients.values_mut().for_each(Client::flush);
}

fn handle(
    source: &mut KernelPrograms,
    clients: &mut HashMap<u32, Client>,
    audit_id: u32,
    incoming: Incoming,
    quiet: bool,
) {
    match incoming {
        Incoming::Request(Request::Follow(tids)) => {
            let mut followed = Vec::with_capacity(tids.len());
            let mut failure = None;
            let uid = clients.get(&audit_id).map_or(0, |client| client.uid);
            if uid != 0 {
                if let Err(err) = source.set_user_audit(audit_id, true) {
                    failure = Some(err.to_string());
                }
            }
            for tid in tids.into_iter().take_while(|_| failure.is_none()) {
                if uid != 0 && !privilege::owned_by(tid, uid) {
                    failure = Some(format!(
                        "task {tid} does not belong to uid {uid} (or is gone): a user may audit only its own processes"
                    ));
                    break;
                }
                match source.follow(tid, audit_id) {
                    Ok(true) => followed.push(tid),
                    // One task's events go to one audit: a second audit of the
                    // same process would silently see nothing.
                    Ok(false) => match source.audit_of(tid) {
                        Some(owner) if owner != audit_id => {
                            failure = Some(format!(
                                "task {tid} is already followed by another audit of this daemon (audit {owner}); \
                                 one process can be in one audit at a time"
                            ));
                            break;
                        }
                        _ => {}
                    },
                    Err(err) => {
                        failure = Some(err.to_string());
                        break;
                    }
                }
            }
            if let Some(client) = clients.get_mut(&audit_id) {
                client.reply(match failure {
                    Some(message) => Reply::Error(message),
                    None => Reply::Followed(followed),
                });
            }
        }
        Incoming::Request(Request::Finish) => {
            // The audit's tasks are reaped: their last events are in the ring already.
            route(source, clients);
            forget(source, audit_id);
            let Some(mut client) = clients.remove(&audit_id) else { return };
            let counters = match source.counters() {
                Ok(now) => Counters {
                    lost_events: now.lost_events.saturating_sub(client.counters_at_start.lost_events)
                        + client.overflowed,
                    untracked_children: now
                        .untracked_children
                        .saturating_sub(client.counters_at_start.untracked_children),
                    malformed_events: client.malformed,
                    sees_io_uring: source.sees_io_uring(),
                },
                Err(err) => {
                    client.reply(Reply::Error(err.to_string()));
                    return;
                }
            };
            client.reply(Reply::End(counters));
            if !quiet {
                eprintln!(
                    "reprotrace: daemon: audit {audit_id} finished: {} events, {} lost",
                    client.records, counters.lost_events
                );
            }
        }
        Incoming::Gone(reason) => {
            forget(source, audit_id);
            if clients.remove(&audit_id).is_some() && !quiet {
                match reason {
                    Some(reason) => eprintln!("reprotrace: daemon: audit {audit_id} dropped: {reason}"),
                    None => eprintln!("reprotrace: daemon: audit {audit_id} hung up before finishing"),
                }
            }
        }
    }
}

/// Stops following what an audit left behind.
fn forget(source: &mut KernelPrograms, audit_id: u32) {
    if let Err(err) = source.forget_audit(audit_id).and_then(|()| source.set_user_audit(audit_id, false)) {
        eprintln!("reprotrace: daemon: could not stop following audit {audit_id}'s tasks: {err}");
    }
}
