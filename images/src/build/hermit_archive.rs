//! The decisions of the Hermit kernel's archive step, which turns the raw
//! `libhermit.a` cargo builds into the library apps link (Hermit's own,
//! unpublished, build tool does the same; this is the project's version).
//!
//! An app links the kernel and its own std into one program, and both
//! bring a `core`, an `alloc` and a `compiler_builtins` with the same
//! symbol names (`memcpy`, `_ZN4core…`). So every global the kernel
//! defines is renamed into a namespace of its own, except its interface:
//! the entry `_start`, `__bss_start`, `mcount`, `runtime_entry` and the
//! `sys_*` functions of the kernel crate itself (members `hermit-*`),
//! which std's hermit port calls. Mangled names get a leading path
//! segment (`_ZN4core…` → `_ZN6hermit4core…`), others a prefix
//! (`memcpy` → `hermit_memcpy`). `llvm-objcopy --redefine-syms` renames,
//! and then every member is marked as a Hermit object (ELF OS ABI 0xFF,
//! what rustc gives the app's own objects), since the kernel is compiled
//! for `x86_64-unknown-none`.
//!
//! Everything here works on bytes and is host-tested; `hermit_build`
//! runs the tools.

use std::collections::{BTreeMap, BTreeSet};

use object::read::archive::ArchiveFile;
use object::{Object, ObjectSymbol};

/// The kernel's entry points besides its `sys_*` calls.
pub const FIXED_EXPORTS: &[&str] = &[ENTRY, "__bss_start", "mcount", "runtime_entry"];

/// The ELF entry of every Hermit app, which the kernel defines.
const ENTRY: &str = "_start";

/// The kernel crate's own members (its dependencies' are `core-…`,
/// `x86_64-…` and so on): only its `sys_*` functions are the interface.
const KERNEL_MEMBER_PREFIX: &[u8] = b"hermit-";

/// The namespace the kernel's other symbols move to.
const NAMESPACE: &str = "hermit";

/// `EI_OSABI` of a Hermit object.
pub const OSABI_HERMIT: u8 = 0xff;
const EI_OSABI: usize = 7;
const ELF_MAGIC: &[u8] = b"\x7fELF";

/// One archive member and the global symbols it defines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub defined: Vec<String>,
}

fn archive(bytes: &[u8]) -> Result<ArchiveFile<'_>, String> {
    ArchiveFile::parse(bytes).map_err(|e| format!("not an ar archive: {e}"))
}

/// Every member of an archive with the global (and weak) symbols it
/// defines; members that are no object file (none in a cargo build) are
/// an error, since their symbols would go unrenamed.
pub fn members(bytes: &[u8]) -> Result<Vec<Member>, String> {
    let mut members = Vec::new();
    for member in archive(bytes)?.members() {
        let member = member.map_err(|e| format!("unreadable archive member: {e}"))?;
        let name = String::from_utf8_lossy(member.name()).into_owned();
        let data = member.data(bytes).map_err(|e| format!("member {name}: {e}"))?;
        let file = object::File::parse(data).map_err(|e| format!("member {name} is no object file: {e}"))?;
        let mut defined = Vec::new();
        for symbol in file.symbols().filter(|s| s.is_global() && !s.is_undefined()) {
            let sym = symbol.name().map_err(|e| format!("member {name}: a symbol name is not UTF-8: {e}"))?;
            defined.push(sym.to_string());
        }
        members.push(Member { name, defined });
    }
    Ok(members)
}

/// The symbols that keep their names: the fixed entry points and the
/// `sys_*` functions the kernel crate's members define.
pub fn exports(members: &[Member]) -> BTreeSet<String> {
    let syscalls = members
        .iter()
        .filter(|m| m.name.as_bytes().starts_with(KERNEL_MEMBER_PREFIX))
        .flat_map(|m| m.defined.iter().filter(|s| s.starts_with("sys_")).cloned());
    FIXED_EXPORTS.iter().map(|s| s.to_string()).chain(syscalls).collect()
}

/// A symbol's name in the kernel's namespace: Itanium-mangled names (the
/// Rust legacy scheme) get `hermit` as their outermost path segment, so
/// they still demangle; any other name gets the prefix `hermit_`.
pub fn renamed(symbol: &str) -> String {
    match symbol.strip_prefix("_ZN") {
        Some(path) => format!("_ZN{}{NAMESPACE}{path}", NAMESPACE.len()),
        None => format!("{NAMESPACE}_{symbol}"),
    }
}

