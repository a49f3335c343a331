//! Small HTML helpers: escaping, and the human formats the report shows
//! values in (sizes, times, durations, shortened paths and hashes).

use std::{
    fmt::{self, Write as _},
    time::{Duration, SystemTime},
};

/// Appends formatted text to a `String`, which cannot fail.
macro_rules! w {
    ($out:expr, $($arg:tt)*) => {{
        let _ = ::std::fmt::Write::write_fmt($out, format_args!($($arg)*));
    }};
}
pub(super) use w;

/// Text escaped for HTML element content and double- or single-quoted
/// attribute values (SVG's included). Control characters, which a path may
/// hold, are shown as their visible Unicode pictures (`␊` for a newline).
/// Everything else, the manifest's `\xNN` escapes included, stays literal.
pub(super) struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let text = self.0;
        let mut plain = 0;
        for (at, character) in text.char_indices() {
            let replacement = match character {
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '"' => "&quot;",
                '\'' => "&#39;",
                '\u{0}'..='\u{1f}' | '\u{7f}' => "",
                _ => continue,
            };
            f.write_str(&text[plain..at])?;
            if replacement.is_empty() {
                // U+2400.. are the pictures of U+0000..U+001F; U+2421 is DEL's.
                let picture = if character == '\u{7f}' { 0x2421 } else { 0x2400 + u32::from(character) };
                f.write_char(char::from_u32(picture).unwrap_or('\u{fffd}'))?;
            } else {
                f.write_str(replacement)?;
            }
            plain = at + character.len_utf8();
        }
        f.write_str(&text[plain..])
    }
}

/// `text` escaped, as an owned string.
pub(super) fn esc(text: &str) -> String {
    Esc(text).to_string()
}

pub(super) use crate::units::human_size;

