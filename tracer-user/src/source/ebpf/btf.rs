//! Offsets of the kernel struct members the programs read, from the running
//! kernel's BTF: Rust eBPF has no CO-RE, so user space relocates them and hands
//! them to the programs as read-only globals. Parsing the kernel's BTF (a few
//! megabytes) takes tens of milliseconds, so the offsets are cached (see
//! [`crate::cache`]) for this kernel build.

use btf_rs::{Btf, Type};
use tracer_common::{
    io_uring::IoUringOffsets, BinprmOffsets, CredOffsets, FileOffsets, SharingOffsets, SyscallRegs,
    SYSCALL_REGS_SPAN_MAX,
};

use super::{preflight::VMLINUX_BTF, EbpfError};

/// Byte offsets in the running kernel's structs: nothing but `u64`s (what
/// the cache stores, byte for byte).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `task_struct.exit_code`.
    pub task_exit_code: u64,
    /// `task_struct.mm`.
    pub task_mm: u64,
    /// `mm_struct.arg_start` and `arg_end`: the new image's argv.
    pub mm_arg_start: u64,
    pub mm_arg_end: u64,
    /// Where io_uring requests keep their operands; `known` 0 when this
    /// kernel's BTF lacks them (io_uring requests then go unseen).
    pub io_uring: IoUringOffsets,
    /// Where a syscall's number and arguments are in `struct pt_regs`.
    pub syscall_regs: SyscallRegs,
    /// Where an open descriptor's inode mode is.
    pub files: FileOffsets,
    /// Where a task's real and effective ids are.
    pub creds: CredOffsets,
    /// What a new task may share with its parent.
    pub sharing: SharingOffsets,
    /// Where an exec's path is.
    pub binprm: BinprmOffsets,
    /// The BTF id of the kfunc `bpf_rdonly_cast`, when this kernel lets a
    /// program load from what it returns for type 0 (`void`, Linux 6.17 and
    /// later); else 0 (see tracer-common's `RDONLY_CAST_PLACEHOLDER`).
    pub rdonly_cast: u64,
}

/// The cache file's name; the number changes with the struct's layout.
const CACHE_NAME: &str = "kernel-offsets-v9.bin";

