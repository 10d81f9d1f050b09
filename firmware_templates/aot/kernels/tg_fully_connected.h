/* Fully connected layer, int8 (TFLite FULLY_CONNECTED). */
#ifndef TG_FULLY_CONNECTED_H
#define TG_FULLY_CONNECTED_H

#include "tg_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int32_t batches;     /* rows of the input seen as [batches][accum_depth] */
  int32_t accum_depth; /* weights [out_depth][accum_depth] */
  int32_t out_depth;
  int32_t input_offset;  /* -input zero point */
  int32_t filter_offset; /* -weights zero point (per-tensor weights only) */
  int32_t output_offset; /* output zero point */
  int32_t act_min, act_max;
  int32_t per_channel; /* 1: multiplier/shift have out_depth entries; 0: one */
  const int8_t *filter;
  const int32_t *bias;  /* out_depth entries, or NULL */
  const int32_t *kbias; /* out_depth entries: bias + input_offset * sum(w[o]) */
  const int32_t *multiplier;
  const int32_t *shift;
} tg_fully_connected_params;

void tg_fully_connected_s8(const tg_fully_connected_params *p, const int8_t *input, int8_t *output);

#ifdef __cplusplus
}
#endif

#endif /* TG_FULLY_CONNECTED_H */
