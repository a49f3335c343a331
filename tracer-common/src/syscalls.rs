//! The syscalls reprotrace traces, in one table: each one's name, its x86_64
//! number, and the fact it states with where that fact's arguments and strings
//! come from. Everything that needs the list derives it from here: the kernel
//! programs (an exit handler per syscall, which the `sys_exit` raw
//! tracepoint calls by number, shared by the syscalls of one shape: see
//! [`Syscall::handled_by`]), the loader's program table, strace's
//! `-e trace=` list and its log parser, and the benchmarks.
//!
//! [`Syscall::normalise`] turns a call's arguments into its fact, for both
//! sides: the kernel reads the arguments from the registers the syscall
//! was entered with (still in `pt_regs` at its exit) and user memory, the strace parser from the call strace printed. Several syscalls
//! state one fact (open, creat, openat and openat2 all state [`EventKind::Open`]),
//! so what follows the normalisation decodes facts, not syscalls.

use crate::{abi, EventKind};

/// Where one of an event's three arguments comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    /// Nothing: 0.
    Unused,
    /// A value the syscall implies: `AT_FDCWD` for the calls without a dirfd,
    /// the flags `creat` and `fork` stand for.
    Const(u64),
    /// The syscall's argument at this position.
    Raw(u8),
    /// The syscall's argument at this position, which strace prints by name,
    /// in an order of its own (`clone(child_stack=…, flags=…)`).
    Named(u8, &'static str),
    /// 1 if the argument at this position has any bit of the mask, else 0.
    Bit(u8, u64),
    /// The `u64` member at `offset` of the struct the argument at `position`
    /// points to, which strace prints as `{name=…}` (openat2's `how->flags`,
    /// clone3's `args->flags`).
    Member { position: u8, offset: u8, name: &'static str },
}

/// What a syscall states, and where its parts are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// The fact `kind`, with these arguments; `strings` are the positions of
    /// the syscall arguments holding its strings (paths, read at exit).
    Fact { kind: EventKind, args: [Arg; 3], strings: [Option<u8>; 2] },
    /// An exec. A success is reported from the new image (the kernel's
    /// `sched_process_exec`, [`EventKind::Exec`], with the argv the new image
    /// got); a failure at exit ([`EventKind::ExecFailed`], with the path).
    /// `argv` is where strace prints it.
    Exec { dirfd: Arg, path: u8, argv: u8, flags: Arg },
    /// `fcntl(fd, cmd, arg)`: a [`EventKind::Dup`] for `F_DUPFD` and
    /// `F_DUPFD_CLOEXEC`, a [`EventKind::SetCloexec`] for `F_SETFD`; the other
    /// commands change nothing reprotrace models.
    Fcntl,
    /// `close_range(first, last, flags)`: a [`EventKind::Close`], or a
    /// [`EventKind::SetCloexec`] with `CLOSE_RANGE_CLOEXEC`.
    CloseRange,
}

/// One traced syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Syscall {
    pub name: &'static str,
    /// Its number on x86_64.
    pub nr: u32,
    pub shape: Shape,
    /// Its exit handler's symbol (`exit_<name>`), in the object only if it
    /// is the first of its shape: the `sys_exit` dispatcher tail-calls, by
    /// number, the handler of [`Syscall::handled_by`].
    pub exit_handler: &'static str,
    /// The kernel's name of the syscall in its `syscalls:sys_enter_*`
    /// tracepoint, whose format file documents its arguments (it can differ
    /// from the ABI's: `stat` is `newstat`).
    pub tracepoint: &'static str,
}

/// A call reduced to the fact it states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Normalised {
    pub kind: EventKind,
    /// The kind's arguments (see [`EventKind`]).
    pub args: [u64; 3],
    /// The positions of the syscall arguments holding the event's strings.
    pub strings: [Option<u8>; 2],
}