impl KernelOffsets {
    /// The offsets for the running kernel: cached ones when this kernel build
    /// (release, version string, BTF size) made them, else read from BTF.
    pub fn of_this_kernel() -> Result<Self, EbpfError> {
        let key = kernel_build();
        let cache = crate::cache::dir();
        if let (Some(dir), Some(key)) = (&cache, &key) {
            if let Some(offsets) = crate::cache::read(dir, CACHE_NAME, key).and_then(|cached| {
                let bytes = cached.contents();
                (bytes.len() == std::mem::size_of::<KernelOffsets>()).then(|| {
                    // SAFETY: KernelOffsets is repr(C) and made of u64s only,
                    // so any bytes of its size are one; the read is unaligned.
                    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<KernelOffsets>()) }
                })
            }) {
                return Ok(offsets);
            }
        }
        let offsets = Self::read()?;
        if let (Some(dir), Some(key)) = (&cache, &key) {
            // SAFETY: repr(C), u64s only: no padding, every byte initialised.
            let bytes = unsafe {
                std::slice::from_raw_parts(
                    (&offsets as *const KernelOffsets).cast::<u8>(),
                    std::mem::size_of::<KernelOffsets>(),
                )
            };
            // A cache that cannot be written costs the next load time, nothing else.
            let _ = crate::cache::write(dir, CACHE_NAME, key, bytes);
        }
        Ok(offsets)
    }

    /// The offsets, read from the kernel's BTF.
    pub fn read() -> Result<Self, EbpfError> {
        let fail = |reason: String| EbpfError::Btf { path: VMLINUX_BTF, reason };
        // One read, then parsing in memory: the file-backed parser seeks per type.
        let bytes = std::fs::read(VMLINUX_BTF).map_err(|err| fail(err.to_string()))?;
        let btf = Btf::from_bytes(&bytes).map_err(|err| fail(err.to_string()))?;
        let offset = |structure: &str, member: &str| -> Result<u64, EbpfError> {
            let types = btf.resolve_types_by_name(structure).map_err(|err| fail(err.to_string()))?;
            types
                .iter()
                .find_map(|ty| match ty {
                    Type::Struct(found) => member_bit_offset(&btf, found, member),
                    _ => None,
                })
                .map(|bits| u64::from(bits / 8))
                .ok_or_else(|| fail(format!("struct {structure} has no member {member}")))
        };
        for (tracepoint, expected) in RAW_TRACEPOINT_ARGS {
            let found = raw_tracepoint_args(&btf, tracepoint);
            if !found.as_ref().is_some_and(|found| found.iter().eq(expected.iter())) {
                let found = found.map_or_else(|| "nothing BTF describes".to_string(), |args| args.join(", "));
                return Err(fail(format!(
                    "the kernel's raw tracepoint {tracepoint} passes ({found}), not ({}) as reprotrace's program \
                     reads: use `--backend strace` on this kernel",
                    expected.join(", ")
                )));
            }
        }
        Ok(KernelOffsets {
            task_exit_code: offset("task_struct", "exit_code")?,
            task_mm: offset("task_struct", "mm")?,
            mm_arg_start: offset("mm_struct", "arg_start")?,
            mm_arg_end: offset("mm_struct", "arg_end")?,
            io_uring: io_uring_offsets(&offset).unwrap_or_default(),
            syscall_regs: syscall_regs(&offset)?,
            files: FileOffsets {
                task_files: offset("task_struct", "files")?,
                files_fdt: offset("files_struct", "fdt")?,
                fdtable_fd: offset("fdtable", "fd")?,
                file_inode: offset("file", "f_inode")?,
                inode_mode: offset("inode", "i_mode")?,
            },
            creds: CredOffsets {
                task_cred: offset("task_struct", "cred")?,
                uid: offset("cred", "uid")?,
                euid: offset("cred", "euid")?,
                gid: offset("cred", "gid")?,
                egid: offset("cred", "egid")?,
                cap_effective: offset("cred", "cap_effective")?,
            },
            sharing: SharingOffsets {
                task_fs: offset("task_struct", "fs")?,
                task_nsproxy: offset("task_struct", "nsproxy")?,
                nsproxy_mnt_ns: offset("nsproxy", "mnt_ns")?,
            },
            binprm: BinprmOffsets {
                filename: offset("linux_binprm", "filename")?,
                fdpath: offset("linux_binprm", "fdpath")?,
            },
            rdonly_cast: rdonly_cast_to_void(&btf).map_or(0, u64::from),
        })
    }
}

/// The BTF id of `bpf_rdonly_cast`, if this kernel casts to `void` with it:
/// it says so by `BPF_FEAT_RDONLY_CAST_TO_VOID` in `enum bpf_features`.
fn rdonly_cast_to_void(btf: &Btf) -> Option<u32> {
    let casts_to_void = btf.resolve_types_by_name("bpf_features").ok()?.iter().any(|ty| match ty {
        Type::Enum(features) => features
            .members
            .iter()
            .any(|member| btf.resolve_name(member).is_ok_and(|name| name == "BPF_FEAT_RDONLY_CAST_TO_VOID")),
        _ => false,
    });
    if !casts_to_void {
        return None;
    }
    btf.resolve_ids_by_name("bpf_rdonly_cast")
        .ok()?
        .into_iter()
        .find(|&id| matches!(btf.resolve_type_by_id(id), Ok(Type::Func(_))))
}

/// What identifies the running kernel's build: its release, its version
/// string (build number and date) and the size of its BTF.
fn kernel_build() -> Option<Vec<u8>> {
    let mut key = std::fs::read("/proc/sys/kernel/osrelease").ok()?;
    key.extend(std::fs::read("/proc/sys/kernel/version").ok()?);
    key.extend(std::fs::metadata(VMLINUX_BTF).ok()?.len().to_le_bytes());
    Some(key)
}

