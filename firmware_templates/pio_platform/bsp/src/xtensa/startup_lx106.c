/* Reset, fault reporting and C library hooks of the tinygen board
 * qemu-esp8266 (Xtensa LX106 on QEMU lx60-nommu, laid out at the ESP8266's
 * addresses: see qemu-esp8266.ld).  QEMU loads every ELF segment where it
 * belongs (as the ESP8266's boot ROM loads the image's segments into IRAM
 * and DRAM), so .data needs no copy; .bss is cleared here.
 *
 * The core runs at PS.INTLEVEL 1 with no interrupt enabled (INTENABLE = 0)
 * except around a WAITI, and ICOUNT (ICOUNTLEVEL = 2) counts every
 * instruction of the program (see board_esp8266.c).
 */
#include <stddef.h>
#include <stdint.h>

#include "tg_board.h"
#include "tg_qemu.h"

extern uint32_t __tg_bss_start[];
extern uint32_t __tg_bss_end[];
extern uint8_t __tg_heap_start[];
extern uint8_t __tg_heap_end[];
extern uint32_t __tg_stack_bottom[];
extern uint32_t __tg_stack_top[];
extern char tg_vectors[];

extern int main(void);
extern void __libc_init_array(void);

void tg_reset_c(void) __attribute__((noreturn, used, section(".iram.text.tg_reset")));
void tg_xtensa_fault(uint32_t cause, uint32_t pc, uint32_t vaddr) __attribute__((noreturn, used));
void _exit(int status) __attribute__((noreturn));

static void tg_halt(void) __attribute__((noreturn));
static void tg_halt(void) {
  __asm volatile("wsr %0, intenable\n\trsync" ::"r"(0u) : "memory");
  for (;;) {
    __asm volatile("waiti 15" ::: "memory");
  }
}

void tg_reset_c(void) {
  /* Vectors first, then leave the reset state (PS.EXCM = 1, INTLEVEL 15)
   * for INTLEVEL 1 (level-1 interrupts masked but for the WAITI). */
  __asm volatile("wsr %0, vecbase\n\tisync" ::"r"((uint32_t)(uintptr_t)tg_vectors) : "memory");
  __asm volatile("wsr %0, intenable\n\trsync" ::"r"(0u) : "memory");
  __asm volatile("wsr %0, ps\n\trsync" ::"r"(1u) : "memory");
  tg_board_uart_init();

  for (uint32_t *dst = __tg_bss_start; dst < __tg_bss_end; ++dst) {
    *dst = 0u;
  }
  uint32_t *sp;
  __asm volatile("mov %0, a1" : "=r"(sp));
  for (volatile uint32_t *p = __tg_stack_bottom; p < sp - 16; ++p) {
    *p = TG_QEMU_STACK_PAINT;
  }
  tg_board_timer_init(); /* starts ICOUNT */

  __libc_init_array();
  _exit(main());
}

/* tg_put_text and tg_put_hex: tg_fault_text.c (the same on every core). */

/* cause: EXCCAUSE, or 0x100 NMI, 0x200 double exception, 0x300 debug
 * exception other than ICOUNT (vaddr then holds DEBUGCAUSE). */
void tg_xtensa_fault(uint32_t cause, uint32_t pc, uint32_t vaddr) {
  tg_board_uart_init();
  tg_put_text("\r\n*** tinygen fault:");
  tg_put_hex(" exccause=", cause);
  tg_put_hex(" pc=", pc);
  tg_put_hex(" excvaddr=", vaddr);
  tg_put_text(" ***\r\n");
  tg_halt();
}

void _exit(int status) {
  tg_board_uart_init();
  tg_put_hex("\r\n*** tinygen exit: status=", (uint32_t)status);
  tg_put_text(" ***\r\n");
  tg_halt();
}

void abort(void) { _exit(134); }

/* _sbrk and the stack/heap figures: tg_memory.c (the same on every core). */
