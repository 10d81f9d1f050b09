/* Depthwise 2-D convolution, int8 (TFLite DEPTHWISE_CONV_2D, per-channel). */
#ifndef TG_DEPTHWISE_CONV2D_H
#define TG_DEPTHWISE_CONV2D_H

#include "tg_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  tg_dims4 in;                /* input  [n][h][w][c] */
  tg_dims4 out;               /* output [n][h][w][c * depth_multiplier] */
  int32_t filter_h, filter_w; /* filter [1][filter_h][filter_w][out.c] */
  int32_t depth_multiplier;
  int32_t stride_h, stride_w;
  int32_t dilation_h, dilation_w;
  int32_t pad_h, pad_w;
  int32_t input_offset;  /* -input zero point */
  int32_t output_offset; /* output zero point */
  int32_t act_min, act_max;
  const int8_t *filter;
  const int32_t *bias;       /* out.c entries, or NULL */
  const int32_t *kbias;      /* out.c entries: bias + input_offset * sum(filter[.., oc]) */
  const int32_t *multiplier; /* out.c entries */
  const int32_t *shift;
} tg_depthwise_conv2d_params;

void tg_depthwise_conv2d_s8(const tg_depthwise_conv2d_params *p, const int8_t *input,
                            int8_t *output);

#ifdef __cplusplus
}
#endif

#endif /* TG_DEPTHWISE_CONV2D_H */
