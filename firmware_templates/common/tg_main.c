/* Default firmware entry point of a tinygen project: bring the board up,
 * then serve the serial protocol (docs/protocol.md) forever.
 *
 * Boards whose framework owns the entry point (ESP-IDF app_main, Arduino
 * setup/loop) call tg_hal_init() and tg_protocol_run() from their HAL file
 * and do not compile this one; define TG_NO_MAIN to keep it out otherwise.
 */
#include "tg_hal.h"
#include "tg_protocol.h"

#ifndef TG_NO_MAIN
int main(void) {
  tg_hal_init();
  tg_protocol_run();
  return 0; /* not reached */
}
#endif
