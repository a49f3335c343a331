//! Where events come from: the eBPF programs, or a strace log.
pub mod ebpf;
pub mod strace;
