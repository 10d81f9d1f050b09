/* The model partition of an updatable build, seen as NOR flash: erase sets a
 * whole sector to 0xFF, programming can only clear bits, reads are plain
 * memory reads (the partition is memory-mapped).  One implementation per
 * board family; tg_flash_ram.c serves the emulated boards, whose partition
 * is a RAM region that QEMU backs with a file. */
#ifndef TG_FLASH_H
#define TG_FLASH_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Start of the memory-mapped partition, its size and its erase unit. */
const uint8_t *tg_flash_base(void);
uint32_t tg_flash_size(void);
uint32_t tg_flash_sector(void);

/* Erase [offset, offset + len): both multiples of the sector size.
 * 0 on success. */
int tg_flash_erase(uint32_t offset, uint32_t len);

/* Program len bytes at offset (bits can only go from 1 to 0).  0 on success. */
int tg_flash_program(uint32_t offset, const uint8_t *data, uint32_t len);

/* Fault injection for the power-loss campaign (builds with
 * TG_UPDATE_FAULTS): every erase, every program page and every phase
 * boundary of an update is a fault point; tg_fault_arm(n) makes the n-th
 * point from now reset the board (0 disarms).  Returns the points passed
 * since boot. */
void tg_fault_point(void);
uint32_t tg_fault_arm(uint32_t countdown);

#ifdef __cplusplus
}
#endif

#endif /* TG_FLASH_H */
