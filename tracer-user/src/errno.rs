//! Linux x86_64 `errno` names and numbers, as strace prints them after a failed
//! syscall (`= -1 ENOENT (No such file or directory)`).

use crate::name_table::NameTable;

/// Every errno the kernel's uapi headers define, in number order.
///
/// The aliases (`EWOULDBLOCK`, `EDEADLOCK`, `ENOTSUP`) come last, so
/// [`errno_name`], which returns the first match, gives the canonical name.
static ERRNOS: NameTable = NameTable(&[
    ("EPERM", 1),
    ("ENOENT", 2),
    ("ESRCH", 3),
    ("EINTR", 4),
    ("EIO", 5),
    ("ENXIO", 6),
    ("E2BIG", 7),
    ("ENOEXEC", 8),
    ("EBADF", 9),
    ("ECHILD", 10),
    ("EAGAIN", 11),
    ("ENOMEM", 12),
    ("EACCES", 13),
    ("EFAULT", 14),
    ("ENOTBLK", 15),
    ("EBUSY", 16),
    ("EEXIST", 17),
    ("EXDEV", 18),
    ("ENODEV", 19),
    ("ENOTDIR", 20),
    ("EISDIR", 21),
    ("EINVAL", 22),
    ("ENFILE", 23),
    ("EMFILE", 24),
    ("ENOTTY", 25),
    ("ETXTBSY", 26),
    ("EFBIG", 27),
    ("ENOSPC", 28),
    ("ESPIPE", 29),
    ("EROFS", 30),
    ("EMLINK", 31),
    ("EPIPE", 32),
    ("EDOM", 33),
    ("ERANGE", 34),
    ("EDEADLK", 35),
    ("ENAMETOOLONG", 36),
    ("ENOLCK", 37),
    ("ENOSYS", 38),
    ("ENOTEMPTY", 39),
    ("ELOOP", 40),
    ("ENOMSG", 42),
    ("EIDRM", 43),
    ("ECHRNG", 44),
    ("EL2NSYNC", 45),
    ("EL3HLT", 46),
    ("EL3RST", 47),
    ("ELNRNG", 48),
    ("EUNATCH", 49),
    ("ENOCSI", 50),
    ("EL2HLT", 51),
    ("EBADE", 52),
    ("EBADR", 53),
    ("EXFULL", 54),
    ("ENOANO", 55),
    ("EBADRQC", 56),
    ("EBADSLT", 57),
    ("EBFONT", 59),
    ("ENOSTR", 60),
    ("ENODATA", 61),
    ("ETIME", 62),
    ("ENOSR", 63),
    ("ENONET", 64),
    ("ENOPKG", 65),
    ("EREMOTE", 66),
    ("ENOLINK", 67),
    ("EADV", 68),
    ("ESRMNT", 69),
    ("ECOMM", 70),
    ("EPROTO", 71),
    ("EMULTIHOP", 72),
    ("EDOTDOT", 73),
    ("EBADMSG", 74),
    ("EOVERFLOW", 75),
    ("ENOTUNIQ", 76),
    ("EBADFD", 77),
    ("EREMCHG", 78),
    ("ELIBACC", 79),
    ("ELIBBAD", 80),
    ("ELIBSCN", 81),
    ("ELIBMAX", 82),
    ("ELIBEXEC", 83),
    ("EILSEQ", 84),
    ("ERESTART", 85),
    ("ESTRPIPE", 86),
    ("EUSERS", 87),
    ("ENOTSOCK", 88),
    ("EDESTADDRREQ", 89),
    ("EMSGSIZE", 90),
    ("EPROTOTYPE", 91),
    ("ENOPROTOOPT", 92),
    ("EPROTONOSUPPORT", 93),
    ("ESOCKTNOSUPPORT", 94),
    ("EOPNOTSUPP", 95),
    ("EPFNOSUPPORT", 96),
    ("EAFNOSUPPORT", 97),
    ("EADDRINUSE", 98),
    ("EADDRNOTAVAIL", 99),
    ("ENETDOWN", 100),
    ("ENETUNREACH", 101),
    ("ENETRESET", 102),
    ("ECONNABORTED", 103),
    ("ECONNRESET", 104),
    ("ENOBUFS", 105),
    ("EISCONN", 106),
    ("ENOTCONN", 107),
    ("ESHUTDOWN", 108),
    ("ETOOMANYREFS", 109),
    ("ETIMEDOUT", 110),
    ("ECONNREFUSED", 111),
    ("EHOSTDOWN", 112),
    ("EHOSTUNREACH", 113),
    ("EALREADY", 114),
    ("EINPROGRESS", 115),
    ("ESTALE", 116),
    ("EUCLEAN", 117),
    ("ENOTNAM", 118),
    ("ENAVAIL", 119),
    ("EISNAM", 120),
    ("EREMOTEIO", 121),
    ("EDQUOT", 122),
    ("ENOMEDIUM", 123),
    ("EMEDIUMTYPE", 124),
    ("ECANCELED", 125),
    ("ENOKEY", 126),
    ("EKEYEXPIRED", 127),
    ("EKEYREVOKED", 128),
    ("EKEYREJECTED", 129),
    ("EOWNERDEAD", 130),
    ("ENOTRECOVERABLE", 131),
    ("ERFKILL", 132),
    ("EHWPOISON", 133),
    // Aliases: same numbers, other spellings.
    ("EWOULDBLOCK", 11),
    ("EDEADLOCK", 35),
    ("ENOTSUP", 95),
]);

