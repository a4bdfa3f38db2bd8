//! Plugin ELF files synthesized with `object::write`, laid out as rust-lld
//! lays out a plugin (file offset = address; R, RX, RW segments on their
//! own pages), then broken one rule at a time, and fuzzed.

use super::*;
use object::write::elf::{FileHeader as OutHeader, ProgramHeader as OutPh, Rel, SectionHeader as OutSh, Sym, Writer};
use object::Endianness;
use plugins::abi::{self, Difference, Item};
use std::vec;
use std::vec::Vec;

mod fuzz;
mod signature;

const TEXT: u64 = 0x1000;
const DATA: u64 = 0x2000;
const DATA_FILE: u64 = 0x100;
const DATA_MEM: u64 = 0x200;
const DESCRIPTOR_SIZE: u64 = core::mem::size_of::<plugins::Descriptor>() as u64;
const PHDRS: usize = 64;
const PHDR_SIZE: usize = 56;

/// A plugin to synthesize; [`Spec::default`] is a valid one.
struct Spec {
    /// Undefined dynamic symbols 2.. (symbol 1 is the descriptor).
    imports: Vec<&'static [u8]>,
    relocs: Vec<Rel>,
    note_type: u32,
    note_abi: u64,
    /// The ABI items the note lists.
    note_items: Vec<Item>,
    note_text: &'static str,
    descriptor_name: &'static [u8],
    descriptor_value: u64,
    descriptor_size: u64,
    magic: [u8; 8],
    descriptor_abi: u64,
    reloc_section_type: u32,
    /// Section index the relocation table links to (`None`: `.dynsym`).
    reloc_link: Option<u32>,
    /// PT_LOAD copies of the RW header appended (for the count limit).
    extra_loads: usize,
}

fn rel(r_offset: u64, r_sym: u32, r_type: u32, r_addend: i64) -> Rel {
    Rel { r_offset, r_sym, r_type, r_addend }
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            imports: vec![b"mv_log", b"mv_print"],
            relocs: vec![
                rel(DATA + 16, 0, elf::R_X86_64_RELATIVE, TEXT as i64),
                rel(DATA + 24, 0, elf::R_X86_64_RELATIVE, TEXT as i64 + 8),
                rel(DATA + 0x80, 2, elf::R_X86_64_GLOB_DAT, 0),
                rel(DATA + 0x88, 3, elf::R_X86_64_JUMP_SLOT, 0),
                rel(DATA + 0x90, 2, elf::R_X86_64_64, 0x10),
                rel(DATA + 0x98, 1, elf::R_X86_64_64, 8),
                rel(DATA + 0xa0, 0, elf::R_X86_64_NONE, 0),
                // Into .bss, past the segment's file bytes.
                rel(DATA + 0x180, 0, elf::R_X86_64_RELATIVE, 0x42),
            ],
            note_type: meta::NOTE_TYPE,
            note_abi: plugins::ABI_FINGERPRINT,
            note_items: plugins::ITEMS.to_vec(),
            note_text: "name=test-plugin\nversion=1.2.3\nprovides=counter 16 1.0.0\nrequires=log 8 ^1.0\n",
            descriptor_name: plugins::DESCRIPTOR_SYMBOL.as_bytes(),
            descriptor_value: DATA,
            descriptor_size: DESCRIPTOR_SIZE,
            magic: plugins::DESCRIPTOR_MAGIC,
            descriptor_abi: plugins::ABI_FINGERPRINT,
            reloc_section_type: elf::SHT_RELA,
            reloc_link: None,
            extra_loads: 0,
        }
    }
}

fn note(spec: &Spec) -> Vec<u8> {
    let text = spec.note_text.as_bytes();
    let mut n = Vec::new();
    n.extend_from_slice(&(meta::NOTE_OWNER.len() as u32 + 1).to_le_bytes());
    n.extend_from_slice(&((12 + 8 * spec.note_items.len() + text.len()) as u32).to_le_bytes());
    n.extend_from_slice(&spec.note_type.to_le_bytes());
    n.extend_from_slice(b"modvisor\0\0\0\0");
    n.extend_from_slice(&spec.note_abi.to_le_bytes());
    n.extend_from_slice(&(spec.note_items.len() as u32).to_le_bytes());
    for item in &spec.note_items {
        n.extend_from_slice(&abi::name_hash(item.name).to_le_bytes());
        n.extend_from_slice(&item.hash.to_le_bytes());
    }
    n.extend_from_slice(text);
    n.resize(n.len().next_multiple_of(4), 0);
    n
}

