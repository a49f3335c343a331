//! Decodes the kernel's wire events (tracer-common's layout) into [`Event`]s:
//! [`decode`] one record, [`Decoder`] a stream of them (holding an io_uring
//! request until its completion says whether its fact holds).

use std::collections::HashMap;

use tracer_common::{
    EventKind, FLAG_ARGV_TRUNCATED, FLAG_EXEC_FROM_FD, FLAG_IO_URING_DIRECT, FLAG_IO_URING_REQUEST,
    FLAG_STR0_TRUNCATED, FLAG_STR1_TRUNCATED, HEADER_SIZE,
};

use crate::event::{
    abi::{AT_EMPTY_PATH, AT_FDCWD},
    Argv, Event, Fact, FactError, Tid,
};

/// Why a record from the ring buffer could not be decoded.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("event of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("unknown event kind {0}")]
    UnknownKind(u16),
    #[error("event strings overrun its {0} bytes")]
    StringsOverrun(usize),
    #[error("a path of the event was longer than the kernel copies")]
    PathTruncated,
    #[error("an exec's path is said to be relative to a descriptor, but is no /dev/fd/N[/PATH]")]
    ExecFromFd,
    #[error(transparent)]
    Fact(#[from] FactError),
}

/// The header fields the pipeline needs, read from the wire.
struct Header {
    kind: u16,
    flags: u16,
    audit_id: u32,
    tid: u32,
    ret: i64,
    args: [u64; 3],
    str_len: [usize; 2],
}

fn read_header(bytes: &[u8]) -> Result<Header, DecodeError> {
    if bytes.len() < HEADER_SIZE {
        return Err(DecodeError::Short(bytes.len()));
    }
    let u16_at = |at: usize| u16::from_ne_bytes([bytes[at], bytes[at + 1]]);
    let u32_at = |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_ne_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    // Offsets follow `tracer_common::EventHeader` (repr(C)); a test pins them.
    Ok(Header {
        kind: u16_at(0),
        flags: u16_at(2),
        audit_id: u32_at(4),
        tid: u32_at(12),
        ret: u64_at(24) as i64,
        args: [u64_at(32), u64_at(40), u64_at(48)],
        str_len: [u32_at(56) as usize, u32_at(60) as usize],
    })
}

/// Strips the NUL the kernel copied with each string.
fn c_string(bytes: &[u8]) -> Vec<u8> {
    let end = bytes.iter().position(|&byte| byte == 0).unwrap_or(bytes.len());
    bytes[..end].to_vec()
}

/// The audit id of a wire event, without decoding the rest.
pub fn audit_id(bytes: &[u8]) -> Option<u32> {
    read_header(bytes).ok().map(|header| header.audit_id)
}

/// One record: an event, or half of one (an io_uring request or its outcome).
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Event(Event),
    /// A request whose fact holds if it succeeds (`fact` was built with `ret` 0).
    Request {
        id: u64,
        tid: Tid,
        kind: EventKind,
        args: [u64; 3],
        strings: [Vec<u8>; 2],
        direct: bool,
    },
    Completion {
        id: u64,
        result: i64,
    },
}

/// Decodes a stream of records in order, counting what cannot be decoded.
#[derive(Debug, Default)]
pub struct Decoder {
    malformed: u64,
    /// io_uring requests awaiting their completion, by id.
    requests: HashMap<u64, Decoded>,
}

impl Decoder {
    /// Decodes `record`, and hands `feed` the event it completes, if any.
    pub fn push(&mut self, record: &[u8], feed: &mut impl FnMut(Event)) {
        match decode(record) {
            Ok(Decoded::Event(event)) => feed(event),
            Ok(request @ Decoded::Request { id, .. }) => {
                self.requests.insert(id, request);
            }
            Ok(Decoded::Completion { id, result }) => {
                let Some(Decoded::Request { tid, kind, args, strings, direct, .. }) = self.requests.remove(&id) else {
                    return;
                };
                if result < 0 {
                    return;
                }
                match Fact::from_parts(kind, args, result, strings, Argv::default()) {
                    // A direct descriptor is a slot of the ring's table: no
                    // process descriptor was made or closed.
                    Ok(Fact::Close { .. }) if direct => {}
                    Ok(Fact::Open { dirfd, path, flags, .. }) if direct => {
                        feed(Event { tid, fact: Fact::Open { dirfd, path, flags, fd: -1 } })
                    }
                    Ok(fact) => feed(Event { tid, fact }),
                    Err(_) => self.malformed += 1,
                }
            }
            Err(_) => self.malformed += 1,
        }
    }

