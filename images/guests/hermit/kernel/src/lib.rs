//! Empty: cargo wants a target in every package, and this one exists only
//! to pin and fetch the Hermit kernel's source (see Cargo.toml).
