/* CONCATENATION and PAD/PADV2: pure data movement.
 *
 * TFLM concatenates int8 tensors by copying bytes (it refuses inputs whose
 * scale or zero point differ from the output's; so does the lowering).  PAD
 * fills with the pad value and copies the input's innermost rows into
 * place. */
#include <stdarg.h>

#include "tg_elementwise.h"

void tg_concatenation(const tg_concat_params *p, ...) {
  const uint8_t *ins[TG_CONCAT_MAX_INPUTS];
  uint8_t *out;
  int32_t i, k;
  va_list ap;
  va_start(ap, p);
  for (i = 0; i < p->num_inputs; ++i) {
    ins[i] = (const uint8_t *)va_arg(ap, const void *);
  }
  out = (uint8_t *)va_arg(ap, void *);
  va_end(ap);
  for (k = 0; k < p->outer; ++k) {
    for (i = 0; i < p->num_inputs; ++i) {
      const int32_t n = p->copy_size[i];
      tg_copy_bytes(out, ins[i] + (size_t)k * (size_t)n, (size_t)n);
      out += n;
    }
  }
}

void tg_pad_s8(const tg_pad_s8_params *p, const int8_t *in, int8_t *out) {
  const int32_t nd = p->ndim;
  const int32_t inner = p->in_dims[nd - 1];
  int32_t out_stride[TG_EW_MAX_DIMS];
  int32_t idx[TG_EW_MAX_DIMS] = {0};
  int32_t total = 1, rows = 1, r, d, i;
  for (d = nd - 1; d >= 0; --d) {
    out_stride[d] = total;
    total *= p->out_dims[d];
  }
  for (i = 0; i < total; ++i) {
    out[i] = (int8_t)p->pad_value;
  }
  for (d = 0; d < nd - 1; ++d) {
    rows *= p->in_dims[d];
  }
  if (inner == 0) {
    return;
  }
  for (r = 0; r < rows; ++r) {
    int32_t off = p->before[nd - 1];
    for (d = 0; d < nd - 1; ++d) {
      off += (idx[d] + p->before[d]) * out_stride[d];
    }
    tg_copy_bytes(out + off, in + (size_t)r * (size_t)inner, (size_t)inner);
    for (d = nd - 2; d >= 0; --d) {
      if (++idx[d] < p->in_dims[d]) {
        break;
      }
      idx[d] = 0;
    }
  }
}