    /// Records that could not be decoded so far.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }
}

pub fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let header = read_header(bytes)?;
    let kind = EventKind::from_wire(header.kind).ok_or(DecodeError::UnknownKind(header.kind))?;
    let strings_end = HEADER_SIZE.saturating_add(header.str_len[0]).saturating_add(header.str_len[1]);
    if strings_end > bytes.len() {
        return Err(DecodeError::StringsOverrun(bytes.len()));
    }
    // No call succeeds on a path longer than the kernel takes: a cut one is
    // a cell marker's text or a failed exec's path, never a fact to guess at.
    if header.flags & (FLAG_STR0_TRUNCATED | FLAG_STR1_TRUNCATED) != 0 {
        return Err(DecodeError::PathTruncated);
    }
    let first = c_string(&bytes[HEADER_SIZE..HEADER_SIZE + header.str_len[0]]);
    let second = &bytes[HEADER_SIZE + header.str_len[0]..strings_end];
    if header.flags & FLAG_IO_URING_REQUEST != 0 {
        let (id, strings) = (header.ret as u64, [first, c_string(second)]);
        let direct = header.flags & FLAG_IO_URING_DIRECT != 0;
        return Ok(Decoded::Request { id, tid: header.tid, kind, args: header.args, strings, direct });
    }
    if kind == EventKind::IoUringCompletion {
        return Ok(Decoded::Completion { id: header.args[0], result: header.ret });
    }
    let fact = match kind {
        // The new image's argv, each argument NUL-terminated, and the path the
        // kernel ran: `/dev/fd/N/PATH` for PATH relative to dirfd N (flagged),
        // `/dev/fd/N` for the descriptor itself (`AT_EMPTY_PATH`).
        EventKind::Exec => {
            let mut args: Vec<Vec<u8>> = second.split_inclusive(|&byte| byte == 0).map(c_string).collect();
            let truncated = header.flags & FLAG_ARGV_TRUNCATED != 0;
            if truncated && second.last() != Some(&0) {
                // The last argument was cut: not an argument the program got.
                args.pop();
            }
            let from_fd = match header.flags & FLAG_EXEC_FROM_FD {
                0 => None,
                _ => Some(relative_to_dirfd(&first).ok_or(DecodeError::ExecFromFd)?),
            };
            let (dirfd, path) = from_fd.unwrap_or((AT_FDCWD, &first[..]));
            let flags = if from_fd.is_some() && path.is_empty() { AT_EMPTY_PATH } else { 0 };
            let args_of_kind = [dirfd as i64 as u64, flags, header.args[2]];
            let path = path.to_vec();
            Fact::from_parts(kind, args_of_kind, header.ret, [path, Vec::new()], Argv { args, truncated })?
        }
        _ => Fact::from_parts(kind, header.args, header.ret, [first, c_string(second)], Argv::default())?,
    };
    Ok(Decoded::Event(Event { tid: header.tid, fact }))
}

