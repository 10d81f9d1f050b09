/* tinygen boards qemu-cortex-m4 / qemu-cortex-m7: QEMU machines
 * mps2-an386 (Cortex-M4F) and mps2-an500 (Cortex-M7F).
 *
 * UART: CMSDK APB UART0 at 0x40004000 (BAUDDIV must be >= 16), receive
 * interrupt on IRQ 0, used only to wake the core from WFI (see tg_board.h).
 *
 * Time: CMSDK APB Timer0 at 0x40000000, a 32-bit down-counter on the
 * 25 MHz peripheral clock.  Under QEMU -icount shift=0 a guest instruction
 * takes exactly 1 ns of virtual time, so one tick is 40 instructions.
 *
 * A plain tick reading would only be good to +-40 instructions: where in its
 * 40 ns tick a reading happens depends on how long the program polled the
 * UART before, which depends on the host.  tg_hal_counter() therefore
 * measures the phase of the tick (see below) and returns the exact number of
 * guest instructions, the same on every run of the same code.
 */
#include "tg_board.h"
#include "tg_hal.h"

#define REG32(addr) (*(volatile uint32_t *)(addr))

#define UART0_BASE 0x40004000u
#define UART_DATA REG32(UART0_BASE + 0x00u)
#define UART_STATE REG32(UART0_BASE + 0x04u)
#define UART_CTRL REG32(UART0_BASE + 0x08u)
#define UART_INTSTATUS REG32(UART0_BASE + 0x0Cu) /* write 1 to clear */
#define UART_BAUDDIV REG32(UART0_BASE + 0x10u)
#define UART_STATE_TX_FULL (1u << 0)
#define UART_STATE_RX_FULL (1u << 1)
#define UART_CTRL_TX_EN (1u << 0)
#define UART_CTRL_RX_EN (1u << 1)
#define UART_CTRL_RX_INTEN (1u << 3)
#define UART_INT_RX (1u << 1)
#define UART0_RX_IRQ 0u

#define TIMER0_BASE 0x40000000u
#define TIMER0_CTRL REG32(TIMER0_BASE + 0x00u)
#define TIMER0_VALUE REG32(TIMER0_BASE + 0x04u)
#define TIMER0_RELOAD REG32(TIMER0_BASE + 0x08u)
#define TIMER_CTRL_EN (1u << 0)

#define INSTRUCTIONS_PER_TICK 40u /* 1 ns per instruction / 25 MHz */

#define SYST_CSR REG32(0xE000E010u)
#define SYST_RVR REG32(0xE000E014u)
#define SYST_CVR REG32(0xE000E018u)
#define SYST_CSR_ENABLE (1u << 0)
#define SYST_CSR_TICKINT (1u << 1)
#define SYST_CSR_CPUCLK (1u << 2)
#define SYST_MAX_RELOAD 0x00FFFFFFu
#define SCB_ICSR REG32(0xE000ED04u)
#define SCB_ICSR_PENDSTCLR (1u << 25)
#define NVIC_ISER(n) REG32(0xE000E100u + 4u * (n))
#define NVIC_ICPR(n) REG32(0xE000E280u + 4u * (n))

const uint32_t tg_board_ticks_per_ms = 25000u;

void tg_board_uart_init(void) {
  UART_BAUDDIV = 217u; /* 115200 Bd from 25 MHz (ignored by QEMU) */
  UART_CTRL = UART_CTRL_TX_EN | UART_CTRL_RX_EN | UART_CTRL_RX_INTEN;
  NVIC_ISER(UART0_RX_IRQ / 32u) = 1u << (UART0_RX_IRQ % 32u);
}

void tg_board_uart_putc(uint8_t byte) {
  while ((UART_STATE & UART_STATE_TX_FULL) != 0u) {
  }
  UART_DATA = byte;
}

int tg_board_uart_getc(void) {
  if ((UART_STATE & UART_STATE_RX_FULL) == 0u) {
    return -1;
  }
  return (int)(UART_DATA & 0xFFu);
}

static uint32_t s_running; /* Timer0 started */
static uint32_t s_last;    /* last up-count seen */
static uint32_t s_high;    /* number of 32-bit wraps seen */

void tg_board_timer_init(void) {
  if (s_running) {
    return;
  }
  TIMER0_CTRL = 0u;
  TIMER0_RELOAD = 0xFFFFFFFFu;
  TIMER0_VALUE = 0xFFFFFFFFu;
  TIMER0_CTRL = TIMER_CTRL_EN;
  s_last = 0u;
  s_high = 0u;
  s_running = 1u;
}

