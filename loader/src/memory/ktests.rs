//! The `mem` suite: frames, heap, page-table protections and stacks, on the
//! live system. Rights are checked by reading the live page tables, and
//! again by accesses that must fault, caught with `cpu::probe`.

// `Failure` is a fixed buffer on purpose (reporting must work with the heap
// exhausted), and every test returns it.

use super::{
    alloc_frames, for_each_mapping, free_frames, image_sections, is_guard_page, protect, stats, translate, Error, Leaf,
    Protection, Stack,
};
use crate::ktest::{Failure, Test};
use crate::{check, check_eq};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use loader_core::memory::frames::{self, PAGE_SIZE};
use loader_core::memory::layout::{LARGE_PAGE_SIZE, TRAMPOLINE_CODE, TRAMPOLINE_DATA};
use loader_core::memory::stacks;

crate::suite!(SUITE_MEM, "mem", TESTS);
static TESTS: &[Test] = &[
    Test { name: "frames-alloc-free", run: frames_alloc_free },
    Test { name: "frames-contiguous-aligned", run: frames_contiguous_aligned },
    Test { name: "frames-exhaustion", run: frames_exhaustion },
    Test { name: "heap-alloc-free", run: heap_alloc_free },
    Test { name: "heap-exhaustion", run: heap_exhaustion },
    Test { name: "w-xor-x", run: w_xor_x },
    Test { name: "protect-splits-large-page", run: protect_splits_large_page },
    Test { name: "protect-trampoline", run: protect_trampoline },
    Test { name: "protect-refusals", run: protect_refusals },
    Test { name: "stack-guard-page", run: stack_guard_page },
    Test { name: "stack-returns-memory", run: stack_returns_memory },
    Test { name: "boot-cpu-on-guarded-stack", run: boot_cpu_on_guarded_stack },
    Test { name: "protections-fault-as-mapped", run: protections_fault_as_mapped },
];

/// Turns a memory error into a test failure saying what was attempted.
fn ok<T>(r: Result<T, Error>, what: &str) -> Result<T, Failure> {
    r.map_err(|e| Failure::new(format_args!("{what}: {e}")))
}

/// The live translation of `addr`, or a failure if it is not mapped.
fn leaf(addr: u64) -> Result<Leaf, Failure> {
    match ok(translate(addr), "translate")? {
        Some(l) => Ok(l),
        None => Err(Failure::new(format_args!("{addr:#x} is not mapped"))),
    }
}

fn write_u64(addr: u64, v: u64) {
    // SAFETY: callers pass 8-byte aligned addresses in memory they own
    // (allocated frames, their own stacks, the trampoline page).
    unsafe { core::ptr::write_volatile(addr as *mut u64, v) }
}

fn read_u64(addr: u64) -> u64 {
    // SAFETY: as for `write_u64`.
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}

fn frames_alloc_free() -> Result<(), Failure> {
    let before = stats();
    check!(before.frames_total > 0 && before.frames_free <= before.frames_total, "counters: {before:?}");
    let a = ok(alloc_frames(1, 1), "alloc 1 frame")?;
    check!(a % PAGE_SIZE == 0 && a >= 0x10_0000, "frame at {a:#x}");
    check_eq!(stats().frames_free, before.frames_free - 1, "free frames after allocating one");
    write_u64(a, 0x5a5a_1234);
    check_eq!(read_u64(a), 0x5a5a_1234, "the frame is identity-mapped RAM");
    ok(free_frames(a, 1), "free")?;
    check_eq!(stats(), before, "counters after free");
    check_eq!(free_frames(a, 1), Err(Error::Frames(frames::Error::NotAllocated { addr: a })), "double free");
    check!(
        matches!(free_frames(0x8000, 1), Err(Error::Frames(frames::Error::NotManaged { .. }))),
        "freeing the never-allocated trampoline page must be refused"
    );
    let image = image_sections().start;
    check!(
        matches!(free_frames(image, 1), Err(Error::Frames(frames::Error::NotManaged { .. }))),
        "freeing the loader image must be refused"
    );
    check_eq!(stats(), before, "counters after refused frees");
    Ok(())
}

