/* One entry stub per vector. Stubs of vectors for which the CPU pushes no
 * error code push a zero, so every frame has the same shape; then the
 * vector number; then the common path saves the general registers and calls
 * `trap_dispatch(&mut TrapFrame)` (cpu/idt.rs). */

.macro trap_stub vector
.balign 16
trap_stub_\vector:
    /* Vectors with an error code: #DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP,
     * #VC, #SX (SDM Vol. 3A, 6.13). */
    .if (\vector == 8) | (\vector == 10) | (\vector == 11) | (\vector == 12) | (\vector == 13) | (\vector == 14) | (\vector == 17) | (\vector == 21) | (\vector == 29) | (\vector == 30)
    .else
    pushq $0
    .endif
    pushq $\vector
    jmp trap_common
.endm

.macro stub_address vector
    .quad trap_stub_\vector
.endm

.section .text.trap, "ax"
.altmacro
.set vec, 0
.rept 256
    trap_stub %vec
    .set vec, vec + 1
.endr
.noaltmacro

trap_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, %rdi
    /* The SysV ABI wants a 16-byte aligned stack at the call. */
    mov %rsp, %rbx
    and $-16, %rsp
    cld
    call trap_dispatch
    mov %rbx, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    add $16, %rsp                             /* vector, error code */
    iretq

/* The stub addresses, for the IDT. */
.section .rodata.trap_stubs, "a"
.balign 8
.global trap_stub_table
trap_stub_table:
.altmacro
.set vec, 0
.rept 256
    stub_address %vec
    .set vec, vec + 1
.endr
.noaltmacro