impl Syscall {
    /// The syscall whose exit handler serves this one: the first of the
    /// table with the same shape. A handler knows its call by the shape
    /// alone (it only [normalises](Syscall::normalise) it), so the calls of
    /// one shape share one program, verified once when the programs load
    /// (`stat`, `lstat`, `access` and `readlink` are one).
    pub fn handled_by(&'static self) -> &'static Syscall {
        SYSCALLS.iter().find(|other| other.shape == self.shape).unwrap_or(self)
    }

    /// The fact this call states, `None` when it states nothing reprotrace
    /// models (an `fcntl` that only reads). `value` gives the value of a
    /// [`Arg::Raw`], [`Arg::Named`] or [`Arg::Member`] as the caller sees the
    /// call (the kernel from registers and user memory, the strace parser from
    /// the printed call); it is asked for nothing else.
    ///
    /// An `openat` on [`abi::CELL_MARKER_DIRFD`] is a notebook cell marker, one
    /// on [`abi::TASK_MARKER_DIRFD`] a Dask task marker.
    #[inline(always)]
    pub fn normalise<E>(&self, mut value: impl FnMut(Arg) -> Result<u64, E>) -> Result<Option<Normalised>, E> {
        let mut resolve = |arg: Arg| -> Result<u64, E> {
            match arg {
                Arg::Unused => Ok(0),
                Arg::Const(constant) => Ok(constant),
                Arg::Bit(position, mask) => Ok(u64::from(value(Arg::Raw(position))? & mask != 0)),
                Arg::Raw(_) | Arg::Named(..) | Arg::Member { .. } => value(arg),
            }
        };
        let normalised = match self.shape {
            Shape::Fact { kind, args, strings } => {
                let args = [resolve(args[0])?, resolve(args[1])?, resolve(args[2])?];
                let kind = match kind {
                    EventKind::Open if args[0] as i32 == abi::CELL_MARKER_DIRFD => EventKind::CellMarker,
                    EventKind::Open if args[0] as i32 == abi::TASK_MARKER_DIRFD => EventKind::TaskMarker,
                    kind => kind,
                };
                Normalised { kind, args, strings }
            }
            // What the exit of a failed exec reports (a success is the new image's).
            Shape::Exec { dirfd, path, flags, .. } => Normalised {
                kind: EventKind::ExecFailed,
                args: [resolve(dirfd)?, resolve(flags)?, 0],
                strings: [Some(path), None],
            },
            Shape::Fcntl => {
                let (fd, command) = (resolve(Arg::Raw(0))?, resolve(Arg::Raw(1))?);
                let (kind, args) = match command {
                    abi::F_DUPFD => (EventKind::Dup, [fd, 0, 0]),
                    abi::F_DUPFD_CLOEXEC => (EventKind::Dup, [fd, 1, 0]),
                    abi::F_SETFD => (EventKind::SetCloexec, [fd, fd, resolve(Arg::Bit(2, abi::FD_CLOEXEC))?]),
                    _ => return Ok(None),
                };
                Normalised { kind, args, strings: [None, None] }
            }
            Shape::CloseRange => {
                let (first, last) = (resolve(Arg::Raw(0))?, resolve(Arg::Raw(1))?);
                let kind = match resolve(Arg::Bit(2, abi::CLOSE_RANGE_CLOEXEC))? {
                    0 => EventKind::Close,
                    _ => EventKind::SetCloexec,
                };
                let set = u64::from(kind == EventKind::SetCloexec);
                Normalised { kind, args: [first, last, set], strings: [None, None] }
            }
        };
        Ok(Some(normalised))
    }
}

/// The notation of the table (see [`for_each_syscall`]).
pub mod notation {
    pub use super::{Arg, Shape};
    use crate::abi;
    pub use crate::EventKind::*;

    /// The working directory, for the calls that take no dirfd.
    pub const CWD: super::Arg = super::Arg::Const(abi::AT_FDCWD_ARG);
    pub const UNUSED: super::Arg = super::Arg::Unused;

    pub const fn fact(kind: crate::EventKind, args: [super::Arg; 3], strings: [Option<u8>; 2]) -> super::Shape {
        super::Shape::Fact { kind, args, strings }
    }

    pub const fn raw(position: u8) -> super::Arg {
        super::Arg::Raw(position)
    }

    pub const fn named(position: u8, name: &'static str) -> super::Arg {
        super::Arg::Named(position, name)
    }

