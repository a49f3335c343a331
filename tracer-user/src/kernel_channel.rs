//! The channel between an audit and the IPython kernels whose cells it cuts:
//! the cell hook (python/reprotrace/channel.py) asks, the audit's driver
//! answers. One Unix socket per kernel, `<runtime>/kernels/<pid>.sock`
//! (`/run/reprotrace` for root, `$XDG_RUNTIME_DIR/reprotrace` otherwise),
//! mode 0600 and the kernel's user's; one JSON request line and one JSON
//! reply line per connection:
//!
//! - `{"op": "hello"}` → `{"ok": true, "audit": {"backend", "output"}}`;
//! - `{"op": "cell_end", "time_ns": T}` → `{"ok": true}` once the END marker
//!   of time T has been processed, the cell's files hashed as it left them: the
//!   hook waits for it, so the next cell cannot change them first;
//! - `{"op": "cells"}` → `{"ok": true, "cells": [...], "stale": [...]}`, what
//!   the `%reprotrace` magic shows;
//! - `{"op": "dask"}` → `{"ok": true, "reports": DIR, "preload": FILE}`: the
//!   kernel's Dask clients may take part in this audit, with the client
//!   preload FILE, bringing their workers' audits to DIR (what `%load_ext
//!   reprotrace` asks), or `ok` false with the reason.
//!
//! A request the driver cannot answer gets `{"ok": false, "error": …}`.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot},
};

use crate::pipeline::Pipeline;

/// How long a `cell_end` may wait for its marker: less than the hook's 10 s,
/// so that the hook hears the refusal and keeps the channel for the next cell.
const CELL_END_WAIT: Duration = Duration::from_secs(8);
/// The longest request line a hook sends.
const MAX_REQUEST: u64 = 64 << 10;

#[derive(Debug, thiserror::Error)]
#[error("cannot open the cell hook's channel at {path}: {source}")]
pub struct ChannelError {
    path: PathBuf,
    source: std::io::Error,
}

/// What a hook asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Hello,
    CellEnd { time_ns: u64 },
    Cells,
    Dask,
}

/// A request and where its answer goes.
pub struct Query {
    pub request: Request,
    reply: oneshot::Sender<Value>,
}

impl Query {
    pub fn answer(self, value: Value) {
        // The hook may have given up: nothing to tell it then.
        let _ = self.reply.send(value);
    }
}

/// The sockets of the kernels an audit follows, and the queries they bring.
pub struct KernelChannels {
    sockets: Vec<PathBuf>,
    sender: mpsc::UnboundedSender<Query>,
    receiver: mpsc::UnboundedReceiver<Query>,
}

impl Default for KernelChannels {
    fn default() -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        KernelChannels { sockets: Vec::new(), sender, receiver }
    }
}

impl KernelChannels {
    /// Listens for kernel `pid`, whose user (if another) gets the socket;
    /// returns its path.
    pub fn open(&mut self, pid: u32, owner: Option<(u32, u32)>) -> Result<PathBuf, ChannelError> {
        let dir = runtime_dir().join("kernels");
        let path = dir.join(format!("{pid}.sock"));
        let fail = |source| ChannelError { path: path.clone(), source };
        std::fs::create_dir_all(&dir).map_err(fail)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).map_err(fail)?;
        // A socket left by an audit of an earlier kernel with this pid.
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(fail)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).map_err(fail)?;
        }
        tokio::spawn(serve(listener, self.sender.clone()));
        self.sockets.push(path.clone());
        Ok(path)
    }

    /// The next query; pending forever while no hook asks.
    pub async fn next(&mut self) -> Query {
        match self.receiver.recv().await {
            Some(query) => query,
            // We hold a sender ourselves: never closed.
            None => std::future::pending().await,
        }
    }
}

impl Drop for KernelChannels {
    fn drop(&mut self) {
        for socket in &self.sockets {
            let _ = std::fs::remove_file(socket);
        }
    }
}

/// Where root's and users' kernel sockets go.
fn runtime_dir() -> PathBuf {
    let euid = rustix::process::geteuid();
    if euid.is_root() {
        return PathBuf::from("/run/reprotrace");
    }
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(|dir| PathBuf::from(dir).join("reprotrace"))
        .unwrap_or_else(|| std::env::temp_dir().join(format!("reprotrace-{}", euid.as_raw())))
}

async fn serve(listener: UnixListener, queries: mpsc::UnboundedSender<Query>) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(answer(stream, queries.clone()));
    }
}

