//! The C-like syntax of a `strace -f -X raw` log line: the task id, a call's
//! arguments and result, and the strings, arrays, structs and integers strace
//! prints inside them. Nothing here knows which syscall means what: that is
//! the table of tracer-common, applied by [`super::parse`].

use std::io::{BufRead, BufReader, Read};

use tracer_common::syscalls::Arg;

use crate::{errno::errno_number, event::Tid};

/// More arguments than any modelled syscall takes (clone prints five).
const MAX_ARGS: usize = 6;

/// Reads a log line by line, as bytes, not text: strace escapes unprintable
/// bytes, but nothing guarantees a line is UTF-8 (a log cut short by a kill
/// can end mid-character).
pub struct Lines<R> {
    reader: R,
    line: Vec<u8>,
}

impl<R: BufRead> Lines<R> {
    pub fn new(reader: R) -> Self {
        Lines { reader, line: Vec::new() }
    }

    /// The next line, without its newline; `None` at the end of the log.
    pub fn next_line(&mut self) -> std::io::Result<Option<&[u8]>> {
        self.line.clear();
        if self.reader.read_until(b'\n', &mut self.line)? == 0 {
            return Ok(None);
        }
        Ok(Some(self.line.strip_suffix(b"\n").unwrap_or(&self.line)))
    }
}

impl<R: Read> Lines<BufReader<R>> {
    /// What has been read from the log and not handed out as lines yet.
    pub fn buffered(&self) -> &[u8] {
        self.reader.buffer()
    }
}

/// A line (or joined call) that does not have the shape strace prints.
#[derive(Debug)]
pub struct Malformed;

pub type Parsed<T = ()> = Result<T, Malformed>;

/// How a line that starts a call ends.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The call and its result are on this line.
    Complete,
    /// `<unfinished ...>`, `<pid changed to N ...>` or `<detached ...>`: the
    /// result follows on a `<... NAME resumed>` line, if at all.
    Interrupted,
}

/// A call split into its parts, borrowing the line.
pub struct Call<'a> {
    args: [&'a [u8]; MAX_ARGS],
    arg_count: usize,
    /// What follows the closing parenthesis (` = 3`); `None` if the text ends
    /// before it, as an interrupted call does.
    pub result: Option<&'a [u8]>,
}

impl<'a> Call<'a> {
    pub fn parse(text: &'a [u8]) -> Parsed<Self> {
        let open = text.iter().position(|&b| b == b'(').ok_or(Malformed)?;
        let mut call = Call { args: [&[]; MAX_ARGS], arg_count: 0, result: None };
        let mut items = Items::new(&text[open + 1..]);
        for arg in items.by_ref() {
            // Arguments past the last one any modelled syscall uses don't matter.
            if call.arg_count < MAX_ARGS {
                call.args[call.arg_count] = arg;
                call.arg_count += 1;
            }
        }
        // `fork()` has one empty item, not one argument.
        if call.arg_count == 1 && call.args[0].is_empty() {
            call.arg_count = 0;
        }
        call.result = match items.closing() {
            Some((b')', rest)) => Some(rest),
            Some(_) => return Err(Malformed),
            None => None,
        };
        Ok(call)
    }

    /// The value of a numeric argument, as the kernel would see it in its
    /// 64-bit register: `-100` (`AT_FDCWD`), `4294967295` (close_range's
    /// `~0U`), `0x1200000|17` (clone's flags with the exit signal or'ed in).
    ///
    /// strace leaves out what the call ignores (openat's mode without
    /// `O_CREAT`, `open_how.mode` when it is 0): a missing argument or member
    /// is 0.
    pub fn value(&self, arg: Arg) -> Parsed<u64> {
        let text = match arg {
            Arg::Raw(position) => self.arg(position).ok(),
            Arg::Named(_, name) => Some(self.named(name)?),
            Arg::Member { position, name, .. } => struct_member(self.arg(position)?, name),
            // tracer-common resolves the others itself.
            Arg::Unused | Arg::Const(_) | Arg::Bit(..) => return Err(Malformed),
        };
        text.map_or(Ok(0), |text| parse_flags(text).ok_or(Malformed))
    }

    /// A string argument: a path, or `NULL` (an empty one).
    pub fn path(&self, position: u8) -> Parsed<Vec<u8>> {
        parse_path(self.arg(position)?).ok_or(Malformed)
    }

