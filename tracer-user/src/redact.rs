//! Secrets kept out of manifests: command lines and the environment are
//! recorded with what looks like a secret replaced by `<redacted>`, and the
//! manifest says what was replaced, where, and by which rule
//! (docs/security.md has the rules).
//!
//! The built-in rules:
//! - **secret names**: an option (`--password=…`, `--api-key …`, the next
//!   argument when no `=`), a `NAME=value` argument, or an environment
//!   variable whose name says password, passwd, passphrase, secret,
//!   credential, token, API/access/private/secret key (environment variables
//!   and `NAME=value` arguments: any name ending in `KEY` too), unless the
//!   name ends in FILE, PATH or DIR (a path to a secret is not the secret);
//! - **URL passwords**: `scheme://user:password@host`;
//! - **key formats**: AWS access key ids, GitHub, GitLab, Slack, Google API,
//!   `sk-…` and Stripe keys, JSON Web Tokens, PEM private keys, and
//!   `Authorization:` header values.
//!
//! `--redact PATTERN` adds regular expressions (their matches are replaced;
//! a variable whose name matches has its whole value replaced); `--no-redact`
//! records everything verbatim, and the manifest says so.

use std::{
    collections::BTreeMap,
    sync::{LazyLock, OnceLock},
};

use regex::{Regex, RegexSet};

use crate::manifest::{Manifest, Redacted, Redaction};

/// What replaces a secret.
pub const MARK: &str = "<redacted>";

/// A `--redact` pattern that is not a regular expression.
#[derive(Debug, thiserror::Error)]
#[error("--redact {pattern:?} is not a regular expression: {source}")]
pub struct PatternError {
    pattern: String,
    source: regex::Error,
}

/// The redaction asked for: the built-in rules and the user's patterns, or nothing.
#[derive(Clone, Debug)]
pub struct Redactor {
    enabled: bool,
    patterns: TextRules,
}

impl Default for Redactor {
    fn default() -> Self {
        Redactor { enabled: true, patterns: TextRules::new(Vec::new()) }
    }
}

/// Rules that find secrets inside a text, and the set of all their patterns,
/// which says in one pass over a text which of them may apply: most texts
/// hold no secret, and running each rule over each argument of a run's
/// 2,000 processes cost its audit's end 3.5 ms.
#[derive(Clone, Debug)]
struct TextRules {
    rules: Vec<TextRule>,
    /// `None`: too large a set to compile; every rule is run.
    any: Option<RegexSet>,
}

/// A rule of [`TextRules`]: its name, its pattern, and the pattern compiled
/// when a text first needs it. Compiling the eleven built-in rules took an
/// audit 1.2 ms of CPU, and most audits meet no text that any may match.
#[derive(Clone, Debug)]
struct TextRule {
    name: String,
    pattern: String,
    /// `None` inside: the pattern does not compile (the set then did not either).
    compiled: OnceLock<Option<Regex>>,
}

impl TextRule {
    /// A rule to compile when first needed.
    fn new(name: &str, pattern: &str) -> TextRule {
        TextRule { name: name.to_string(), pattern: pattern.to_string(), compiled: OnceLock::new() }
    }

    /// A rule compiled already (a user's pattern, compiled to be checked).
    fn compiled(name: String, regex: Regex) -> TextRule {
        TextRule { name, pattern: regex.as_str().to_string(), compiled: OnceLock::from(Some(regex)) }
    }

    fn regex(&self) -> Option<&Regex> {
        self.compiled.get_or_init(|| Regex::new(&self.pattern).ok()).as_ref()
    }
}

impl TextRules {
    fn new(rules: Vec<TextRule>) -> TextRules {
        let any = RegexSet::new(rules.iter().map(|rule| rule.pattern.as_str())).ok();
        TextRules { rules, any }
    }

    /// The rules to run over `text`, in order: those whose pattern matches it.
    fn for_text(&self, text: &str) -> Vec<(&str, &Regex)> {
        let matches = self.any.as_ref().map(|any| any.matches(text));
        self.rules
            .iter()
            .enumerate()
            .filter(|(index, _)| matches.as_ref().is_none_or(|matches| matches.matched(*index)))
            .filter_map(|(_, rule)| Some((rule.name.as_str(), rule.regex()?)))
            .collect()
    }
}

impl Redactor {
    /// The built-in rules plus `patterns`; or, with `enabled` false, none.
    /// The built-in rules start compiling now, in the background.
    pub fn new(patterns: &[String], enabled: bool) -> Result<Self, PatternError> {
        if enabled {
            prepare();
        }
        let patterns = patterns
            .iter()
            .map(|pattern| match Regex::new(pattern) {
                Ok(regex) => Ok(TextRule::compiled(format!("--redact {pattern}"), regex)),
                Err(source) => Err(PatternError { pattern: pattern.clone(), source }),
            })
            .collect::<Result<_, _>>()?;
        Ok(Redactor { enabled, patterns: TextRules::new(patterns) })
    }

