/* tinygen board support for boards on an Arduino core: STM32 (STM32duino) and
 * ESP8266 (the esp8266 Arduino core).  The protocol uses Serial (the ST-LINK
 * virtual COM port on Nucleo and Discovery boards, the USB-serial bridge on a
 * NodeMCU).  Cycles come from the DWT cycle counter on Cortex-M and from the
 * core's CCOUNT register (ESP.getCycleCount()) on the ESP8266. */
#include <Arduino.h>

extern "C" {
#include "tg_hal.h"
#include "tg_protocol.h"
}

#ifndef TG_BAUD
#define TG_BAUD 115200
#endif

static uint32_t cycle_count(void) {
#if defined(ARDUINO_ARCH_ESP8266)
  return ESP.getCycleCount();
#else
  return DWT->CYCCNT;
#endif
}

extern "C" void tg_hal_init(void) {
  Serial.begin(TG_BAUD);
#if !defined(ARDUINO_ARCH_ESP8266)
  CoreDebug->DEMCR |= CoreDebug_DEMCR_TRCENA_Msk;
  DWT->CYCCNT = 0;
  DWT->CTRL |= DWT_CTRL_CYCCNTENA_Msk;
#endif
}

extern "C" void tg_hal_uart_write(const uint8_t *data, size_t len) { Serial.write(data, len); }

extern "C" int tg_hal_uart_read(uint32_t timeout_ms) {
  uint32_t start = millis();
  while (!Serial.available()) {
    if ((uint32_t)(millis() - start) >= timeout_ms) return -1;
  }
  return Serial.read();
}

extern "C" uint32_t tg_hal_millis(void) { return millis(); }

extern "C" uint64_t tg_hal_counter(void) {
  static uint32_t last;
  static uint64_t high;
  uint32_t now = cycle_count();
  if (now < last) high += (uint64_t)1 << 32;
  last = now;
  return high | now;
}

extern "C" uint32_t tg_hal_counter_unit(void) { return TG_COUNTER_CYCLES; }

/* The protocol firmware's entry; an application (TG_NO_MAIN) has its own. */
#ifndef TG_NO_MAIN
void setup() {
  tg_hal_init();
  tg_protocol_run();
}

void loop() {}
#endif