    /// An array of strings (argv), and whether strace cut it (`-s` limits both
    /// the strings and the number of items it prints).
    pub fn string_array(&self, position: u8) -> Parsed<(Vec<Vec<u8>>, bool)> {
        parse_string_array(self.arg(position)?).ok_or(Malformed)
    }

    fn arg(&self, position: u8) -> Parsed<&'a [u8]> {
        self.args[..self.arg_count].get(usize::from(position)).copied().ok_or(Malformed)
    }

    /// The argument strace printed as `name=VALUE`.
    fn named(&self, name: &str) -> Parsed<&'a [u8]> {
        let value = |arg: &&'a [u8]| arg.strip_prefix(name.as_bytes())?.strip_prefix(b"=");
        self.args[..self.arg_count].iter().find_map(value).ok_or(Malformed)
    }
}

/// What a finished call returned.
#[derive(Clone, Copy)]
pub enum Outcome<'a> {
    /// `= 3`, `= 0x1 (flags FD_CLOEXEC)`.
    Returned(i64),
    /// `= -1 ENOENT (No such file or directory)`; `detail` is what follows `-1`.
    Failed { detail: &'a [u8] },
    /// `= ?`: the task died in the call, or it will be restarted.
    Unknown,
}

impl<'a> Outcome<'a> {
    pub fn parse(result: &'a [u8]) -> Parsed<Self> {
        let result = result.trim_ascii_start().strip_prefix(b"=").ok_or(Malformed)?.trim_ascii_start();
        if result.starts_with(b"?") {
            return Ok(Self::Unknown);
        }
        let (value, detail) = split_word(result);
        let value = parse_int(value).ok_or(Malformed)?;
        Ok(if value < 0 { Self::Failed { detail } } else { Self::Returned(value) })
    }
}

/// The errno of a failed exec: `ENOENT (No such file or directory)` or, for a
/// value strace has no name for, `(errno 1234)`.
pub fn exec_errno(detail: &[u8]) -> Option<i64> {
    let detail = detail.trim_ascii_start();
    if let Some(number) = detail.strip_prefix(b"(errno ") {
        let number = parse_int(number.strip_suffix(b")")?)?;
        // Anything else is not an error number (the kernel's are below 4096).
        return (1..4096).contains(&number).then_some(number);
    }
    let (name, _) = split_word(detail);
    let name = std::str::from_utf8(name).ok()?;
    errno_number(name).map(i64::from)
}

/// Splits `PID  REST` into the task id and the rest.
pub fn split_tid(line: &[u8]) -> Parsed<(Tid, &[u8])> {
    let digits = line.iter().take_while(|b| b.is_ascii_digit()).count();
    let (tid, rest) = line.split_at(digits);
    let tid = parse_tid(tid).ok_or(Malformed)?;
    let rest = rest.trim_ascii_start();
    // The id is followed by padding: the text must not start glued to it.
    if rest.len() == line.len() - digits {
        return Err(Malformed);
    }
    Ok((tid, rest))
}

/// Separates a call line from its interruption marker, if it has one.
pub fn split_ending(text: &[u8]) -> (&[u8], Ending) {
    const MARKERS: [&[u8]; 3] = [b"<unfinished ...>", b"<pid changed to ", b"<detached ...>"];
    // The marker is the line's last `<...>`; strings inside the call may hold
    // `<` but the call never ends with `>` otherwise, except `= ? <unavailable>`.
    if text.ends_with(b">") {
        if let Some(start) = text.iter().rposition(|&b| b == b'<') {
            let marker = &text[start..];
            if MARKERS.iter().any(|known| marker.starts_with(known)) {
                return (text[..start].trim_ascii_end(), Ending::Interrupted);
            }
        }
    }
    (text, Ending::Complete)
}

/// The value of member `name` in a printed struct: `{flags=0x41, mode=0644}`.
fn struct_member<'a>(text: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let members = text.strip_prefix(b"{")?;
    Items::new(members).find_map(|member| member.strip_prefix(name.as_bytes())?.strip_prefix(b"="))
}

/// A path argument: a quoted string, or `NULL` (or an address strace could not
/// read), which is taken as an empty path.
fn parse_path(text: &[u8]) -> Option<Vec<u8>> {
    if text.starts_with(b"\"") {
        unquote(text)
    } else if text == b"NULL" || parse_int(text).is_some() {
        Some(Vec::new())
    } else {
        None
    }
}

