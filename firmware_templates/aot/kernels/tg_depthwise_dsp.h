/* Depthwise 2-D convolution, int8, depth multiplier 1, for cores with the DSP
 * extension (TFLite DEPTHWISE_CONV_2D): four channels per SIMD step. */
#ifndef TG_DEPTHWISE_DSP_H
#define TG_DEPTHWISE_DSP_H

#include "tg_dsp.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  const int32_t *filter; /* [ceil(c/4)][filter_h * filter_w][2]: 16-bit lanes
                            (w[c0], w[c2]) and (w[c1], w[c3]) of each group of 4 */
  const int32_t *rq;     /* [ceil(c/4)][rq_words]: see tg_depthwise_dsp.c */
  tg_shape16 in;         /* input  [n][h][w][c] */
  tg_shape16 out;        /* output [n][h][w][c] (depth multiplier 1) */
  uint8_t filter_h, filter_w;
  uint8_t stride_h, stride_w;
  uint8_t dilation_h, dilation_w;
  uint8_t pad_h, pad_w;
  uint8_t fast;     /* rq holds fast records (see tg_dsp.h) */
  uint8_t act_full; /* 1: the clamp is the whole int8 range */
  uint8_t rq_words; /* 16, or 20 with the folded biases */
  int8_t act_min, act_max;
  int16_t input_offset; /* -input zero point */
} tg_depthwise_dsp_params;

void tg_depthwise_dsp_s8(const tg_depthwise_dsp_params *p, const int8_t *input, int8_t *output);

#ifdef __cplusplus
}
#endif

#endif /* TG_DEPTHWISE_DSP_H */
