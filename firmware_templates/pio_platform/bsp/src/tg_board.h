/* Internal interface between the board-independent parts of the tinygen
 * QEMU board support (startup.c, hal.c) and one board file
 * (board_stm32f405.c or board_mps2.c).  The board file also defines
 * tg_hal_counter() and tg_hal_counter_unit() itself, because an exact
 * counter read is board specific. */
#ifndef TG_BOARD_H
#define TG_BOARD_H

#include <stdint.h>

/* Enable the protocol UART and its receive interrupt as a wake-up source
 * (idempotent; also used by the fault reporter). */
void tg_board_uart_init(void);
/* Blocking write of one byte. */
void tg_board_uart_putc(uint8_t byte);
/* The next received byte (0..255), or -1 if none is waiting. */
int tg_board_uart_getc(void);

/* Start the free-running timer (idempotent). */
void tg_board_timer_init(void);
/* Free-running timer ticks, extended to 64 bits in software.  No interrupt
 * is involved: the extension needs a read at least once per 32-bit wrap
 * (4.29 s of virtual time on stm32f405, 171.8 s on mps2). */
uint64_t tg_board_time(void);
/* Timer ticks per millisecond of virtual time. */
extern const uint32_t tg_board_ticks_per_ms;

/* Arm SysTick to pend once `ticks` timer ticks from now (or as late as its
 * 24-bit reload allows, if that is sooner): the wake-up for a timeout. */
void tg_board_arm_wakeup(uint64_t ticks);

/* Stop SysTick and clear the pending wake-up sources (SysTick, UART
 * receive interrupt) so that the next WFI sleeps until a new one arrives.
 *
 * Interrupts are masked (PRIMASK = 1) from reset on, so no handler ever runs:
 * a pending interrupt only ends a WFI.  With QEMU -icount sleep=on a
 * sleeping core lets virtual time follow real time, so waiting in WFI keeps
 * tg_hal_millis() close to wall-clock time and costs no host CPU, and
 * nothing disturbs the instruction count of code being measured.  (Each
 * wake-up costs QEMU some real time that virtual time does not see, so one
 * wake-up per timeout, not a periodic tick, keeps the two closest.) */
void tg_board_clear_wakeups(void);

#ifdef __XTENSA__
/* WAITI until an enabled interrupt (qemu-esp8266; see board_esp8266.c). */
void tg_board_wait(void);
#endif

/* Text on the UART without the C library, for fault and exit lines
 * (tg_fault_text.c). */
void tg_put_text(const char *text);
void tg_put_hex(const char *label, uint32_t value);

#endif /* TG_BOARD_H */