    /// Redacts every command line and the environment in `manifest`, and
    /// records in it what was redacted.
    pub fn redact_manifest(&self, manifest: &mut Manifest) {
        let mut redacted = Vec::new();
        if self.enabled {
            let mut argv = |argv: &mut [String], place: &str| {
                for (index, rule) in self.argv(argv) {
                    redacted.push(Redacted { place: format!("{place}[{index}]"), rule });
                }
            };
            argv(&mut manifest.command, "command");
            for process in &mut manifest.processes {
                argv(&mut process.argv, &format!("processes[pid {}].argv", process.pid));
            }
            for task in &mut manifest.tasks {
                for process in &mut task.processes {
                    argv(&mut process.argv, &format!("tasks[{}].processes[pid {}].argv", task.key, process.pid));
                }
            }
            for host in &mut manifest.hosts {
                for process in &mut host.processes {
                    argv(&mut process.argv, &format!("hosts[{}].processes[pid {}].argv", host.host, process.pid));
                }
            }
            if let Some(repeat_of) = &mut manifest.repeat_of {
                argv(&mut repeat_of.command, "repeat_of.command");
            }
            for (name, rule) in self.environment(&mut manifest.environment) {
                redacted.push(Redacted { place: format!("environment.{name}"), rule });
            }
        }
        let patterns = self.patterns.rules.iter().map(|rule| rule.pattern.clone()).collect();
        manifest.redaction = Some(Redaction { enabled: self.enabled, patterns, redacted });
    }

    /// Redacts `argv` in place; returns the indexes redacted, with the rule.
    fn argv(&self, argv: &mut [String]) -> Vec<(usize, String)> {
        let mut redacted = Vec::new();
        let mut secret_follows = false;
        for (index, arg) in argv.iter_mut().enumerate() {
            if std::mem::take(&mut secret_follows) && !arg.starts_with('-') && arg != MARK {
                *arg = MARK.to_string();
                redacted.push((index, "secret option".to_string()));
                continue;
            }
            let (name, value) = match arg.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (arg.as_str(), None),
            };
            let option = name.starts_with('-') && name.len() > 1;
            let bare_name = name.trim_start_matches('-');
            if is_name(bare_name) && is_secret_name(bare_name, !option) {
                match value {
                    Some(value) if value != MARK && !value.is_empty() => {
                        *arg = format!("{name}={MARK}");
                        redacted.push((index, "secret name".to_string()));
                        continue;
                    }
                    Some(_) => {}
                    None => secret_follows = option,
                }
            }
            if let Some(rule) = self.in_text(arg) {
                redacted.push((index, rule));
            }
        }
        redacted
    }

    /// Redacts the variables' values in place; returns the names redacted, with the rule.
    fn environment(&self, environment: &mut BTreeMap<String, String>) -> Vec<(String, String)> {
        let mut redacted = Vec::new();
        for (name, value) in environment.iter_mut() {
            let rule = if value.is_empty() || value == MARK {
                None
            } else if is_secret_name(name, true) {
                Some("secret name".to_string())
            } else if let Some(rule) =
                self.patterns.rules.iter().find(|rule| rule.regex().is_some_and(|pattern| pattern.is_match(name)))
            {
                Some(rule.name.clone())
            } else {
                self.in_text(value)
            };
            if let Some(rule) = rule {
                if !value.contains(MARK) {
                    *value = MARK.to_string();
                }
                redacted.push((name.clone(), rule));
            }
        }
        redacted
    }

    /// Replaces the secrets inside `text` (URL passwords, known key formats,
    /// the user's patterns); returns the first rule that applied.
    fn in_text(&self, text: &mut String) -> Option<String> {
        let mut applied = None;
        let rules = KEY_FORMATS.for_text(text).into_iter().chain(self.patterns.for_text(text));
        for (rule, pattern) in rules {
            let replaced = replace_secret(pattern, text);
            if replaced != *text {
                *text = replaced;
                applied.get_or_insert_with(|| rule.to_string());
            }
        }
        applied
    }
}

/// `text` with each match of `pattern` replaced by [`MARK`]: the group named
/// `secret` when there is one (the rest is kept for context), else the
/// whole match.
fn replace_secret(pattern: &Regex, text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for captures in pattern.captures_iter(text) {
        let Some(whole) = captures.get(0) else { continue };
        let secret = captures.name("secret").unwrap_or(whole);
        if secret.as_str() == MARK || secret.is_empty() {
            continue;
        }
        out.push_str(&text[last..secret.start()]);
        out.push_str(MARK);
        last = secret.end();
    }
    out.push_str(&text[last..]);
    out
}

