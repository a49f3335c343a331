//! Lexical path arithmetic on raw bytes.
//!
//! Names are kept as the program used them: symbolic links are not resolved and
//! the file system is never consulted, so `a/link/../b` folds to `a/b` even when
//! `link` points elsewhere (see docs/path-resolution.md for what this costs).

/// `path` made absolute against `base` (itself absolute) and folded.
pub fn resolve(base: &[u8], path: &[u8]) -> Vec<u8> {
    if path.first() == Some(&b'/') {
        return normalize(path);
    }
    let mut joined = Vec::with_capacity(base.len() + 1 + path.len());
    joined.extend_from_slice(base);
    joined.push(b'/');
    joined.extend_from_slice(path);
    normalize(&joined)
}

/// Folds `.`, `..` and repeated slashes of an absolute path; `/..` is `/`.
pub fn normalize(path: &[u8]) -> Vec<u8> {
    let mut components: Vec<&[u8]> = Vec::new();
    for component in path.split(|&byte| byte == b'/') {
        match component {
            b"" | b"." => {}
            b".." => {
                components.pop();
            }
            name => components.push(name),
        }
    }
    if components.is_empty() {
        return b"/".to_vec();
    }
    let mut normalized = Vec::with_capacity(path.len());
    for component in components {
        normalized.push(b'/');
        normalized.extend_from_slice(component);
    }
    normalized
}

/// `relative` joined to the folded directory `base` and folded, without the
/// general folding when there is nothing to fold (most names read from
/// package lists).
pub fn join(base: &[u8], relative: &[u8]) -> Vec<u8> {
    let plain = !relative.starts_with(b"/")
        && relative.split(|&byte| byte == b'/').all(|component| !matches!(component, b"" | b"." | b".."));
    if !plain {
        return resolve(base, relative);
    }
    let mut joined = Vec::with_capacity(base.len() + 1 + relative.len());
    joined.extend_from_slice(base);
    if base != b"/" {
        joined.push(b'/');
    }
    joined.extend_from_slice(relative);
    joined
}

/// The directory above an absolute, folded path; `None` for `/`. (Every
/// file of an audit is asked, several times: `memrchr` looks at a word of
/// the path at a time.)
pub fn parent(path: &[u8]) -> Option<&[u8]> {
    match memchr::memrchr(b'/', path)? {
        0 if path.len() > 1 => Some(b"/"),
        0 => None,
        slash => Some(&path[..slash]),
    }
}

/// The last component of a path.
pub fn file_name(path: &[u8]) -> &[u8] {
    memchr::memrchr(b'/', path).map_or(path, |slash| &path[slash + 1..])
}

/// `path` made absolute in a tree whose root is `root` (a chroot): absolute
/// paths start at `root`, relative ones at `base`, and `..` does not climb
/// above `root` (unless `base` is outside it already, as after a chroot
/// without chdir).
pub fn within(root: &[u8], base: &[u8], path: &[u8]) -> Vec<u8> {
    if root == b"/" {
        return resolve(base, path);
    }
    let inner_base = match path.first() {
        Some(b'/') => b"/".to_vec(),
        _ if is_under(base, root) => resolve(b"/", &base[root.len()..]),
        _ => return resolve(base, path),
    };
    let inside = resolve(&inner_base, path);
    join(root, inside.strip_prefix(b"/").unwrap_or(&inside))
}

/// Splits a path that names an open descriptor: `/proc/self/fd/N/REST`,
/// `/proc/thread-self/fd/N/REST`, `/proc/PID/fd/N/REST`, `/dev/fd/N/REST`,
/// `/dev/stdin` (0), `/dev/stdout` (1), `/dev/stderr` (2). Returns the owner
/// (`None`: the task itself), the descriptor and REST.
pub fn descriptor_path(path: &[u8]) -> Option<(Option<u32>, i32, &[u8])> {
    for (name, fd) in [(&b"/dev/stdin"[..], 0), (b"/dev/stdout", 1), (b"/dev/stderr", 2)] {
        if path == name {
            return Some((None, fd, b""));
        }
    }
    let (owner, rest) = if let Some(rest) = path.strip_prefix(b"/dev/fd/") {
        (None, rest)
    } else {
        let rest = path.strip_prefix(b"/proc/")?;
        let slash = rest.iter().position(|&byte| byte == b'/')?;
        let (process, rest) = rest.split_at(slash);
        let owner = match process {
            b"self" | b"thread-self" => None,
            pid => Some(std::str::from_utf8(pid).ok()?.parse().ok()?),
        };
        (owner, rest.strip_prefix(b"/fd/")?)
    };
    let digits = rest.iter().take_while(|byte| byte.is_ascii_digit()).count();
    let fd = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    match &rest[digits..] {
        [] => Some((owner, fd, b"")),
        [b'/', tail @ ..] => Some((owner, fd, tail)),
        _ => None,
    }
}

