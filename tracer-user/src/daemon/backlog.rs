//! What an audit's stream waits in while its client reads slower than the
//! kernel writes: memory up to a bound, then a file no one else can open.
//!
//! The daemon must neither lose a slow client's events nor hold them all in
//! memory: ten million events through a client decoding 1.4 million a second
//! kept 328 MiB waiting in the daemon when the whole backlog stayed in memory.
//! Past [`MEMORY_BOUND`], frames go to an unlinked file in `/var/tmp` (on
//! disk; `/tmp` may be memory), in order with those in memory: the writer
//! takes both from one queue. Written frames' space is given back to the file
//! system as the writer goes (holes punched). Only past [`SPILL_BOUND`] on
//! disk, or when no file can be made, are events dropped, and counted lost.

use std::{
    fs::File,
    os::unix::fs::FileExt,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, OnceLock,
    },
};

use bytes::Bytes;
use rustix::fs::{fallocate, FallocateFlags};
use tokio::{io::AsyncWriteExt, net::unix::OwnedWriteHalf, sync::mpsc};

/// Bytes of one client's stream held in memory before the rest waits on disk.
pub const MEMORY_BOUND: usize = 8 << 20;

/// Bytes of one client's stream waiting on disk before its events are
/// dropped (and counted lost).
pub const SPILL_BOUND: u64 = 4 << 30;

/// Where the waiting stream goes when memory is full: a disk, not `/tmp`,
/// which is often memory (the daemon's temporary directory if there is no
/// `/var/tmp`).
const SPILL_DIR: &str = "/var/tmp";

/// How much of the file the writer reads at a time.
const READ_CHUNK: usize = 1 << 20;

/// Frames waiting for the writer, in stream order.
enum Waiting {
    InMemory(Bytes),
    /// The next `len` bytes of the spill file, from `offset`.
    OnDisk {
        offset: u64,
        len: u64,
    },
}

/// The producing side of a client's backlog (the daemon's main loop).
pub struct Backlog {
    queue: mpsc::UnboundedSender<Waiting>,
    shared: Arc<Shared>,
    /// Where the next spilled frames go in the file.
    spill_end: u64,
}

/// What the two sides share.
struct Shared {
    in_memory: AtomicUsize,
    on_disk: AtomicU64,
    /// Where the spill file may be made, in order of preference.
    spill_dirs: Vec<PathBuf>,
    /// Made at the first spill; `None` once it could not be (nothing more is tried).
    file: OnceLock<Option<File>>,
}

/// Whether frames were queued, or dropped as the backlog is full.
#[derive(Debug, PartialEq, Eq)]
pub enum Queued {
    Yes,
    Dropped,
}

impl Backlog {
    /// A backlog whose frames `writer` sends to the client, starting now.
    pub fn start(writer: OwnedWriteHalf) -> Backlog {
        Self::start_spilling_in(writer, vec![PathBuf::from(SPILL_DIR), std::env::temp_dir()])
    }

    fn start_spilling_in(writer: OwnedWriteHalf, spill_dirs: Vec<PathBuf>) -> Backlog {
        let (queue, waiting) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            in_memory: AtomicUsize::new(0),
            on_disk: AtomicU64::new(0),
            spill_dirs,
            file: OnceLock::new(),
        });
        tokio::spawn(write_out(writer, waiting, shared.clone()));
        Backlog { queue, shared, spill_end: 0 }
    }

    /// Queues `frames`: in memory while the backlog there is small and none
    /// waits on disk, or when `must_keep` (a reply, which the protocol cannot
    /// lose, and small); else on disk. Once frames go to disk, the next ones
    /// follow until the writer has sent them all: a frame is a slice of a
    /// larger buffer, which it keeps alive, and frames let into memory one by
    /// one as the writer freed room kept 100 MiB of such buffers alive for
    /// 16 MiB of frames (the bound then).
    pub fn push(&mut self, frames: Bytes, must_keep: bool) -> Queued {
        let len = frames.len();
        let spilling = self.shared.on_disk.load(Ordering::Relaxed) > 0;
        if must_keep || (!spilling && self.shared.in_memory.load(Ordering::Relaxed) + len <= MEMORY_BOUND) {
            self.shared.in_memory.fetch_add(len, Ordering::Relaxed);
            // A writer that is gone has a `Gone` on its way to the main loop.
            let _ = self.queue.send(Waiting::InMemory(frames));
            return Queued::Yes;
        }
        if self.shared.on_disk.load(Ordering::Relaxed) + len as u64 > SPILL_BOUND {
            return Queued::Dropped;
        }
        // An unlinked file (O_TMPFILE), root's, that no other process can open.
        let made = self
            .shared
            .file
            .get_or_init(|| self.shared.spill_dirs.iter().find_map(|dir| tempfile::tempfile_in(dir).ok()));
        let Some(file) = made else { return Queued::Dropped };
        if file.write_all_at(&frames, self.spill_end).is_err() {
            return Queued::Dropped;
        }
        self.shared.on_disk.fetch_add(len as u64, Ordering::Relaxed);
        let _ = self.queue.send(Waiting::OnDisk { offset: self.spill_end, len: len as u64 });
        self.spill_end += len as u64;
        Queued::Yes
    }
}

