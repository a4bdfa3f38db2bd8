//! The build script of every app: links the Hermit kernel library that
//! the runner made (`libhermit.a` in `HERMIT_LIB_DIR`). The kernel is the
//! program's operating system and its ELF entry; std's hermit port calls
//! its `sys_*` functions.

fn main() {
    let dir = std::env::var("HERMIT_LIB_DIR")
        .expect("HERMIT_LIB_DIR names the folder of libhermit.a; the runner sets it (`make`)");
    println!("cargo:rustc-link-search=native={dir}");
    println!("cargo:rustc-link-lib=static=hermit");
    // A rebuilt kernel must be linked in again.
    println!("cargo:rerun-if-env-changed=HERMIT_LIB_DIR");
    println!("cargo:rerun-if-changed={dir}/libhermit.a");
}