/// A byte count with thousands separators: `1,234,567`.
pub(super) fn grouped(number: u64) -> String {
    let digits = number.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (position, digit) in digits.chars().enumerate() {
        if position > 0 && (digits.len() - position).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A manifest timestamp (RFC 3339 UTC).
pub(super) fn parse_time(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(text).ok()
}

/// From `start` to `end`, if both parse and `end` is not earlier.
pub(super) fn between(start: &str, end: &str) -> Option<Duration> {
    parse_time(end)?.duration_since(parse_time(start)?).ok()
}

/// `340 ms`, `12.3 s`, `4 min 05 s`, `2 h 03 min`.
pub(super) fn human_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1000 {
        return format!("{millis} ms");
    }
    let seconds = duration.as_secs_f64();
    if seconds < 60.0 {
        return format!("{seconds:.1} s");
    }
    let whole = duration.as_secs();
    if whole < 3600 {
        format!("{} min {:02} s", whole / 60, whole % 60)
    } else {
        format!("{} h {:02} min", whole / 3600, whole % 3600 / 60)
    }
}

/// A timestamp as people read it: `2026-05-01 12:00:00.123 UTC`.
pub(super) fn human_time(text: &str) -> String {
    match text.strip_suffix('Z') {
        Some(utc) => format!("{} UTC", utc.replacen('T', " ", 1)),
        None => text.to_string(),
    }
}

/// A `<time>` element for a manifest timestamp.
pub(super) fn time_element(text: &str) -> String {
    format!("<time datetime=\"{}\">{}</time>", Esc(text), Esc(&human_time(text)))
}

/// An argument as a shell would need it quoted, for display.
pub(super) fn shell_word(arg: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c);
    if !arg.is_empty() && arg.chars().all(safe) {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// A command line for display.
pub(super) fn shell_line(argv: &[String]) -> String {
    argv.iter().map(|arg| shell_word(arg)).collect::<Vec<_>>().join(" ")
}

/// At most `max` characters of `text`: its beginning and end around an
/// ellipsis when it is longer.
pub(super) fn middle_cut(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_string();
    }
    let keep = max.saturating_sub(1);
    let head = keep.div_ceil(2);
    let tail = keep - head;
    let start: String = text.chars().take(head).collect();
    let end: String = text.chars().skip(count - tail).collect();
    format!("{start}…{end}")
}

/// At most `max` characters of a path: as many of its last components as
/// fit after `…/`, else its name cut in the middle.
pub(super) fn shorten_path(path: &str, max: usize) -> String {
    if path.chars().count() <= max {
        return path.to_string();
    }
    let mut kept: Vec<&str> = Vec::new();
    let mut length = 2; // "…/"
    for part in path.rsplit('/') {
        let needed = part.chars().count() + usize::from(!kept.is_empty());
        if length + needed > max {
            break;
        }
        length += needed;
        kept.push(part);
    }
    if kept.is_empty() {
        return middle_cut(path.rsplit('/').next().unwrap_or(path), max);
    }
    kept.reverse();
    format!("…/{}", kept.join("/"))
}

/// The last component of a path.
pub(super) fn file_name(path: &str) -> &str {
    path.rsplit('/').find(|part| !part.is_empty()).unwrap_or(path)
}

/// A SHA-256, shortened, with the full value in its title.
pub(super) fn short_sha(sha: &str) -> String {
    let short: String = sha.chars().take(12).collect();
    format!("<code class=\"sha\" title=\"{}\">{}…</code>", Esc(sha), Esc(&short))
}

/// A path shortened to `max` characters in a `<code>`, the full path in its title.
pub(super) fn path_code(path: &str, max: usize) -> String {
    let short = shorten_path(path, max);
    if short == path {
        format!("<code class=\"path\">{}</code>", Esc(path))
    } else {
        format!("<code class=\"path\" title=\"{}\">{}</code>", Esc(path), Esc(&short))
    }
}

/// A badge: `kind` is one of the style's (`ok`, `bad`, `warn`, `info`, `muted`).
pub(super) fn badge(kind: &str, text: &str) -> String {
    format!("<span class=\"badge {kind}\">{}</span>", Esc(text))
}

/// Lines for a `title` attribute: each escaped, joined by line breaks.
pub(super) fn title_lines<S: AsRef<str>>(lines: &[S]) -> String {
    lines.iter().map(|line| esc(line.as_ref())).collect::<Vec<_>>().join("&#10;")
}

/// A badge with a title (of `lines`) that explains it.
pub(super) fn badge_titled<S: AsRef<str>>(kind: &str, text: &str, lines: &[S]) -> String {
    format!("<span class=\"badge {kind}\" title=\"{}\">{}</span>", title_lines(lines), Esc(text))
}

/// `1 file`, `2 files`.
pub(super) fn plural(count: usize, one: &str, many: &str) -> String {
    format!("{} {}", grouped(count as u64), if count == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_quotes_are_escaped() {
        assert_eq!(esc(r#"<script>alert("x")</script>"#), "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;");
        assert_eq!(esc("a&b 'c'"), "a&amp;b &#39;c&#39;");
        assert_eq!(esc("&amp;"), "&amp;amp;");
        assert_eq!(esc(""), "");
        assert_eq!(esc("plain café ☕"), "plain café ☕");
    }

    #[test]
    fn the_manifests_escapes_stay_literal_and_controls_are_visible() {
        assert_eq!(esc(r"/data/caf\xe9.csv"), r"/data/caf\xe9.csv");
        assert_eq!(esc(r"/data/caf\\xe9.csv"), r"/data/caf\\xe9.csv");
        assert_eq!(esc("a\nb\tc\u{7f}\u{0}"), "a\u{240a}b\u{2409}c\u{2421}\u{2400}");
    }

    #[test]
    fn escaping_applies_inside_helpers() {
        let code = path_code("/tmp/<b>&\"x\".txt", 100);
        assert_eq!(code, "<code class=\"path\">/tmp/&lt;b&gt;&amp;&quot;x&quot;.txt</code>");
        let long = format!("/very/long/{}/a<b.txt", "d".repeat(80));
        let code = path_code(&long, 20);
        assert!(code.contains("title=\"/very/long/") && code.contains("a&lt;b.txt"), "{code}");
        assert!(!code.contains("a<b"), "{code}");
        assert_eq!(badge("bad", "<x>"), "<span class=\"badge bad\">&lt;x&gt;</span>");
        assert_eq!(
            badge_titled("warn", "2", &["a\"b", "c\nd"]),
            "<span class=\"badge warn\" title=\"a&quot;b&#10;c\u{240a}d\">2</span>"
        );
        assert_eq!(
            time_element("2026-01-02T03:04:05.678Z"),
            "<time datetime=\"2026-01-02T03:04:05.678Z\">2026-01-02 03:04:05.678 UTC</time>"
        );
    }

    #[test]
    fn sizes_durations_and_numbers_read_well() {
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(grouped(999), "999");
        assert_eq!(human_duration(Duration::from_millis(340)), "340 ms");
        assert_eq!(human_duration(Duration::from_millis(12_340)), "12.3 s");
        assert_eq!(human_duration(Duration::from_secs(245)), "4 min 05 s");
        assert_eq!(human_duration(Duration::from_secs(7380)), "2 h 03 min");
        assert_eq!(between("2026-01-01T00:00:00.000Z", "2026-01-01T00:00:01.500Z"), Some(Duration::from_millis(1500)));
        assert_eq!(between("2026-01-01T00:00:02Z", "2026-01-01T00:00:01Z"), None);
    }

    #[test]
    fn paths_and_words_are_shortened_and_quoted() {
        assert_eq!(shorten_path("/a/b/c.txt", 20), "/a/b/c.txt");
        assert_eq!(shorten_path("/home/user/project/data/input.csv", 20), "…/data/input.csv");
        assert_eq!(shorten_path(&format!("/x/{}", "n".repeat(40)), 11), "nnnnn…nnnnn");
        assert_eq!(middle_cut("abcdefghij", 5), "ab…ij");
        assert_eq!(file_name("/a/b/"), "b");
        assert_eq!(shell_word("plain-arg.py"), "plain-arg.py");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(shell_word(""), "''");
        assert_eq!(shell_line(&["python3".into(), "-c".into(), "print(1)".into()]), "python3 -c 'print(1)'");
    }
}
