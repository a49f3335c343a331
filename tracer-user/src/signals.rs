//! Linux x86_64 signal names and numbers, spelled as strace prints them
//! (`+++ killed by SIGKILL +++`).
//!
//! Real-time signals use the kernel's numbering, as strace does: 32 is
//! `SIGRTMIN` and 33..=64 are `SIGRT_1`..=`SIGRT_32`. (glibc's `SIGRTMIN` is 34,
//! so `SIGRTMIN+n` spellings would be ambiguous; strace never prints them.)

use crate::name_table::NameTable;

/// Every signal, in number order; the aliases come last, so [`signal_name`],
/// which returns the first match, gives the canonical name.
static SIGNALS: NameTable = NameTable(&[
    ("SIGHUP", 1),
    ("SIGINT", 2),
    ("SIGQUIT", 3),
    ("SIGILL", 4),
    ("SIGTRAP", 5),
    ("SIGABRT", 6),
    ("SIGBUS", 7),
    ("SIGFPE", 8),
    ("SIGKILL", 9),
    ("SIGUSR1", 10),
    ("SIGSEGV", 11),
    ("SIGUSR2", 12),
    ("SIGPIPE", 13),
    ("SIGALRM", 14),
    ("SIGTERM", 15),
    ("SIGSTKFLT", 16),
    ("SIGCHLD", 17),
    ("SIGCONT", 18),
    ("SIGSTOP", 19),
    ("SIGTSTP", 20),
    ("SIGTTIN", 21),
    ("SIGTTOU", 22),
    ("SIGURG", 23),
    ("SIGXCPU", 24),
    ("SIGXFSZ", 25),
    ("SIGVTALRM", 26),
    ("SIGPROF", 27),
    ("SIGWINCH", 28),
    ("SIGIO", 29),
    ("SIGPWR", 30),
    ("SIGSYS", 31),
    ("SIGRTMIN", 32),
    ("SIGRT_1", 33),
    ("SIGRT_2", 34),
    ("SIGRT_3", 35),
    ("SIGRT_4", 36),
    ("SIGRT_5", 37),
    ("SIGRT_6", 38),
    ("SIGRT_7", 39),
    ("SIGRT_8", 40),
    ("SIGRT_9", 41),
    ("SIGRT_10", 42),
    ("SIGRT_11", 43),
    ("SIGRT_12", 44),
    ("SIGRT_13", 45),
    ("SIGRT_14", 46),
    ("SIGRT_15", 47),
    ("SIGRT_16", 48),
    ("SIGRT_17", 49),
    ("SIGRT_18", 50),
    ("SIGRT_19", 51),
    ("SIGRT_20", 52),
    ("SIGRT_21", 53),
    ("SIGRT_22", 54),
    ("SIGRT_23", 55),
    ("SIGRT_24", 56),
    ("SIGRT_25", 57),
    ("SIGRT_26", 58),
    ("SIGRT_27", 59),
    ("SIGRT_28", 60),
    ("SIGRT_29", 61),
    ("SIGRT_30", 62),
    ("SIGRT_31", 63),
    ("SIGRT_32", 64),
    // Aliases: same numbers, other spellings.
    ("SIGIOT", 6),
    ("SIGCLD", 17),
    ("SIGPOLL", 29),
]);

/// The name of signal `number` (`9` → `"SIGKILL"`), if there is one.
pub fn signal_name(number: i32) -> Option<&'static str> {
    SIGNALS.name(number)
}

/// The number of signal `name` (`"SIGKILL"` → `9`), aliases included.
pub fn signal_number(name: &str) -> Option<i32> {
    SIGNALS.number(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_signals_agree_with_libc() {
        for (name, number) in [
            ("SIGHUP", libc::SIGHUP),
            ("SIGINT", libc::SIGINT),
            ("SIGQUIT", libc::SIGQUIT),
            ("SIGABRT", libc::SIGABRT),
            ("SIGBUS", libc::SIGBUS),
            ("SIGKILL", libc::SIGKILL),
            ("SIGSEGV", libc::SIGSEGV),
            ("SIGPIPE", libc::SIGPIPE),
            ("SIGTERM", libc::SIGTERM),
            ("SIGSTKFLT", libc::SIGSTKFLT),
            ("SIGCHLD", libc::SIGCHLD),
            ("SIGSTOP", libc::SIGSTOP),
            ("SIGXCPU", libc::SIGXCPU),
            ("SIGIO", libc::SIGIO),
            ("SIGPWR", libc::SIGPWR),
            ("SIGSYS", libc::SIGSYS),
        ] {
            assert_eq!(signal_number(name), Some(number), "{name}");
            assert_eq!(signal_name(number), Some(name), "{number}");
        }
    }

    #[test]
    fn every_number_round_trips() {
        for number in 1..=64 {
            let name = signal_name(number).unwrap_or_else(|| panic!("no name for {number}"));
            assert_eq!(signal_number(name), Some(number));
        }
    }

    #[test]
    fn realtime_signals_use_strace_spelling() {
        assert_eq!(signal_number("SIGRTMIN"), Some(32));
        assert_eq!(signal_number("SIGRT_1"), Some(33));
        assert_eq!(signal_number("SIGRT_2"), Some(34));
        assert_eq!(signal_number("SIGRT_32"), Some(64));
        assert_eq!(signal_name(34), Some("SIGRT_2"));
    }

    #[test]
    fn aliases_and_unknowns() {
        assert_eq!(signal_number("SIGIOT"), Some(libc::SIGABRT));
        assert_eq!(signal_number("SIGCLD"), Some(libc::SIGCHLD));
        assert_eq!(signal_number("SIGPOLL"), Some(libc::SIGIO));
        assert_eq!(signal_name(libc::SIGABRT), Some("SIGABRT"));
        assert_eq!(signal_name(0), None);
        assert_eq!(signal_name(65), None);
        assert_eq!(signal_number("SIGRT_33"), None);
        assert_eq!(signal_number("KILL"), None);
    }
}