/// An argv array: `["sh", "-c", "x"]`, and whether it was cut short (an item
/// `...`, or a string cut at `-s`: `"abc"...`, which is dropped: it is not an
/// argument the program got); `NULL` or an unreadable address is an empty one.
fn parse_string_array(text: &[u8]) -> Option<(Vec<Vec<u8>>, bool)> {
    let Some(items) = text.strip_prefix(b"[") else {
        return (text == b"NULL" || parse_int(text).is_some()).then(|| (Vec::new(), false));
    };
    let mut strings = Vec::new();
    for item in Items::new(items) {
        if item == b"..." || item.ends_with(b"\"...") {
            return Some((strings, true));
        }
        if item.starts_with(b"\"") {
            strings.push(unquote(item)?);
        }
    }
    Some((strings, false))
}

/// Decodes a string strace printed in C syntax: `"caf\303\251\n"`. Text after
/// the closing quote (`...` when `-s` cut the string) is ignored.
fn unquote(text: &[u8]) -> Option<Vec<u8>> {
    let body = text.strip_prefix(b"\"")?;
    let mut bytes = Vec::with_capacity(body.len());
    let mut index = 0;
    while let Some(&byte) = body.get(index) {
        index += 1;
        let decoded = match byte {
            b'"' => return Some(bytes),
            b'\\' => {
                let escaped = *body.get(index)?;
                index += 1;
                match escaped {
                    b'n' => b'\n',
                    b't' => b'\t',
                    b'r' => b'\r',
                    b'v' => 0x0b,
                    b'f' => 0x0c,
                    b'a' => 0x07,
                    b'b' => 0x08,
                    b'x' => {
                        let (value, len) = leading_digits(&body[index..], 16, 2);
                        if len == 0 {
                            return None;
                        }
                        index += len;
                        value
                    }
                    // strace prints as few octal digits as it can: `\1`, `\377`.
                    b'0'..=b'7' => {
                        let (value, len) = leading_digits(&body[index - 1..], 8, 3);
                        index += len - 1;
                        value
                    }
                    // `\\`, `\"` and any other escaped character stand for themselves.
                    other => other,
                }
            }
            plain => plain,
        };
        bytes.push(decoded);
    }
    // No closing quote: the line was cut.
    None
}

/// The value of the (at most `max`) digits in `radix` that `text` starts
/// with, and how many there were. The value wraps at a byte.
fn leading_digits(text: &[u8], radix: u32, max: usize) -> (u8, usize) {
    let mut value: u32 = 0;
    let mut len = 0;
    for digit in text.iter().take(max).map_while(|&b| char::from(b).to_digit(radix)) {
        value = value * radix + digit;
        len += 1;
    }
    (value as u8, len)
}

/// The comma-separated items of a list whose opening bracket was consumed, up
/// to its closing bracket. Commas and brackets inside strings, nested lists
/// and `/* comments */` don't count.
struct Items<'a> {
    text: &'a [u8],
    position: usize,
    /// Where the list ended: the closing bracket's index, once seen.
    close: Option<usize>,
    finished: bool,
}

impl<'a> Items<'a> {
    fn new(text: &'a [u8]) -> Self {
        Items { text, position: 0, close: None, finished: false }
    }

    /// The closing bracket and the text after it, once the items are consumed;
    /// `None` if the text ended first.
    fn closing(&self) -> Option<(u8, &'a [u8])> {
        self.close.map(|index| (self.text[index], &self.text[index + 1..]))
    }
}

impl<'a> Iterator for Items<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.finished {
            return None;
        }
        let start = self.position;
        let end = start + item_end(&self.text[start..]);
        match self.text.get(end) {
            Some(b',') => self.position = end + 1,
            Some(_) => {
                self.finished = true;
                self.close = Some(end);
            }
            None => self.finished = true,
        }
        Some(self.text[start..end].trim_ascii())
    }
}