/// Compiles the set of the built-in patterns in the background, at the
/// lowest priority, while the command runs rather than on the way from its
/// end to the manifest; redacting before it is ready waits for it, and a
/// thread that cannot start leaves it to be compiled then. (A rule itself is
/// compiled when a text first needs it: [`TextRule`].)
fn prepare() {
    // Detached: the process may end first, as an audit that fails does.
    drop(crate::priority::spawn_at_lowest_priority("redact-patterns", || {
        LazyLock::force(&KEY_FORMATS);
    }));
}

/// Secrets recognised by their shape, wherever they appear.
static KEY_FORMATS: LazyLock<TextRules> = LazyLock::new(|| {
    let formats: [(&str, &str); 11] = [
        ("URL password", r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:(?P<secret>[^/\s@]+)@"),
        ("Authorization header", r"(?i)\bauthorization:\s*(?:(?:bearer|basic|token)\s+)?(?P<secret>\S+)"),
        ("AWS access key", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
        ("GitHub token", r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{20,})"),
        ("GitLab token", r"\bglpat-[A-Za-z0-9_-]{20,}"),
        ("Slack token", r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
        ("Google API key", r"\bAIza[0-9A-Za-z_-]{35}"),
        ("API secret key", r"\bsk-[A-Za-z0-9_-]{20,}"),
        ("Stripe key", r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"),
        ("JSON Web Token", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
        ("private key", r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?s:.*?)(?:-----END [A-Z ]*PRIVATE KEY-----|$)"),
    ];
    TextRules::new(formats.into_iter().map(|(rule, pattern)| TextRule::new(rule, pattern)).collect())
});

/// A name an option or variable may have: letters, digits, `_`, `-`, `.`.
fn is_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"_-.".contains(&byte))
}

/// Whether a value under this name is a secret; `key_suffix`: a name ending
/// in the word `key` is one (variables, `NAME=value`; not `--sort-key`).
fn is_secret_name(name: &str, key_suffix: bool) -> bool {
    let words = words(name);
    let Some(last) = words.last() else { return false };
    // A path to a secret is not the secret, and the run needs it.
    if ["file", "path", "dir", "directory"].contains(&last.as_str()) {
        return false;
    }
    let lower = name.to_ascii_lowercase();
    let named = ["password", "passwd", "passphrase", "secret", "credential", "apikey", "privatekey", "accesskey"]
        .iter()
        .any(|part| lower.contains(part));
    let token = words.iter().any(|word| word == "token" || word == "tokens");
    let key_pair = words.windows(2).any(|pair| {
        pair[1] == "key" && ["api", "access", "private", "secret", "signing", "encryption"].contains(&pair[0].as_str())
    });
    named || token || key_pair || (key_suffix && last == "key")
}

/// A name's words, lowercased: split at `_`, `-`, `.` and lower-to-upper case changes.
fn words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut after_lower = false;
    for char in name.chars() {
        if !char.is_ascii_alphanumeric() {
            words.extend((!word.is_empty()).then(|| std::mem::take(&mut word)));
            after_lower = false;
            continue;
        }
        if char.is_ascii_uppercase() && after_lower {
            words.push(std::mem::take(&mut word));
        }
        after_lower = char.is_ascii_lowercase() || char.is_ascii_digit();
        word.push(char.to_ascii_lowercase());
    }
    words.extend((!word.is_empty()).then_some(word));
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(redactor: &Redactor, args: &[&str]) -> (Vec<String>, Vec<(usize, String)>) {
        let mut argv: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        let redacted = redactor.argv(&mut argv);
        (argv, redacted)
    }

    #[test]
    fn secret_options_lose_their_values_and_nothing_else() {
        let (redacted, which) = argv(
            &Redactor::default(),
            &[
                "tool",
                "--password=hunter2",
                "--api-key",
                "abc123",
                "--sort-key",
                "name",
                "--token-file",
                "/run/token",
                "--NotebookApp.token=xyz",
                "PGPASSWORD=pw",
                "AWS_SECRET_ACCESS_KEY=k",
                "MY_KEY=v",
                "--verbose",
                "data.csv",
            ],
        );
        assert_eq!(
            redacted,
            [
                "tool",
                "--password=<redacted>",
                "--api-key",
                "<redacted>",
                "--sort-key",
                "name",
                "--token-file",
                "/run/token",
                "--NotebookApp.token=<redacted>",
                "PGPASSWORD=<redacted>",
                "AWS_SECRET_ACCESS_KEY=<redacted>",
                "MY_KEY=<redacted>",
                "--verbose",
                "data.csv"
            ]
        );
        assert_eq!(which.iter().map(|(index, _)| *index).collect::<Vec<_>>(), [1, 3, 8, 9, 10, 11]);
    }

    #[test]
    fn secrets_are_found_by_their_shape() {
        let (redacted, which) = argv(
            &Redactor::default(),
            &[
                "git",
                "clone",
                "https://alice:s3cret@example.org/repo.git",
                "-H",
                "Authorization: Bearer abc.def",
                "AKIAIOSFODNN7EXAMPLE",
                "--header=x-key: ghp_abcdefghijklmnopqrstuvwxyz0123456789",
                "https://example.org/plain",
            ],
        );
        assert_eq!(redacted[2], "https://alice:<redacted>@example.org/repo.git");
        assert_eq!(redacted[4], "Authorization: Bearer <redacted>");
        assert_eq!(redacted[5], "<redacted>");
        assert_eq!(redacted[6], "--header=x-key: <redacted>");
        assert_eq!(redacted[7], "https://example.org/plain");
        let rules: Vec<&str> = which.iter().map(|(_, rule)| rule.as_str()).collect();
        assert_eq!(rules, ["URL password", "Authorization header", "AWS access key", "GitHub token"]);
    }

    #[test]
    fn the_environment_loses_secret_values() {
        let redactor = Redactor::new(&["^CORP_".to_string(), "internal-[0-9]+".to_string()], true).expect("patterns");
        let mut environment: BTreeMap<String, String> = [
            ("HOME", "/home/alice"),
            ("GITHUB_TOKEN", "t"),
            ("TOKENIZERS_PARALLELISM", "false"),
            ("AWS_ACCESS_KEY_ID", "id"),
            ("DATABASE_URL", "postgres://app:pw@db/app"),
            ("CORP_ID", "7"),
            ("NOTE", "see internal-42 please"),
            ("SSL_CERT_FILE", "/etc/ssl/cert.pem"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
        let redacted = redactor.environment(&mut environment);
        assert_eq!(environment["HOME"], "/home/alice");
        assert_eq!(environment["TOKENIZERS_PARALLELISM"], "false");
        assert_eq!(environment["SSL_CERT_FILE"], "/etc/ssl/cert.pem");
        for name in ["GITHUB_TOKEN", "AWS_ACCESS_KEY_ID", "CORP_ID"] {
            assert_eq!(environment[name], MARK, "{name}");
        }
        // Within a value, only the secret goes.
        assert_eq!(environment["DATABASE_URL"], "postgres://app:<redacted>@db/app");
        assert_eq!(environment["NOTE"], "see <redacted> please");
        let rules: BTreeMap<String, String> = redacted.into_iter().collect();
        assert_eq!(rules["CORP_ID"], "--redact ^CORP_");
        assert_eq!(rules["NOTE"], "--redact internal-[0-9]+");
        assert_eq!(rules["DATABASE_URL"], "URL password");
    }

    #[test]
    fn disabled_redaction_keeps_everything_and_says_so() {
        let redactor = Redactor::new(&[], false).expect("no patterns");
        let mut manifest = Manifest::empty_for_tests();
        manifest.command = vec!["x".into(), "--password=p".into()];
        redactor.redact_manifest(&mut manifest);
        assert_eq!(manifest.command[1], "--password=p");
        assert!(!manifest.redaction.as_ref().expect("redaction").enabled);
        Redactor::default().redact_manifest(&mut manifest);
        assert_eq!(manifest.command[1], "--password=<redacted>");
        let redaction = manifest.redaction.expect("redaction");
        assert_eq!(redaction.redacted, [Redacted { place: "command[1]".into(), rule: "secret name".into() }]);
    }

    #[test]
    fn a_bad_pattern_says_which() {
        let err = Redactor::new(&["a(".to_string()], true).expect_err("unclosed group");
        assert!(err.to_string().starts_with("--redact \"a(\" is not a regular expression"), "{err}");
    }

    #[test]
    fn every_built_in_rule_compiles_as_one_set_and_alone() {
        assert!(KEY_FORMATS.any.is_some());
        for rule in &KEY_FORMATS.rules {
            assert!(rule.regex().is_some(), "{}", rule.name);
        }
    }

    #[test]
    fn a_rule_is_compiled_when_a_text_may_hold_its_secret() {
        let rules = TextRules::new(vec![TextRule::new("one", r"one-[0-9]+"), TextRule::new("two", r"two-[0-9]+")]);
        assert!(rules.for_text("nothing secret here").is_empty());
        let applying: Vec<&str> = rules.for_text("a two-22").into_iter().map(|(name, _)| name).collect();
        assert_eq!(applying, ["two"]);
        assert!(rules.rules[0].compiled.get().is_none(), "the first rule was never needed");
        assert!(rules.rules[1].compiled.get().is_some());
    }
}
