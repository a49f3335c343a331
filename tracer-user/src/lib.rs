//! reprotrace: follow a process tree, in the kernel with eBPF or with strace, and
//! write a manifest of what it ran and which files it read and wrote.
//!
//! The library is a pipeline; each stage is a module with one job and depends
//! only on the stages before it:
//!
//! [`source`] (eBPF ring buffer or strace log) → [`event`] → [`tracker`] (process
//! tree, fd and cwd tables, path resolution) → [`access`] (what each path went
//! through) → [`software`] (packages owning the files) → [`classify`] (data
//! inputs and outputs) → [`manifest`]. [`diff`] and [`export`] read manifests.
//! Every source meets the pipeline at one seam, [`source::Source`].
//! [`pipeline`] strings the stages together; [`run`] (with [`launch`]) and
//! [`attach`] (with [`snapshot`] and [`jupyter`]) are the edge that starts or
//! joins the processes and drives a source; [`audit`] concludes both.
//! [`daemon`] keeps the eBPF programs loaded between audits and serves them.
pub mod access;
pub mod attach;
pub mod audit;
pub mod bundle;
pub mod cache;
pub mod classify;
pub mod daemon;
pub mod dask;
pub mod diff;
pub mod docker;
pub mod errno;
pub mod event;
pub mod export;
pub mod fsaccess;
pub mod grammar;
pub mod hash_cache;
pub mod hooks;
pub mod image;
pub mod interrupts;
pub mod jupyter;
pub mod kernel_channel;
pub mod launch;
pub mod manifest;
pub mod merge;
mod name_table;
pub mod notebook;
pub mod pipeline;
pub mod priority;
pub mod privilege;
pub mod progress;
pub mod redact;
pub mod repeat;
pub mod report;
pub mod run;
pub mod show;
pub mod signals;
pub mod snapshot;
pub mod software;
pub mod source;
pub mod stale;
pub mod tracker;
pub mod units;