/// The index of the `,` or closing bracket that ends the first item of `text`
/// (its length if neither does).
fn item_end(text: &[u8]) -> usize {
    let mut depth = 0usize;
    let mut index = 0;
    while let Some(&byte) = text.get(index) {
        match byte {
            b'"' => {
                index += 1;
                while let Some(&byte) = text.get(index) {
                    index += if byte == b'\\' { 2 } else { 1 };
                    if byte == b'"' {
                        break;
                    }
                }
                continue;
            }
            b'/' if text.get(index + 1) == Some(&b'*') => {
                index = find(&text[index + 2..], b"*/").map_or(text.len(), |end| index + end + 4);
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' if depth == 0 => return index,
            b')' | b']' | b'}' => depth -= 1,
            b',' if depth == 0 => return index,
            _ => {}
        }
        index += 1;
    }
    text.len()
}

/// Splits off the first space-separated word.
fn split_word(text: &[u8]) -> (&[u8], &[u8]) {
    let end = text.iter().position(|&b| b == b' ').unwrap_or(text.len());
    text.split_at(end)
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

pub fn parse_tid(text: &[u8]) -> Option<Tid> {
    Tid::try_from(parse_int(text)?).ok()
}

pub fn parse_tid_value(value: i64) -> Parsed<Tid> {
    Tid::try_from(value).map_err(|_| Malformed)
}

/// Flags as `-X raw` prints them: `0x241`, `0x1200000|17` for clone, or
/// `|0x1800` when a zero-valued flag (statx's `AT_STATX_SYNC_AS_STAT`) leads.
fn parse_flags(text: &[u8]) -> Option<u64> {
    let text = text.trim_ascii();
    let text = text.strip_prefix(b"|").unwrap_or(text);
    text.split(|&b| b == b'|').try_fold(0u64, |flags, part| Some(flags | parse_int(part)? as u64))
}

/// An integer as strace prints one: `3`, `-100`, `0x80241`, `0666` (octal),
/// `~0`. Values above `i64::MAX` wrap, as the kernel's 64-bit registers do.
pub fn parse_int(text: &[u8]) -> Option<i64> {
    let text = text.trim_ascii();
    let (negative, text) = match text.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (complement, text) = match text.strip_prefix(b"~") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (digits, radix) = if let Some(hex) = text.strip_prefix(b"0x") {
        (hex, 16)
    } else if text.len() > 1 && text[0] == b'0' {
        (&text[1..], 8)
    } else {
        (text, 10)
    };
    if digits.is_empty() {
        return None;
    }
    let mut value: u64 = 0;
    for &byte in digits {
        let digit = char::from(byte).to_digit(radix)?;
        value = value.checked_mul(u64::from(radix))?.checked_add(u64::from(digit))?;
    }
    let value = if complement { !value } else { value } as i64;
    Some(if negative { value.wrapping_neg() } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(text: &str) -> Vec<u8> {
        text.as_bytes().to_vec()
    }

    #[test]
    fn integers_as_strace_prints_them() {
        for (text, value) in [
            ("3", Some(3)),
            ("-100", Some(-100)),
            ("0x80241", Some(0x80241)),
            ("0666", Some(0o666)),
            ("0", Some(0)),
            ("4294967295", Some(4_294_967_295)),
            ("~0", Some(-1)),
            ("18446744073709551615", Some(-1)),
            ("18446744073709551616", None),
            ("", None),
            ("0x", None),
            ("08", None),
            ("NULL", None),
        ] {
            assert_eq!(parse_int(text.as_bytes()), value, "{text}");
        }
        assert_eq!(parse_flags(b"0x1200000|17"), Some(0x1200011));
        assert_eq!(parse_flags(b"0x1200000|x"), None);
        assert_eq!(parse_flags(b"|0x1800"), Some(0x1800));
        assert_eq!(parse_flags(b"|"), None);
    }

    #[test]
    fn strings_as_strace_prints_them() {
        for (text, value) in [
            (r#""plain""#, Some(&b"plain"[..])),
            (r#""a\"b\\c""#, Some(b"a\"b\\c")),
            (r#""\303\251\1\0012""#, Some(b"\xc3\xa9\x01\x012")),
            (r#""\x7f\xff\xa""#, Some(b"\x7f\xff\x0a")),
            (r#""cut"..."#, Some(b"cut")),
            (r#""no end"#, None),
            (r#""\x""#, None),
        ] {
            assert_eq!(unquote(text.as_bytes()).as_deref(), value, "{text}");
        }
        assert_eq!(parse_path(b"NULL"), Some(Vec::new()));
        assert_eq!(parse_path(b"0x7ffe1234"), Some(Vec::new()));
        assert_eq!(parse_path(b"AT_FDCWD"), None);
        assert_eq!(parse_string_array(br#"["a", "b,]", ...]"#), Some((vec![bytes("a"), bytes("b,]")], true)));
        assert_eq!(parse_string_array(br#"["a", "bcd"...]"#), Some((vec![bytes("a")], true)));
        assert_eq!(parse_string_array(br#"["a"]"#), Some((vec![bytes("a")], false)));
        assert_eq!(parse_string_array(b"[]"), Some((Vec::new(), false)));
    }
}