fn frames_contiguous_aligned() -> Result<(), Failure> {
    let before = stats();
    let big = ok(alloc_frames(600, 512), "alloc 600 frames aligned to 2 MiB")?;
    check!(big % LARGE_PAGE_SIZE == 0, "{big:#x} is not 2 MiB aligned");
    let small = ok(alloc_frames(3, 8), "alloc 3 frames aligned to 32 KiB")?;
    check!(small % (8 * PAGE_SIZE) == 0, "{small:#x} is not 32 KiB aligned");
    check!(small + 3 * PAGE_SIZE <= big || big + 600 * PAGE_SIZE <= small, "runs overlap");
    check_eq!(stats().frames_free, before.frames_free - 603, "free frames");
    for i in 0..600 {
        write_u64(big + i * PAGE_SIZE, i);
    }
    for i in 0..600 {
        check_eq!(read_u64(big + i * PAGE_SIZE), i, "frame {i} of the run");
    }
    ok(free_frames(big, 600), "free the 2 MiB-aligned run")?;
    ok(free_frames(small, 3), "free the 32 KiB-aligned run")?;
    check_eq!(stats(), before, "counters after free");
    Ok(())
}

fn frames_exhaustion() -> Result<(), Failure> {
    let before = stats();
    // Take everything in runs as large as the allocator still has.
    let mut runs = [(0u64, 0u64); 512];
    let mut n = 0;
    let mut want = before.frames_free;
    let mut result = Ok(());
    while stats().frames_free > 0 {
        match alloc_frames(want, 1) {
            Ok(a) if n == runs.len() => {
                let too_many = Failure::new(format_args!("free memory is in more than {} runs", runs.len()));
                result = ok(free_frames(a, want), "free").and(Err(too_many));
                break;
            }
            Ok(a) => {
                runs[n] = (a, want);
                n += 1;
                want = stats().frames_free.max(1);
            }
            Err(Error::Frames(frames::Error::OutOfMemory { .. })) => want = (want / 2).max(1),
            Err(e) => {
                result = Err(Failure::new(format_args!("alloc {want} frames: {e}")));
                break;
            }
        }
    }
    if result.is_ok() {
        result = exhausted_frames_are_an_error();
    }
    // Leave exactly three frames free: a stack that needs more must undo
    // the pages it already mapped.
    if result.is_ok() {
        result = match runs[..n].iter().position(|r| r.1 >= 3) {
            Some(i) => {
                let (a, count) = runs[i];
                runs[i] = (a + 3 * PAGE_SIZE, count - 3);
                ok(free_frames(a, 3), "free 3 frames").and_then(|()| three_frames_left())
            }
            None => Err(Failure::new(format_args!("no allocated run has 3 frames"))),
        };
    }
    // Give everything back whatever happened, then look at the counters.
    for &(a, count) in runs[..n].iter().filter(|r| r.1 > 0) {
        ok(free_frames(a, count), "free")?;
    }
    result?;
    check_eq!(stats(), before, "counters after freeing everything");
    Ok(())
}

/// With no frame left: allocations fail cleanly and change nothing.
fn exhausted_frames_are_an_error() -> Result<(), Failure> {
    let empty = stats();
    check_eq!(empty.frames_free, 0, "free frames");
    check_eq!(alloc_frames(1, 1), Err(Error::Frames(frames::Error::OutOfMemory { requested: 1 })), "alloc");
    check!(
        matches!(Stack::new(2), Err(Error::Frames(frames::Error::OutOfMemory { .. }))),
        "a stack without frames must fail with out-of-memory"
    );
    check_eq!(stats(), empty, "counters after failed allocations");
    Ok(())
}

