//! What an exec'd file is, as the kernel's binary loaders see it: a script's
//! interpreters (`#!`, followed through interpreters that are scripts
//! themselves, as `binfmt_script` does) and the argv the script loader gives
//! them; an ELF program's own interpreter, the dynamic loader the kernel maps
//! without a system call (`PT_INTERP`: `/lib64/ld-linux-x86-64.so.2`); and a
//! 32-bit (ia32) ELF program, whose system calls the eBPF backend's
//! tracepoints do not see.

use std::io::Read;

use crate::{fsaccess, tracker::path};

/// The bytes of a file read to know what it is: more than the kernel's
/// `BINPRM_BUF_SIZE` (256), for an ELF program's headers and `PT_INTERP`.
const HEAD: usize = 4096;
/// How deep the kernel follows interpreters (`BINPRM_MAX_RECURSION` + the script).
const MAX_DEPTH: usize = 5;

/// What was found about one exec'd file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Image {
    /// The `#!` lines the kernel followed, the script's own first.
    pub shebangs: Vec<Shebang>,
    /// The program finally run is a 32-bit ELF.
    pub ia32: bool,
    /// The dynamic loader the ELF program finally run names (`PT_INTERP`).
    pub elf_interpreter: Option<Vec<u8>>,
}

/// One `#!` line: the interpreter and its optional single argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shebang {
    /// As the line spells it (the kernel passes it on so in argv).
    pub interpreter: Vec<u8>,
    pub argument: Option<Vec<u8>>,
    /// The interpreter's absolute path: a relative one is opened by the
    /// kernel from the exec'ing process's working directory.
    pub path: Vec<u8>,
}

impl Image {
    /// The interpreters the kernel ran, the script's own first.
    pub fn interpreters(&self) -> Vec<Vec<u8>> {
        self.shebangs.iter().map(|shebang| shebang.path.clone()).collect()
    }

    /// The argv the program finally run gets when `requested` was passed to
    /// exec of `filename` (as the kernel names it: the path given, or
    /// `/dev/fd/N/…` for a path relative to a descriptor): for each `#!`, the
    /// script loader drops argv[0] and puts the interpreter, its argument and
    /// the script's name first.
    pub fn loaded_argv(&self, filename: &[u8], requested: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut argv = requested.to_vec();
        let mut script = filename.to_vec();
        for Shebang { interpreter, argument, .. } in &self.shebangs {
            let rest = argv.get(1..).unwrap_or_default();
            let mut loaded = vec![interpreter.clone()];
            loaded.extend(argument.clone());
            loaded.push(std::mem::replace(&mut script, interpreter.clone()));
            loaded.extend_from_slice(rest);
            argv = loaded;
        }
        argv
    }
}

/// Reads the head of `path` (absolute; and of its interpreters, relative
/// ones found from `cwd`, the exec'ing process's). A file that cannot be read
/// says nothing.
pub fn inspect(path: &[u8], cwd: &[u8]) -> Image {
    let mut image = Image::default();
    let mut current = path.to_vec();
    for _ in 0..MAX_DEPTH {
        let Some(head) = read_head(&current) else { break };
        if let Some((interpreter, argument)) = parse_shebang(&head) {
            let path = path::resolve(cwd, &interpreter);
            current.clone_from(&path);
            image.shebangs.push(Shebang { interpreter, argument, path });
            continue;
        }
        // `\x7fELF`, class 1 (32-bit), machine 3 (EM_386).
        image.ia32 = head.starts_with(b"\x7fELF") && head.get(4) == Some(&1) && head.get(18..20) == Some(&[3, 0]);
        image.elf_interpreter = elf_interpreter(&head);
        break;
    }
    image
}