/// One connection: one request line, one reply line.
async fn answer(stream: UnixStream, queries: mpsc::UnboundedSender<Query>) {
    let (reader, mut writer) = stream.into_split();
    let mut line = String::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut reader = BufReader::new(tokio::io::AsyncReadExt::take(reader, MAX_REQUEST));
        reader.read_line(&mut line).await
    })
    .await;
    let reply = match read {
        Ok(Ok(_)) => match parse(&line) {
            Ok(request) => {
                let (reply, answered) = oneshot::channel();
                if queries.send(Query { request, reply }).is_err() {
                    return;
                }
                match tokio::time::timeout(CELL_END_WAIT + Duration::from_secs(5), answered).await {
                    Ok(Ok(value)) => value,
                    _ => json!({"ok": false, "error": "the audit did not answer"}),
                }
            }
            Err(error) => json!({"ok": false, "error": error}),
        },
        _ => return,
    };
    let _ = writer.write_all(format!("{reply}\n").as_bytes()).await;
}

fn parse(line: &str) -> Result<Request, String> {
    let value: Value = serde_json::from_str(line.trim()).map_err(|err| format!("not a JSON request: {err}"))?;
    match value["op"].as_str() {
        Some("hello") => Ok(Request::Hello),
        Some("cells") => Ok(Request::Cells),
        Some("dask") => Ok(Request::Dask),
        Some("cell_end") => {
            value["time_ns"].as_u64().map(|time_ns| Request::CellEnd { time_ns }).ok_or("cell_end needs time_ns".into())
        }
        other => Err(format!("unknown op {other:?}")),
    }
}

/// What the audit says to a kernel whose Dask clients ask to take part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DaskOffer {
    /// They may: their reports go to `dir`, with reprotrace's client `preload`.
    Reports { dir: PathBuf, preload: PathBuf },
    /// They may not, for this reason.
    Refused(String),
}

impl Default for DaskOffer {
    fn default() -> Self {
        DaskOffer::Refused("this audit does not bring Dask workers' audits back".into())
    }
}

/// `cell_end` queries waiting for their marker; the audit's answer to a
/// kernel's Dask clients.
#[derive(Default)]
pub struct CellEndWaiters {
    waiting: Vec<(u64, Query, Instant)>,
    dask: DaskOffer,
    dask_taken: bool,
}

impl CellEndWaiters {
    /// Waiters that answer a `dask` request with `offer`.
    pub fn offering(dask: DaskOffer) -> Self {
        CellEndWaiters { dask, ..Self::default() }
    }

    /// Whether a kernel took the Dask offer: its clients must report when
    /// the audit ends.
    pub fn dask_taken(&self) -> bool {
        self.dask_taken
    }

    /// Answers `query` now if it can; `output` is where the manifest goes.
    pub fn take(&mut self, query: Query, pipeline: &Pipeline, backend: &str, output: &Path) {
        match query.request {
            Request::Hello => {
                query.answer(json!({"ok": true, "audit": {"backend": backend, "output": output.display().to_string()}}))
            }
            Request::CellEnd { time_ns } if pipeline.has_ended_cell(time_ns) => query.answer(json!({"ok": true})),
            Request::CellEnd { time_ns } => self.waiting.push((time_ns, query, Instant::now() + CELL_END_WAIT)),
            Request::Cells => query.answer(pipeline.cells_summary()),
            Request::Dask => match &self.dask {
                DaskOffer::Reports { dir, preload } => {
                    self.dask_taken = true;
                    let (dir, preload) = (dir.display().to_string(), preload.display().to_string());
                    query.answer(json!({"ok": true, "reports": dir, "preload": preload}))
                }
                DaskOffer::Refused(reason) => query.answer(json!({"ok": false, "error": reason})),
            },
        }
    }

    /// Answers the waiting queries whose marker has come, and those that waited too long.
    pub fn settle(&mut self, pipeline: &Pipeline) {
        let now = Instant::now();
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(time_ns, _, deadline)| pipeline.has_ended_cell(*time_ns) || now >= *deadline);
        self.waiting = waiting;
        for (time_ns, query, _) in done {
            match pipeline.has_ended_cell(time_ns) {
                true => query.answer(json!({"ok": true})),
                false => query.answer(json!({"ok": false, "error": "the cell's end marker did not reach the audit"})),
            }
        }
    }

    /// Resolves when the earliest waiting query's time is up (pending when none waits).
    pub async fn deadline(&self) {
        match self.waiting.iter().map(|(_, _, deadline)| *deadline).min() {
            Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        assert_eq!(parse(r#"{"op": "hello"}"#), Ok(Request::Hello));
        assert_eq!(parse(r#"{"op": "cell_end", "time_ns": 12}"#), Ok(Request::CellEnd { time_ns: 12 }));
        assert_eq!(parse("{\"op\": \"cells\"}\n"), Ok(Request::Cells));
        assert_eq!(parse(r#"{"op": "dask"}"#), Ok(Request::Dask));
        assert!(parse(r#"{"op": "cell_end"}"#).is_err());
        assert!(parse("nonsense").is_err());
    }
}
