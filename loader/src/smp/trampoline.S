/* The AP start-up trampoline, copied to TRAMPOLINE (0x8000) before each
 * start. A started AP begins here in real mode with CS = 0x0800, IP = 0
 * (SIPI vector 0x08). It goes straight to long mode (PAE + LME + PG|PE in
 * one step, SDM Vol. 3A 10.8.5) using the loader's page tables, then jumps to
 * the 64-bit Rust entry with its stack and logical id. The parameters live
 * in the next page (TRAMPOLINE_DATA, 0x9000, struct `TrampolineData` in
 * smp/mod.rs), so the code page itself stays read-only and executable. */

.set TRAMPOLINE,      0x8000
.set DATA,            0x9000
.set DATA_CR3,        0
.set DATA_EFER,       8
.set DATA_STACK,      16
.set DATA_ENTRY,      24
.set DATA_ARG,        32

.section .rodata.trampoline, "a"
.balign 16
.global trampoline_start
.global trampoline_end
trampoline_start:
.code16
    cli
    cld
    mov %cs, %ax
    mov %ax, %ds
    lgdtl (tr_gdt_ptr - trampoline_start)

    mov $(1 << 5), %eax                       /* CR4.PAE */
    mov %eax, %cr4
    mov (DATA - TRAMPOLINE + DATA_CR3), %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx                     /* IA32_EFER: the boot CPU's */
    mov (DATA - TRAMPOLINE + DATA_EFER), %eax
    xor %edx, %edx
    wrmsr
    /* NE: x87 errors raise #MF, the native way, which VMX operation
       requires (IA32_VMX_CR0_FIXED0). */
    mov %cr0, %eax
    or $0x80010021, %eax                      /* PG | WP | NE | PE */
    mov %eax, %cr0
    ljmpl $0x08, $(TRAMPOLINE + tr_long - trampoline_start)

.code64
tr_long:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %eax, %eax
    mov %ax, %fs
    mov %ax, %gs
    mov (DATA + DATA_STACK), %rsp
    mov (DATA + DATA_ARG), %rdi
    mov (DATA + DATA_ENTRY), %rax
    xor %ebp, %ebp
    push %rbp                                 /* no return address */
    jmp *%rax

.balign 8
/* The boot GDT (boot/entry.S) lies below 4 GiB, so real mode can load it;
 * only this pointer must sit where real mode reaches it. */
tr_gdt_ptr:
    .short boot_gdt_limit
    .long boot_gdt
trampoline_end:
