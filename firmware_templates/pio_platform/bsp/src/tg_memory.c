/* The C library's heap (_sbrk) and the stack and heap figures a QEMU board
 * reports (tg_qemu.h), the same on every core: the linker scripts of all
 * emulated boards define the __tg_heap_* and __tg_stack_* symbols, and each
 * startup file paints the stack with TG_QEMU_STACK_PAINT at reset. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "tg_qemu.h"

extern uint8_t __tg_heap_start[];
extern uint8_t __tg_heap_end[];
extern uint32_t __tg_stack_bottom[];
extern uint32_t __tg_stack_top[];

void *_sbrk(ptrdiff_t increment);

static uint8_t *s_brk = __tg_heap_start;

void *_sbrk(ptrdiff_t increment) {
  uint8_t *previous = s_brk;
  const size_t free_bytes = (size_t)(__tg_heap_end - s_brk);
  const size_t used_bytes = (size_t)(s_brk - __tg_heap_start);
  if ((increment > 0 && (size_t)increment > free_bytes) ||
      (increment < 0 && (size_t)(-increment) > used_bytes)) {
    errno = ENOMEM;
    return (void *)-1;
  }
  s_brk += increment;
  return previous;
}

size_t tg_qemu_stack_size(void) {
  return (size_t)((uint8_t *)__tg_stack_top - (uint8_t *)__tg_stack_bottom);
}

size_t tg_qemu_stack_used(void) {
  const volatile uint32_t *p = __tg_stack_bottom;
  while (p < __tg_stack_top && *p == TG_QEMU_STACK_PAINT) {
    ++p;
  }
  return (size_t)((const uint8_t *)__tg_stack_top - (const uint8_t *)p);
}

size_t tg_qemu_heap_used(void) { return (size_t)(s_brk - __tg_heap_start); }

size_t tg_qemu_heap_size(void) { return (size_t)(__tg_heap_end - __tg_heap_start); }
