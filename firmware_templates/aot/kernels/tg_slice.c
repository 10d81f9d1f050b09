/* Strided gather, split and pack (see tg_slice.h). */
#include <stdarg.h>

#include "tg_slice.h"

void tg_gather(const tg_gather_params *p, const void *input, void *output) {
  const uint8_t *src = (const uint8_t *)input + p->start;
  uint8_t *dst = (uint8_t *)output;
  int32_t idx[TG_GATHER_MAX_DIMS];
  const int32_t nd = p->ndim, run = p->run;
  int32_t d;
  if (run <= 0) {
    return;
  }
  for (d = 0; d < nd; ++d) {
    if (p->count[d] <= 0) {
      return;
    }
    idx[d] = 0;
  }
  for (;;) {
    tg_copy_bytes(dst, src, (size_t)run);
    dst += run;
    /* advance the odometer from the innermost dimension */
    for (d = nd - 1; d >= 0; --d) {
      src += p->step[d];
      if (++idx[d] < p->count[d]) {
        break;
      }
      src -= (ptrdiff_t)p->step[d] * p->count[d];
      idx[d] = 0;
    }
    if (d < 0) {
      return;
    }
  }
}

void tg_split(const tg_split_params *p, const void *input, ...) {
  const uint8_t *in = (const uint8_t *)input;
  int32_t k, r, offset = 0;
  va_list ap;
  va_start(ap, input);
  for (k = 0; k < p->num_outputs; ++k) {
    uint8_t *out = (uint8_t *)va_arg(ap, void *);
    const int32_t n = p->part_bytes[k];
    for (r = 0; r < p->outer; ++r) {
      tg_copy_bytes(out + (size_t)r * (size_t)n,
                    in + (size_t)r * (size_t)p->row_bytes + (size_t)offset, (size_t)n);
    }
    offset += n;
  }
  va_end(ap);
}

void tg_pack(const tg_pack_params *p, ...) {
  const int32_t n = p->num_inputs, part = p->part_bytes;
  uint8_t *out;
  int32_t k, r;
  va_list ap;
  /* the output pointer comes last: walk past the inputs to find it */
  va_start(ap, p);
  for (k = 0; k < n; ++k) {
    (void)va_arg(ap, const void *);
  }
  out = (uint8_t *)va_arg(ap, void *);
  va_end(ap);
  va_start(ap, p);
  for (k = 0; k < n; ++k) {
    const uint8_t *in = (const uint8_t *)va_arg(ap, const void *);
    for (r = 0; r < p->outer; ++r) {
      tg_copy_bytes(out + ((size_t)r * (size_t)n + (size_t)k) * (size_t)part,
                    in + (size_t)r * (size_t)part, (size_t)part);
    }
  }
  va_end(ap);
}
