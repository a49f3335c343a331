//! The wire protocol between `reprotrace daemon` and the audits it serves, over
//! a Unix stream socket.
//!
//! Every message is a frame: a tag byte, the payload's length (u32, little
//! endian) and the payload. Kernel events travel as the ring buffer's own
//! records, undecoded: the daemon only reads their audit id to route them, and
//! the audit decodes them as it would from its own ring buffer.
//!
//! A conversation: the daemon greets with `Hello`; the audit sends `Follow`
//! (answered by `Followed`) as often as it needs, receives `Event`s, and ends
//! with `Finish`, answered — after every event of the audit still in the ring
//! buffer — by `End`. A daemon that cannot serve a request says so in `Error`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::{event::Tid, source::Counters};

/// Bumped whenever a frame changes meaning.
pub const VERSION: u32 = 3;

/// Where the daemon listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/reprotrace/daemon.sock";

/// Larger than any frame either side sends (an event is at most a few pages).
const MAX_FRAME: usize = 16 << 20;

const HEADER: usize = 5;

mod tag {
    pub const HELLO: u8 = 1;
    pub const FOLLOW: u8 = 2;
    pub const FOLLOWED: u8 = 3;
    pub const EVENT: u8 = 4;
    pub const FINISH: u8 = 5;
    pub const END: u8 = 6;
    pub const ERROR: u8 = 7;
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("frame of {0} bytes is larger than any message")]
    TooLarge(usize),
    #[error("unknown frame tag {0}")]
    UnknownTag(u8),
    #[error("frame with tag {tag} has a malformed payload of {len} bytes")]
    BadPayload { tag: u8, len: usize },
}

/// A message to the daemon.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// Follow these tasks (and their descendants) for this audit.
    Follow(Vec<Tid>),
    /// The audit is over: send what is left, then `End`.
    Finish,
}

/// A message to an audit.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Hello {
        version: u32,
    },
    /// The tasks of a `Follow` that were not followed before.
    Followed(Vec<Tid>),
    /// One kernel record, as the ring buffer held it.
    Event(Bytes),
    /// What the daemon counted for the audit: the events the kernel dropped
    /// while it ran (the ring buffer is shared: drops cannot be told apart by
    /// audit, so every audit running hears of them), the children it could not
    /// follow (same caveat), and the records it could not forward.
    End(Counters),
    Error(String),
}

fn put_header(buffer: &mut BytesMut, tag: u8, len: usize) {
    buffer.put_u8(tag);
    // Frames are far below 4 GiB: the largest is a ring buffer record.
    buffer.put_u32_le(len as u32);
}

fn put_tids(buffer: &mut BytesMut, tag: u8, tids: &[Tid]) {
    put_header(buffer, tag, tids.len() * 4);
    for tid in tids {
        buffer.put_u32_le(*tid);
    }
}

impl Request {
    pub fn encode(&self, buffer: &mut BytesMut) {
        match self {
            Request::Follow(tids) => put_tids(buffer, tag::FOLLOW, tids),
            Request::Finish => put_header(buffer, tag::FINISH, 0),
        }
    }

    pub fn decode(tag: u8, payload: Bytes) -> Result<Self, ProtocolError> {
        match tag {
            tag::FOLLOW => Ok(Request::Follow(tids(tag, payload)?)),
            tag::FINISH => Ok(Request::Finish),
            other => Err(ProtocolError::UnknownTag(other)),
        }
    }
}

impl Reply {
    pub fn encode(&self, buffer: &mut BytesMut) {
        match self {
            Reply::Hello { version } => {
                put_header(buffer, tag::HELLO, 4);
                buffer.put_u32_le(*version);
            }
            Reply::Followed(tids) => put_tids(buffer, tag::FOLLOWED, tids),
            Reply::Event(record) => encode_event(buffer, record),
            Reply::End(counters) => {
                put_header(buffer, tag::END, 32);
                buffer.put_u64_le(counters.lost_events);
                buffer.put_u64_le(counters.untracked_children);
                buffer.put_u64_le(counters.malformed_events);
                buffer.put_u64_le(u64::from(counters.sees_io_uring));
            }
            Reply::Error(message) => {
                put_header(buffer, tag::ERROR, message.len());
                buffer.put_slice(message.as_bytes());
            }
        }
    }

