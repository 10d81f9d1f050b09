/* tinygen board qemu-esp32c3: an RV32IMC core (the ESP32-C3's ISA) on QEMU
 * `virt`, with the ESP32-C3's memory sizes (see qemu-esp32c3.ld).
 *
 * UART: the 16550 at 0x10000000 (registers 1 byte apart), receive interrupt
 * on PLIC source 10, used only to end a WFI (see tg_board.h).
 *
 * Time: the CLINT's mtime (0x0200BFF8), 10 MHz, and mtimecmp (0x02004000)
 * for the wake-up of a timed-out read.  Under QEMU -icount shift=0 a guest
 * instruction is 1 ns of virtual time, so an mtime tick is 100 instructions.
 *
 * Counter: `rdinstret`/`rdinstreth`.  QEMU 7.2 answers instret (and cycle)
 * with its icount clock, so between two reads with no WFI in between the
 * difference is exactly the number of guest instructions retired (a WFI
 * adds the idle virtual time it skipped).
 */
#include "tg_board.h"
#include "tg_hal.h"

#define REG8(addr) (*(volatile uint8_t *)(addr))
#define REG32(addr) (*(volatile uint32_t *)(addr))

#define UART_BASE 0x10000000u
#define UART_RBR REG8(UART_BASE + 0u) /* read */
#define UART_THR REG8(UART_BASE + 0u) /* write */
#define UART_IER REG8(UART_BASE + 1u)
#define UART_FCR REG8(UART_BASE + 2u)
#define UART_LCR REG8(UART_BASE + 3u)
#define UART_MCR REG8(UART_BASE + 4u)
#define UART_LSR REG8(UART_BASE + 5u)
#define UART_LSR_DR (1u << 0)
#define UART_LSR_THRE (1u << 5)
#define UART_IER_ERBFI (1u << 0)
#define UART_IRQ 10u

#define PLIC_BASE 0x0C000000u
#define PLIC_PRIORITY(src) REG32(PLIC_BASE + 4u * (src))
#define PLIC_ENABLE_CTX0 REG32(PLIC_BASE + 0x2000u) /* hart 0, M-mode */
#define PLIC_THRESHOLD_CTX0 REG32(PLIC_BASE + 0x200000u)
#define PLIC_CLAIM_CTX0 REG32(PLIC_BASE + 0x200004u)

#define CLINT_MTIMECMP_LO REG32(0x02004000u)
#define CLINT_MTIMECMP_HI REG32(0x02004004u)
#define CLINT_MTIME_LO REG32(0x0200BFF8u)
#define CLINT_MTIME_HI REG32(0x0200BFFCu)

#define MIE_MTIE (1u << 7)
#define MIE_MEIE (1u << 11)

const uint32_t tg_board_ticks_per_ms = 10000u; /* mtime: 10 MHz */

void tg_board_uart_init(void) {
  UART_LCR = 0x03u; /* 8N1 (the divisor latch is ignored by QEMU) */
  /* FCR is left alone: QEMU empties both FIFOs when the FIFO-enable bit
   * changes, which would drop bytes received before this call. */
  UART_MCR = 0x08u; /* OUT2: the interrupt line on a real 16550 */
  UART_IER = UART_IER_ERBFI;
  PLIC_PRIORITY(UART_IRQ) = 1u;
  PLIC_ENABLE_CTX0 = 1u << UART_IRQ;
  PLIC_THRESHOLD_CTX0 = 0u;
}

void tg_board_uart_putc(uint8_t byte) {
  while ((UART_LSR & UART_LSR_THRE) == 0u) {
  }
  UART_THR = byte;
}

int tg_board_uart_getc(void) {
  if ((UART_LSR & UART_LSR_DR) == 0u) {
    return -1;
  }
  return (int)UART_RBR;
}

/* mtime runs from reset: nothing to set up. */
void tg_board_timer_init(void) {}

static uint64_t read_mtime(void) {
  uint32_t hi, lo;
  do {
    hi = CLINT_MTIME_HI;
    lo = CLINT_MTIME_LO;
  } while (hi != CLINT_MTIME_HI);
  return ((uint64_t)hi << 32) | lo;
}

uint64_t tg_board_time(void) { return read_mtime(); }

void tg_board_arm_wakeup(uint64_t ticks) {
  const uint64_t when = read_mtime() + (ticks > 0u ? ticks : 1u);
  CLINT_MTIMECMP_HI = 0xFFFFFFFFu; /* no spurious match while writing */
  CLINT_MTIMECMP_LO = (uint32_t)when;
  CLINT_MTIMECMP_HI = (uint32_t)(when >> 32);
  __asm volatile("csrs mie, %0" ::"r"(MIE_MTIE | MIE_MEIE) : "memory");
}

void tg_board_clear_wakeups(void) {
  /* mip.MTIP follows mtime >= mtimecmp.  QEMU's PLIC pends the UART
   * source on each rising edge (a received byte) and keeps it pending until
   * it is claimed, whatever the line does after: claim and complete
   * everything, or every later WFI would return at once (a busy loop that
   * runs at a crawl under -icount). */
  CLINT_MTIMECMP_HI = 0xFFFFFFFFu;
  CLINT_MTIMECMP_LO = 0xFFFFFFFFu;
  for (uint32_t id = PLIC_CLAIM_CTX0; id != 0u; id = PLIC_CLAIM_CTX0) {
    PLIC_CLAIM_CTX0 = id;
  }
  __asm volatile("csrs mie, %0" ::"r"(MIE_MEIE) : "memory");
}

uint64_t tg_hal_counter(void) {
  uint32_t hi, lo, hi2;
  __asm volatile(
      "1: rdinstreth %0   \n\t"
      "   rdinstret  %1   \n\t"
      "   rdinstreth %2   \n\t"
      "   bne %0, %2, 1b  \n\t"
      : "=&r"(hi), "=&r"(lo), "=&r"(hi2)
      :
      : "memory");
  return ((uint64_t)hi << 32) | lo;
}

uint32_t tg_hal_counter_unit(void) { return TG_COUNTER_INSTRUCTIONS; }
