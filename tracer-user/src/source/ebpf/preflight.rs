//! Checks that the machine can run the eBPF backend, each failure one sentence
//! that says what to do, before anything is loaded.

use std::path::{Path, PathBuf};

/// Where the kernel publishes its type information.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";
/// Where tracefs is expected (aya also looks under /sys/kernel/debug/tracing).
pub const TRACEFS: &str = "/sys/kernel/tracing";

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error(
        "loading eBPF programs needs root (or CAP_BPF and CAP_PERFMON): run reprotrace with sudo, \
         or use `--backend strace`"
    )]
    NotPrivileged,
    #[error(
        "the kernel has no BTF ({VMLINUX_BTF} is missing; it needs CONFIG_DEBUG_INFO_BTF=y): \
         use `--backend strace` on this kernel"
    )]
    NoBtf,
    #[error(
        "tracefs is not mounted at {TRACEFS} and mounting it failed ({reason}): mount it with \
         `mount -t tracefs nodev {TRACEFS}`, or use `--backend strace`"
    )]
    TracefsUnavailable { reason: String },
    #[error(
        "this kernel's tracepoint {tracepoint} has no field `{field}` at offset {offset} (read \
         {format}): reprotrace does not support its layout; use `--backend strace`"
    )]
    TracepointLayout { tracepoint: String, field: String, offset: usize, format: PathBuf },
}

/// Runs every check; mounts tracefs when it is missing and we may.
pub fn check() -> Result<PathBuf, PreflightError> {
    if !has_bpf_privileges() {
        return Err(PreflightError::NotPrivileged);
    }
    if !Path::new(VMLINUX_BTF).exists() {
        return Err(PreflightError::NoBtf);
    }
    let tracefs = ensure_tracefs()?;
    check_tracepoint_layouts(&tracefs)?;
    Ok(tracefs)
}

fn has_bpf_privileges() -> bool {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let effective = effective_capabilities().unwrap_or(0);
    let has = |cap: u32| effective & (1u64 << cap) != 0;
    has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))
}

fn effective_capabilities() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

fn tracefs_mounted(dir: &Path) -> bool {
    dir.join("events").is_dir()
}

fn ensure_tracefs() -> Result<PathBuf, PreflightError> {
    for candidate in [TRACEFS, "/sys/kernel/debug/tracing"] {
        if tracefs_mounted(Path::new(candidate)) {
            return Ok(PathBuf::from(candidate));
        }
    }
    // SAFETY: every pointer is a valid NUL-terminated string (the target is
    // TRACEFS); data may be null.
    let rc = unsafe {
        libc::mount(c"nodev".as_ptr(), c"/sys/kernel/tracing".as_ptr(), c"tracefs".as_ptr(), 0, std::ptr::null())
    };
    if rc != 0 {
        let reason = std::io::Error::last_os_error().to_string();
        return Err(PreflightError::TracefsUnavailable { reason });
    }
    if !tracefs_mounted(Path::new(TRACEFS)) {
        let reason = "mounted, but it has no events directory".to_string();
        return Err(PreflightError::TracefsUnavailable { reason });
    }
    Ok(PathBuf::from(TRACEFS))
}

/// The record offsets the kernel programs hard-code (see tracer-ebpf), checked
/// against the running kernel's format files.
const EXPECTED_FIELDS: &[(&str, &str, usize)] = &[
    ("sched/sched_process_fork", "child_pid", 20),
    ("sched/sched_process_exec", "pid", 12),
    ("sched/sched_process_exec", "old_pid", 16),
    ("sched/sched_process_exit", "group_dead", 32),
    ("syscalls/sys_enter_openat", "__syscall_nr", 8),
    ("syscalls/sys_enter_openat", "dfd", 16),
    ("syscalls/sys_exit_openat", "ret", 16),
];

fn check_tracepoint_layouts(tracefs: &Path) -> Result<(), PreflightError> {
    for &(tracepoint, field, offset) in EXPECTED_FIELDS {
        let format = tracefs.join("events").join(tracepoint).join("format");
        let text = std::fs::read_to_string(&format).unwrap_or_default();
        if field_offset(&text, field) != Some(offset) {
            return Err(PreflightError::TracepointLayout {
                tracepoint: tracepoint.to_string(),
                field: field.to_string(),
                offset,
                format,
            });
        }
    }
    Ok(())
}

/// The offset of `field` in a tracepoint format file.
fn field_offset(format: &str, field: &str) -> Option<usize> {
    format.lines().find_map(|line| {
        let declaration = line.trim().strip_prefix("field:")?;
        let (declaration, rest) = declaration.split_once(';')?;
        let name = declaration.split_whitespace().last()?.split('[').next()?;
        if name != field {
            return None;
        }
        rest.trim().strip_prefix("offset:")?.split(';').next()?.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_field_offsets_from_a_format_file() {
        let format = "name: sched_process_exit\nformat:\n\
            \tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\
            \tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;\n\
            \tfield:bool group_dead;\toffset:32;\tsize:1;\tsigned:0;\n";
        assert_eq!(field_offset(format, "group_dead"), Some(32));
        assert_eq!(field_offset(format, "comm"), Some(8));
        assert_eq!(field_offset(format, "prio"), None);
    }
}
