//! The runner links the guests with `link.ld` (through `-C link-arg=-T`,
//! guests only); cargo does not know that file, so this makes a change to
//! it relink them.

fn main() {
    println!("cargo:rerun-if-changed=link.ld");
}