/// A 4-page stack needs 5 frames (with its page table): it maps two pages,
/// fails on the third and unmaps them again. A 2-page stack fits exactly.
fn three_frames_left() -> Result<(), Failure> {
    check_eq!(stats().frames_free, 3, "free frames");
    check!(
        matches!(Stack::new(4), Err(Error::Frames(frames::Error::OutOfMemory { .. }))),
        "a stack larger than free memory must fail with out-of-memory"
    );
    check_eq!(stats().frames_free, 3, "free frames after a stack failed half-way");
    let s = ok(Stack::new(2), "a stack that fits exactly")?;
    check_eq!(stats().frames_free, 0, "free frames with the stack");
    drop(s);
    check_eq!(stats().frames_free, 3, "free frames after dropping the stack");
    Ok(())
}

fn heap_alloc_free() -> Result<(), Failure> {
    let before = stats();
    check!(before.heap_bytes >= 2 << 20 && before.heap_bytes <= 32 << 20, "heap size {}", before.heap_bytes);
    let mut v: Vec<u64> = Vec::new();
    for i in 0..20_000 {
        v.push(i);
    }
    let b = Box::new([7u8; 5000]);
    check!(stats().heap_used >= before.heap_used + 160_000 + 5000, "heap in use: {:?}", stats());
    check_eq!(v.iter().sum::<u64>(), 20_000 * 19_999 / 2, "vector contents");
    check!(b.iter().all(|x| *x == 7), "box contents");
    drop(v);
    drop(b);
    check_eq!(stats().heap_used, before.heap_used, "heap in use after drop");
    Ok(())
}

fn heap_exhaustion() -> Result<(), Failure> {
    let before = stats();
    let mut v: Vec<u8> = Vec::new();
    check!(v.try_reserve(before.heap_bytes as usize + 1).is_err(), "reserving more than the heap succeeded");
    // Fill the heap: chunks of 1/256 of it, halving the size on failure.
    const MAX_CHUNKS: usize = 320;
    let mut chunks: [Option<Vec<u8>>; MAX_CHUNKS] = [const { None }; MAX_CHUNKS];
    let mut n = 0;
    let mut size = (before.heap_bytes / 256) as usize;
    while size >= 16 {
        let mut c = Vec::new();
        if c.try_reserve_exact(size).is_err() {
            size /= 2;
            continue;
        }
        check!(n < MAX_CHUNKS, "the heap took more than {MAX_CHUNKS} chunks");
        chunks[n] = Some(c);
        n += 1;
    }
    let full = stats();
    check!(full.heap_bytes - full.heap_used < 4096, "the heap is not full: {full:?}");
    check!(v.try_reserve(64).is_err(), "a 64-byte reservation succeeded in a full heap");
    drop(chunks);
    check_eq!(stats().heap_used, before.heap_used, "heap in use after freeing every chunk");
    Ok(())
}

/// Written at run time, so it lives in .data (and one in .bss).
static DATA_PROBE: AtomicU64 = AtomicU64::new(1);
static BSS_PROBE: AtomicU64 = AtomicU64::new(0);
/// Immutable, so it lives in .rodata.
static RODATA_PROBE: [u64; 2] = [0x1234, 0x5678];

