//! Kernel function (kfunc) calls in the programs. A kfunc call names its
//! function by its id in the running kernel's BTF, which the build cannot
//! know and aya 0.14 does not resolve; so the programs call a helper number
//! no kernel has (tracer-common's `RDONLY_CAST_PLACEHOLDER`) and this module
//! turns each such call into the kfunc's before the object is loaded.

use object::{Object, ObjectSection, SectionKind};

/// An eBPF instruction's size; programs are arrays of them.
const INSTRUCTION_BYTES: usize = 8;
/// `BPF_JMP | BPF_CALL`.
const CALL: u8 = 0x85;
/// The register byte of a call: a helper's has none; a kfunc's has
/// `BPF_PSEUDO_KFUNC_CALL` (2) as its source register (the high nibble).
const HELPER_CALL_REGISTERS: u8 = 0;
const KFUNC_CALL_REGISTERS: u8 = 2 << 4;

/// An ELF object in memory aligned for its 64-bit structures (aya's parser
/// requires it, as `include_bytes_aligned!` provides for the embedded one).
pub struct AlignedObject {
    words: Vec<u64>,
    len: usize,
}

impl AlignedObject {
    fn copy_of(bytes: &[u8]) -> Self {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        // SAFETY: the words span at least `bytes.len()` bytes, and any byte is a valid u8.
        let view = unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), bytes.len()) };
        view.copy_from_slice(bytes);
        AlignedObject { words, len: bytes.len() }
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: as in `copy_of`.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `copy_of`.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), self.len) }
    }
}

/// A copy of `object` in which every call of helper number `placeholder` in
/// its code sections calls the kernel's function of BTF id `btf_id`
/// instead, and how many calls were changed.
pub fn with_kfunc_calls(object: &[u8], placeholder: u32, btf_id: u32) -> Result<(AlignedObject, usize), object::Error> {
    let code: Vec<(usize, usize)> = object::File::parse(object)?
        .sections()
        .filter(|section| section.kind() == SectionKind::Text)
        .filter_map(|section| section.file_range())
        .map(|(offset, size)| (offset as usize, size as usize))
        .collect();
    let mut copy = AlignedObject::copy_of(object);
    let bytes = copy.bytes_mut();
    let mut changed = 0;
    for (offset, size) in code {
        let Some(section) = bytes.get_mut(offset..offset.saturating_add(size)) else { continue };
        for instruction in section.chunks_exact_mut(INSTRUCTION_BYTES) {
            let calls_placeholder = instruction[0] == CALL
                && instruction[1] == HELPER_CALL_REGISTERS
                && instruction[2..4] == [0, 0]
                && instruction[4..8] == placeholder.to_le_bytes();
            if calls_placeholder {
                instruction[1] = KFUNC_CALL_REGISTERS;
                instruction[4..8].copy_from_slice(&btf_id.to_le_bytes());
                changed += 1;
            }
        }
    }
    Ok((copy, changed))
}

#[cfg(test)]
mod tests {
    use object::{ObjectSymbol, SymbolKind};

    use super::*;

    /// The register byte of a call of a BPF function (`BPF_PSEUDO_CALL`).
    const FUNCTION_CALL_REGISTERS: u8 = 1 << 4;

    /// The programs are written to be inlined whole: a call left in them is
    /// most likely one of compiler-builtins' `memset` or `memcpy`, which LLVM
    /// makes of a fill or copy it does not write out as stores, and which
    /// run byte by byte (a 128-byte fill cost each open and stat 640
    /// instructions, 3% of a storm's time).
    #[test]
    fn no_program_calls_a_function() {
        let file = object::File::parse(super::super::BPF_OBJECT).expect("the object");
        let mut callers = Vec::new();
        for section in file.sections().filter(|section| section.kind() == SectionKind::Text) {
            let code = section.data().expect("the section's code");
            for (index, instruction) in code.chunks_exact(INSTRUCTION_BYTES).enumerate() {
                if instruction[0] != CALL || instruction[1] & 0xf0 != FUNCTION_CALL_REGISTERS {
                    continue;
                }
                let offset = (index * INSTRUCTION_BYTES) as u64;
                let caller = file.symbols().find(|symbol| {
                    symbol.section_index() == Some(section.index())
                        && symbol.kind() == SymbolKind::Text
                        && (symbol.address()..symbol.address() + symbol.size()).contains(&offset)
                });
                callers.push(caller.and_then(|symbol| symbol.name().ok()).unwrap_or("?").to_string());
            }
        }
        callers.dedup();
        assert!(
            callers.is_empty(),
            "these programs call a function (write the fill or copy as word stores: tracer-ebpf's `store_words`, \
             `clear_words`): {callers:?}"
        );
    }

    #[test]
    fn the_programs_placeholder_calls_become_kfunc_calls() {
        let placeholder = tracer_common::RDONLY_CAST_PLACEHOLDER;
        let (linked, changed) = with_kfunc_calls(super::super::BPF_OBJECT, placeholder, 4242).expect("the object");
        assert!(changed > 0, "the programs read kernel memory through the placeholder");
        let calls = |bytes: &[u8], registers: u8, imm: u32| {
            let pattern = [[CALL, registers, 0, 0].as_slice(), &imm.to_le_bytes()].concat();
            bytes.windows(INSTRUCTION_BYTES).filter(|window| *window == pattern).count()
        };
        assert_eq!(calls(linked.bytes(), HELPER_CALL_REGISTERS, placeholder), 0);
        assert_eq!(calls(linked.bytes(), KFUNC_CALL_REGISTERS, 4242), changed);
        assert_eq!(calls(super::super::BPF_OBJECT, HELPER_CALL_REGISTERS, placeholder), changed);
        assert_eq!(linked.bytes().len(), super::super::BPF_OBJECT.len());
    }
}