/// Old name → new name for every defined global that is not an export.
pub fn renames(members: &[Member], exports: &BTreeSet<String>) -> BTreeMap<String, String> {
    members
        .iter()
        .flat_map(|m| m.defined.iter())
        .filter(|s| !exports.contains(*s))
        .map(|s| (s.clone(), renamed(s)))
        .collect()
}

/// The map as `llvm-objcopy --redefine-syms` reads it: `old new` a line.
/// A name with white space in it would be split there, so it is refused.
pub fn redefine_syms_file(renames: &BTreeMap<String, String>) -> Result<String, String> {
    let mut text = String::new();
    for (old, new) in renames {
        if old.contains(char::is_whitespace) {
            return Err(format!("symbol {old:?} has white space: --redefine-syms cannot rename it"));
        }
        text.push_str(&format!("{old} {new}\n"));
    }
    Ok(text)
}

/// Sets `EI_OSABI` to Hermit's on every ELF member, in place; returns how
/// many members it marked.
pub fn mark_hermit_osabi(bytes: &mut [u8]) -> Result<usize, String> {
    let mut offsets = Vec::new();
    for member in archive(bytes)?.members() {
        let member = member.map_err(|e| format!("unreadable archive member: {e}"))?;
        let (offset, size) = member.file_range();
        let start = usize::try_from(offset).map_err(|_| "member offset beyond memory".to_string())?;
        if size > EI_OSABI as u64 && bytes[start..].starts_with(ELF_MAGIC) {
            offsets.push(start + EI_OSABI);
        }
    }
    for at in &offsets {
        bytes[*at] = OSABI_HERMIT;
    }
    Ok(offsets.len())
}