/// The name of errno `number` (`2` → `"ENOENT"`), if Linux defines one.
pub fn errno_name(number: i32) -> Option<&'static str> {
    ERRNOS.name(number)
}

/// The number of errno `name` (`"ENOENT"` → `2`), aliases included.
pub fn errno_number(name: &str) -> Option<i32> {
    ERRNOS.number(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_agree_with_libc() {
        for (name, number) in [
            ("EPERM", libc::EPERM),
            ("ENOENT", libc::ENOENT),
            ("EACCES", libc::EACCES),
            ("ENOEXEC", libc::ENOEXEC),
            ("ENOTDIR", libc::ENOTDIR),
            ("ELOOP", libc::ELOOP),
            ("ETXTBSY", libc::ETXTBSY),
            ("E2BIG", libc::E2BIG),
            ("ENAMETOOLONG", libc::ENAMETOOLONG),
            ("ESTALE", libc::ESTALE),
            ("EHWPOISON", libc::EHWPOISON),
        ] {
            assert_eq!(errno_number(name), Some(number), "{name}");
            assert_eq!(errno_name(number), Some(name), "{number}");
        }
    }

    #[test]
    fn every_defined_number_round_trips() {
        // 41 and 58 are holes in the Linux numbering.
        for number in (1..=133).filter(|n| ![41, 58].contains(n)) {
            let name = errno_name(number).unwrap_or_else(|| panic!("no name for {number}"));
            assert_eq!(errno_number(name), Some(number));
        }
        assert_eq!(errno_name(41), None);
        assert_eq!(errno_name(58), None);
    }

    #[test]
    fn aliases_map_to_numbers_but_names_stay_canonical() {
        assert_eq!(errno_number("EWOULDBLOCK"), Some(libc::EAGAIN));
        assert_eq!(errno_number("EDEADLOCK"), Some(libc::EDEADLK));
        assert_eq!(errno_number("ENOTSUP"), Some(libc::EOPNOTSUPP));
        assert_eq!(errno_name(libc::EAGAIN), Some("EAGAIN"));
        assert_eq!(errno_name(libc::EDEADLK), Some("EDEADLK"));
        assert_eq!(errno_name(libc::EOPNOTSUPP), Some("EOPNOTSUPP"));
    }

    #[test]
    fn unknown_values_are_none() {
        assert_eq!(errno_name(0), None);
        assert_eq!(errno_name(-2), None);
        assert_eq!(errno_name(134), None);
        // Kernel-internal codes strace shows as `= ? ERESTARTSYS` are not errnos.
        assert_eq!(errno_number("ERESTARTSYS"), None);
        assert_eq!(errno_number("enoent"), None);
        assert_eq!(errno_number(""), None);
    }
}
