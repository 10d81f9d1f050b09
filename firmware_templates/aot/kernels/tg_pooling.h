/* Average and max pooling, int8 (TFLite AVERAGE_POOL_2D, MAX_POOL_2D). */
#ifndef TG_POOLING_H
#define TG_POOLING_H

#include "tg_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  tg_dims4 in;
  tg_dims4 out; /* out.n == in.n, out.c == in.c */
  int32_t filter_h, filter_w;
  int32_t stride_h, stride_w;
  int32_t pad_h, pad_w;
  int32_t act_min, act_max;
} tg_pool2d_params;

void tg_avg_pool2d_s8(const tg_pool2d_params *p, const int8_t *input, int8_t *output);
void tg_max_pool2d_s8(const tg_pool2d_params *p, const int8_t *input, int8_t *output);

#ifdef __cplusplus
}
#endif

#endif /* TG_POOLING_H */