fn build(spec: &Spec) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = Writer::new(Endianness::Little, true, &mut out);
    let note = note(spec);
    let mut data = vec![0u8; DATA_FILE as usize];
    data[..8].copy_from_slice(&spec.magic);
    data[8..16].copy_from_slice(&spec.descriptor_abi.to_le_bytes());

    w.reserve_file_header();
    w.reserve_program_headers(3 + spec.extra_loads as u32);
    let note_name = w.add_section_name(meta::NOTE_SECTION.as_bytes());
    let rela_name = w.add_section_name(b".rela.dyn");
    let text_name = w.add_section_name(b".text");
    let data_name = w.add_section_name(b".data");
    // Sections: 0 null, 1 note, 2 .dynsym, 3 .dynstr, 4 .rela.dyn, 5 .text,
    // 6 .data, 7 .shstrtab.
    w.reserve_null_section_index();
    w.reserve_section_index();
    let dynsym_index = w.reserve_dynsym_section_index();
    w.reserve_dynstr_section_index();
    w.reserve_section_index();
    w.reserve_section_index();
    let data_index = w.reserve_section_index();
    w.reserve_shstrtab_section_index();
    let descriptor_name = w.add_dynamic_string(spec.descriptor_name);
    let import_names: Vec<_> = spec.imports.iter().map(|n| w.add_dynamic_string(n)).collect();
    w.reserve_null_dynamic_symbol_index();
    for _ in 0..=spec.imports.len() {
        w.reserve_dynamic_symbol_index();
    }

    let note_at = w.reserve(note.len(), 4);
    let dynsym_at = w.reserve_dynsym();
    let dynstr_at = w.reserve_dynstr();
    let rela_at = w.reserve_relocations(spec.relocs.len(), true);
    let ro_end = w.reserved_len() as u64;
    w.reserve_until(TEXT as usize);
    w.reserve(16, 1);
    w.reserve_until(DATA as usize);
    w.reserve(DATA_FILE as usize, 8);
    w.reserve_shstrtab();
    w.reserve_section_headers();

    let (e_type, e_machine) = (elf::ET_DYN, elf::EM_X86_64);
    w.write_file_header(&OutHeader { os_abi: 0, abi_version: 0, e_type, e_machine, e_entry: 0, e_flags: 0 }).unwrap();
    w.write_align_program_headers();
    let load = |offset, filesz, memsz, flags| OutPh {
        p_type: elf::PT_LOAD,
        p_flags: flags,
        p_offset: offset,
        p_vaddr: offset,
        p_paddr: offset,
        p_filesz: filesz,
        p_memsz: memsz,
        p_align: PAGE_SIZE,
    };
    w.write_program_header(&load(0, ro_end, ro_end, elf::PF_R));
    w.write_program_header(&load(TEXT, 16, 16, elf::PF_R | elf::PF_X));
    for _ in 0..=spec.extra_loads {
        w.write_program_header(&load(DATA, DATA_FILE, DATA_MEM, elf::PF_R | elf::PF_W));
    }
    w.write_align(4);
    w.write(&note);
    w.write_null_dynamic_symbol();
    w.write_dynamic_symbol(&Sym {
        name: Some(descriptor_name),
        section: Some(data_index),
        st_info: (elf::STB_GLOBAL << 4) | elf::STT_OBJECT,
        st_other: 0,
        st_shndx: 0,
        st_value: spec.descriptor_value,
        st_size: spec.descriptor_size,
    });
    for name in import_names {
        w.write_dynamic_symbol(&Sym {
            name: Some(name),
            section: None,
            st_info: (elf::STB_GLOBAL << 4) | elf::STT_NOTYPE,
            st_other: 0,
            st_shndx: elf::SHN_UNDEF,
            st_value: 0,
            st_size: 0,
        });
    }
    w.write_dynstr();
    w.write_align_relocation();
    for r in &spec.relocs {
        w.write_relocation(true, r);
    }
    w.pad_until(TEXT as usize);
    w.write(&[0xcc; 16]);
    w.pad_until(DATA as usize);
    w.write(&data);
    w.write_shstrtab();

    w.write_null_section_header();
    let alloc = u64::from(elf::SHF_ALLOC);
    let section = |name, sh_type, sh_flags, at: usize, size: usize, sh_link, sh_entsize| OutSh {
        name: Some(name),
        sh_type,
        sh_flags,
        sh_addr: at as u64,
        sh_offset: at as u64,
        sh_size: size as u64,
        sh_link,
        sh_info: 0,
        sh_addralign: 4,
        sh_entsize,
    };
    w.write_section_header(&section(note_name, elf::SHT_NOTE, alloc, note_at, note.len(), 0, 0));
    w.write_dynsym_section_header(dynsym_at as u64, 1);
    w.write_dynstr_section_header(dynstr_at as u64);
    let link = spec.reloc_link.unwrap_or(dynsym_index.0);
    let rela_size = spec.relocs.len() * 24;
    w.write_section_header(&section(rela_name, spec.reloc_section_type, alloc, rela_at, rela_size, link, 24));
    let exec = alloc | u64::from(elf::SHF_EXECINSTR);
    w.write_section_header(&section(text_name, elf::SHT_PROGBITS, exec, TEXT as usize, 16, 0, 0));
    let write = alloc | u64::from(elf::SHF_WRITE);
    w.write_section_header(&section(data_name, elf::SHT_PROGBITS, write, DATA as usize, DATA_FILE as usize, 0, 0));
    w.write_shstrtab_section_header();
    out
}