/// Where a syscall's number and arguments are in `pt_regs`, and the span of
/// those registers, which the dispatcher copies in one read.
fn syscall_regs(offset: &dyn Fn(&str, &str) -> Result<u64, EbpfError>) -> Result<SyscallRegs, EbpfError> {
    let args = [
        offset("pt_regs", "di")?,
        offset("pt_regs", "si")?,
        offset("pt_regs", "dx")?,
        offset("pt_regs", "r10")?,
        offset("pt_regs", "r8")?,
        offset("pt_regs", "r9")?,
    ];
    let number = offset("pt_regs", "orig_ax")?;
    let registers = args.iter().copied().chain([number]);
    let window_start = registers.clone().min().unwrap_or_default();
    let window_bytes = registers.max().unwrap_or_default() + 8 - window_start;
    if window_bytes > SYSCALL_REGS_SPAN_MAX as u64 || window_start % 8 != 0 {
        return Err(EbpfError::Btf {
            path: VMLINUX_BTF,
            reason: format!(
                "struct pt_regs keeps a syscall's registers {window_bytes} bytes apart from offset {window_start}, \
                 more than the {SYSCALL_REGS_SPAN_MAX} reprotrace keeps: use `--backend strace` on this kernel"
            ),
        });
    }
    Ok(SyscallRegs {
        number,
        args,
        task_status: offset("task_struct", "thread_info")? + offset("thread_info", "status")?,
        task_pid: offset("task_struct", "pid")?,
        task_tgid: offset("task_struct", "tgid")?,
        window_start,
        window_bytes,
    })
}

/// The io_uring request layout, if this kernel has every member.
fn io_uring_offsets(offset: &dyn Fn(&str, &str) -> Result<u64, EbpfError>) -> Result<IoUringOffsets, EbpfError> {
    let how = |member: &str| -> Result<u64, EbpfError> { Ok(offset("io_open", "how")? + offset("open_how", member)?) };
    Ok(IoUringOffsets {
        known: 1,
        command: offset("io_kiocb", "cmd")?,
        open_dfd: offset("io_open", "dfd")?,
        open_file_slot: offset("io_open", "file_slot")?,
        open_filename: offset("io_open", "filename")?,
        open_flags: how("flags")?,
        open_mode: how("mode")?,
        close_fd: offset("io_close", "fd")?,
        close_file_slot: offset("io_close", "file_slot")?,
        statx_dfd: offset("io_statx", "dfd")?,
        statx_flags: offset("io_statx", "flags")?,
        statx_filename: offset("io_statx", "filename")?,
        rename_old_dfd: offset("io_rename", "old_dfd")?,
        rename_new_dfd: offset("io_rename", "new_dfd")?,
        rename_oldpath: offset("io_rename", "oldpath")?,
        rename_newpath: offset("io_rename", "newpath")?,
        rename_flags: offset("io_rename", "flags")?,
        unlink_dfd: offset("io_unlink", "dfd")?,
        unlink_flags: offset("io_unlink", "flags")?,
        unlink_filename: offset("io_unlink", "filename")?,
        mkdir_dfd: offset("io_mkdir", "dfd")?,
        mkdir_mode: offset("io_mkdir", "mode")?,
        mkdir_filename: offset("io_mkdir", "filename")?,
        link_old_dfd: offset("io_link", "old_dfd")?,
        link_new_dfd: offset("io_link", "new_dfd")?,
        link_oldpath: offset("io_link", "oldpath")?,
        link_newpath: offset("io_link", "newpath")?,
        link_flags: offset("io_link", "flags")?,
        filename_name: offset("filename", "name")?,
    })
}

/// The arguments the programs on raw tracepoints take, as BTF spells their
/// types (`sys_exit`'s are the syscall ABI's own: its registers and result).
const RAW_TRACEPOINT_ARGS: [(&str, &[&str]); 2] = [
    ("sched_process_fork", &["struct task_struct *", "struct task_struct *"]),
    ("sched_process_exec", &["struct task_struct *", "pid_t", "struct linux_binprm *"]),
];