/// The descriptor and the path the program gave relative to it, from the
/// kernel's spelling of them (`/dev/fd/N` or `/dev/fd/N/PATH`).
fn relative_to_dirfd(kernel_path: &[u8]) -> Option<(i32, &[u8])> {
    let rest = kernel_path.strip_prefix(b"/dev/fd/")?;
    let digits = rest.iter().take_while(|byte| byte.is_ascii_digit()).count();
    let dirfd = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    match &rest[digits..] {
        [] => Some((dirfd, &[])),
        [b'/', relative @ ..] => Some((dirfd, relative)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use tracer_common::EventHeader;

    use super::*;

    fn wire(header: EventHeader, strings: &[&[u8]]) -> Vec<u8> {
        let mut header = header;
        header.str_len = [strings.first().map_or(0, |s| s.len() as u32), strings.get(1).map_or(0, |s| s.len() as u32)];
        // SAFETY: EventHeader is repr(C) plain data.
        let raw = unsafe { std::slice::from_raw_parts((&header as *const EventHeader).cast::<u8>(), HEADER_SIZE) };
        let mut bytes = raw.to_vec();
        for string in strings {
            bytes.extend_from_slice(string);
        }
        bytes
    }

    #[test]
    fn decodes_an_open_against_the_shared_layout() {
        let header = EventHeader {
            kind: EventKind::Open as u16,
            audit_id: 7,
            tgid: 40,
            tid: 41,
            ret: 5,
            args: [(-100i64) as u64, 0o2000101, 0o644],
            ..Default::default()
        };
        let bytes = wire(header, &[b"out.txt\0"]);
        assert_eq!(audit_id(&bytes), Some(7));
        assert_eq!(
            decode(&bytes),
            Ok(Decoded::Event(Event {
                tid: 41,
                fact: Fact::Open { dirfd: -100, path: b"out.txt".to_vec(), flags: 0o2000101, fd: 5 }
            }))
        );
    }

    fn exec(kernel_path: &[u8], argv: &[u8], flags: u16) -> Result<Fact, DecodeError> {
        let header = EventHeader { kind: EventKind::Exec as u16, flags, tid: 9, args: [0, 0, 8], ..Default::default() };
        match decode(&wire(header, &[kernel_path, argv]))? {
            Decoded::Event(event) => Ok(event.fact),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn decodes_exec_argv_and_the_path_the_program_gave() {
        let Ok(Fact::Exec { argv, path, dirfd, requested_by, argv_truncated, .. }) =
            exec(b"/bin/sh\0", b"sh\0-c\0\0", 0)
        else {
            panic!("not an exec");
        };
        assert_eq!((path, dirfd, requested_by, argv_truncated), (b"/bin/sh".to_vec(), -100, 8, false));
        assert_eq!(argv, vec![b"sh".to_vec(), b"-c".to_vec(), Vec::new()]);
        // execveat(4, "tool") and fexecve(4) as the kernel spells them.
        let Ok(Fact::Exec { path, dirfd, flags, .. }) = exec(b"/dev/fd/4/tool\0", b"t\0", FLAG_EXEC_FROM_FD) else {
            panic!()
        };
        assert_eq!((path, dirfd, flags), (b"tool".to_vec(), 4, 0));
        let Ok(Fact::Exec { path, dirfd, flags, .. }) = exec(b"/dev/fd/12\0", b"t\0", FLAG_EXEC_FROM_FD) else {
            panic!()
        };
        assert_eq!((path, dirfd, flags), (Vec::new(), 12, AT_EMPTY_PATH));
        // A program that runs /dev/fd/4/tool itself names that path.
        let Ok(Fact::Exec { path, dirfd, .. }) = exec(b"/dev/fd/4/tool\0", b"t\0", 0) else { panic!() };
        assert_eq!((path, dirfd), (b"/dev/fd/4/tool".to_vec(), -100));
        assert_eq!(exec(b"/dev/fdx/4\0", b"t\0", FLAG_EXEC_FROM_FD), Err(DecodeError::ExecFromFd));
        // A cut argv loses its cut last argument, and says so.
        let Ok(Fact::Exec { argv, argv_truncated, .. }) = exec(b"/bin/x\0", b"a\0bc", FLAG_ARGV_TRUNCATED) else {
            panic!()
        };
        assert_eq!((argv, argv_truncated), (vec![b"a".to_vec()], true));
    }

    #[test]
    fn rejects_short_and_overrunning_events() {
        assert_eq!(decode(&[0; 8]), Err(DecodeError::Short(8)));
        let mut bytes = wire(EventHeader { kind: EventKind::Mkdir as u16, ..Default::default() }, &[b"abc\0"]);
        bytes.truncate(HEADER_SIZE + 2);
        assert_eq!(decode(&bytes), Err(DecodeError::StringsOverrun(HEADER_SIZE + 2)));
    }

    #[test]
    fn an_io_uring_request_is_a_fact_once_it_succeeded() {
        let request = |id: u64, flags: u16| {
            let header = EventHeader {
                kind: EventKind::Open as u16,
                flags: FLAG_IO_URING_REQUEST | flags,
                tid: 7,
                ret: id as i64,
                args: [(-100i64) as u64, 0, 0],
                ..Default::default()
            };
            wire(header, &[b"in.txt\0"])
        };
        let completion = |id: u64, result: i64| {
            let header = EventHeader {
                kind: EventKind::IoUringCompletion as u16,
                ret: result,
                args: [id, 0, 0],
                ..Default::default()
            };
            wire(header, &[])
        };
        let mut decoder = Decoder::default();
        let mut events = Vec::new();
        for record in [
            request(1, 0),
            request(2, 0),
            request(3, FLAG_IO_URING_DIRECT),
            completion(2, -2),
            completion(1, 5),
            completion(3, 0),
        ] {
            decoder.push(&record, &mut |event| events.push(event));
        }
        let open = |fd| Event { tid: 7, fact: Fact::Open { dirfd: -100, path: b"in.txt".to_vec(), flags: 0, fd } };
        assert_eq!(events, vec![open(5), open(-1)], "the failed request 2 states nothing");
        assert_eq!(decoder.malformed(), 0);
    }
}
