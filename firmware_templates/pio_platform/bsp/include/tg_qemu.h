/* Extras of the tinygen QEMU boards (qemu-stm32f405, qemu-cortex-m4,
 * qemu-cortex-m7) beyond the portable tg_hal.h interface.
 *
 * The platform puts this directory on every build's include path and
 * defines TG_QEMU_BOARD=1, so portable code can do
 *
 *     #ifdef TG_QEMU_BOARD
 *     #include "tg_qemu.h"
 *     #endif
 */
#ifndef TG_QEMU_H
#define TG_QEMU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Word written over the whole stack region at reset. */
#define TG_QEMU_STACK_PAINT 0xCAFED00Du

/* Size in bytes of the stack region reserved by the linker script
 * (override with -Wl,--defsym=__tg_stack_size=N). */
size_t tg_qemu_stack_size(void);

/* High-water mark: bytes at the top of the stack region that have been
 * written since reset (found by scanning for the first word that no longer
 * holds TG_QEMU_STACK_PAINT).  Equals tg_qemu_stack_size() if the stack has
 * overflowed (or come within one word of doing so). */
size_t tg_qemu_stack_used(void);

/* Bytes handed out by _sbrk() (the malloc arena) so far, and the size of
 * the heap region (RAM between the end of .bss and the stack). */
size_t tg_qemu_heap_used(void);
size_t tg_qemu_heap_size(void);

#ifdef __cplusplus
}
#endif

#endif /* TG_QEMU_H */
