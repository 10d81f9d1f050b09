/* Exception vectors of the tinygen board qemu-esp8266 (Xtensa LX106, CALL0
 * ABI).  VECBASE points at tg_vectors (IRAM).  Offsets are the LX106's:
 * Debug 0x10, NMI 0x20, Kernel 0x30, User 0x50, Double 0x70.
 *
 *  - Level-1 interrupts (UART receive, CCOMPARE0) are enabled only around a
 *    WAITI (see board_esp8266.c): the handler disables every source
 *    (INTENABLE = 0) and returns, which ends the wait.  Nothing else runs.
 *  - The debug exception of ICOUNT reaching 0xffffffff extends the
 *    instruction counter to 64 bits (tg_icount_hi += 1, ICOUNT = 0).
 *  - Anything else is a fault, reported by tg_xtensa_fault() in C.
 */
    .section .tg_vectors, "ax"
    .align 1024
    .global tg_vectors
tg_vectors:
    .org 0x10
    j tg_debug_entry
    .org 0x20
    j tg_nmi_entry
    .org 0x30
    j tg_exc_entry
    .org 0x50
    j tg_exc_entry
    .org 0x70
    j tg_double_entry

    .section .iram.text.tg_handlers, "ax"
    .literal_position
    .align 4
    .global _start                  /* the ELF entry (startup_lx106.c) */
_start:
    movi    a1, __tg_stack_top
    movi    a0, tg_reset_c
    jx      a0

    .align 4
tg_exc_entry:
    wsr     a0, excsave1
    rsr     a0, exccause
    bnei    a0, 4, 1f               /* 4: level-1 interrupt */
    movi    a0, 0
    wsr     a0, intenable
    rsync
    rsr     a0, excsave1
    rfe
1:  rsr     a2, exccause
    rsr     a3, epc1
    rsr     a4, excvaddr
    j       tg_fault_common

tg_nmi_entry:
    movi    a2, 0x100
    rsr     a3, epc3
    movi    a4, 0
    j       tg_fault_common

tg_double_entry:
    movi    a2, 0x200
    rsr     a3, depc
    rsr     a4, excvaddr
    j       tg_fault_common

tg_debug_entry:
    wsr     a0, excsave2
    rsr     a0, debugcause
    bbci    a0, 0, 2f               /* bit 0: ICOUNT */
    movi    a0, 0
    wsr     a0, icount
    movi    a0, tg_icount_hi
    s32i    a2, a0, 4               /* scratch word after the counter */
    l32i    a2, a0, 0
    addi    a2, a2, 1
    s32i    a2, a0, 0
    l32i    a2, a0, 4
    rsr     a0, excsave2
    isync
    rfi     2
2:  movi    a2, 0x300
    rsr     a3, epc2
    rsr     a4, debugcause
    j       tg_fault_common

tg_fault_common:
    movi    a1, __tg_stack_top
    movi    a0, tg_xtensa_fault
    callx0  a0
3:  j       3b

    .section .bss.tg_icount_hi, "aw"
    .align 4
    .global tg_icount_hi
tg_icount_hi:
    .word 0
    .word 0                          /* scratch for tg_debug_entry */
