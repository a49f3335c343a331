//! Linux (x86-64) ABI constants both sides interpret, at the width of a syscall
//! argument. One table for the kernel programs, the strace parser and the
//! tracker, so they cannot disagree.

/// `AT_FDCWD`: a dirfd meaning "relative to the working directory".
pub const AT_FDCWD: i32 = -100;
/// `AT_FDCWD` as the kernel passes it in a 64-bit argument slot.
pub const AT_FDCWD_ARG: u64 = AT_FDCWD as i64 as u64;
/// `unlinkat` flag: remove a directory.
pub const AT_REMOVEDIR: u64 = 0x200;
/// `execveat`/`linkat` flag: an empty path names the dirfd itself.
pub const AT_EMPTY_PATH: u64 = 0x1000;

pub const O_ACCMODE: u64 = 0o3;
pub const O_WRONLY: u64 = 0o1;
pub const O_RDWR: u64 = 0o2;
pub const O_CREAT: u64 = 0o100;
pub const O_TRUNC: u64 = 0o1000;
pub const O_DIRECTORY: u64 = 0o200000;
pub const O_CLOEXEC: u64 = 0o2000000;
pub const O_PATH: u64 = 0o10000000;
/// `O_TMPFILE` without `O_DIRECTORY` (which it includes).
pub const O_TMPFILE_ONLY: u64 = 0o20000000;

/// `inode.i_mode` bits: the file type, a regular file, and the execute bits.
pub const S_IFMT: u32 = 0o170000;
pub const S_IFREG: u32 = 0o100000;
pub const S_EXECUTE_BITS: u32 = 0o111;

/// `renameat2` flag: swap the two names.
pub const RENAME_EXCHANGE: u64 = 1 << 1;

/// `close_range` flag: mark the range close-on-exec instead of closing it.
pub const CLOSE_RANGE_CLOEXEC: u64 = 1 << 2;

/// `fcntl` commands that change the descriptor table.
pub const F_DUPFD: u64 = 0;
pub const F_SETFD: u64 = 2;
pub const F_DUPFD_CLOEXEC: u64 = 1030;
/// `F_SETFD` argument bit.
pub const FD_CLOEXEC: u64 = 1;

/// The exit signal `fork()` and `vfork()` imply (the low byte of clone's flags).
pub const SIGCHLD: u64 = 17;
pub const CLONE_VM: u64 = 0x100;
pub const CLONE_FS: u64 = 0x200;
pub const CLONE_FILES: u64 = 0x400;
pub const CLONE_VFORK: u64 = 0x4000;
pub const CLONE_THREAD: u64 = 0x10000;
/// A new mount namespace (clone, unshare, setns).
pub const CLONE_NEWNS: u64 = 0x20000;

/// `mount` flags that say what a mount call does with an existing mount
/// rather than mounting a new file system.
pub const MS_REMOUNT: u64 = 0x20;
pub const MS_BIND: u64 = 0x1000;
pub const MS_MOVE: u64 = 0x2000;
/// Propagation changes: `MS_UNBINDABLE | MS_PRIVATE | MS_SLAVE | MS_SHARED`.
pub const MS_PROPAGATION: u64 = 0x20000 | 0x40000 | 0x80000 | 0x100000;

/// The dirfd reprotrace's cell hook passes to `openat` to mark a notebook cell's
/// beginning or end: always invalid, so the call fails with `EBADF` after the
/// kernel copied the path (the marker text) and before it touches a file system.
pub const CELL_MARKER_DIRFD: i32 = -29300;

/// The dirfd reprotrace's Dask worker plugin passes to `openat` to mark where a
/// task begins and ends in the thread that runs it (invalid, as the cell one);
/// its client hook passes it too, to mark a graph's submission.
pub const TASK_MARKER_DIRFD: i32 = -29301;

/// No such file or directory (errno).
pub const ENOENT: i64 = 2;
