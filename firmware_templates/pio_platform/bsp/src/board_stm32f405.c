/* tinygen board qemu-stm32f405: QEMU machine netduinoplus2 (STM32F405).
 *
 * UART: USART1 at 0x40011000, IRQ 37.  QEMU discards received and
 * transmitted bytes unless UE, TE and RE are set in CR1; no clock setup is
 * needed.  RXNEIE only serves to wake the core from WFI (see tg_board.h).
 *
 * Time: TIM2, a 32-bit up-counter.  QEMU 7.2 clocks the STM32F405 general
 * purpose timers at 1 GHz, and under -icount shift=0 every guest
 * instruction advances virtual time by exactly 1 ns, so one TIM2 tick is
 * one guest instruction: the counter is exact with no conversion.
 * (SysTick, by comparison, runs at 168 MHz from the core clock, 5.95
 * instructions per tick, or 21 MHz from the external reference; it serves
 * only to end the WFI of a timed-out tg_hal_uart_read().)
 */
#include "tg_board.h"
#include "tg_hal.h"

#define REG32(addr) (*(volatile uint32_t *)(addr))

#define USART1_BASE 0x40011000u
#define USART_SR REG32(USART1_BASE + 0x00u)
#define USART_DR REG32(USART1_BASE + 0x04u)
#define USART_BRR REG32(USART1_BASE + 0x08u)
#define USART_CR1 REG32(USART1_BASE + 0x0Cu)
#define USART_SR_RXNE (1u << 5)
#define USART_SR_TXE (1u << 7)
#define USART_CR1_RE (1u << 2)
#define USART_CR1_RXNEIE (1u << 5)
#define USART_CR1_TE (1u << 3)
#define USART_CR1_UE (1u << 13)

#define TIM2_BASE 0x40000000u
#define TIM2_CR1 REG32(TIM2_BASE + 0x00u)
#define TIM2_EGR REG32(TIM2_BASE + 0x14u)
#define TIM2_CNT REG32(TIM2_BASE + 0x24u)
#define TIM2_PSC REG32(TIM2_BASE + 0x28u)
#define TIM2_ARR REG32(TIM2_BASE + 0x2Cu)
#define TIM_CR1_CEN (1u << 0)
#define TIM_EGR_UG (1u << 0)
#define USART1_IRQ 37u

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

const uint32_t tg_board_ticks_per_ms = 1000000u; /* 1 GHz under QEMU */

void tg_board_uart_init(void) {
  /* 115200 Bd from the 84 MHz APB2 clock of a real F405 (ignored by QEMU). */
  USART_BRR = 0x2D9u;
  USART_CR1 = USART_CR1_UE | USART_CR1_TE | USART_CR1_RE | USART_CR1_RXNEIE;
  NVIC_ISER(USART1_IRQ / 32u) = 1u << (USART1_IRQ % 32u);
}

void tg_board_uart_putc(uint8_t byte) {
  while ((USART_SR & USART_SR_TXE) == 0u) {
  }
  USART_DR = byte;
}

int tg_board_uart_getc(void) {
  if ((USART_SR & USART_SR_RXNE) == 0u) {
    return -1;
  }
  return (int)(USART_DR & 0xFFu);
}

static uint32_t s_running; /* TIM2 started */
static uint32_t s_last;    /* last TIM2 value seen */
static uint32_t s_high;    /* number of 32-bit wraps seen */

void tg_board_timer_init(void) {
  if (s_running) {
    return;
  }
  TIM2_PSC = 0u;
  TIM2_ARR = 0xFFFFFFFFu;
  TIM2_EGR = TIM_EGR_UG; /* load PSC, CNT = 0 */
  TIM2_CR1 = TIM_CR1_CEN;
  s_last = 0u;
  s_high = 0u;
  s_running = 1u;
}

void tg_board_arm_wakeup(uint64_t ticks) {
  /* TIM2 ticks are ns; SysTick counts the 168 MHz core clock. */
  const uint64_t max_ns = (uint64_t)SYST_MAX_RELOAD * 1000u / 168u;
  const uint32_t reload = ticks >= max_ns ? SYST_MAX_RELOAD : (uint32_t)(ticks * 168u / 1000u);
  SYST_CSR = 0u;
  SYST_RVR = reload > 1u ? reload - 1u : 1u;
  SYST_CVR = 0u;
  SYST_CSR = SYST_CSR_ENABLE | SYST_CSR_TICKINT | SYST_CSR_CPUCLK;
}

void tg_board_clear_wakeups(void) {
  SYST_CSR = 0u; /* a short period would otherwise keep QEMU busy */
  SCB_ICSR = SCB_ICSR_PENDSTCLR;
  NVIC_ICPR(USART1_IRQ / 32u) = 1u << (USART1_IRQ % 32u);
}

/* Extend a 32-bit reading to 64 bits (branch-free, so the instruction count
 * of a counter read does not depend on the value). */
static inline uint64_t extend(uint32_t now) {
  s_high += (uint32_t)(now < s_last);
  s_last = now;
  return ((uint64_t)s_high << 32) | now;
}

uint64_t tg_board_time(void) {
  tg_board_timer_init();
  return extend(TIM2_CNT);
}

uint64_t tg_hal_counter(void) {
  tg_board_timer_init();
  return extend(TIM2_CNT);
}

uint32_t tg_hal_counter_unit(void) { return TG_COUNTER_INSTRUCTIONS; }
