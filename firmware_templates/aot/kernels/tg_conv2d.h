/* 2-D convolution, int8 activations, int8 per-channel weights (TFLite CONV_2D). */
#ifndef TG_CONV2D_H
#define TG_CONV2D_H

#include "tg_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  tg_dims4 in;                /* input  [n][h][w][c], NHWC */
  tg_dims4 out;               /* output [n][h][w][c] */
  int32_t filter_h, filter_w; /* filter [out.c][filter_h][filter_w][filter_c] */
  int32_t filter_c;           /* input channels per group (in.c for an ungrouped conv) */
  int32_t stride_h, stride_w;
  int32_t dilation_h, dilation_w;
  int32_t pad_h, pad_w;     /* padding before the first row / column */
  int32_t input_offset;     /* -input zero point */
  int32_t output_offset;    /* output zero point */
  int32_t act_min, act_max; /* fused activation clamp, quantized */
  const int8_t *filter;
  const int32_t *bias;       /* out.c entries, or NULL */
  const int32_t *kbias;      /* out.c entries: bias + input_offset * sum(filter[oc]) */
  const int32_t *multiplier; /* out.c entries (Q31) */
  const int32_t *shift;      /* out.c entries */
} tg_conv2d_params;

/* General convolution.  scratch: filter_h * filter_w * filter_c bytes (the
 * window of one output pixel, gathered with padding taps set to the input
 * zero point). */
void tg_conv2d_s8(const tg_conv2d_params *p, const int8_t *input, int8_t *output, void *scratch);

/* General convolution without scratch memory (slower on small channel counts
 * and at borders; used when the scratch would grow the arena). */
void tg_conv2d_direct_s8(const tg_conv2d_params *p, const int8_t *input, int8_t *output);

/* 1x1 filter, one group (pointwise convolution): no padding, no scratch. */
void tg_conv2d_1x1_s8(const tg_conv2d_params *p, const int8_t *input, int8_t *output);

#ifdef __cplusplus
}
#endif

#endif /* TG_CONV2D_H */