/// What a processed archive must be: every member a Hermit object, the
/// entry and the `sys_*` exports still defined under their names, no
/// renamed symbol defined under its old name, and the archive's symbol
/// index (what the linker searches) naming the new names.
pub fn check_processed(
    bytes: &[u8],
    exports: &BTreeSet<String>,
    renames: &BTreeMap<String, String>,
) -> Result<(), String> {
    let file = archive(bytes)?;
    for member in file.members() {
        let member = member.map_err(|e| format!("unreadable archive member: {e}"))?;
        let data = member.data(bytes).map_err(|e| format!("unreadable archive member: {e}"))?;
        if data.get(EI_OSABI) != Some(&OSABI_HERMIT) {
            return Err(format!("member {} is not marked as a Hermit object", String::from_utf8_lossy(member.name())));
        }
    }
    let defined: BTreeSet<String> = members(bytes)?.into_iter().flat_map(|m| m.defined).collect();
    if let Some(old) = renames.keys().find(|old| defined.contains(*old)) {
        return Err(format!("{old} is still defined under its old name"));
    }
    if let Some(new) = renames.values().find(|new| !defined.contains(*new)) {
        return Err(format!("{new} is not defined: the renaming did not happen"));
    }
    // The other fixed exports are the linker's or std's to define.
    if let Some(lost) = exports.iter().filter(|e| e.starts_with("sys_") || *e == ENTRY).find(|e| !defined.contains(*e))
    {
        return Err(format!("the kernel's export {lost} is not defined"));
    }
    let index = file.symbols().map_err(|e| format!("unreadable symbol index: {e}"))?.ok_or("no symbol index")?;
    let mut indexed = BTreeSet::new();
    for symbol in index {
        let symbol = symbol.map_err(|e| format!("unreadable symbol index: {e}"))?;
        indexed.insert(String::from_utf8_lossy(symbol.name()).into_owned());
    }
    if let Some(missing) = defined.iter().find(|s| !indexed.contains(*s)) {
        return Err(format!("the symbol index lacks {missing}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::write::{Object as Writer, Symbol, SymbolSection};
    use object::{Architecture, BinaryFormat, Endianness, SectionKind, SymbolFlags, SymbolKind, SymbolScope};

    /// A relocatable x86_64 ELF object that defines `globals` and `weak`
    /// in its text, a local `local_helper`, and calls the undefined
    /// `extern_fn`.
    fn object(globals: &[&str], weak: &[&str]) -> Vec<u8> {
        let mut obj = Writer::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
        let text = obj.add_section(Vec::new(), b".text".to_vec(), SectionKind::Text);
        obj.append_section_data(text, &[0xc3; 64], 16);
        let symbols = globals
            .iter()
            .map(|n| (*n, false, SymbolScope::Dynamic))
            .chain(weak.iter().map(|n| (*n, true, SymbolScope::Dynamic)))
            .chain([("local_helper", false, SymbolScope::Compilation)]);
        for (i, (name, weak, scope)) in symbols.enumerate() {
            obj.add_symbol(Symbol {
                name: name.as_bytes().to_vec(),
                value: i as u64,
                size: 1,
                kind: SymbolKind::Text,
                scope,
                weak,
                section: SymbolSection::Section(text),
                flags: SymbolFlags::None,
            });
        }
        obj.add_symbol(Symbol {
            name: b"extern_fn".to_vec(),
            value: 0,
            size: 0,
            kind: SymbolKind::Text,
            scope: SymbolScope::Dynamic,
            weak: false,
            section: SymbolSection::Undefined,
            flags: SymbolFlags::None,
        });
        obj.write().unwrap()
    }

    /// A GNU ar archive of `members`, with a symbol index naming `index`
    /// (all in the first member: the checks only look at the names).
    fn ar(members: &[(&str, Vec<u8>)], index: &[&str]) -> Vec<u8> {
        let header = |name: &str, size: usize| format!("{name:<16}{:<12}{:<6}{:<6}{:<8}{size:<10}`\n", 0, 0, 0, 644);
        let mut names = String::new();
        let mut entries = Vec::new();
        for (name, data) in members {
            // Names longer than 15 bytes go in the `//` names member.
            let short = if name.len() < 16 {
                format!("{name}/")
            } else {
                let at = names.len();
                names.push_str(&format!("{name}/\n"));
                format!("/{at}")
            };
            entries.push((short, data));
        }
        let mut out = b"!<arch>\n".to_vec();
        let pad = |out: &mut Vec<u8>| {
            if out.len() % 2 == 1 {
                out.push(b'\n');
            }
        };
        let first_member = 8
            + 60
            + (4 + 4 * index.len() + index.iter().map(|s| s.len() + 1).sum::<usize>()).next_multiple_of(2)
            + if names.is_empty() { 0 } else { 60 + names.len().next_multiple_of(2) };
        let mut table = (index.len() as u32).to_be_bytes().to_vec();
        for _ in index {
            table.extend_from_slice(&(first_member as u32).to_be_bytes());
        }
        for s in index {
            table.extend_from_slice(s.as_bytes());
            table.push(0);
        }
        out.extend_from_slice(header("/", table.len()).as_bytes());
        out.extend_from_slice(&table);
        pad(&mut out);
        if !names.is_empty() {
            out.extend_from_slice(header("//", names.len()).as_bytes());
            out.extend_from_slice(names.as_bytes());
            pad(&mut out);
        }
        assert_eq!(out.len(), first_member);
        for (short, data) in entries {
            out.extend_from_slice(header(&short, data.len()).as_bytes());
            out.extend_from_slice(data);
            pad(&mut out);
        }
        out
    }

    const KERNEL: &str = "hermit-510d557d1d1f36e2.hermit.891a84c831f7876f-cgu.00.rcgu.o";
    const BUILTINS: &str = "compiler_builtins-bb63.compiler_builtins.e130-cgu.15.rcgu.o";

    fn raw_kernel() -> Vec<u8> {
        ar(
            &[
                (KERNEL, object(&["_start", "sys_write", "_ZN4core3fmt5write17h0123456789abcdefE"], &["sys_weak"])),
                (BUILTINS, object(&["memcpy", "sys_not_the_kernels"], &[])),
            ],
            &["_start"],
        )
    }

    #[test]
    fn members_list_only_the_globals_each_defines() {
        let members = members(&raw_kernel()).unwrap();
        let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, [KERNEL, BUILTINS], "long names come from the `//` member");
        assert_eq!(
            members[0].defined,
            ["_start", "sys_write", "_ZN4core3fmt5write17h0123456789abcdefE", "sys_weak"],
            "weak ones too; neither the local helper nor the undefined call"
        );
        assert_eq!(members[1].defined, ["memcpy", "sys_not_the_kernels"]);
        assert!(super::members(b"!<arch>\nnot a member").is_err());
        assert!(super::members(b"plain text").unwrap_err().contains("not an ar archive"));
    }

    #[test]
    fn exports_are_the_entry_points_and_the_kernel_crates_syscalls() {
        let exports = exports(&members(&raw_kernel()).unwrap());
        let expected = ["_start", "__bss_start", "mcount", "runtime_entry", "sys_write", "sys_weak"];
        assert_eq!(exports, expected.iter().map(|s| s.to_string()).collect());
    }

    #[test]
    fn mangled_names_gain_a_path_segment_and_others_a_prefix() {
        assert_eq!(renamed("_ZN4core3fmt5write17h0123456789abcdefE"), "_ZN6hermit4core3fmt5write17h0123456789abcdefE");
        assert_eq!(renamed("memcpy"), "hermit_memcpy");
        assert_eq!(renamed("_R_not_legacy"), "hermit__R_not_legacy");
    }

    #[test]
    fn everything_but_the_exports_is_renamed_once() {
        let members = members(&raw_kernel()).unwrap();
        let renames = renames(&members, &exports(&members));
        let pairs: Vec<(&str, &str)> = renames.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(
            pairs,
            [
                ("_ZN4core3fmt5write17h0123456789abcdefE", "_ZN6hermit4core3fmt5write17h0123456789abcdefE"),
                ("memcpy", "hermit_memcpy"),
                ("sys_not_the_kernels", "hermit_sys_not_the_kernels"),
            ]
        );
        assert_eq!(
            redefine_syms_file(&renames).unwrap().lines().nth(1),
            Some("memcpy hermit_memcpy"),
            "one `old new` pair a line"
        );
        let spaced = BTreeMap::from([("a b".to_string(), "hermit_a b".to_string())]);
        assert!(redefine_syms_file(&spaced).unwrap_err().contains("white space"));
    }

    #[test]
    fn every_elf_member_is_marked_and_nothing_else_changes() {
        let raw = ar(&[("a.o", object(&["a"], &[])), ("notes.txt", b"not an object".to_vec())], &[]);
        let mut marked = raw.clone();
        assert_eq!(mark_hermit_osabi(&mut marked).unwrap(), 1);
        let changed: Vec<usize> = (0..raw.len()).filter(|&i| raw[i] != marked[i]).collect();
        assert_eq!(changed.len(), 1);
        let member = &marked[changed[0] - EI_OSABI..];
        assert!(member.starts_with(ELF_MAGIC) && member[EI_OSABI] == OSABI_HERMIT);
    }

    /// What objcopy and the marking make of `raw_kernel`, built directly.
    fn processed(index: &[&str]) -> Vec<u8> {
        let mut bytes = ar(
            &[
                (
                    KERNEL,
                    object(&["_start", "sys_write", "_ZN6hermit4core3fmt5write17h0123456789abcdefE"], &["sys_weak"]),
                ),
                (BUILTINS, object(&["hermit_memcpy", "hermit_sys_not_the_kernels"], &[])),
            ],
            index,
        );
        mark_hermit_osabi(&mut bytes).unwrap();
        bytes
    }

    const FULL_INDEX: &[&str] = &[
        "_start",
        "sys_write",
        "_ZN6hermit4core3fmt5write17h0123456789abcdefE",
        "sys_weak",
        "hermit_memcpy",
        "hermit_sys_not_the_kernels",
    ];

    #[test]
    fn a_processed_archive_passes_and_each_missed_step_is_named() {
        let members = members(&raw_kernel()).unwrap();
        let (exports, renames) = (exports(&members), renames(&members, &exports(&members)));
        check_processed(&processed(FULL_INDEX), &exports, &renames).unwrap();

        let err = check_processed(&processed(&FULL_INDEX[1..]), &exports, &renames).unwrap_err();
        assert_eq!(err, "the symbol index lacks _start");
        let mut unmarked = raw_kernel();
        assert!(check_processed(&unmarked, &exports, &renames).unwrap_err().contains("not marked as a Hermit object"));
        mark_hermit_osabi(&mut unmarked).unwrap();
        let err = check_processed(&unmarked, &exports, &renames).unwrap_err();
        assert!(err.contains("still defined under its old name"), "{err}");
        let more = BTreeMap::from([("absent".to_string(), "hermit_absent".to_string())]);
        assert!(check_processed(&processed(FULL_INDEX), &exports, &more).unwrap_err().contains("hermit_absent"));
        let mut more_exports = exports.clone();
        more_exports.insert("sys_other".to_string());
        let err = check_processed(&processed(FULL_INDEX), &more_exports, &renames).unwrap_err();
        assert_eq!(err, "the kernel's export sys_other is not defined");
    }
}
