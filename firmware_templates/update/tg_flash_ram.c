/* The model partition of the emulated boards: a RAM region that QEMU backs
 * with a file (-object memory-backend-file ... -machine memory-backend=...),
 * so its content survives a board reset and a QEMU restart.  The driver
 * keeps NOR flash rules (erase to 0xFF, programming only clears bits) so
 * that code which is correct here is correct on real flash.
 *
 * TG_FLASH_BASE and TG_FLASH_BYTES come from tg_update_config.h. */
#include <stddef.h>
#include <stdint.h>

#include "tg_flash.h"
#include "tg_update_config.h"

#define TG_FLASH_SECTOR_BYTES 4096u
/* A fault may strike inside a program operation: pages are programmed in
 * this unit and a fault tears the page in half. */
#define TG_FLASH_PAGE_BYTES 256u

static volatile uint8_t *const tg_flash = (volatile uint8_t *)TG_FLASH_BASE;

const uint8_t *tg_flash_base(void) { return (const uint8_t *)TG_FLASH_BASE; }

uint32_t tg_flash_size(void) { return TG_FLASH_BYTES; }

uint32_t tg_flash_sector(void) { return TG_FLASH_SECTOR_BYTES; }

#ifdef TG_UPDATE_FAULTS
static uint32_t tg_fault_countdown;
static uint32_t tg_fault_passed;

static void tg_fault_reset(void) {
#if defined(__ARM_ARCH)
  /* SCB->AIRCR: VECTKEY | SYSRESETREQ; QEMU resets the whole machine. */
  *(volatile uint32_t *)0xE000ED0Cu = 0x05FA0004u;
#endif
  for (;;) {
  }
}

static int tg_fault_due(void) {
  tg_fault_passed++;
  if (tg_fault_countdown == 0u) return 0;
  return --tg_fault_countdown == 0u;
}

void tg_fault_point(void) {
  if (tg_fault_due()) tg_fault_reset();
}

uint32_t tg_fault_arm(uint32_t countdown) {
  tg_fault_countdown = countdown;
  return tg_fault_passed;
}
#else
void tg_fault_point(void) {}

uint32_t tg_fault_arm(uint32_t countdown) {
  (void)countdown;
  return 0u;
}
#endif

int tg_flash_erase(uint32_t offset, uint32_t len) {
  uint32_t s, i;
  if (offset % TG_FLASH_SECTOR_BYTES || len % TG_FLASH_SECTOR_BYTES) return -1;
  if (offset > TG_FLASH_BYTES || len > TG_FLASH_BYTES - offset) return -1;
  for (s = 0; s < len; s += TG_FLASH_SECTOR_BYTES) {
#ifdef TG_UPDATE_FAULTS
    if (tg_fault_due()) {
      /* power lost mid-erase: the sector is left half erased */
      for (i = 0; i < TG_FLASH_SECTOR_BYTES / 2u; i++) tg_flash[offset + s + i] = 0xFFu;
      tg_fault_reset();
    }
#endif
    for (i = 0; i < TG_FLASH_SECTOR_BYTES; i++) tg_flash[offset + s + i] = 0xFFu;
  }
  return 0;
}

int tg_flash_program(uint32_t offset, const uint8_t *data, uint32_t len) {
  uint32_t p, i;
  if (offset > TG_FLASH_BYTES || len > TG_FLASH_BYTES - offset) return -1;
  for (p = 0; p < len; p += TG_FLASH_PAGE_BYTES) {
    uint32_t n = len - p < TG_FLASH_PAGE_BYTES ? len - p : TG_FLASH_PAGE_BYTES;
#ifdef TG_UPDATE_FAULTS
    if (tg_fault_due()) {
      for (i = 0; i < n / 2u; i++) tg_flash[offset + p + i] &= data[p + i];
      tg_fault_reset();
    }
#endif
    for (i = 0; i < n; i++) tg_flash[offset + p + i] &= data[p + i];
  }
  return 0;
}
