/* Reset, trap reporting and the few C library hooks of the tinygen board
 * qemu-esp32c3 (RV32IMC on QEMU `virt`).  The RISC-V counterpart of
 * startup.c; the memory layout symbols come from qemu-esp32c3.ld.
 *
 * Interrupts stay globally disabled (mstatus.MIE = 0) from reset on: the
 * UART receive interrupt (through the PLIC) and the machine timer are
 * enabled in `mie` only so that they end a WFI (a RISC-V hart leaves WFI
 * when mip & mie != 0, whatever mstatus.MIE says); no handler ever runs.
 * Any trap that is taken is therefore a fault: it is reported on the
 * protocol UART as one line starting with "*** tinygen" and the hart then
 * sleeps forever.
 */
#include <stddef.h>
#include <stdint.h>

#include "tg_board.h"
#include "tg_qemu.h"

extern uint32_t __tg_data_load[];
extern uint32_t __tg_data_start[];
extern uint32_t __tg_data_end[];
extern uint32_t __tg_bss_start[];
extern uint32_t __tg_bss_end[];
extern uint8_t __tg_heap_start[];
extern uint8_t __tg_heap_end[];
extern uint32_t __tg_stack_bottom[];
extern uint32_t __tg_stack_top[];

extern int main(void);
extern void __libc_init_array(void);

void _start(void) __attribute__((naked, noreturn, section(".text.tg_start")));
void tg_reset_c(void) __attribute__((noreturn, used));
void tg_trap_entry(void) __attribute__((naked, aligned(4)));
void tg_trap_report(void) __attribute__((noreturn, used));
void _exit(int status) __attribute__((noreturn));

/* The image starts here (0x80000000, where QEMU's reset code jumps). */
void _start(void) {
  __asm volatile(
      ".option push            \n\t"
      ".option norelax         \n\t"
      "la   gp, __global_pointer$\n\t"
      ".option pop             \n\t"
      "la   sp, __tg_stack_top \n\t"
      "j    tg_reset_c         \n\t");
}

static void tg_halt(void) __attribute__((noreturn));
static void tg_halt(void) {
  __asm volatile("csrw mie, zero" ::: "memory");
  tg_board_clear_wakeups();
  for (;;) {
    __asm volatile("wfi" ::: "memory");
  }
}

void tg_reset_c(void) {
  __asm volatile("csrci mstatus, 8" ::: "memory"); /* MIE = 0 */
  __asm volatile("csrw mtvec, %0" ::"r"((uint32_t)(uintptr_t)&tg_trap_entry) : "memory");
  tg_board_uart_init();

  const uint32_t *src = __tg_data_load;
  for (uint32_t *dst = __tg_data_start; dst < __tg_data_end; ++dst) {
    *dst = *src++;
  }
  for (uint32_t *dst = __tg_bss_start; dst < __tg_bss_end; ++dst) {
    *dst = 0u;
  }

  uint32_t *sp;
  __asm volatile("mv %0, sp" : "=r"(sp));
  for (volatile uint32_t *p = __tg_stack_bottom; p < sp - 16; ++p) {
    *p = TG_QEMU_STACK_PAINT;
  }

  __libc_init_array();
  _exit(main());
}

/* Direct-mode trap vector: any trap is a fault. */
void tg_trap_entry(void) { __asm volatile("j tg_trap_report"); }

/* tg_put_text and tg_put_hex: tg_fault_text.c (the same on every core). */

void tg_trap_report(void) {
  uint32_t mcause, mepc, mtval, ra;
  __asm volatile("csrr %0, mcause" : "=r"(mcause));
  __asm volatile("csrr %0, mepc" : "=r"(mepc));
  __asm volatile("csrr %0, mtval" : "=r"(mtval));
  __asm volatile("mv %0, ra" : "=r"(ra));
  /* A fault may come from a broken stack: report from the top of ours. */
  __asm volatile("la sp, __tg_stack_top" ::: "memory");
  tg_board_uart_init();
  tg_put_text("\r\n*** tinygen fault:");
  tg_put_hex(" mcause=", mcause);
  tg_put_hex(" pc=", mepc);
  tg_put_hex(" ra=", ra);
  tg_put_hex(" mtval=", mtval);
  tg_put_text(" ***\r\n");
  tg_halt();
}

void _exit(int status) {
  tg_board_uart_init();
  tg_put_hex("\r\n*** tinygen exit: status=", (uint32_t)status);
  tg_put_text(" ***\r\n");
  tg_halt();
}

/* _sbrk and the stack/heap figures: tg_memory.c (the same on every core). */