/// The arguments of raw tracepoint `name` (its `btf_trace_<name>` type, a
/// pointer to a function of the probe's data and then them).
fn raw_tracepoint_args(btf: &Btf, name: &str) -> Option<Vec<String>> {
    let types = btf.resolve_types_by_name(&format!("btf_trace_{name}")).ok()?;
    let Some(Type::Typedef(typedef)) = types.into_iter().next() else { return None };
    let Type::Ptr(pointer) = btf.resolve_chained_type(&typedef).ok()? else { return None };
    let Type::FuncProto(function) = btf.resolve_chained_type(&pointer).ok()? else { return None };
    let spell = |parameter: &btf_rs::Parameter| -> Option<String> {
        Some(match btf.resolve_chained_type(parameter).ok()? {
            Type::Ptr(pointer) => match btf.resolve_chained_type(&pointer).ok()? {
                Type::Struct(structure) => format!("struct {} *", btf.resolve_name(&structure).ok()?),
                _ => "pointer".to_string(),
            },
            Type::Typedef(typedef) => btf.resolve_name(&typedef).ok()?,
            _ => "other".to_string(),
        })
    };
    function.parameters.iter().skip(1).map(spell).collect()
}

/// Finds `name` in a struct, looking into anonymous struct and union members.
fn member_bit_offset(btf: &Btf, structure: &btf_rs::Struct, name: &str) -> Option<u32> {
    structure.members.iter().find_map(|member| {
        let member_name = btf.resolve_name(member).ok()?;
        if member_name == name {
            return Some(member.bit_offset());
        }
        if !member_name.is_empty() {
            return None;
        }
        match btf.resolve_chained_type(member).ok()? {
            Type::Struct(inner) | Type::Union(inner) => {
                member_bit_offset(btf, &inner, name).map(|offset| member.bit_offset() + offset)
            }
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_offsets_are_the_ones_btf_gives() {
        let read = KernelOffsets::read().expect("the kernel's BTF");
        // Twice: the first may make the cache, the second reads it.
        assert_eq!(KernelOffsets::of_this_kernel().expect("offsets"), read);
        assert_eq!(KernelOffsets::of_this_kernel().expect("offsets"), read);
    }

    #[test]
    fn this_kernel_has_every_member_the_programs_read() {
        let offsets = KernelOffsets::read().expect("the kernel's BTF");
        // mm_struct's members sit in an anonymous struct: found through it.
        assert!(offsets.mm_arg_end > offsets.mm_arg_start, "{} {}", offsets.mm_arg_start, offsets.mm_arg_end);
        assert!(offsets.task_mm > 0 && offsets.task_exit_code > 0);
        // What a fork's and an exec's raw tracepoints read.
        assert!(offsets.sharing.task_fs > 0 && offsets.sharing.task_nsproxy > 0 && offsets.sharing.nsproxy_mnt_ns > 0);
        assert!(offsets.binprm.fdpath > offsets.binprm.filename, "{:?}", offsets.binprm);
        // io_uring's command area overlays the start of a request, and its
        // operand structs start with the file.
        assert_eq!(offsets.io_uring.known, 1);
        assert_eq!((offsets.io_uring.command, offsets.io_uring.open_dfd), (0, 8));
        // x86_64's pt_regs, as the ptrace ABI lays it out.
        assert_eq!(offsets.syscall_regs.number, 15 * 8);
        assert_eq!(offsets.syscall_regs.args, [14 * 8, 13 * 8, 12 * 8, 7 * 8, 9 * 8, 8 * 8]);
        assert_eq!((offsets.syscall_regs.window_start, offsets.syscall_regs.window_bytes), (7 * 8, 9 * 8));
        // From 6.17, kernel memory is read by loads.
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("the kernel's release");
        let mut numbers = release.split(['.', '-']).map(|part| part.trim().parse::<u32>().unwrap_or(0));
        let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
        assert_eq!(offsets.rdonly_cast != 0, version >= (6, 17), "{release}");
    }
}