/// Whether `path` is `prefix` or lies below it (component-wise).
pub fn is_under(path: &[u8], prefix: &[u8]) -> bool {
    path.starts_with(prefix) && (path.len() == prefix.len() || prefix.ends_with(b"/") || path[prefix.len()] == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_paths_are_folded() {
        assert_eq!(resolve(b"/cwd", b"/a//b/./c/../d"), b"/a/b/d");
        assert_eq!(resolve(b"/cwd", b"/../.."), b"/");
    }

    #[test]
    fn relative_paths_join_the_base() {
        assert_eq!(resolve(b"/home/u", b"data/x.csv"), b"/home/u/data/x.csv");
        assert_eq!(resolve(b"/home/u", b"../v/./y"), b"/home/v/y");
        assert_eq!(resolve(b"/", b"tmp"), b"/tmp");
        assert_eq!(resolve(b"/home/u", b""), b"/home/u");
        assert_eq!(resolve(b"/home/u", b"."), b"/home/u");
    }

    #[test]
    fn non_utf8_names_survive() {
        assert_eq!(resolve(b"/d", b"caf\xe9"), b"/d/caf\xe9");
    }

    #[test]
    fn join_parent_and_file_name() {
        assert_eq!(join(b"/site", b"pkg/mod.py"), b"/site/pkg/mod.py");
        assert_eq!(join(b"/", b"etc"), b"/etc");
        assert_eq!(join(b"/v/lib/site", b"../../../bin/pip"), b"/bin/pip");
        assert_eq!(parent(b"/a/b"), Some(&b"/a"[..]));
        assert_eq!(parent(b"/a"), Some(&b"/"[..]));
        assert_eq!(parent(b"/"), None);
        assert_eq!(file_name(b"/a/b.txt"), b"b.txt");
    }

    #[test]
    fn paths_stay_within_a_chroot() {
        assert_eq!(within(b"/", b"/home", b"../x"), b"/x");
        assert_eq!(within(b"/jail", b"/jail", b"/etc/passwd"), b"/jail/etc/passwd");
        assert_eq!(within(b"/jail", b"/jail/w", b"../../../../etc"), b"/jail/etc");
        assert_eq!(within(b"/jail", b"/jail", b"/../x"), b"/jail/x");
        // A working directory left outside the new root resolves as it is.
        assert_eq!(within(b"/jail", b"/home/u", b"../x"), b"/home/x");
    }

    #[test]
    fn descriptor_paths() {
        assert_eq!(descriptor_path(b"/proc/self/fd/3"), Some((None, 3, &b""[..])));
        assert_eq!(descriptor_path(b"/dev/fd/4/sub/x"), Some((None, 4, &b"sub/x"[..])));
        assert_eq!(descriptor_path(b"/proc/123/fd/7"), Some((Some(123), 7, &b""[..])));
        assert_eq!(descriptor_path(b"/proc/thread-self/fd/1"), Some((None, 1, &b""[..])));
        assert_eq!(descriptor_path(b"/dev/stdout"), Some((None, 1, &b""[..])));
        assert_eq!(descriptor_path(b"/proc/self/fdinfo/3"), None);
        assert_eq!(descriptor_path(b"/proc/self/fd/3x"), None);
        assert_eq!(descriptor_path(b"/proc/self/maps"), None);
    }

    #[test]
    fn under_is_component_wise() {
        assert!(is_under(b"/usr/lib/x", b"/usr"));
        assert!(is_under(b"/usr", b"/usr"));
        assert!(!is_under(b"/usrlocal", b"/usr"));
        assert!(is_under(b"/anything", b"/"));
    }
}
