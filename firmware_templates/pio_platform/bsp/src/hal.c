/* tg_hal.h on top of a tinygen QEMU board (see tg_board.h).
 * tg_hal_counter() and tg_hal_counter_unit() live in the board files. */
#include "tg_hal.h"
#include "tg_board.h"

static uint64_t s_epoch; /* tg_board_time() at tg_hal_init() */
static int s_initialised;

void tg_hal_init(void) {
  if (s_initialised) {
    return;
  }
  tg_board_timer_init();
  tg_board_uart_init();
  s_epoch = tg_board_time();
  s_initialised = 1;
}

void tg_hal_uart_write(const uint8_t *data, size_t len) {
  for (size_t i = 0; i < len; ++i) {
    tg_board_uart_putc(data[i]);
  }
}

int tg_hal_uart_read(uint32_t timeout_ms) {
  int byte = tg_board_uart_getc();
  if (byte >= 0 || timeout_ms == 0u) {
    return byte;
  }
  const uint64_t deadline = tg_board_time() + (uint64_t)timeout_ms * tg_board_ticks_per_ms;
  for (;;) {
    /* Clear first, then look: a byte arriving after the look pends the
     * UART interrupt again and the WFI returns at once. */
    tg_board_clear_wakeups();
    byte = tg_board_uart_getc();
    if (byte >= 0) {
      return byte;
    }
    const uint64_t now = tg_board_time();
    if (now >= deadline) {
      return -1;
    }
    tg_board_arm_wakeup(deadline - now);
    /* Sleep until the next byte or the deadline.  Busy polling would
     * be slow: under -icount every device access costs QEMU a
     * retranslation, so a polling loop runs at ~17 M instructions/s
     * and virtual time crawls (a 100 ms timeout took 6 s). */
#if defined(__riscv)
    __asm volatile("wfi" ::: "memory");
#elif defined(__XTENSA__)
    tg_board_wait();
#else
    __asm volatile("dsb\n\twfi" ::: "memory");
#endif
  }
}

uint32_t tg_hal_millis(void) {
  return (uint32_t)((tg_board_time() - s_epoch) / tg_board_ticks_per_ms);
}
