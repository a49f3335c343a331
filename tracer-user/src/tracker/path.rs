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
    fn under_is_component_wise() {
        assert!(is_under(b"/usr/lib/x", b"/usr"));
        assert!(is_under(b"/usr", b"/usr"));
        assert!(!is_under(b"/usrlocal", b"/usr"));
        assert!(is_under(b"/anything", b"/"));
    }
}
