//! Offsets of the kernel struct members the programs read, from the running
//! kernel's BTF: Rust eBPF has no CO-RE, so user space relocates them and hands
//! them to the programs as read-only globals.

use btf_rs::{Btf, Type};

use super::{preflight::VMLINUX_BTF, EbpfError};

/// Byte offsets in the running kernel's structs.
pub struct KernelOffsets {
    /// `task_struct.exit_code`.
    pub task_exit_code: u64,
    /// `task_struct.mm`.
    pub task_mm: u64,
    /// `mm_struct.arg_start` and `arg_end`: the new image's argv.
    pub mm_arg_start: u64,
    pub mm_arg_end: u64,
}

impl KernelOffsets {
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
        Ok(KernelOffsets {
            task_exit_code: offset("task_struct", "exit_code")?,
            task_mm: offset("task_struct", "mm")?,
            mm_arg_start: offset("mm_struct", "arg_start")?,
            mm_arg_end: offset("mm_struct", "arg_end")?,
        })
    }
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
    fn this_kernel_has_every_member_the_programs_read() {
        let offsets = KernelOffsets::read().expect("the kernel's BTF");
        // mm_struct's members sit in an anonymous struct: found through it.
        assert!(offsets.mm_arg_end > offsets.mm_arg_start, "{} {}", offsets.mm_arg_start, offsets.mm_arg_end);
        assert!(offsets.task_mm > 0 && offsets.task_exit_code > 0);
    }
}
