/* The fake model's host hooks on an emulated Cortex-M board (tests only):
 * the counter is the board's real one, and a reboot is a system reset
 * request (SCB AIRCR.SYSRESETREQ). */
#include "tg_hal_host.h"

void tg_host_counter_advance(uint64_t n) { (void)n; }

void tg_host_reboot(void) {
  *(volatile uint32_t *)0xE000ED0Cu = 0x05FA0004u;
  for (;;) {
  }
}
