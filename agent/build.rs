//! Finds the XDP object built by `cargo xtask build-ebpf` and hands it to the
//! agent, which embeds it with `include_bytes_aligned!`.
//!
//! A missing object does not fail the build (unit tests, clippy and docs do
//! not need it): the agent is then built with an empty object and says at
//! start-up which command builds the real one.

use std::{
    env, fs,
    path::{Path, PathBuf},
    time::SystemTime,
};

const BUILD_HINT: &str = "cargo xtask build-ebpf";

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("agent/ sits in the workspace");
    let target = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    println!("cargo:rerun-if-env-changed=VIPX_EBPF_OBJ");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    let candidates: Vec<PathBuf> = match env::var_os("VIPX_EBPF_OBJ") {
        Some(path) => vec![PathBuf::from(path)],
        None => ["release", "debug"]
            .iter()
            .map(|profile| {
                target
                    .join("ebpf/bpfel-unknown-none")
                    .join(profile)
                    .join("vipx-ebpf")
            })
            .collect(),
    };
    // Cargo treats a watched file that does not exist as changed, so
    // watching a profile never built (xtask builds the release object only)
    // rebuilt the agent on every run: only the objects that exist are
    // watched, or the first candidate while there is none.
    let existing: Vec<&PathBuf> = candidates.iter().filter(|p| p.exists()).collect();
    if existing.is_empty() {
        println!("cargo:rerun-if-changed={}", candidates[0].display());
    }
    for candidate in existing {
        println!("cargo:rerun-if-changed={}", candidate.display());
    }
    let newest = candidates
        .iter()
        .filter_map(|path| Some((modified(path)?, path)))
        .max_by_key(|(time, _)| *time)
        .map(|(_, path)| path);

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("vipx-ebpf.o");
    match newest {
        Some(object) => {
            fs::copy(object, &out).unwrap_or_else(|e| panic!("copy {}: {e}", object.display()));
        }
        None => {
            println!(
                "cargo:warning=XDP object not found ({}); the agent will refuse to start until you run `{BUILD_HINT}` and rebuild",
                candidates[0].display()
            );
            fs::write(&out, b"").expect("write empty object placeholder");
        }
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).ok()?.modified().ok()
}
