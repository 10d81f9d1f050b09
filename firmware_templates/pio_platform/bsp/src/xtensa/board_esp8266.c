/* tinygen board qemu-esp8266: the Xtensa LX106 core (the ESP8266's) on QEMU
 * lx60-nommu, at the ESP8266's addresses (see qemu-esp8266.ld).
 *
 * UART: the FPGA board's 16550 at 0x9d050020, registers 4 bytes apart, on
 * external interrupt 0; used to end a WAITI only.
 *
 * Time: CCOUNT, the core's cycle counter.  QEMU clocks the LX106 at 40 MHz
 * and under -icount shift=0 an instruction is 1 ns, so CCOUNT ticks once per
 * 25 instructions: good for milliseconds and for the CCOMPARE0 wake-up of a
 * timed-out read, too coarse for the counter.
 *
 * Counter: the debug option's ICOUNT register, which QEMU increments on
 * every instruction executed while the current interrupt level is below
 * ICOUNTLEVEL.  The program runs at PS.INTLEVEL 1 (interrupts masked; only
 * the WAITI lowers it) and ICOUNTLEVEL = 2, so ICOUNT counts exactly the
 * program's instructions; the debug exception (level 2, not counted) at
 * ICOUNT = 0xffffffff extends it to 64 bits (vectors_lx106.S).
 */
#include "tg_board.h"
#include "tg_hal.h"

#define REG32(addr) (*(volatile uint32_t *)(addr))

#define UART_BASE 0x9D050020u
#define UART_RBR REG32(UART_BASE + 0x00u) /* read */
#define UART_THR REG32(UART_BASE + 0x00u) /* write */
#define UART_IER REG32(UART_BASE + 0x04u)
#define UART_LCR REG32(UART_BASE + 0x0Cu)
#define UART_MCR REG32(UART_BASE + 0x10u)
#define UART_LSR REG32(UART_BASE + 0x14u)
#define UART_LSR_DR (1u << 0)
#define UART_LSR_THRE (1u << 5)
#define UART_IER_ERBFI (1u << 0)

#define INT_UART (1u << 0)   /* external interrupt 0 */
#define INT_TIMER0 (1u << 6) /* CCOMPARE0 on the LX106 */

extern volatile uint32_t tg_icount_hi; /* vectors_lx106.S */

const uint32_t tg_board_ticks_per_ms = 40000u; /* CCOUNT at 40 MHz */

static inline uint32_t read_ccount(void) {
  uint32_t v;
  __asm volatile("rsr %0, ccount" : "=r"(v));
  return v;
}

void tg_board_uart_init(void) {
  UART_LCR = 0x03u;
  UART_MCR = 0x08u;
  UART_IER = UART_IER_ERBFI;
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
  return (int)(UART_RBR & 0xFFu);
}

static uint32_t s_running;
static uint32_t s_last;
static uint32_t s_high;

void tg_board_timer_init(void) {
  if (s_running) {
    return;
  }
  s_last = read_ccount();
  s_high = 0u;
  tg_icount_hi = 0u;
  __asm volatile(
      "wsr %0, icount      \n\t"
      "wsr %1, icountlevel \n\t"
      "isync               \n\t" ::"r"(0u),
      "r"(2u)
      : "memory");
  s_running = 1u;
}

uint64_t tg_board_time(void) {
  tg_board_timer_init();
  const uint32_t now = read_ccount();
  s_high += (uint32_t)(now < s_last);
  s_last = now;
  return ((uint64_t)s_high << 32) | now;
}

void tg_board_arm_wakeup(uint64_t ticks) {
  const uint32_t delta = ticks >= 0x7FFFFFFFu ? 0x7FFFFFFFu : (ticks ? (uint32_t)ticks : 1u);
  const uint32_t when = read_ccount() + delta;
  __asm volatile("wsr %0, ccompare0\n\tisync" ::"r"(when) : "memory");
  __asm volatile("wsr %0, intenable\n\trsync" ::"r"(INT_UART | INT_TIMER0) : "memory");
}

void tg_board_clear_wakeups(void) {
  /* Writing CCOMPARE0 clears its interrupt; put the match far away. */
  __asm volatile("wsr %0, intenable\n\trsync" ::"r"(0u) : "memory");
  __asm volatile("wsr %0, ccompare0\n\tisync" ::"r"(read_ccount() - 1u) : "memory");
}

void tg_board_wait(void) {
  /* WAITI 0 lowers PS.INTLEVEL to 0 and waits: a pending enabled
   * interrupt (also one that arrived before) is taken, the vector disables
   * every source and returns here; then mask them again. */
  uint32_t ps;
  __asm volatile("waiti 0\n\trsil %0, 1" : "=r"(ps)::"memory");
  (void)ps;
}

uint64_t tg_hal_counter(void) {
  uint32_t hi, lo;
  do {
    hi = tg_icount_hi;
    __asm volatile("rsr %0, icount" : "=r"(lo)::"memory");
  } while (hi != tg_icount_hi);
  return ((uint64_t)hi << 32) | lo;
}

uint32_t tg_hal_counter_unit(void) { return TG_COUNTER_INSTRUCTIONS; }
