//! What an exec'd file is, as the kernel's binary loaders see it: a script's
//! interpreters (`#!`, followed through interpreters that are scripts
//! themselves, as `binfmt_script` does), and a 32-bit (ia32) ELF program,
//! whose system calls the eBPF backend's tracepoints do not see.

use std::io::Read;

use crate::fsaccess;

/// The bytes of a file the kernel looks at to pick a loader (`BINPRM_BUF_SIZE`).
const HEAD: usize = 256;
/// How deep the kernel follows interpreters (`BINPRM_MAX_RECURSION` + the script).
const MAX_DEPTH: usize = 5;

/// What was found about one exec'd file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Image {
    /// The interpreters the kernel ran, the script's own first.
    pub interpreters: Vec<Vec<u8>>,
    /// The program finally run is a 32-bit ELF.
    pub ia32: bool,
}

/// Reads the head of `path` (and of its interpreters). A file that cannot be
/// read says nothing.
pub fn inspect(path: &[u8]) -> Image {
    let mut image = Image::default();
    let mut current = path.to_vec();
    for _ in 0..MAX_DEPTH {
        let Some(head) = read_head(&current) else { break };
        if let Some(interpreter) = shebang_interpreter(&head) {
            image.interpreters.push(interpreter.clone());
            current = interpreter;
            continue;
        }
        // `\x7fELF`, class 1 (32-bit), machine 3 (EM_386).
        image.ia32 = head.starts_with(b"\x7fELF") && head.get(4) == Some(&1) && head.get(18..20) == Some(&[3, 0]);
        break;
    }
    image
}

fn read_head(path: &[u8]) -> Option<Vec<u8>> {
    let file = fsaccess::open(path).ok()?;
    let mut head = Vec::with_capacity(HEAD);
    file.take(HEAD as u64).read_to_end(&mut head).ok()?;
    Some(head)
}

/// The interpreter a `#!` line names, as `binfmt_script` reads it: after
/// `#!` and blanks, up to the next blank or the line's end (an absolute path;
/// a relative one is resolved by the kernel against the working directory,
/// which is left out here).
fn shebang_interpreter(head: &[u8]) -> Option<Vec<u8>> {
    let line = head.strip_prefix(b"#!")?;
    let line = line.split(|&byte| byte == b'\n').next()?;
    let name = line.split(|&byte| byte == b' ' || byte == b'\t' || byte == 0).find(|token| !token.is_empty())?;
    name.starts_with(b"/").then(|| name.to_vec())
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt;

    use super::*;

    #[test]
    fn scripts_name_their_interpreters_through_chains() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inner = dir.path().join("inner");
        std::fs::write(&inner, "#!/bin/sh -e\necho\n").expect("inner");
        let outer = dir.path().join("outer");
        std::fs::write(&outer, format!("#! \t{} arg\n", inner.display())).expect("outer");
        let image = inspect(outer.as_os_str().as_bytes());
        assert_eq!(image.interpreters, vec![inner.as_os_str().as_bytes().to_vec(), b"/bin/sh".to_vec()]);
        assert!(!image.ia32);
        assert_eq!(inspect(b"/bin/true"), Image::default());
        assert_eq!(inspect(b"/nonexistent"), Image::default());
    }

    #[test]
    fn a_32_bit_elf_is_recognised() {
        let dir = tempfile::tempdir().expect("tempdir");
        let program = dir.path().join("prog32");
        let mut head = vec![0u8; 64];
        head[..4].copy_from_slice(b"\x7fELF");
        head[4] = 1;
        head[18] = 3;
        std::fs::write(&program, head).expect("program");
        assert!(inspect(program.as_os_str().as_bytes()).ia32);
    }
}
