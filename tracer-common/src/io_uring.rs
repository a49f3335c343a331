//! What the io_uring programs need to report the requests that name files
//! (`IORING_OP_OPENAT`, …): the opcodes, and where each request's operands lie
//! in the kernel's `struct io_kiocb`, from the running kernel's BTF.

/// `enum io_uring_op` values (uapi/linux/io_uring.h).
pub mod opcode {
    pub const OPENAT: u8 = 18;
    pub const CLOSE: u8 = 19;
    pub const STATX: u8 = 21;
    pub const OPENAT2: u8 = 28;
    pub const RENAMEAT: u8 = 35;
    pub const UNLINKAT: u8 = 36;
    pub const MKDIRAT: u8 = 37;
    pub const SYMLINKAT: u8 = 38;
    pub const LINKAT: u8 = 39;
}

/// Byte offsets in a request (`struct io_kiocb`, whose command area holds one
/// of `struct io_open`, `io_close`, `io_statx`, `io_rename`, `io_unlink`,
/// `io_mkdir`, `io_link`) and in `struct filename`. All 0 (`known` 0) when
/// the kernel's BTF lacks them: the programs then report nothing.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoUringOffsets {
    /// 1 when every offset below was found.
    pub known: u64,
    /// `io_kiocb`'s command area.
    pub command: u64,
    pub open_dfd: u64,
    pub open_file_slot: u64,
    pub open_filename: u64,
    pub open_flags: u64,
    pub open_mode: u64,
    pub close_fd: u64,
    pub close_file_slot: u64,
    pub statx_dfd: u64,
    pub statx_flags: u64,
    pub statx_filename: u64,
    pub rename_old_dfd: u64,
    pub rename_new_dfd: u64,
    pub rename_oldpath: u64,
    pub rename_newpath: u64,
    pub rename_flags: u64,
    pub unlink_dfd: u64,
    pub unlink_flags: u64,
    pub unlink_filename: u64,
    pub mkdir_dfd: u64,
    pub mkdir_mode: u64,
    pub mkdir_filename: u64,
    pub link_old_dfd: u64,
    pub link_new_dfd: u64,
    pub link_oldpath: u64,
    pub link_newpath: u64,
    pub link_flags: u64,
    /// `struct filename.name`: the kernel's copy of a path.
    pub filename_name: u64,
}

// SAFETY: plain data of u64s, no padding, any bit pattern valid.
#[cfg(feature = "user")]
unsafe impl aya::Pod for IoUringOffsets {}
