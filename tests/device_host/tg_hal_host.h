/* Host build of a tinygen device (tests only): extras of the host HAL. */
#ifndef TG_HAL_HOST_H
#define TG_HAL_HOST_H

#include <stdint.h>

/* The performance counter only moves when this is called, so the counter
 * delta of an inference is whatever the fake model says it costs. */
void tg_host_counter_advance(uint64_t n);

/* Simulated reset: re-executes the program on the same connection, so all
 * static state starts over and a new BOOT frame goes out.  Never returns. */
void tg_host_reboot(void);

#endif