fn w_xor_x() -> Result<(), Failure> {
    use x86_64::registers::control::{Cr0, Cr0Flags};
    use x86_64::registers::model_specific::{Efer, EferFlags};
    check!(Efer::read().contains(EferFlags::NO_EXECUTE_ENABLE), "EFER.NXE is off");
    check!(Cr0::read().contains(Cr0Flags::WRITE_PROTECT), "CR0.WP is off");

    let img = image_sections();
    let text = w_xor_x as *const () as u64;
    let rodata = &raw const RODATA_PROBE as u64;
    DATA_PROBE.fetch_add(BSS_PROBE.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
    let data = &raw const DATA_PROBE as u64;
    let bss = &raw const BSS_PROBE as u64;
    check!((img.text_start..img.text_end).contains(&text), "test code at {text:#x} is outside .text");
    check!((img.rodata_start..img.rodata_end).contains(&rodata), "{rodata:#x} is outside .rodata");
    check!(
        (img.data_start..img.end).contains(&data) && (img.data_start..img.end).contains(&bss),
        "probe outside .data/.bss"
    );

    let expect = |addr: u64, prot: Protection, what: &str| -> Result<(), Failure> {
        let l = leaf(addr)?;
        check_eq!(l.protection(), Some(prot), "{what} at {addr:#x}");
        Ok(())
    };
    expect(text, Protection::ReadExecute, ".text")?;
    expect(img.start, Protection::ReadExecute, ".boot")?;
    expect(rodata, Protection::ReadOnly, ".rodata")?;
    expect(data, Protection::ReadWrite, ".data")?;
    expect(bss, Protection::ReadWrite, ".bss")?;
    expect(TRAMPOLINE_CODE, Protection::ReadExecute, "trampoline code")?;
    expect(TRAMPOLINE_DATA, Protection::ReadWrite, "trampoline data")?;
    expect(0xfee0_0000, Protection::ReadWrite, "LAPIC")?;
    expect(0xfec0_0000, Protection::ReadWrite, "IOAPIC")?;
    check_eq!(ok(translate(0), "translate")?, None, "page 0 must not be mapped");
    check_eq!(ok(translate(0xfff), "translate")?, None, "page 0 must not be mapped");

    // Every page of the image, section by section, identity-mapped. Where
    // sections meet the pages are 4 KiB; `.data`/`.bss` share a region with
    // the read-write memory after the image, so a whole aligned 2 MiB of
    // them is one large page.
    for addr in (img.start..img.end).step_by(PAGE_SIZE as usize) {
        let want = if addr < img.text_end {
            Protection::ReadExecute
        } else if addr < img.rodata_end {
            Protection::ReadOnly
        } else {
            Protection::ReadWrite
        };
        let l = leaf(addr)?;
        check_eq!(l.protection(), Some(want), "image page {addr:#x}");
        check!(
            l.size == PAGE_SIZE || (l.size == LARGE_PAGE_SIZE && want == Protection::ReadWrite),
            "image page {addr:#x} is in a {:#x}-byte page",
            l.size
        );
        check!(
            l.phys == l.virt && (l.virt..l.virt + l.size).contains(&addr),
            "image page {addr:#x} is not identity-mapped ({:#x} -> {:#x})",
            l.virt,
            l.phys
        );
    }

    // Nothing anywhere is writable and executable, not even through a
    // second mapping of an executable frame.
    let mut code: Vec<(u64, u64)> = Vec::new();
    let (mut wx, mut first_wx) = (0u64, 0u64);
    ok(
        for_each_mapping(|l| {
            if l.executable {
                code.push((l.phys, l.phys + l.size));
            }
            if l.writable && l.executable {
                first_wx = if wx == 0 { l.virt } else { first_wx };
                wx += 1;
            }
        }),
        "walk",
    )?;
    check_eq!(wx, 0, "writable+executable mappings (the first at {first_wx:#x})");
    check!(!code.is_empty(), "no executable mapping found");
    let (mut aliases, mut first_alias) = (0u64, 0u64);
    ok(
        for_each_mapping(|l| {
            if l.writable && code.iter().any(|&(s, e)| l.phys < e && s < l.phys + l.size) {
                first_alias = if aliases == 0 { l.virt } else { first_alias };
                aliases += 1;
            }
        }),
        "walk",
    )?;
    check_eq!(aliases, 0, "writable mappings of executable frames (the first at {first_alias:#x})");
    Ok(())
}

fn protect_splits_large_page() -> Result<(), Failure> {
    let before = stats();
    let run = ok(alloc_frames(512, 512), "alloc a 2 MiB-aligned run")?;
    let was_large = leaf(run)?.size == LARGE_PAGE_SIZE;
    let page = run + PAGE_SIZE;
    ok(protect(page, PAGE_SIZE, Protection::ReadOnly), "protect read-only")?;
    let l = leaf(page)?;
    check_eq!((l.protection(), l.size, l.phys), (Some(Protection::ReadOnly), PAGE_SIZE, page), "protected page");
    for neighbour in [run, page + PAGE_SIZE, run + LARGE_PAGE_SIZE - PAGE_SIZE] {
        let n = leaf(neighbour)?;
        check_eq!((n.protection(), n.size, n.phys), (Some(Protection::ReadWrite), PAGE_SIZE, neighbour), "neighbour");
    }
    ok(protect(page, PAGE_SIZE, Protection::ReadExecute), "protect read-execute")?;
    check_eq!(leaf(page)?.protection(), Some(Protection::ReadExecute), "after ReadExecute");
    ok(protect(run, 2 * PAGE_SIZE, Protection::ReadWrite), "protect read-write")?;
    check_eq!(leaf(page)?.protection(), Some(Protection::ReadWrite), "after ReadWrite");
    write_u64(page, 42);
    ok(free_frames(run, 512), "free")?;
    // The split stays, and so does the page table it needed.
    let table = u64::from(was_large);
    check_eq!(stats().frames_free, before.frames_free - table, "free frames (one page table kept)");
    Ok(())
}

/// What the SMP layer will do: make the trampoline writable, write code,
/// make it executable again.
fn protect_trampoline() -> Result<(), Failure> {
    ok(protect(TRAMPOLINE_CODE, PAGE_SIZE, Protection::ReadWrite), "trampoline read-write")?;
    check_eq!(leaf(TRAMPOLINE_CODE)?.protection(), Some(Protection::ReadWrite), "trampoline while writing");
    let old = read_u64(TRAMPOLINE_CODE);
    write_u64(TRAMPOLINE_CODE, 0xf4f4_f4f4_f4f4_f4f4);
    check_eq!(read_u64(TRAMPOLINE_CODE), 0xf4f4_f4f4_f4f4_f4f4, "trampoline write");
    write_u64(TRAMPOLINE_CODE, old);
    ok(protect(TRAMPOLINE_CODE, PAGE_SIZE, Protection::ReadExecute), "trampoline read-execute")?;
    check_eq!(leaf(TRAMPOLINE_CODE)?.protection(), Some(Protection::ReadExecute), "trampoline after writing");
    Ok(())
}

fn protect_refusals() -> Result<(), Failure> {
    let img = image_sections();
    let rw = Protection::ReadWrite;
    check_eq!(protect(0, PAGE_SIZE, rw), Err(Error::NotMapped { addr: 0 }), "page 0");
    check_eq!(protect(0x9000, 100, rw), Err(Error::Unaligned { start: 0x9000, len: 100 }), "length");
    check_eq!(protect(0x9001, PAGE_SIZE, rw), Err(Error::Unaligned { start: 0x9001, len: PAGE_SIZE }), "start");
    check_eq!(
        protect(img.text_start, PAGE_SIZE, rw),
        Err(Error::LoaderImage { start: img.text_start, len: PAGE_SIZE }),
        "loader text"
    );
    let stack = stacks::REGION_START;
    check!(
        matches!(protect(stack, PAGE_SIZE, rw), Err(Error::OutsideIdentityMap { .. })),
        "the stack region is outside the identity map"
    );
    check_eq!(leaf(img.text_start)?.protection(), Some(Protection::ReadExecute), ".text after refusals");
    Ok(())
}

fn stack_guard_page() -> Result<(), Failure> {
    let s = ok(Stack::new(4), "stack of 4 pages")?;
    let (top, guard) = (s.top(), s.guard_page());
    check_eq!(guard, top - 5 * PAGE_SIZE, "guard page");
    check_eq!(s.bottom(), top - 4 * PAGE_SIZE, "bottom");
    check_eq!(ok(translate(guard), "translate")?, None, "the guard page must not be mapped");
    for page in (s.bottom()..top).step_by(PAGE_SIZE as usize) {
        let l = leaf(page)?;
        check_eq!((l.protection(), l.size), (Some(Protection::ReadWrite), PAGE_SIZE), "stack page {page:#x}");
    }
    check!(is_guard_page(guard) && is_guard_page(guard + PAGE_SIZE - 8), "the guard page is not recognised");
    check!(!is_guard_page(s.bottom()) && !is_guard_page(top - 8), "the stack itself counts as guard");
    for a in (s.bottom()..top).step_by(8) {
        write_u64(a, a);
    }
    for a in (s.bottom()..top).step_by(8) {
        check_eq!(read_u64(a), a, "stack memory");
    }
    drop(s);
    check!(!is_guard_page(guard), "a dropped stack still has a guard page");
    check_eq!(ok(translate(top - 8), "translate")?, None, "a dropped stack is still mapped");
    Ok(())
}

fn stack_returns_memory() -> Result<(), Failure> {
    let before = stats();
    check_eq!(Stack::new(0).err(), Some(Error::StackSize { pages: 0 }), "empty stack");
    check_eq!(Stack::new(512).err(), Some(Error::StackSize { pages: 512 }), "oversized stack");
    let a = ok(Stack::new(1), "stack of 1 page")?;
    let b = ok(Stack::new(16), "stack of 16 pages")?;
    let c = ok(Stack::new(stacks::MAX_PAGES), "largest stack")?;
    // Each stack has its own page table.
    let used = 1 + 16 + stacks::MAX_PAGES + 3;
    check_eq!(stats().frames_free, before.frames_free - used, "free frames with three stacks");
    check!(a.top() != b.top() && b.top() != c.top(), "stacks share a slot");
    drop((a, b, c));
    check_eq!(stats(), before, "counters after dropping the stacks");
    Ok(())
}

fn boot_cpu_on_guarded_stack() -> Result<(), Failure> {
    let rsp: u64;
    // SAFETY: reads the stack pointer.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack, preserves_flags)) };
    check!((stacks::REGION_START..stacks::REGION_END).contains(&rsp), "rsp {rsp:#x} is not on a guarded stack");
    check_eq!(leaf(rsp)?.protection(), Some(Protection::ReadWrite), "stack page");
    check!(!is_guard_page(rsp), "rsp counts as a guard page");
    let slot_base = rsp & !(stacks::SLOT_BYTES - 1);
    check!(is_guard_page(slot_base), "the bottom of the boot CPU's stack slot is not a guard page");
    Ok(())
}

/// The hardware agrees with the page tables: writes to .text and .rodata,
/// any access to page 0 and to a guard page fault with the expected page
/// fault error code (SDM Vol. 3A 4.7: bit 0 present, bit 1 write).
fn protections_fault_as_mapped() -> Result<(), Failure> {
    use crate::interrupts::probe;
    let img = image_sections();
    for (what, addr) in [("text", img.text_start), ("rodata", img.rodata_start)] {
        let before = probe::read_u64(addr).map_err(|f| Failure::new(format_args!("read of {what}: {f:?}")))?;
        match probe::write_u64(addr, before) {
            Err(f) => {
                check_eq!((f.vector, f.error_code & 3, f.cr2), (14, 3, addr), "write to {what}");
            }
            Ok(()) => return Err(Failure::new(format_args!("a write to {what} at {addr:#x} did not fault"))),
        }
    }
    match probe::read_u64(8) {
        Err(f) => check_eq!((f.vector, f.error_code & 3, f.cr2), (14, 0, 8), "read of page 0"),
        Ok(v) => return Err(Failure::new(format_args!("page 0 is readable ({v:#x})"))),
    }
    let stack = Stack::new(2).map_err(|e| Failure::new(format_args!("stack: {e}")))?;
    let guard = stack.guard_page();
    match probe::write_u64(guard, 0) {
        Err(f) => check_eq!((f.vector, f.error_code & 3, f.cr2), (14, 2, guard), "write to the guard page"),
        Ok(()) => return Err(Failure::new(format_args!("the guard page {guard:#x} is writable"))),
    }
    probe::write_u64(stack.top() - 8, 1).map_err(|f| Failure::new(format_args!("write to the stack: {f:?}")))?;
    Ok(())
}
