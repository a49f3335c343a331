//! Builds the kernel programs (`tracer-ebpf`) and links them into a BPF object
//! that the binary embeds, so that one `cargo build` yields a working tracer.
//!
//! There is no `rust-src` on our machines, so the BPF target cannot be built
//! directly: the crate is compiled for the host as LLVM bitcode
//! (`-C linker-plugin-lto`) and `bpf-linker` (0.10.1, which uses the LLVM inside
//! the Rust toolchain) lowers that bitcode to BPF. See docs/ebpf-build.md.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

const BPF_LINKER_HINT: &str = "install it with `cargo xtask setup` (or `cargo install bpf-linker@0.10.1 --locked`)";

fn main() {
    if let Err(message) = build() {
        // A build script reports by panicking; the message is what the user reads.
        panic!("\n\nreprotrace: cannot build the eBPF programs: {message}\n\n");
    }
}

fn build() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env_var("OUT_DIR")?);
    let ebpf_dir = manifest_dir.join("../tracer-ebpf");
    let common_dir = manifest_dir.join("../tracer-common");
    for watched in
        [ebpf_dir.join("src"), ebpf_dir.join("Cargo.toml"), ebpf_dir.join("Cargo.lock"), common_dir.join("src")]
    {
        println!("cargo:rerun-if-changed={}", watched.display());
    }
    println!("cargo:rerun-if-env-changed=BPF_LINKER");

    let archive = build_bitcode_archive(&ebpf_dir, &out_dir.join("ebpf-target"))?;
    let object = out_dir.join("reprotrace.bpf.o");
    link_bpf_object(&archive, &out_dir.join("exports.txt"), &object)?;
    Ok(())
}

fn env_var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|_| format!("{name} is not set (run through cargo)"))
}

/// Compiles tracer-ebpf for the host as a static library of LLVM bitcode.
fn build_bitcode_archive(ebpf_dir: &Path, target_dir: &Path) -> Result<PathBuf, String> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(ebpf_dir)
        .args(["build", "--release", "--locked", "--target-dir"])
        .arg(target_dir)
        .env("RUSTFLAGS", "-C linker-plugin-lto")
        // Settings of the outer build that must not leak into this one.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET");
    let status = command.status().map_err(|err| format!("running cargo for tracer-ebpf: {err}"))?;
    if !status.success() {
        return Err(format!("cargo build of tracer-ebpf failed ({status})"));
    }
    Ok(target_dir.join("release/libtracer_ebpf.a"))
}

/// Links the bitcode archive into a BPF object exporting every program, map and
/// global the loader uses (the table lives in tracer-common).
fn link_bpf_object(archive: &Path, exports_file: &Path, object: &Path) -> Result<(), String> {
    let mut exports: Vec<&str> = Vec::new();
    exports.extend(tracer_common::maps::ALL);
    exports.extend(tracer_common::globals::ALL);
    exports.extend(tracer_common::programs().map(|program| program.symbol));
    std::fs::write(exports_file, exports.join("\n"))
        .map_err(|err| format!("writing {}: {err}", exports_file.display()))?;

    let linker = env::var("BPF_LINKER").unwrap_or_else(|_| "bpf-linker".into());
    let status = Command::new(&linker)
        .env("LD_LIBRARY_PATH", rust_sysroot_lib()?)
        .args(["--target", "bpfel", "--cpu", "v3", "--export-symbols"])
        .arg(exports_file)
        .arg("-o")
        .arg(object)
        .arg(archive)
        .status()
        .map_err(|err| format!("running `{linker}`: {err}; {BPF_LINKER_HINT}"))?;
    if !status.success() {
        return Err(format!("`{linker}` failed ({status}); it must be 0.10.1: {BPF_LINKER_HINT}"));
    }
    Ok(())
}

/// bpf-linker 0.10.1 loads the LLVM shipped in the Rust toolchain's `lib`.
fn rust_sysroot_lib() -> Result<String, String> {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let output = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|err| format!("asking rustc for its sysroot: {err}"))?;
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let mut lib = format!("{sysroot}/lib");
    if let Ok(existing) = env::var("LD_LIBRARY_PATH") {
        lib = format!("{lib}:{existing}");
    }
    Ok(lib)
}
