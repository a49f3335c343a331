//! How an audit is asked for: the backend, where its manifest goes, and the
//! options of the sources and classifiers.

use std::path::PathBuf;

use crate::{
    classify,
    redact::Redactor,
    source::ebpf::{
        session::{DaemonChoice, SessionOptions},
        LoadOptions,
    },
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// eBPF programs on syscall and sched tracepoints (needs root).
    Ebpf,
    /// `strace -f`, for comparison and where eBPF is unavailable.
    Strace,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Ebpf => "ebpf",
            Backend::Strace => "strace",
        }
    }
}

/// How to audit and where the manifest goes.
pub struct Settings {
    pub backend: Backend,
    pub output: PathBuf,
    pub quiet: bool,
    /// How the eBPF programs are loaded (when this audit loads them).
    pub load: LoadOptions,
    /// Whether the eBPF backend asks `reprotrace daemon` or loads its own programs.
    pub daemon: DaemonChoice,
    /// The user's data classification overrides.
    pub rules: classify::Rules,
    /// Data files larger than this are not hashed (`None`: all are).
    pub hash_limit: Option<u64>,
    /// Every data file is read, none taken from the hashes remembered.
    pub rehash: bool,
    /// What is kept out of command lines and the environment.
    pub redactor: Redactor,
}

impl Settings {
    pub fn session_options(&self) -> SessionOptions {
        SessionOptions { load: self.load, daemon: self.daemon.clone() }
    }
}
