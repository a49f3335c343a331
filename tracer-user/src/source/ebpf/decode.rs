//! Decodes the kernel's wire events (tracer-common's layout) into [`Event`]s.

use tracer_common::{EventKind, HEADER_SIZE};

use crate::event::{Event, Fact, FactError};

/// Why a record from the ring buffer could not be decoded.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("event of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("unknown event kind {0}")]
    UnknownKind(u16),
    #[error("event strings overrun its {0} bytes")]
    StringsOverrun(usize),
    #[error(transparent)]
    Fact(#[from] FactError),
}

/// The header fields the pipeline needs, read from the wire.
struct Header {
    kind: u16,
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
        audit_id: u32_at(4),
        tid: u32_at(12),
        ret: u64_at(24) as i64,
        args: [u64_at(32), u64_at(40), u64_at(48)],
        str_len: [usize::from(u16_at(56)), usize::from(u16_at(58))],
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

pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    let header = read_header(bytes)?;
    let kind = EventKind::from_wire(header.kind).ok_or(DecodeError::UnknownKind(header.kind))?;
    let strings_end = HEADER_SIZE + header.str_len[0] + header.str_len[1];
    if strings_end > bytes.len() {
        return Err(DecodeError::StringsOverrun(bytes.len()));
    }
    let first = &bytes[HEADER_SIZE..HEADER_SIZE + header.str_len[0]];
    let second = &bytes[HEADER_SIZE + header.str_len[0]..strings_end];
    // An exec request's second string is its argv, each argument NUL-terminated.
    let (second, argv) = match kind {
        EventKind::ExecRequest => (Vec::new(), second.split_inclusive(|&byte| byte == 0).map(c_string).collect()),
        _ => (c_string(second), Vec::new()),
    };
    let fact = Fact::from_parts(kind, header.args, header.ret, [c_string(first), second], argv)?;
    Ok(Event { tid: header.tid, fact })
}

#[cfg(test)]
mod tests {
    use tracer_common::EventHeader;

    use super::*;

    fn wire(header: EventHeader, strings: &[&[u8]]) -> Vec<u8> {
        let mut header = header;
        header.str_len = [strings.first().map_or(0, |s| s.len() as u16), strings.get(1).map_or(0, |s| s.len() as u16)];
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
            Ok(Event { tid: 41, fact: Fact::Open { dirfd: -100, path: b"out.txt".to_vec(), flags: 0o2000101, fd: 5 } })
        );
    }

    #[test]
    fn decodes_exec_argv() {
        let header = EventHeader {
            kind: EventKind::ExecRequest as u16,
            tid: 9,
            args: [(-100i64) as u64, 0, 0],
            ..Default::default()
        };
        let bytes = wire(header, &[b"/bin/sh\0", b"sh\0-c\0\0"]);
        let Ok(Event { fact: Fact::ExecRequest { argv, path, .. }, .. }) = decode(&bytes) else {
            panic!("not an exec request");
        };
        assert_eq!(path, b"/bin/sh");
        assert_eq!(argv, vec![b"sh".to_vec(), b"-c".to_vec(), Vec::new()]);
    }

    #[test]
    fn rejects_short_and_overrunning_events() {
        assert_eq!(decode(&[0; 8]), Err(DecodeError::Short(8)));
        let mut bytes = wire(EventHeader { kind: EventKind::Mkdir as u16, ..Default::default() }, &[b"abc\0"]);
        bytes.truncate(HEADER_SIZE + 2);
        assert_eq!(decode(&bytes), Err(DecodeError::StringsOverrun(HEADER_SIZE + 2)));
    }
}
