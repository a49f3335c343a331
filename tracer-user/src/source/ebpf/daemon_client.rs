//! One audit's connection to `reprotrace daemon`, which keeps the programs
//! loaded and attached between audits (see [`crate::daemon`]): the audit asks it
//! to follow tasks and receives their records, undecoded, in order.

use std::{io, path::PathBuf};

use bytes::BytesMut;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::UnixStream,
};

use super::protocol::{self, ProtocolError, Reply, Request};
use crate::{event::Tid, source::Counters};

#[derive(Debug, thiserror::Error)]
pub enum DaemonClientError {
    #[error(
        "cannot connect to the reprotrace daemon at {path}: {source}; start it with `reprotrace daemon`, or pass \
         --no-daemon to load the eBPF programs in this process"
    )]
    Connect { path: PathBuf, source: io::Error },
    #[error(
        "the reprotrace daemon at {path} speaks protocol version {found}, this reprotrace version {expected}: restart \
         the daemon from this build, or pass --no-daemon"
    )]
    Version { path: PathBuf, found: u32, expected: u32 },
    #[error("the reprotrace daemon refused: {0}")]
    Refused(String),
    #[error("the reprotrace daemon closed the connection in the middle of the audit (was it stopped?)")]
    Closed,
    #[error("the reprotrace daemon sent something unexpected: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("talking to the reprotrace daemon: {0}")]
    Io(#[from] io::Error),
}

pub struct DaemonClient {
    stream: UnixStream,
    /// Bytes received and not yet taken apart into frames.
    input: BytesMut,
    /// Records that arrived while we waited for a reply, for the next batch.
    held: Vec<bytes::Bytes>,
}

impl DaemonClient {
    /// Connects to the daemon at `path` and checks it speaks our protocol.
    pub async fn connect(path: PathBuf) -> Result<Self, DaemonClientError> {
        let stream = match UnixStream::connect(&path).await {
            Ok(stream) => stream,
            Err(source) => return Err(DaemonClientError::Connect { path, source }),
        };
        let mut client = DaemonClient { stream, input: BytesMut::with_capacity(1 << 16), held: Vec::new() };
        match client.next_reply().await? {
            Reply::Hello { version } if version == protocol::VERSION => Ok(client),
            Reply::Hello { version } => {
                Err(DaemonClientError::Version { path, found: version, expected: protocol::VERSION })
            }
            Reply::Error(message) => Err(DaemonClientError::Refused(message)),
            _ => Err(DaemonClientError::Refused("no greeting".into())),
        }
    }

    async fn send(&mut self, request: Request) -> Result<(), DaemonClientError> {
        let mut frame = BytesMut::new();
        request.encode(&mut frame);
        self.stream.write_all(&frame).await?;
        Ok(())
    }

    /// The next frame off the socket, reading as needed.
    async fn next_reply(&mut self) -> Result<Reply, DaemonClientError> {
        loop {
            if let Some((tag, payload)) = protocol::next_frame(&mut self.input)? {
                return Ok(Reply::decode(tag, payload)?);
            }
            if self.stream.read_buf(&mut self.input).await? == 0 {
                return Err(DaemonClientError::Closed);
            }
        }
    }

    /// Waits for the reply to a request, keeping the records that come first.
    async fn reply(&mut self) -> Result<Reply, DaemonClientError> {
        loop {
            match self.next_reply().await? {
                Reply::Event(record) => self.held.push(record),
                Reply::Error(message) => return Err(DaemonClientError::Refused(message)),
                reply => return Ok(reply),
            }
        }
    }

    /// Follows `tids`; returns those that were not followed already.
    pub async fn follow(&mut self, tids: &[Tid]) -> Result<Vec<Tid>, DaemonClientError> {
        self.send(Request::Follow(tids.to_vec())).await?;
        match self.reply().await? {
            Reply::Followed(new) => Ok(new),
            other => Err(DaemonClientError::Refused(format!("unexpected answer to follow: {other:?}"))),
        }
    }

    /// Waits for records, then hands every whole one received to `sink`.
    ///
    /// Cancel-safe: a read either happened (and its bytes are kept) or not.
    pub async fn next_records(&mut self, sink: &mut impl FnMut(&[u8])) -> Result<usize, DaemonClientError> {
        let mut count = self.held.len();
        for record in self.held.drain(..) {
            sink(&record);
        }
        count += self.whole_records(sink)?;
        if count == 0 {
            if self.stream.read_buf(&mut self.input).await? == 0 {
                return Err(DaemonClientError::Closed);
            }
            count += self.whole_records(sink)?;
        }
        Ok(count)
    }

    /// Hands the records already received whole to `sink`.
    fn whole_records(&mut self, sink: &mut impl FnMut(&[u8])) -> Result<usize, DaemonClientError> {
        let mut count = 0;
        while let Some((tag, payload)) = protocol::next_frame(&mut self.input)? {
            match Reply::decode(tag, payload)? {
                Reply::Event(record) => {
                    count += 1;
                    sink(&record);
                }
                Reply::Error(message) => return Err(DaemonClientError::Refused(message)),
                other => return Err(DaemonClientError::Refused(format!("unexpected message: {other:?}"))),
            }
        }
        Ok(count)
    }

    /// Ends the audit: every record still on its way goes to `sink`, then the
    /// daemon's counters for the audit come back.
    pub async fn finish(mut self, sink: &mut impl FnMut(&[u8])) -> Result<Counters, DaemonClientError> {
        self.send(Request::Finish).await?;
        for record in self.held.drain(..) {
            sink(&record);
        }
        loop {
            match self.next_reply().await? {
                Reply::Event(record) => sink(&record),
                Reply::End(counters) => return Ok(counters),
                Reply::Error(message) => return Err(DaemonClientError::Refused(message)),
                other => return Err(DaemonClientError::Refused(format!("unexpected message: {other:?}"))),
            }
        }
    }
}
