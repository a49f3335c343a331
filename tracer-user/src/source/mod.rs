//! Where events come from: the eBPF programs or a strace log.
pub mod strace;
