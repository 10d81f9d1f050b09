/* tinygen board support interface.
 *
 * Every board (emulated or real) provides these few functions; the serial
 * protocol and the generated model code use nothing else from the platform.
 * Keeping the surface this small is what lets one protocol implementation run
 * unchanged on QEMU, STM32, ESP32 and as a host program in the test-suite.
 */
#ifndef TG_HAL_H
#define TG_HAL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bring up clocks (if any), the UART used for the protocol, and the counter. */
void tg_hal_init(void);

/* Blocking write of len bytes to the protocol UART. */
void tg_hal_uart_write(const uint8_t *data, size_t len);

/* Returns the next received byte (0..255), or -1 if none arrived within
 * timeout_ms milliseconds of tg_hal_millis() time. */
int tg_hal_uart_read(uint32_t timeout_ms);

/* Monotonic milliseconds since tg_hal_init (wraps after ~49 days). */
uint32_t tg_hal_millis(void);

/* Free-running performance counter used to time an inference.  On real
 * hardware it counts core clock cycles; under QEMU -icount shift=0 it counts
 * guest instructions.  tg_hal_counter_unit() says which: see TG_COUNTER_*. */
uint64_t tg_hal_counter(void);

#define TG_COUNTER_CYCLES 0u
#define TG_COUNTER_INSTRUCTIONS 1u
uint32_t tg_hal_counter_unit(void);

#ifdef __cplusplus
}
#endif

#endif /* TG_HAL_H */
