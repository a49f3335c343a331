//! Checks that the machine can run the eBPF backend, each failure one sentence
//! that says what to do, before anything is loaded.

use std::path::{Path, PathBuf};

use rustix::mount::MountFlags;
#[cfg(test)]
use tracer_common::syscalls::{Arg, Shape, SYSCALLS};

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
    if rustix::process::geteuid().is_root() {
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
    if let Err(errno) = rustix::mount::mount(c"nodev", TRACEFS, c"tracefs", MountFlags::empty(), None) {
        return Err(PreflightError::TracefsUnavailable { reason: std::io::Error::from(errno).to_string() });
    }
    if !tracefs_mounted(Path::new(TRACEFS)) {
        let reason = "mounted, but it has no events directory".to_string();
        return Err(PreflightError::TracefsUnavailable { reason });
    }
    Ok(PathBuf::from(TRACEFS))
}

/// The record offsets the kernel programs hard-code (see tracer-ebpf), checked
/// against the running kernel's format files. (The fork's and exec's
/// programs are on raw tracepoints: their arguments are the kernel's
/// structs, read at offsets from BTF.)
const EXPECTED_FIELDS: &[(&str, &str, usize)] = &[("sched/sched_process_exit", "group_dead", 32)];

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

/// Whether the kernel's io_uring tracepoints exist with the fields the
/// programs read (a kernel without io_uring has none: nothing to miss then).
pub fn io_uring_tracepoints_fit(tracefs: &Path) -> bool {
    [("io_uring/io_uring_submit_req", "req", 16), ("io_uring/io_uring_submit_req", "opcode", 32)]
        .into_iter()
        .chain([("io_uring/io_uring_complete", "req", 16), ("io_uring/io_uring_complete", "res", 32)])
        .all(|(tracepoint, field, offset)| {
            let format = std::fs::read_to_string(tracefs.join("events").join(tracepoint).join("format"));
            format.is_ok_and(|format| field_offset(&format, field) == Some(offset))
        })
}

/// Checks tracer-common's syscall table against the kernel's documentation
/// of its syscalls, the syscall tracepoints' format files: each syscall
/// exists, and what the table reads as a string, an argv array or a struct
/// member is declared so, in the order the table numbers the arguments.
/// (The exit handlers read the arguments from the registers: a table that
/// fits one x86_64 kernel fits every one, so this runs in the tests, not at
/// every start.)
#[cfg(test)]
fn check_syscall_table(tracefs: &Path) -> Result<(), String> {
    // After the common fields and `__syscall_nr`; 8 bytes an argument.
    const ARGS_OFFSET: usize = 16;
    for syscall in SYSCALLS {
        let format = tracefs.join("events/syscalls").join(format!("sys_enter_{}", syscall.tracepoint)).join("format");
        let fail = |problem: String| format!("syscall {}: {problem} (see {})", syscall.name, format.display());
        let text = std::fs::read_to_string(&format).map_err(|err| fail(format!("no tracepoint: {err}")))?;
        let args: Vec<Field> = fields(&text).filter(|field| field.offset >= ARGS_OFFSET).collect();
        if let Some((position, field)) =
            args.iter().enumerate().find(|(position, field)| field.offset != ARGS_OFFSET + 8 * position)
        {
            return Err(fail(format!("argument {position} ({}) at offset {}", field.name, field.offset)));
        }
        let kind = |position: u8| {
            args.get(usize::from(position))
                .map(|field| field.kind)
                .ok_or_else(|| fail(format!("it has no argument {position}")))
        };
        let expect = |position: u8, what: &str, fits: fn(&str) -> bool| -> Result<(), String> {
            let found = kind(position)?;
            match fits(found) {
                true => Ok(()),
                false => Err(fail(format!("argument {position} is `{found}`, not {what}"))),
            }
        };
        let string = |found: &str| found.ends_with("char *");
        let check_arg = |arg: Arg| match arg {
            Arg::Raw(position) | Arg::Named(position, _) | Arg::Bit(position, _) => kind(position).map(drop),
            Arg::Member { position, .. } => {
                expect(position, "a pointer to a struct", |found| found.starts_with("struct ") && found.ends_with('*'))
            }
            Arg::Unused | Arg::Const(_) => Ok(()),
        };
        match syscall.shape {
            Shape::Fact { args: fact_args, strings, .. } => {
                fact_args.into_iter().try_for_each(check_arg)?;
                strings.into_iter().flatten().try_for_each(|position| expect(position, "a string", string))?;
            }
            Shape::Exec { dirfd, path, argv, flags } => {
                [dirfd, flags].into_iter().try_for_each(check_arg)?;
                expect(path, "a string", string)?;
                expect(argv, "an array of strings", |found| found.ends_with("*const *"))?;
            }
            Shape::Fcntl | Shape::CloseRange => (0..3).try_for_each(|position| kind(position).map(drop))?,
        }
    }
    Ok(())
}

/// A field of a tracepoint's record, as its format file declares it.
struct Field<'a> {
    /// The C type (`const char *`); the tests check the syscall table with it.
    #[cfg_attr(not(test), allow(dead_code))]
    kind: &'a str,
    name: &'a str,
    offset: usize,
}

/// The fields of a tracepoint format file, in order.
fn fields(format: &str) -> impl Iterator<Item = Field<'_>> {
    format.lines().filter_map(|line| {
        let declaration = line.trim().strip_prefix("field:")?;
        let (declaration, rest) = declaration.split_once(';')?;
        let (kind, name) = declaration.rsplit_once(|c: char| c.is_whitespace())?;
        let name = name.split('[').next()?;
        let offset = rest.trim().strip_prefix("offset:")?.split(';').next()?.trim().parse().ok()?;
        Some(Field { kind: kind.trim(), name, offset })
    })
}

/// The offset of `field` in a tracepoint format file.
fn field_offset(format: &str, field: &str) -> Option<usize> {
    fields(format).find(|found| found.name == field).map(|found| found.offset)
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

    /// tracer-common's table against this kernel: the checks `check` makes,
    /// and every syscall's number as the ABI's headers give it.
    #[test]
    fn the_syscall_table_matches_the_running_kernel() {
        let tracefs = ensure_tracefs().expect("tracefs (the tests run as root)");
        check_syscall_table(&tracefs).expect("the table fits this kernel");
        let header = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h";
        let numbers = std::fs::read_to_string(header)
            .unwrap_or_else(|err| panic!("{header}: {err}: the ABI's syscall numbers come with linux-libc-dev"));
        for syscall in SYSCALLS {
            let define = format!("#define __NR_{} ", syscall.name);
            let nr = numbers.lines().find_map(|line| line.strip_prefix(define.as_str())?.trim().parse::<u32>().ok());
            assert_eq!(nr, Some(syscall.nr), "{}'s number", syscall.name);
        }
    }
}
