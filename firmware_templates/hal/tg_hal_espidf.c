/* tinygen board support for ESP32 boards on ESP-IDF.
 * The protocol runs on UART0, the USB-serial bridge on ESP32-CAM and DevKits;
 * in the protocol firmware ESP-IDF's console logging is turned off in
 * sdkconfig.defaults so that it cannot interleave text with protocol frames. */
#include "tg_hal.h"
#include "tg_protocol.h"

#include "driver/uart.h"
#include "esp_cpu.h"
#include "esp_timer.h"

#define TG_UART UART_NUM_0
#ifndef TG_BAUD
#define TG_BAUD 115200
#endif

void tg_hal_init(void) {
  const uart_config_t cfg = {
      .baud_rate = TG_BAUD,
      .data_bits = UART_DATA_8_BITS,
      .parity = UART_PARITY_DISABLE,
      .stop_bits = UART_STOP_BITS_1,
      .flow_ctrl = UART_HW_FLOWCTRL_DISABLE,
      .source_clk = UART_SCLK_DEFAULT,
  };
  uart_driver_install(TG_UART, 4096, 0, 0, NULL, 0);
  uart_param_config(TG_UART, &cfg);
}

void tg_hal_uart_write(const uint8_t *data, size_t len) {
  uart_write_bytes(TG_UART, (const char *)data, len);
}

int tg_hal_uart_read(uint32_t timeout_ms) {
  uint8_t byte;
  int n = uart_read_bytes(TG_UART, &byte, 1, pdMS_TO_TICKS(timeout_ms));
  return n == 1 ? (int)byte : -1;
}

uint32_t tg_hal_millis(void) { return (uint32_t)(esp_timer_get_time() / 1000); }

uint64_t tg_hal_counter(void) {
  /* The CCOUNT register is 32 bits; extend it (inferences longer than one
   * wrap, ~17 s at 240 MHz, are not expected between two reads). */
  static uint32_t last;
  static uint64_t high;
  uint32_t now = esp_cpu_get_cycle_count();
  if (now < last) high += (uint64_t)1 << 32;
  last = now;
  return high | now;
}

uint32_t tg_hal_counter_unit(void) { return TG_COUNTER_CYCLES; }

/* The protocol firmware's entry; an application (TG_NO_MAIN) has its own. */
#ifndef TG_NO_MAIN
void app_main(void) {
  tg_hal_init();
  tg_protocol_run();
}
#endif