    pub fn decode(tag: u8, mut payload: Bytes) -> Result<Self, ProtocolError> {
        let bad = |payload: &Bytes| ProtocolError::BadPayload { tag, len: payload.len() };
        match tag {
            tag::HELLO if payload.len() == 4 => Ok(Reply::Hello { version: payload.get_u32_le() }),
            tag::FOLLOWED => Ok(Reply::Followed(tids(tag, payload)?)),
            tag::EVENT => Ok(Reply::Event(payload)),
            tag::END if payload.len() == 32 => Ok(Reply::End(Counters {
                lost_events: payload.get_u64_le(),
                untracked_children: payload.get_u64_le(),
                malformed_events: payload.get_u64_le(),
                sees_io_uring: payload.get_u64_le() != 0,
            })),
            tag::ERROR => Ok(Reply::Error(String::from_utf8_lossy(&payload).into_owned())),
            tag::HELLO | tag::END => Err(bad(&payload)),
            other => Err(ProtocolError::UnknownTag(other)),
        }
    }
}

/// Appends an `Event` frame without copying the record twice.
pub fn encode_event(buffer: &mut BytesMut, record: &[u8]) {
    put_header(buffer, tag::EVENT, record.len());
    buffer.put_slice(record);
}

fn tids(tag: u8, mut payload: Bytes) -> Result<Vec<Tid>, ProtocolError> {
    if !payload.len().is_multiple_of(4) {
        return Err(ProtocolError::BadPayload { tag, len: payload.len() });
    }
    let mut tids = Vec::with_capacity(payload.len() / 4);
    while payload.has_remaining() {
        tids.push(payload.get_u32_le());
    }
    Ok(tids)
}

/// Takes the first whole frame off `buffer`: its tag and payload, or `None`
/// until more bytes have arrived.
pub fn next_frame(buffer: &mut BytesMut) -> Result<Option<(u8, Bytes)>, ProtocolError> {
    if buffer.len() < HEADER {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
    if len > MAX_FRAME {
        return Err(ProtocolError::TooLarge(len));
    }
    if buffer.len() < HEADER + len {
        buffer.reserve(HEADER + len - buffer.len());
        return Ok(None);
    }
    let tag = buffer[0];
    buffer.advance(HEADER);
    Ok(Some((tag, buffer.split_to(len).freeze())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(buffer: &mut BytesMut) -> Vec<(u8, Bytes)> {
        std::iter::from_fn(|| next_frame(buffer).expect("well-formed")).collect()
    }

    #[test]
    fn requests_and_replies_survive_the_wire() {
        let requests = [Request::Follow(vec![1, 4_000_000, 7]), Request::Follow(vec![]), Request::Finish];
        let replies = [
            Reply::Hello { version: VERSION },
            Reply::Followed(vec![42]),
            Reply::Event(Bytes::from_static(b"\x01\x02\x03")),
            Reply::End(Counters { lost_events: 3, untracked_children: 1, malformed_events: 2, sees_io_uring: true }),
            Reply::Error("no".into()),
        ];
        let mut buffer = BytesMut::new();
        requests.iter().for_each(|request| request.encode(&mut buffer));
        let decoded: Vec<_> =
            frames(&mut buffer).into_iter().map(|(tag, payload)| Request::decode(tag, payload).unwrap()).collect();
        assert_eq!(decoded, requests);
        replies.iter().for_each(|reply| reply.encode(&mut buffer));
        let decoded: Vec<_> =
            frames(&mut buffer).into_iter().map(|(tag, payload)| Reply::decode(tag, payload).unwrap()).collect();
        assert_eq!(decoded, replies);
    }

    #[test]
    fn a_frame_split_across_reads_waits_for_its_tail() {
        let mut whole = BytesMut::new();
        Reply::Followed(vec![9, 10]).encode(&mut whole);
        let mut buffer = BytesMut::from(&whole[..7]);
        assert_eq!(next_frame(&mut buffer).unwrap(), None);
        buffer.extend_from_slice(&whole[7..]);
        let (tag, payload) = next_frame(&mut buffer).unwrap().expect("whole now");
        assert_eq!(Reply::decode(tag, payload).unwrap(), Reply::Followed(vec![9, 10]));
        assert!(buffer.is_empty());
    }

    #[test]
    fn garbage_is_refused() {
        let mut buffer = BytesMut::from(&[tag::EVENT, 0xff, 0xff, 0xff, 0xff][..]);
        assert!(matches!(next_frame(&mut buffer), Err(ProtocolError::TooLarge(_))));
        assert!(matches!(Request::decode(99, Bytes::new()), Err(ProtocolError::UnknownTag(99))));
        assert!(matches!(
            Request::decode(tag::FOLLOW, Bytes::from_static(b"abc")),
            Err(ProtocolError::BadPayload { .. })
        ));
        assert!(matches!(Reply::decode(tag::END, Bytes::new()), Err(ProtocolError::BadPayload { .. })));
    }
}
