//! Where an editable install imports from: PEP 660 `.pth` files and
//! setuptools' editable finders, `direct_url.json` (PEP 610), `file:` URLs.

use serde::Deserialize;

use super::{inputs::ScanLog, metadata::text_lines, os_path, PythonError};
use crate::tracker::path::{file_name, join, parent, resolve};

/// The fields of `direct_url.json` (PEP 610) that matter here.
#[derive(Deserialize)]
pub(super) struct DirectUrl {
    pub(super) url: String,
    #[serde(default)]
    dir_info: Option<DirInfo>,
}

#[derive(Deserialize)]
pub(super) struct DirInfo {
    #[serde(default)]
    editable: bool,
}

impl DirectUrl {
    pub(super) fn is_editable(&self) -> bool {
        self.dir_info.as_ref().is_some_and(|dir_info| dir_info.editable)
    }
}

pub(super) fn read_direct_url(dist_info: &[u8], log: &mut ScanLog) -> Option<DirectUrl> {
    let path = join(dist_info, b"direct_url.json");
    let text = log.read(&path)?;
    serde_json::from_slice(&text)
        .map_err(|source| log.problems.push(PythonError::Json { path: os_path(&path).to_path_buf(), source }))
        .ok()
}

/// Where a PEP 660 install imports from, as (package roots, `sys.path`
/// entries): the values of a setuptools finder's `MAPPING` and the path lines
/// of the `.pth` files of the site directory its `RECORD` lists, or else the
/// project directory `url` names.
pub(super) fn editable_roots(
    site: &[u8],
    files: &[Vec<u8>],
    url: &str,
    log: &mut ScanLog,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (mut package_roots, mut path_entries) = (Vec::new(), Vec::new());
    for file in files.iter().filter(|file| parent(file) == Some(site)) {
        let name = file_name(file);
        if name.ends_with(b".pth") {
            if let Some(text) = log.read(file) {
                path_entries.extend(pth_directories(site, &text));
            }
        } else if name.starts_with(b"__editable__") && name.ends_with(b"_finder.py") {
            if let Some(text) = log.read(file) {
                package_roots.extend(finder_mapping(&text).into_iter().map(|root| join(site, &root)));
            }
        }
    }
    if package_roots.is_empty() && path_entries.is_empty() {
        path_entries.extend(file_url_path(url));
    }
    (package_roots, path_entries)
}

/// The directories a `.pth` file adds to `sys.path` (`site.addpackage`):
/// every line but comments, blank lines and `import` lines, joined to the site
/// directory.
pub(super) fn pth_directories(site: &[u8], text: &[u8]) -> Vec<Vec<u8>> {
    text_lines(text)
        .filter(|line| {
            !line.starts_with(b"#")
                && !line.trim_ascii().is_empty()
                && !line.starts_with(b"import ")
                && !line.starts_with(b"import\t")
        })
        .map(|line| join(site, line.trim_ascii_end()))
        .collect()
}

/// The values of `MAPPING = {'pkg': '/project/pkg', …}` in a setuptools
/// editable finder (a Python dict literal of strings on one line).
pub(super) fn finder_mapping(source: &[u8]) -> Vec<Vec<u8>> {
    let Some(line) = text_lines(source).find(|line| line.starts_with(b"MAPPING")) else { return Vec::new() };
    let Some(equals) = line.iter().position(|&byte| byte == b'=') else { return Vec::new() };
    let mut literal = PythonLiteral { text: &line[equals + 1..], position: 0 };
    let mut values = Vec::new();
    if !literal.eat(b'{') || literal.eat(b'}') {
        return values;
    }
    loop {
        let (Some(_key), true, Some(value)) = (literal.string(), literal.eat(b':'), literal.string()) else {
            return Vec::new();
        };
        values.push(value);
        if literal.eat(b'}') {
            return values;
        }
        if !literal.eat(b',') {
            return Vec::new();
        }
        if literal.eat(b'}') {
            return values;
        }
    }
}

/// A cursor over Python literal text, enough for `repr()` of a dict of strings.
pub(super) struct PythonLiteral<'a> {
    text: &'a [u8],
    position: usize,
}

impl PythonLiteral<'_> {
    fn skip_space(&mut self) {
        while self.text.get(self.position).is_some_and(u8::is_ascii_whitespace) {
            self.position += 1;
        }
    }

    fn eat(&mut self, expected: u8) -> bool {
        self.skip_space();
        let found = self.text.get(self.position) == Some(&expected);
        if found {
            self.position += 1;
        }
        found
    }

    /// A quoted string, as the file-system bytes it stands for (lone
    /// surrogates U+DC80..U+DCFF are the undecodable bytes of
    /// `surrogateescape`).
    fn string(&mut self) -> Option<Vec<u8>> {
        self.skip_space();
        let quote = *self.text.get(self.position).filter(|&&quote| quote == b'\'' || quote == b'"')?;
        self.position += 1;
        let mut bytes = Vec::new();
        loop {
            let byte = *self.text.get(self.position)?;
            self.position += 1;
            match byte {
                _ if byte == quote => return Some(bytes),
                b'\\' => {
                    let escape = *self.text.get(self.position)?;
                    self.position += 1;
                    match escape {
                        b'n' => bytes.push(b'\n'),
                        b't' => bytes.push(b'\t'),
                        b'r' => bytes.push(b'\r'),
                        b'x' => self.code_point(2, &mut bytes)?,
                        b'u' => self.code_point(4, &mut bytes)?,
                        b'U' => self.code_point(8, &mut bytes)?,
                        other => bytes.push(other),
                    }
                }
                other => bytes.push(other),
            }
        }
    }

    fn code_point(&mut self, digits: usize, bytes: &mut Vec<u8>) -> Option<()> {
        let hex = std::str::from_utf8(self.text.get(self.position..self.position + digits)?).ok()?;
        self.position += digits;
        let value = u32::from_str_radix(hex, 16).ok()?;
        match value {
            0xDC80..=0xDCFF => bytes.push((value - 0xDC00) as u8),
            _ => bytes.extend_from_slice(char::from_u32(value)?.encode_utf8(&mut [0; 4]).as_bytes()),
        }
        Some(())
    }
}

/// The local path of a `file:` URL (percent-decoded, host ignored).
pub(super) fn file_url_path(url: &str) -> Option<Vec<u8>> {
    let rest = url.strip_prefix("file://")?;
    let path = &rest[rest.find('/')?..];
    let mut bytes = Vec::with_capacity(path.len());
    let mut input = path.as_bytes().iter();
    while let Some(&byte) = input.next() {
        let escaped = (byte == b'%')
            .then(|| input.as_slice().get(..2))
            .flatten()
            .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(decoded) => {
                bytes.push(decoded);
                input.nth(1);
            }
            None => bytes.push(byte),
        }
    }
    Some(resolve(b"/", &bytes))
}