    pub const fn member(position: u8, offset: u8, name: &'static str) -> super::Arg {
        super::Arg::Member { position, offset, name }
    }

    pub const fn bit(position: u8, mask: u64) -> super::Arg {
        super::Arg::Bit(position, mask)
    }

    pub const fn constant(value: u64) -> super::Arg {
        super::Arg::Const(value)
    }

    pub const fn exec(dirfd: super::Arg, path: u8, argv: u8, flags: super::Arg) -> super::Shape {
        super::Shape::Exec { dirfd, path, argv, flags }
    }

    pub const fn fcntl() -> super::Shape {
        super::Shape::Fcntl
    }

    pub const fn close_range() -> super::Shape {
        super::Shape::CloseRange
    }

    pub const O_CREAT_WRONLY_TRUNC: u64 = abi::O_CREAT | abi::O_WRONLY | abi::O_TRUNC;
    pub const FORK_FLAGS: u64 = abi::SIGCHLD;
    pub const VFORK_FLAGS: u64 = abi::CLONE_VM | abi::CLONE_VFORK | abi::SIGCHLD;
    pub use abi::{AT_REMOVEDIR, O_CLOEXEC};
}

/// The table: hands `$callback!` one `name = number => shape,` entry per
/// traced syscall (`name = number @ tracepoint_name => shape,` when the
/// kernel's tracepoints call it otherwise), the shape a call of [`notation`]
/// (which the callback brings into scope): a function name and its
/// parenthesised arguments, which a callback may also match as tokens.
/// The only place syscall names are spelled.
#[macro_export]
macro_rules! for_each_syscall {
    ($callback:ident) => {
        $callback! {
            open = 2 => fact(Open, [CWD, raw(1), raw(2)], [Some(0), None]),
            creat = 85 => fact(Open, [CWD, constant(O_CREAT_WRONLY_TRUNC), raw(1)], [Some(0), None]),
            openat = 257 => fact(Open, [raw(0), raw(2), raw(3)], [Some(1), None]),
            openat2 = 437 => fact(Open, [raw(0), member(2, 0, "flags"), member(2, 8, "mode")], [Some(1), None]),
            execve = 59 => exec(CWD, 0, 1, UNUSED),
            execveat = 322 => exec(raw(0), 1, 2, raw(4)),
            chdir = 80 => fact(Chdir, [CWD, UNUSED, UNUSED], [Some(0), None]),
            fchdir = 81 => fact(Chdir, [raw(0), UNUSED, UNUSED], [None, None]),
            rename = 82 => fact(Rename, [CWD, CWD, UNUSED], [Some(0), Some(1)]),
            renameat = 264 => fact(Rename, [raw(0), raw(2), UNUSED], [Some(1), Some(3)]),
            renameat2 = 316 => fact(Rename, [raw(0), raw(2), raw(4)], [Some(1), Some(3)]),
            unlink = 87 => fact(Remove, [CWD, UNUSED, UNUSED], [Some(0), None]),
            unlinkat = 263 => fact(Remove, [raw(0), raw(2), UNUSED], [Some(1), None]),
            rmdir = 84 => fact(Remove, [CWD, constant(AT_REMOVEDIR), UNUSED], [Some(0), None]),
            mkdir = 83 => fact(Mkdir, [CWD, raw(1), UNUSED], [Some(0), None]),
            mkdirat = 258 => fact(Mkdir, [raw(0), raw(2), UNUSED], [Some(1), None]),
            link = 86 => fact(Link, [CWD, CWD, UNUSED], [Some(0), Some(1)]),
            linkat = 265 => fact(Link, [raw(0), raw(2), raw(4)], [Some(1), Some(3)]),
            symlink = 88 => fact(Symlink, [UNUSED, CWD, UNUSED], [Some(0), Some(1)]),
            symlinkat = 266 => fact(Symlink, [UNUSED, raw(1), UNUSED], [Some(0), Some(2)]),
            truncate = 76 => fact(Truncate, [CWD, UNUSED, UNUSED], [Some(0), None]),
            ftruncate = 77 => fact(Truncate, [raw(0), UNUSED, UNUSED], [None, None]),
            close = 3 => fact(Close, [raw(0), raw(0), UNUSED], [None, None]),
            close_range = 436 => close_range(),
            dup = 32 => fact(Dup, [raw(0), UNUSED, UNUSED], [None, None]),
            dup2 = 33 => fact(Dup, [raw(0), UNUSED, UNUSED], [None, None]),
            dup3 = 292 => fact(Dup, [raw(0), bit(2, O_CLOEXEC), UNUSED], [None, None]),
            fcntl = 72 => fcntl(),
            clone = 56 => fact(Fork, [UNUSED, named(0, "flags"), UNUSED], [None, None]),
            clone3 = 435 => fact(Fork, [UNUSED, member(0, 0, "flags"), UNUSED], [None, None]),
            fork = 57 => fact(Fork, [UNUSED, constant(FORK_FLAGS), UNUSED], [None, None]),
            vfork = 58 => fact(Fork, [UNUSED, constant(VFORK_FLAGS), UNUSED], [None, None]),
            stat = 4 @ newstat => fact(Metadata, [CWD, UNUSED, UNUSED], [Some(0), None]),
            lstat = 6 @ newlstat => fact(Metadata, [CWD, UNUSED, UNUSED], [Some(0), None]),
            newfstatat = 262 => fact(Metadata, [raw(0), raw(3), UNUSED], [Some(1), None]),
            statx = 332 => fact(Metadata, [raw(0), raw(2), UNUSED], [Some(1), None]),
            access = 21 => fact(Metadata, [CWD, UNUSED, UNUSED], [Some(0), None]),
            faccessat = 269 => fact(Metadata, [raw(0), UNUSED, UNUSED], [Some(1), None]),
            faccessat2 = 439 => fact(Metadata, [raw(0), raw(3), UNUSED], [Some(1), None]),
            readlink = 89 => fact(Metadata, [CWD, UNUSED, UNUSED], [Some(0), None]),
            readlinkat = 267 => fact(Metadata, [raw(0), UNUSED, UNUSED], [Some(1), None]),
            chroot = 161 => fact(Chroot, [CWD, UNUSED, UNUSED], [Some(0), None]),
            pivot_root = 155 => fact(PivotRoot, [CWD, CWD, UNUSED], [Some(0), Some(1)]),
            unshare = 272 => fact(Unshare, [raw(0), UNUSED, UNUSED], [None, None]),
            setns = 308 => fact(Setns, [raw(0), raw(1), UNUSED], [None, None]),
            mount = 165 => fact(Mount, [CWD, raw(3), UNUSED], [Some(0), Some(1)]),
            umount2 = 166 @ umount => fact(Umount, [CWD, raw(1), UNUSED], [Some(0), None]),
            move_mount = 429 => fact(MoveMount, [raw(2), raw(0), raw(4)], [Some(3), Some(1)]),
            memfd_create = 319 => fact(MemfdCreate, [UNUSED, raw(1), UNUSED], [Some(0), None]),
            io_uring_setup = 425 => fact(IoUringSetup, [UNUSED, UNUSED, UNUSED], [None, None]),
        }
    };
}

/// The kernel's name of a syscall (in its tracepoints): the override when the
/// table gives one.
#[doc(hidden)]
#[macro_export]
macro_rules! __tracepoint_name {
    ($name:ident) => {
        stringify!($name)
    };
    ($name:ident $tracepoint:ident) => {
        stringify!($tracepoint)
    };
}

macro_rules! define_syscalls {
    (
        $first:ident = $first_nr:literal $(@ $first_tracepoint:ident)? => $first_shape:expr,
        $($name:ident = $nr:literal $(@ $tracepoint:ident)? => $shape:expr,)*
    ) => {
        /// Every traced syscall, in the table's order.
        pub const SYSCALLS: &[Syscall] = {
            use notation::*;
            &[Syscall {
                name: stringify!($first),
                nr: $first_nr,
                shape: $first_shape,
                exit_handler: concat!("exit_", stringify!($first)),
                tracepoint: $crate::__tracepoint_name!($first $($first_tracepoint)?),
            }, $(Syscall {
                name: stringify!($name),
                nr: $nr,
                shape: $shape,
                exit_handler: concat!("exit_", stringify!($name)),
                tracepoint: $crate::__tracepoint_name!($name $($tracepoint)?),
            },)*]
        };

        /// Their names, comma-separated, as `strace -e trace=` takes them.
        pub const NAMES: &str = concat!(stringify!($first) $(, ",", stringify!($name))*);
    };
}

for_each_syscall!(define_syscalls);

/// The traced syscalls' numbers, bit `nr % 64` of word `nr / 64`: what the
/// dispatcher tests before it copies a register, as most syscalls a program
/// makes (reads, writes, maps) are none of them.
pub const TRACED_NUMBERS: [u64; crate::SYSCALL_SLOTS / 64] = {
    let mut words = [0u64; crate::SYSCALL_SLOTS / 64];
    let mut index = 0;
    while index < SYSCALLS.len() {
        let nr = SYSCALLS[index].nr as usize;
        words[nr / 64] |= 1 << (nr % 64);
        index += 1;
    }
    words
};

/// Whether syscall number `nr` is traced (a number past the table is not).
#[inline(always)]
pub fn is_traced(nr: u64) -> bool {
    TRACED_NUMBERS.get((nr / 64) as usize).is_some_and(|word| word >> (nr % 64) & 1 != 0)
}

/// The traced syscall named `name`.
pub fn by_name(name: &[u8]) -> Option<&'static Syscall> {
    SYSCALLS.iter().find(|syscall| syscall.name.as_bytes() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_args(args: [u64; 6]) -> impl FnMut(Arg) -> Result<u64, ()> {
        move |arg| match arg {
            Arg::Raw(position) | Arg::Named(position, _) => Ok(args[usize::from(position)]),
            Arg::Member { .. } => Err(()),
            _ => unreachable!("normalise resolves the others itself"),
        }
    }

    fn normalise(name: &str, args: [u64; 6]) -> Option<Normalised> {
        by_name(name.as_bytes()).expect("traced").normalise(raw_args(args)).expect("no struct member")
    }

    #[test]
    fn the_traced_numbers_are_the_tables() {
        for nr in 0..crate::SYSCALL_SLOTS as u64 + 64 {
            assert_eq!(is_traced(nr), SYSCALLS.iter().any(|syscall| u64::from(syscall.nr) == nr), "{nr}");
        }
        assert!(!is_traced(u64::MAX));
    }

    #[test]
    fn the_name_list_is_the_table() {
        assert!(NAMES.split(',').eq(SYSCALLS.iter().map(|syscall| syscall.name)), "{NAMES}");
    }

    #[test]
    fn names_and_programs_are_unique() {
        for (index, syscall) in SYSCALLS.iter().enumerate() {
            assert!(SYSCALLS[..index].iter().all(|other| other.name != syscall.name && other.nr != syscall.nr));
            assert_eq!(syscall.exit_handler.strip_prefix("exit_"), Some(syscall.name));
            assert!((syscall.nr as usize) < crate::SYSCALL_SLOTS, "{} is beyond the dispatch table", syscall.name);
            let tracepoint = syscall.tracepoint;
            assert!(tracepoint == syscall.name || matches!(syscall.name, "stat" | "lstat" | "umount2"), "{tracepoint}");
        }
    }

    #[test]
    fn calls_of_one_shape_share_the_first_ones_handler() {
        let handler = |name: &str| by_name(name.as_bytes()).expect("traced").handled_by().name;
        for name in ["stat", "lstat", "access", "readlink"] {
            assert_eq!(handler(name), "stat");
        }
        assert_eq!(handler("readlinkat"), "faccessat");
        assert_eq!(handler("faccessat2"), "newfstatat");
        assert_eq!(handler("dup2"), "dup");
        // Of a shape no syscall before them has: their own.
        for name in ["statx", "openat", "dup3", "unlink", "truncate"] {
            assert_eq!(handler(name), name);
        }
        for syscall in SYSCALLS {
            let handler = syscall.handled_by();
            assert_eq!(handler.shape, syscall.shape);
            assert_eq!(handler.handled_by().nr, handler.nr, "{} is served by the first of its shape", syscall.name);
            assert!(crate::programs().any(|program| program.symbol == handler.exit_handler), "{}", syscall.name);
        }
    }

    #[test]
    fn calls_without_a_dirfd_are_relative_to_the_working_directory() {
        let open = normalise("open", [0x1000, 0o101, 0o644, 0, 0, 0]).expect("a fact");
        assert_eq!(open.kind, EventKind::Open);
        assert_eq!(open.args, [abi::AT_FDCWD_ARG, 0o101, 0o644]);
        assert_eq!(open.strings, [Some(0), None]);
        let creat = normalise("creat", [0x1000, 0o600, 0, 0, 0, 0]).expect("a fact");
        assert_eq!(creat.args[1], abi::O_CREAT | abi::O_WRONLY | abi::O_TRUNC);
    }

    #[test]
    fn an_openat_on_a_marker_dirfd_is_a_cell_or_task_marker() {
        let marker = normalise("openat", [abi::CELL_MARKER_DIRFD as i64 as u64, 0x1000, 0, 0, 0, 0]);
        assert_eq!(marker.map(|fact| fact.kind), Some(EventKind::CellMarker));
        let marker = normalise("openat", [abi::TASK_MARKER_DIRFD as i64 as u64, 0x1000, 0, 0, 0, 0]);
        assert_eq!(marker.map(|fact| fact.kind), Some(EventKind::TaskMarker));
    }

    #[test]
    fn fcntl_and_close_range_state_what_their_command_says() {
        assert_eq!(
            normalise("fcntl", [4, abi::F_DUPFD_CLOEXEC, 10, 0, 0, 0]).map(|f| (f.kind, f.args)),
            Some((EventKind::Dup, [4, 1, 0]))
        );
        assert_eq!(
            normalise("fcntl", [4, abi::F_SETFD, 1, 0, 0, 0]).map(|f| (f.kind, f.args)),
            Some((EventKind::SetCloexec, [4, 4, 1]))
        );
        assert_eq!(normalise("fcntl", [4, 3, 0, 0, 0, 0]), None, "F_GETFL states nothing");
        let cloexec = normalise("close_range", [3, u64::from(u32::MAX), abi::CLOSE_RANGE_CLOEXEC, 0, 0, 0]);
        assert_eq!(cloexec.map(|f| (f.kind, f.args)), Some((EventKind::SetCloexec, [3, u64::from(u32::MAX), 1])));
        assert_eq!(normalise("close_range", [3, 9, 0, 0, 0, 0]).map(|f| f.kind), Some(EventKind::Close));
        assert_eq!(normalise("dup3", [3, 9, abi::O_CLOEXEC, 0, 0, 0]).map(|f| f.args), Some([3, 1, 0]));
    }

    #[test]
    fn struct_members_are_asked_for_by_position_offset_and_name() {
        let openat2 = by_name(b"openat2").expect("traced");
        let mut asked = [None, None];
        let fact = openat2
            .normalise(|arg| -> Result<u64, ()> {
                match arg {
                    Arg::Raw(0) => Ok(5),
                    Arg::Member { position: 2, offset, name } => {
                        asked[usize::from(offset / 8)] = Some(name);
                        Ok(u64::from(offset) + 1)
                    }
                    _ => Err(()),
                }
            })
            .expect("answered")
            .expect("a fact");
        assert_eq!(fact.args, [5, 1, 9]);
        assert_eq!(asked, [Some("flags"), Some("mode")]);
    }

    #[test]
    fn a_failed_exec_reports_its_path() {
        let execveat = normalise("execveat", [7, 0x1000, 0x2000, 0x3000, abi::AT_EMPTY_PATH, 0]).expect("a fact");
        assert_eq!(execveat.kind, EventKind::ExecFailed);
        assert_eq!(execveat.args, [7, abi::AT_EMPTY_PATH, 0]);
        assert_eq!(execveat.strings, [Some(1), None]);
    }
}
