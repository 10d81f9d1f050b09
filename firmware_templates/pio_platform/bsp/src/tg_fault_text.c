/* Fault and exit lines on the board's UART, with no C library: the startup
 * code of every core prints "*** tinygen fault: ..." through these. */
#include <stdint.h>

#include "tg_board.h"

void tg_put_text(const char *text) {
  while (*text != '\0') {
    tg_board_uart_putc((uint8_t)*text++);
  }
}

void tg_put_hex(const char *label, uint32_t value) {
  static const char digits[] = "0123456789abcdef";
  tg_put_text(label);
  for (int shift = 28; shift >= 0; shift -= 4) {
    tg_board_uart_putc((uint8_t)digits[(value >> shift) & 0xFu]);
  }
}
