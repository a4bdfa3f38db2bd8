/* Boot entry for both protocols. Both arrive in 32-bit protected mode with
 * paging off: PVH (QEMU -kernel, through the Xen ELF note) with %ebx = the
 * hvm_start_info address; multiboot2 (GRUB) with %eax = 0x36d76289 and
 * %ebx = the multiboot2 information. Each path records which protocol it
 * was, then the common path identity-maps the first 4 GiB with 2 MiB pages,
 * enters long mode and calls the Rust entry `kernel_entry(protocol, info)`. */

.set MB2_MAGIC,      0xe85250d6
.set MB2_BOOT_MAGIC, 0x36d76289
.set PROTOCOL_PVH,   1
.set PROTOCOL_MB2,   2

.section .multiboot2, "a"
.balign 8
mb2_header:
    .long MB2_MAGIC
    .long 0                                   /* architecture: i386 */
    .long mb2_header_end - mb2_header
    .long -(MB2_MAGIC + (mb2_header_end - mb2_header))
    .balign 8                                 /* end tag */
    .short 0
    .short 0
    .long 8
mb2_header_end:

/* XEN_ELFNOTE_PHYS32_ENTRY (18): the 32-bit PVH entry point. */
.section .note.Xen, "a", @note
.balign 4
    .long 4
    .long 4
    .long 18
    .asciz "Xen"
    .long pvh_entry

.section .boot.text, "ax"
.code32
.global pvh_entry
pvh_entry:
    mov $PROTOCOL_PVH, %edi
    mov %ebx, %esi
    jmp common32

.global multiboot2_entry
multiboot2_entry:
    cmp $MB2_BOOT_MAGIC, %eax
    jne halt32
    mov $PROTOCOL_MB2, %edi
    mov %ebx, %esi

common32:
    cli
    cld
    mov $boot_stack_top, %esp

    /* Long mode is required; without it there is nothing we can do. */
    mov $0x80000001, %eax
    cpuid
    test $(1 << 29), %edx
    jz halt32
    mov %edx, %ebp                            /* keep NX support (bit 20) */

    /* PML4[0] -> PDPT; PDPT[0..3] -> the four page directories. */
    mov $boot_pdpt, %eax
    or $0x3, %eax
    mov %eax, boot_pml4
    xor %ecx, %ecx
1:  mov %ecx, %eax
    shl $12, %eax
    add $boot_pd, %eax
    or $0x3, %eax
    mov %eax, boot_pdpt(,%ecx,8)
    inc %ecx
    cmp $4, %ecx
    jne 1b

    /* 2048 PD entries of 2 MiB each: 0 .. 4 GiB, present, writable, large. */
    xor %ecx, %ecx
2:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax
    mov %eax, boot_pd(,%ecx,8)
    mov %ecx, %eax
    shr $11, %eax
    mov %eax, boot_pd+4(,%ecx,8)
    inc %ecx
    cmp $2048, %ecx
    jne 2b

    mov %cr4, %eax
    or $(1 << 5), %eax                        /* PAE */
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3

    mov $0xc0000080, %ecx                     /* IA32_EFER */
    rdmsr
    or $(1 << 8), %eax                        /* LME */
    test $(1 << 20), %ebp
    jz 3f
    or $(1 << 11), %eax                       /* NXE, when the CPU has NX */
3:  wrmsr

    /* NE: x87 errors raise #MF, the native way, which VMX operation
       requires (IA32_VMX_CR0_FIXED0). */
    mov %cr0, %eax
    or $0x80010021, %eax                      /* PG | WP | NE | PE */
    mov %eax, %cr0

    lgdt boot_gdt_ptr
    ljmp $0x08, $long_mode

halt32:
    cli
    hlt
    jmp halt32

.code64
long_mode:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %eax, %eax
    mov %ax, %fs
    mov %ax, %gs
    mov $boot_stack_top, %rsp
    xor %ebp, %ebp
    /* %edi = protocol, %esi = boot information (zero-extended by mov). */
    mov %edi, %edi
    mov %esi, %esi
    call kernel_entry
4:  cli
    hlt
    jmp 4b

.section .rodata
.balign 16
/* Also the GDT of every AP start (smp/trampoline.S). The accessed bits are
 * preset: the CPU would otherwise write them when it loads a segment, and
 * this page is read-only once the loader's own page tables are in place. */
.global boot_gdt
.global boot_gdt_limit
boot_gdt:
    .quad 0
    .quad 0x00209b0000000000                  /* 0x08: 64-bit code */
    .quad 0x0000930000000000                  /* 0x10: data */
boot_gdt_end:
.set boot_gdt_limit, boot_gdt_end - boot_gdt - 1
boot_gdt_ptr:
    .short boot_gdt_limit
    .long boot_gdt

.section .bss
.balign 4096
boot_pml4: .skip 4096
boot_pdpt: .skip 4096
boot_pd:   .skip 4096 * 4
/* Only used until the loader has its own guarded stacks. */
boot_stack: .skip 65536
boot_stack_top:
