/* Sparse int8 matrix product: FULLY_CONNECTED and 1x1 CONV_2D layers whose
 * weights are mostly exact zeros, stored as compressed rows. */
#ifndef TG_SPARSE_MM_H
#define TG_SPARSE_MM_H

#include "tg_dsp.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int32_t rows;  /* input vectors: batches, or pixels of a 1x1 convolution */
  int32_t depth; /* int8 values per input vector (contiguous) */
  int32_t units; /* outputs per vector: weight rows */
  int32_t fast;  /* 1: rq holds tg_rq_fast records, 0: tg_rq_exact ones (tg_dsp.h) */
  int32_t act_full, act_min, act_max;
  /* weight row o holds its non-zero weights val[row_start[o] .. row_start[o + 1])
   * at columns col8[...] (depth <= 256) or col16[...] (the other one is NULL) */
  const uint16_t *row_start;
  const uint8_t *col8;
  const uint16_t *col16;
  const int8_t *val;
  /* per output: {kbias, multiplier, round or shift, e or output offset}, where
   * kbias = bias + input_offset * sum(w[o]) (the kernel multiplies raw int8) */
  const int32_t *rq;
} tg_sparse_mm_params;

void tg_sparse_mm_s8(const tg_sparse_mm_params *p, const int8_t *input, int8_t *output);

#ifdef __cplusplus
}
#endif

#endif /* TG_SPARSE_MM_H */