void tg_board_arm_wakeup(uint64_t ticks) {
  /* Timer0 and SysTick both count the 25 MHz clock. */
  const uint32_t reload = ticks >= SYST_MAX_RELOAD ? SYST_MAX_RELOAD : (uint32_t)ticks;
  SYST_CSR = 0u;
  SYST_RVR = reload > 1u ? reload - 1u : 1u;
  SYST_CVR = 0u;
  SYST_CSR = SYST_CSR_ENABLE | SYST_CSR_TICKINT | SYST_CSR_CPUCLK;
}

void tg_board_clear_wakeups(void) {
  SYST_CSR = 0u; /* a short period would otherwise keep QEMU busy */
  UART_INTSTATUS = UART_INT_RX;
  SCB_ICSR = SCB_ICSR_PENDSTCLR;
  NVIC_ICPR(UART0_RX_IRQ / 32u) = 1u << (UART0_RX_IRQ % 32u);
}

/* Up-count (ticks since start) from a down-counter value, extended to 64
 * bits without branches. */
static inline uint64_t extend(uint32_t value) {
  const uint32_t now = ~value;
  s_high += (uint32_t)(now < s_last);
  s_last = now;
  return ((uint64_t)s_high << 32) | now;
}

uint64_t tg_board_time(void) {
  tg_board_timer_init();
  return extend(TIMER0_VALUE);
}

/* Exact guest-instruction count.
 *
 * Let T be the instant of the first load (S0).  The loop samples the timer
 * every 4 instructions until the value changes; the n-th sample, at
 * ts = T + 4n - 2, is the first to see the new value, so that tick edge lies
 * within the 4 instructions before ts and the next edge E lies in
 * [ts + 37, ts + 40].  Four back-to-back loads at ts + 37 .. ts + 40 find
 * it exactly: E = ts + 37 + j, j = number of probes still showing the old
 * value.  E is a whole tick, 40 * ticks(E) in instructions, so
 *     T = 40 * ticks(E) - j - 4n - 35        (up to a constant).
 * The pad loop then runs 12 - n rounds of 4 instructions, so from S0 to the
 * return every call executes the same number of instructions; back-to-back
 * reads therefore differ by a constant and a measured region by exactly
 * its own instruction count plus that constant. */
uint64_t tg_hal_counter(void) {
  const volatile uint32_t *value = &TIMER0_VALUE;
  uint32_t v0, vn, n, p0, p1, p2, p3, pad;

  tg_board_timer_init();
  __asm volatile(
      "ldr   %[v0], [%[val]]      \n\t" /* S0 at T */
      "movs  %[n], #0             \n\t"
      "1:                         \n\t"
      "ldr   %[vn], [%[val]]      \n\t" /* sample k at T + 4k - 2 */
      "adds  %[n], %[n], #1       \n\t"
      "cmp   %[vn], %[v0]         \n\t"
      "beq   1b                   \n\t"
      ".rept 33                   \n\t" /* ts + 4 .. ts + 36 */
      "nop                        \n\t"
      ".endr                      \n\t"
      "ldr   %[p0], [%[val]]      \n\t" /* ts + 37 */
      "ldr   %[p1], [%[val]]      \n\t" /* ts + 38 */
      "ldr   %[p2], [%[val]]      \n\t" /* ts + 39 */
      "ldr   %[p3], [%[val]]      \n\t" /* ts + 40 */
      "rsb   %[pad], %[n], #12    \n\t" /* n <= 11 */
      "2:                         \n\t"
      "subs  %[pad], %[pad], #1   \n\t"
      "nop                        \n\t"
      "nop                        \n\t"
      "bne   2b                   \n\t"
      : [v0] "=&r"(v0), [vn] "=&r"(vn), [n] "=&r"(n), [p0] "=&r"(p0), [p1] "=&r"(p1),
        [p2] "=&r"(p2), [p3] "=&r"(p3), [pad] "=&r"(pad)
      : [val] "r"(value)
      : "cc", "memory");
  (void)v0;
  (void)pad;
  const uint32_t j =
      (uint32_t)(p0 == vn) + (uint32_t)(p1 == vn) + (uint32_t)(p2 == vn) + (uint32_t)(p3 == vn);
  /* ticks(E) = ticks(vn) + 1; +64 keeps the first reading positive. */
  return INSTRUCTIONS_PER_TICK * extend(vn) + 64u + INSTRUCTIONS_PER_TICK - 4u * n - j - 35u;
}

uint32_t tg_hal_counter_unit(void) { return TG_COUNTER_INSTRUCTIONS; }
