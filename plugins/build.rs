//! The ABI fingerprint: a hash of the SDK version and the exact compiler, so
//! that the loader refuses a plugin whose `#[repr(C)]` tables or calling
//! conventions might differ from its own.
use std::process::Command;

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(&rustc).arg("-vV").output().expect("rustc -vV");
    let verbose = String::from_utf8_lossy(&out.stdout);
    let input = format!("modvisor-plugins {}\n{}", env!("CARGO_PKG_VERSION"), verbose);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in input.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    println!("cargo:rustc-env=MODVISOR_ABI={h:016x}");
    println!("cargo:rerun-if-env-changed=RUSTC");
}
