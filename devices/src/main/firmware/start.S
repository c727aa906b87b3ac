/* Entry from the VMM: long mode, paging on, RSP set, RDI = guest-physical address of the boot-info page. */
    .section .text.start, "ax"
    .globl _start
_start:
    cld
    mov %rdi, %r12              /* keep boot info across the bss clear */
    lea __bss_start(%rip), %rdi
    lea __bss_end(%rip), %rcx
    sub %rdi, %rcx
    xor %eax, %eax
    rep stosb
    mov %r12, %rdi
    call firmware_main
1:  cli
    hlt
    jmp 1b

    .section .note.GNU-stack, "", @progbits
