//! reprotrace: follow a process tree, in the kernel with eBPF or with strace, and
//! write a manifest of what it ran and which files it read and wrote.
//!
//! The library is a pipeline; each stage is a module with one job and depends
//! only on the stages before it:
//!
//! `source` (eBPF ring buffer or strace log) → [`event`] → [`tracker`] (process
//! tree, fd and cwd tables, path resolution) → [`access`] (what each path saw) →
//! [`classify`] (data inputs and outputs) → [`manifest`].
pub mod event;
pub mod errno;
pub mod signals;
pub mod source;