fn valid() -> Vec<u8> {
    build(&Spec::default())
}

fn put(file: &mut [u8], at: usize, bytes: &[u8]) {
    file[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Sets a field of program header `index` (byte offset `field` in Phdr64).
fn set_phdr(file: &mut [u8], index: usize, field: usize, value: u64) {
    let at = PHDRS + index * PHDR_SIZE + field;
    if field == 4 {
        put(file, at, &(value as u32).to_le_bytes());
    } else {
        put(file, at, &value.to_le_bytes());
    }
}

const P_FLAGS: usize = 4;
const P_OFFSET: usize = 8;
const P_VADDR: usize = 16;
const P_FILESZ: usize = 32;
const P_MEMSZ: usize = 40;

fn malformed(file: &[u8]) -> Malformed {
    match Plan::parse(file) {
        Err(Error::Malformed(m)) => m,
        other => panic!("expected a malformed-ELF error, got {other:?}"),
    }
}

fn resolver(name: &str) -> Option<u64> {
    match name {
        "mv_log" => Some(0x1111_0000),
        "mv_print" => Some(0x2222_0000),
        _ => None,
    }
}

fn word(image: &[u8], at: u64) -> u64 {
    u64::from_le_bytes(image[at as usize..at as usize + 8].try_into().unwrap())
}

#[test]
fn a_valid_plugin_gives_its_plan() {
    let file = valid();
    let plan = Plan::parse(&file).unwrap();
    assert_eq!(plan.size, 0x3000);
    let prot: Vec<_> = plan.segments.iter().map(|s| (s.offset, s.pages(), s.protection)).collect();
    assert_eq!(
        prot,
        [
            (0, (0, 0x1000), Protection::ReadOnly),
            (TEXT, (0x1000, 0x2000), Protection::ReadExecute),
            (DATA, (0x2000, 0x3000), Protection::ReadWrite),
        ]
    );
    assert_eq!((plan.metadata.name, plan.metadata.version), ("test-plugin", "1.2.3"));
    assert_eq!(plan.descriptor, DATA);
    let owned = OwnedMetadata::from(&plan.metadata);
    let link = |interface: &str, version: &str, table_size| OwnedLink {
        interface: interface.into(),
        version: version.into(),
        table_size,
    };
    assert_eq!(owned.provides, [link("counter", "1.0.0", 16)]);
    assert_eq!(owned.requires, [link("log", "^1.0", 8)]);
    assert_eq!(owned.abi, plugins::ABI_FINGERPRINT);
}

#[test]
fn regions_cover_the_image_and_gaps_are_read_only() {
    // The RW segment one page higher: a page of gap below it.
    let spec = Spec { relocs: vec![], descriptor_value: DATA + 0x1000, ..Spec::default() };
    let mut file = build(&spec);
    set_phdr(&mut file, 2, P_VADDR, DATA + 0x1000);
    let plan = Plan::parse(&file).unwrap();
    let r: Vec<_> = plan.regions().iter().map(|r| (r.offset, r.len, r.protection)).collect();
    assert_eq!(
        r,
        [
            (0, 0x1000, Protection::ReadOnly),
            (0x1000, 0x1000, Protection::ReadExecute),
            (0x2000, 0x1000, Protection::ReadOnly),
            (0x3000, 0x1000, Protection::ReadWrite),
        ]
    );
    assert_eq!(plan.size, 0x4000);
}

#[test]
fn layout_copies_file_bytes_and_zeroes_the_rest() {
    let file = valid();
    let plan = Plan::parse(&file).unwrap();
    let mut image = vec![0xaa; plan.size as usize];
    plan.lay_out(&mut image);
    assert_eq!(&image[..0x40], &file[..0x40]);
    assert_eq!(&image[TEXT as usize..TEXT as usize + 16], &[0xcc; 16]);
    assert!(image[TEXT as usize + 16..DATA as usize].iter().all(|b| *b == 0));
    assert_eq!(&image[DATA as usize..DATA as usize + 8], b"MVPLUGIN");
    assert!(image[(DATA + DATA_FILE) as usize..].iter().all(|b| *b == 0), ".bss and the page tail are zero");
}

#[test]
fn relocation_arithmetic() {
    let file = valid();
    let plan = Plan::parse(&file).unwrap();
    let mut image = vec![0; plan.size as usize];
    plan.lay_out(&mut image);
    let base = 0x4000_0000;
    plan.relocate(&mut image, base, resolver).unwrap();
    assert_eq!(word(&image, DATA + 16), base + TEXT, "RELATIVE: B + A");
    assert_eq!(word(&image, DATA + 24), base + TEXT + 8, "RELATIVE: B + A");
    assert_eq!(word(&image, DATA + 0x80), 0x1111_0000, "GLOB_DAT: S");
    assert_eq!(word(&image, DATA + 0x88), 0x2222_0000, "JUMP_SLOT: S");
    assert_eq!(word(&image, DATA + 0x90), 0x1111_0010, "64: S + A, imported");
    assert_eq!(word(&image, DATA + 0x98), base + DATA + 8, "64: S + A, defined in the plugin");
    assert_eq!(word(&image, DATA + 0xa0), 0, "NONE writes nothing");
    assert_eq!(word(&image, DATA + 0x180), base + 0x42, "relocation in .bss");
    plan.check_descriptor(&image).unwrap();
}

#[test]
fn negative_addends_and_wrapping() {
    let spec = Spec {
        relocs: vec![rel(DATA + 0x80, 2, elf::R_X86_64_64, -0x10), rel(DATA + 0x88, 0, elf::R_X86_64_RELATIVE, -1)],
        ..Spec::default()
    };
    let file = build(&spec);
    let plan = Plan::parse(&file).unwrap();
    let mut image = vec![0; plan.size as usize];
    plan.lay_out(&mut image);
    plan.relocate(&mut image, 0, resolver).unwrap();
    assert_eq!(word(&image, DATA + 0x80), 0x1110_fff0);
    assert_eq!(word(&image, DATA + 0x88), u64::MAX);
}

#[test]
fn missing_imports_are_all_named_once_and_nothing_is_written() {
    let spec = Spec {
        imports: vec![b"mv_log", b"mv_print", b"mv_frobnicate", b"memcpy"],
        relocs: vec![
            rel(DATA + 0x80, 3, elf::R_X86_64_GLOB_DAT, 0),
            rel(DATA + 0x88, 4, elf::R_X86_64_GLOB_DAT, 0),
            rel(DATA + 0x90, 4, elf::R_X86_64_64, 8),
            rel(DATA + 0x98, 5, elf::R_X86_64_JUMP_SLOT, 0),
            rel(DATA + 0xa0, 0, elf::R_X86_64_RELATIVE, 0x10),
        ],
        ..Spec::default()
    };
    let file = build(&spec);
    let plan = Plan::parse(&file).unwrap();
    let mut image = vec![0; plan.size as usize];
    plan.lay_out(&mut image);
    let before = image.clone();
    let only_log = |n: &str| (n == "mv_log").then_some(0x1000);
    let e = plan.relocate(&mut image, 0x10_0000, only_log).unwrap_err();
    assert_eq!(e, Error::MissingImports(vec!["mv_print".into(), "mv_frobnicate".into(), "memcpy".into()]));
    assert!(e.to_string().contains("mv_print, mv_frobnicate, memcpy"), "{e}");
    assert!(image == before, "a failed relocation must leave the image untouched");
}

#[test]
fn unsupported_relocations_are_refused_by_name() {
    for (r_type, name) in [
        (elf::R_X86_64_COPY, "R_X86_64_COPY (5)"),
        (elf::R_X86_64_PC32, "R_X86_64_PC32 (2)"),
        (elf::R_X86_64_TPOFF64, "R_X86_64_TPOFF64 (18)"),
        (elf::R_X86_64_IRELATIVE, "R_X86_64_IRELATIVE (37)"),
        (elf::R_X86_64_32, "R_X86_64_32 (10)"),
        (99, "unknown type 99"),
        (39, "unknown type 39"),
    ] {
        let spec = Spec { relocs: vec![rel(DATA + 0x80, 2, r_type, 0)], ..Spec::default() };
        let e = Plan::parse(&build(&spec)).unwrap_err();
        assert_eq!(e, Error::UnsupportedRelocation { r_type, offset: DATA + 0x80 });
        let text = e.to_string();
        assert!(text.contains(name) && text.contains("0x2080"), "{text}");
    }
}

#[test]
fn bad_headers_are_refused() {
    assert_eq!(malformed(b""), Malformed::NotElf);
    assert_eq!(malformed(b"\x7fEL"), Malformed::NotElf);
    assert_eq!(malformed(b"MZ\x90\x00\x03\x00\x00\x00"), Malformed::NotElf);
    let mut f = valid();
    f[4] = elf::ELFCLASS32;
    assert_eq!(malformed(&f), Malformed::NotElf64);
    let mut f = valid();
    f[5] = elf::ELFDATA2MSB;
    assert_eq!(malformed(&f), Malformed::NotLittleEndian);
    let mut f = valid();
    put(&mut f, 18, &elf::EM_AARCH64.to_le_bytes());
    assert_eq!(malformed(&f), Malformed::Machine(elf::EM_AARCH64));
    let mut f = valid();
    put(&mut f, 16, &elf::ET_EXEC.to_le_bytes());
    assert_eq!(malformed(&f), Malformed::Type(elf::ET_EXEC));
    let mut f = valid();
    put(&mut f, 32, &u64::MAX.to_le_bytes()); // e_phoff
    assert!(matches!(malformed(&f), Malformed::Structure(_)));
    let mut f = valid();
    let near_end = f.len() as u64 - 8;
    put(&mut f, 40, &near_end.to_le_bytes()); // e_shoff
    assert!(matches!(malformed(&f), Malformed::Structure(_)));
}

#[test]
fn bad_segments_are_refused() {
    let case = |index, field, value| {
        let mut f = valid();
        set_phdr(&mut f, index, field, value);
        malformed(&f)
    };
    let len = valid().len() as u64;
    assert_eq!(case(1, P_MEMSZ, 8), Malformed::FileSizeAboveMemSize { index: 1, file_size: 16, mem_size: 8 });
    let mut f = valid();
    set_phdr(&mut f, 1, P_FILESZ, 0);
    set_phdr(&mut f, 1, P_MEMSZ, 0);
    assert_eq!(malformed(&f), Malformed::EmptySegment { index: 1 });
    assert_eq!(
        case(2, P_OFFSET, u64::MAX - 4),
        Malformed::SegmentOutsideFile { index: 2, offset: u64::MAX - 4, size: DATA_FILE, file_len: len }
    );
    assert_eq!(
        case(2, P_OFFSET, len - 8),
        Malformed::SegmentOutsideFile { index: 2, offset: len - 8, size: DATA_FILE, file_len: len }
    );
    assert_eq!(case(2, P_VADDR, u64::MAX - 0x10), Malformed::AddressOverflow { index: 2 });
    assert_eq!(case(2, P_MEMSZ, u64::MAX), Malformed::AddressOverflow { index: 2 });
    let rwx = u64::from(elf::PF_R | elf::PF_W | elf::PF_X);
    assert_eq!(case(2, P_FLAGS, rwx), Malformed::WritableAndExecutable { index: 2 });
    assert_eq!(case(1, P_FLAGS, u64::from(elf::PF_W | elf::PF_X)), Malformed::WritableAndExecutable { index: 1 });
    // Sharing the R segment's page, and out of order.
    assert_eq!(case(1, P_VADDR, 0x800), Malformed::Overlap { index: 1, start: 0, previous_end: 0x1000 });
    assert_eq!(case(2, P_VADDR, TEXT), Malformed::Overlap { index: 2, start: TEXT, previous_end: 0x2000 });
    assert_eq!(case(2, P_MEMSZ, MAX_IMAGE_SIZE), Malformed::TooLarge { size: MAX_IMAGE_SIZE + DATA });
    let mut f = valid();
    for i in 0..3 {
        set_phdr(&mut f, i, 0, u64::from(elf::PT_NOTE) | (u64::from(elf::PF_R) << 32));
    }
    assert_eq!(malformed(&f), Malformed::NoLoadSegments);
    let many = build(&Spec { extra_loads: MAX_SEGMENTS - 2, ..Spec::default() });
    assert_eq!(malformed(&many), Malformed::TooManySegments(MAX_SEGMENTS + 1));
}

#[test]
fn bad_metadata_is_refused() {
    assert_eq!(malformed(&build(&Spec { note_type: 1, ..Spec::default() })), Malformed::NoMetadata);
    let f = build(&Spec { note_text: "version=1.0.0\n", ..Spec::default() });
    assert_eq!(malformed(&f), Malformed::Metadata("metadata has no `name=` line".into()));
    // The fingerprint changed, the items not (as in bad-abi.mvp).
    let e = Plan::parse(&build(&Spec { note_abi: 0x1234, ..Spec::default() })).unwrap_err();
    assert_eq!(e, Error::AbiMismatch { plugin: 0x1234, loader: plugins::ABI_FINGERPRINT, differences: vec![] });
    let text = e.to_string();
    assert!(text.contains("0000000000001234") && text.contains(&std::format!("{:016x}", plugins::ABI_FINGERPRINT)));
    assert!(text.contains("the note was changed after the build"), "{text}");
    // A note section renamed away.
    let mut f = valid();
    let at = f.windows(14).rposition(|w| w == b".note.modvisor").unwrap();
    f[at + 1] = b'N';
    assert_eq!(malformed(&f), Malformed::NoMetadata);
}

/// A plugin built before a change of the ABI: its note lists the items as
/// they were then, and its fingerprint is theirs.
fn built_before(changed: &[Item]) -> Spec {
    let items: Vec<Item> =
        plugins::ITEMS.iter().map(|i| *changed.iter().find(|c| c.name == i.name).unwrap_or(i)).collect();
    Spec { note_abi: abi::fingerprint(&items), note_items: items, ..Spec::default() }
}

#[test]
fn a_plugin_built_before_an_abi_change_is_refused_naming_the_items() {
    // `CpuInfo` before it had `online`, as `boundary_types!` measured it.
    let old_info = abi::type_item(
        "type CpuInfo",
        8,
        4,
        &[abi::Field { name: "apic_id", offset: 0, ty: "u32" }, abi::Field { name: "class", offset: 4, ty: "u32" }],
    );
    let spec = built_before(&[old_info]);
    let plugin = spec.note_abi;
    let e = Plan::parse(&build(&spec)).unwrap_err();
    let differences = vec![Difference::Differs("type CpuInfo")];
    assert_eq!(e, Error::AbiMismatch { plugin, loader: plugins::ABI_FINGERPRINT, differences });
    let text = e.to_string();
    assert!(text.contains(": type CpuInfo differs; rebuild the plugin"), "{text}");

    // And `mv_cpu_info` when it took a u64, with `CpuInfo` as above.
    let old_export = abi::text_item("export mv_cpu_info", "fn mv_cpu_info(cpu: u64, info: *mut CpuInfo) -> i32");
    let text = Plan::parse(&build(&built_before(&[old_info, old_export]))).unwrap_err().to_string();
    assert!(text.contains(": type CpuInfo differs, export mv_cpu_info differs; "), "{text}");
}

#[test]
fn bad_descriptors_are_refused() {
    let f = build(&Spec { descriptor_name: b"SOMETHING_ELSE", ..Spec::default() });
    assert_eq!(malformed(&f), Malformed::NoDescriptor);
    let f = build(&Spec { descriptor_size: 16, ..Spec::default() });
    assert_eq!(malformed(&f), Malformed::DescriptorTooSmall { size: 16 });
    let f = build(&Spec { descriptor_value: DATA + 4, ..Spec::default() });
    assert_eq!(malformed(&f), Malformed::DescriptorPlacement { address: DATA + 4 });
    let f = build(&Spec { descriptor_value: DATA + DATA_MEM - 8, ..Spec::default() });
    assert_eq!(malformed(&f), Malformed::DescriptorPlacement { address: DATA + DATA_MEM - 8 });
    let f = build(&Spec { descriptor_value: 0x9000, ..Spec::default() });
    assert_eq!(malformed(&f), Malformed::DescriptorPlacement { address: 0x9000 });

    let relocated = |spec: &Spec| {
        let file = build(spec);
        let plan = Plan::parse(&file).unwrap();
        let mut image = vec![0; plan.size as usize];
        plan.lay_out(&mut image);
        plan.relocate(&mut image, 0x20_0000, resolver).unwrap();
        plan.check_descriptor(&image)
    };
    let spec = Spec { magic: *b"NOTMAGIC", ..Spec::default() };
    assert_eq!(relocated(&spec), Err(Error::DescriptorMagic { found: *b"NOTMAGIC" }));
    assert_eq!(
        relocated(&Spec { descriptor_abi: 7, ..Spec::default() }),
        Err(Error::DescriptorAbi { plugin: 7, loader: plugins::ABI_FINGERPRINT })
    );
    let spec = Spec { relocs: vec![rel(DATA + 16, 0, elf::R_X86_64_RELATIVE, TEXT as i64)], ..Spec::default() };
    assert_eq!(relocated(&spec), Err(Error::DescriptorNull { field: "fini" }));
    // The ABI word is what a relocation leaves there, not the file's bytes.
    let spec = Spec { relocs: vec![rel(DATA + 8, 0, elf::R_X86_64_RELATIVE, 0)], ..Spec::default() };
    assert_eq!(relocated(&spec), Err(Error::DescriptorAbi { plugin: 0x20_0000, loader: plugins::ABI_FINGERPRINT }));
}

#[test]
fn bad_relocation_tables_are_refused() {
    let f = build(&Spec { reloc_section_type: elf::SHT_REL, ..Spec::default() });
    assert_eq!(malformed(&f), Malformed::RelocationFormat { section_type: elf::SHT_REL });
    let f = build(&Spec { reloc_section_type: elf::SHT_RELR, ..Spec::default() });
    assert_eq!(malformed(&f), Malformed::RelocationFormat { section_type: elf::SHT_RELR });
    let f = build(&Spec { reloc_link: Some(1), ..Spec::default() });
    assert_eq!(malformed(&f), Malformed::RelocationSymbols { section: 4 });
    for at in [TEXT + 0x800, TEXT + 12, 0x9000, u64::MAX - 3, DATA + DATA_MEM - 4] {
        let f = build(&Spec { relocs: vec![rel(at, 0, elf::R_X86_64_RELATIVE, 0)], ..Spec::default() });
        assert_eq!(malformed(&f), Malformed::RelocationOutsideSegments { offset: at });
    }
    let f = build(&Spec { relocs: vec![rel(DATA + 0x80, 40, elf::R_X86_64_GLOB_DAT, 0)], ..Spec::default() });
    assert_eq!(malformed(&f), Malformed::SymbolIndex { index: 40 });
    let spec = Spec {
        imports: vec![b"mv_log", b"\xff\xfe"],
        relocs: vec![rel(DATA + 0x80, 3, elf::R_X86_64_GLOB_DAT, 0)],
        ..Spec::default()
    };
    assert_eq!(malformed(&build(&spec)), Malformed::SymbolName { index: 3 });
}