/// The `PT_INTERP` path of a little-endian ELF program whose headers and
/// interpreter string lie in `head` (as they do, right after the ELF header).
fn elf_interpreter(head: &[u8]) -> Option<Vec<u8>> {
    const PT_INTERP: u32 = 3;
    if !head.starts_with(b"\x7fELF") || head.get(5) != Some(&1) {
        return None;
    }
    let wide = match head.get(4)? {
        1 => false,
        2 => true,
        _ => return None,
    };
    let u16_at = |at: usize| head.get(at..at + 2).map(|bytes| u16::from_le_bytes([bytes[0], bytes[1]]) as usize);
    let u32_at = |at: usize| head.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let u64_at = |at: usize| head.get(at..at + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    let (phoff, phentsize, phnum) = match wide {
        true => (usize::try_from(u64_at(32)?).ok()?, u16_at(54)?, u16_at(56)?),
        false => (u32_at(28)? as usize, u16_at(42)?, u16_at(44)?),
    };
    for index in 0..phnum {
        let header = phoff.checked_add(index.checked_mul(phentsize)?)?;
        if u32_at(header)? != PT_INTERP {
            continue;
        }
        let (offset, size) = match wide {
            true => (usize::try_from(u64_at(header + 8)?).ok()?, usize::try_from(u64_at(header + 32)?).ok()?),
            false => (u32_at(header + 4)? as usize, u32_at(header + 16)? as usize),
        };
        let name = head.get(offset..offset.checked_add(size)?)?;
        let name = name.split(|&byte| byte == 0).next()?;
        return name.starts_with(b"/").then(|| name.to_vec());
    }
    None
}

fn read_head(path: &[u8]) -> Option<Vec<u8>> {
    let file = fsaccess::open(path).ok()?;
    let mut head = Vec::with_capacity(HEAD);
    file.take(HEAD as u64).read_to_end(&mut head).ok()?;
    Some(head)
}

/// A `#!` line as `binfmt_script` reads it: after `#!` and blanks, the
/// interpreter runs up to the next blank; the rest of the line, blanks
/// trimmed, is its one argument.
fn parse_shebang(head: &[u8]) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    let line = head.strip_prefix(b"#!")?;
    let line = line.split(|&byte| byte == b'\n').next()?;
    let blank = |byte: &u8| *byte == b' ' || *byte == b'\t';
    let line = trim(line, blank);
    let name_end = line.iter().position(|byte| blank(byte) || *byte == 0).unwrap_or(line.len());
    let (interpreter, rest) = line.split_at(name_end);
    if interpreter.is_empty() {
        return None;
    }
    let argument = trim(rest, blank);
    let argument = argument.split(|&byte| byte == 0).next().filter(|argument| !argument.is_empty());
    Some((interpreter.to_vec(), argument.map(<[u8]>::to_vec)))
}

fn trim(bytes: &[u8], blank: impl Fn(&u8) -> bool) -> &[u8] {
    let start = bytes.iter().position(|byte| !blank(byte)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|byte| !blank(byte)).map_or(start, |last| last + 1);
    &bytes[start..end]
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
        let inner_bytes = inner.as_os_str().as_bytes().to_vec();
        let image = inspect(outer.as_os_str().as_bytes(), b"/");
        assert_eq!(image.interpreters(), vec![inner_bytes.clone(), b"/bin/sh".to_vec()]);
        assert_eq!(image.shebangs[0].argument.as_deref(), Some(&b"arg"[..]));
        assert_eq!(image.shebangs[1].argument.as_deref(), Some(&b"-e"[..]));
        // binfmt_script: `./outer x` runs `/bin/sh -e INNER arg ./outer x`.
        let requested = [b"name".to_vec(), b"x".to_vec()];
        let loaded: Vec<Vec<u8>> =
            [&b"/bin/sh"[..], b"-e", &inner_bytes, b"arg", b"./outer", b"x"].iter().map(|arg| arg.to_vec()).collect();
        assert_eq!(image.loaded_argv(b"./outer", &requested), loaded);
        assert_eq!(Image::default().loaded_argv(b"./outer", &requested), requested);
        assert!(!image.ia32);
        assert!(inspect(b"/bin/true", b"/").shebangs.is_empty());
        assert_eq!(inspect(b"/nonexistent", b"/"), Image::default());
    }

    /// ReproZip's "shebang corner-cases": `b` names `c 0`, `c` links to `d`,
    /// `d` names `e` relatively, `e` names /bin/echo: `./a 1 2` (a → b)
    /// prints `e C 0 ./a 1 2`.
    #[test]
    fn relative_interpreters_are_found_from_the_working_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cwd = dir.path().as_os_str().as_bytes();
        let c = [cwd, b"/c"].concat();
        std::fs::write(dir.path().join("b"), [b"#!", c.as_slice(), b" 0\nsome content\n"].concat()).expect("b");
        std::os::unix::fs::symlink("d", dir.path().join("c")).expect("c");
        std::fs::write(dir.path().join("d"), "#!e").expect("d");
        std::fs::write(dir.path().join("e"), "#!/bin/echo").expect("e");
        let image = inspect(&[cwd, b"/b"].concat(), cwd);
        assert_eq!(image.interpreters(), vec![c.clone(), [cwd, b"/e"].concat(), b"/bin/echo".to_vec()]);
        let requested = [b"./a".to_vec(), b"1".to_vec(), b"2".to_vec()];
        let loaded: Vec<Vec<u8>> =
            [&b"/bin/echo"[..], b"e", &c, b"0", b"./a", b"1", b"2"].iter().map(|arg| arg.to_vec()).collect();
        assert_eq!(image.loaded_argv(b"./a", &requested), loaded);
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
        assert!(inspect(program.as_os_str().as_bytes(), b"/").ia32);
    }

    #[test]
    fn a_dynamic_program_names_its_loader() {
        let loader = inspect(b"/bin/true", b"/").elf_interpreter.expect("a dynamic program");
        assert!(loader.starts_with(b"/lib") && loader.windows(5).any(|w| w == b"ld-li"), "{loader:?}");
        let python = inspect(b"/usr/bin/python3", b"/");
        assert_eq!(python.elf_interpreter, Some(loader));
        assert_eq!(inspect(b"/etc/hostname", b"/").elf_interpreter, None);
    }
}