/// Sends the waiting frames to the client in order; at the end of the
/// stream (the audit finished, or the daemon stops), closes our side.
async fn write_out(mut writer: OwnedWriteHalf, mut waiting: mpsc::UnboundedReceiver<Waiting>, shared: Arc<Shared>) {
    while let Some(frames) = waiting.recv().await {
        let written = match frames {
            Waiting::InMemory(frames) => {
                let sent = writer.write_all(&frames).await.is_ok();
                shared.in_memory.fetch_sub(frames.len(), Ordering::Relaxed);
                sent
            }
            Waiting::OnDisk { offset, len } => send_spilled(&mut writer, &shared, offset, len).await,
        };
        if !written {
            return;
        }
    }
    let _ = writer.shutdown().await;
}

/// Sends `len` spilled bytes from `offset`, a chunk at a time, and gives
/// their space back to the file system.
async fn send_spilled(writer: &mut OwnedWriteHalf, shared: &Arc<Shared>, offset: u64, len: u64) -> bool {
    let mut done = 0;
    while done < len {
        let chunk = (len - done).min(READ_CHUNK as u64);
        let reader = shared.clone();
        let read = tokio::task::spawn_blocking(move || {
            // Spilled frames are queued only once the file exists.
            let file =
                reader.file.get().and_then(Option::as_ref).ok_or_else(|| std::io::Error::other("no spill file"))?;
            let mut buffer = vec![0; chunk as usize];
            file.read_exact_at(&mut buffer, offset + done)?;
            // Read: its blocks are not needed again.
            let _ = fallocate(file, FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE, offset + done, chunk);
            Ok::<_, std::io::Error>(buffer)
        })
        .await;
        let Ok(Ok(buffer)) = read else { return false };
        shared.on_disk.fetch_sub(chunk, Ordering::Relaxed);
        if writer.write_all(&buffer).await.is_err() {
            return false;
        }
        done += chunk;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A client that reads nothing until everything is queued gets every
    /// frame, in order, though most of them waited on disk; the daemon's
    /// memory held no more than the bound.
    #[test]
    fn a_slow_clients_stream_waits_on_disk_and_arrives_whole_and_in_order() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let spill_dir = tempfile::tempdir().expect("spill dir");
            let (daemon_side, mut client_side) = tokio::net::UnixStream::pair().expect("socket pair");
            let (_, writer) = daemon_side.into_split();
            let mut backlog = Backlog::start_spilling_in(writer, vec![spill_dir.path().to_path_buf()]);
            let frame_len = 1 << 20;
            let frames = 3 * MEMORY_BOUND / frame_len;
            let mut most_in_memory = 0;
            for index in 0..frames {
                let frame = Bytes::from(vec![index as u8; frame_len]);
                assert_eq!(backlog.push(frame, false), Queued::Yes, "frame {index}");
                most_in_memory = most_in_memory.max(backlog.shared.in_memory.load(Ordering::Relaxed));
            }
            assert!(most_in_memory <= MEMORY_BOUND, "{most_in_memory} bytes in memory");
            assert!(backlog.shared.on_disk.load(Ordering::Relaxed) > 0, "nothing waited on disk");
            drop(backlog);
            let mut received = Vec::new();
            client_side.read_to_end(&mut received).await.expect("reading the stream");
            assert_eq!(received.len(), frames * frame_len);
            for (index, frame) in received.chunks(frame_len).enumerate() {
                assert!(frame.iter().all(|&byte| byte == index as u8), "frame {index} out of order");
            }
        });
    }

    /// A reply is never dropped nor sent to disk, however full memory is.
    #[test]
    fn replies_stay_in_memory() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let (daemon_side, _client_side) = tokio::net::UnixStream::pair().expect("socket pair");
            let (_, writer) = daemon_side.into_split();
            let mut backlog = Backlog::start_spilling_in(writer, vec![PathBuf::from("/nonexistent")]);
            let filler = Bytes::from(vec![0; MEMORY_BOUND]);
            assert_eq!(backlog.push(filler, false), Queued::Yes);
            assert_eq!(backlog.push(Bytes::from_static(b"event"), false), Queued::Dropped, "no spill file");
            assert_eq!(backlog.push(Bytes::from_static(b"reply"), true), Queued::Yes);
        });
    }
}
