/* 2-D convolution, int8, for cores with the DSP extension (TFLite CONV_2D,
 * one group): im2col of two output pixels at a time into 16-bit columns,
 * then a 2 output channels x 2 columns SMLAD matrix multiplication. */
#ifndef TG_CONV2D_DSP_H
#define TG_CONV2D_DSP_H

#include "tg_dsp.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  const int32_t *filter; /* [ceil(out.c / 2)][groups4][4]: 16-bit lanes (w0, w2),
                            (w1, w3) of channel 2j, then of 2j+1 (zero-padded),
                            each weight doubled when fast */
  const int32_t *rq;     /* [ceil(out.c / 2)][4 fields][2 channels]: bias (doubled
                            when fast), multiplier, round or shift, e or output
                            offset */
  tg_shape16 in;         /* input  [n][h][w][c], NHWC */
  tg_shape16 out;        /* output [n][h][w][c] */
  uint16_t groups4;      /* ceil(filter_h * filter_w * in.c / 4) */
  uint16_t row_k;        /* k per filter row: filter_w * in.c, or that rounded up to 4
                            (zero weights) where it costs no group of k */
  uint8_t filter_h, filter_w;
  uint8_t stride_h, stride_w;
  uint8_t dilation_h, dilation_w;
  uint8_t pad_h, pad_w;
  uint8_t direct_rows;  /* 1: a filter row is whole groups of 4 (or the only row) */
  uint8_t pointwise;    /* 1: 1x1, stride 1, no padding (output pixel q = input pixel q) */
  uint8_t fast;         /* rq holds fast records (see tg_dsp.h) */
  uint8_t act_full;     /* 1: the clamp is the whole int8 range */
  int16_t input_offset; /* -input zero point */
  int8_t act_min, act_max;
} tg_conv2d_dsp_params;

/* scratch: 16 * groups4 bytes (two columns), plus 4 * groups4 bytes for the
 * int8 window unless every window can be expanded straight from the input. */
void tg_conv2d_dsp_s8(const tg_conv2d_dsp_params *p, const int8_t *input, int8_t *output,
                      void *scratch);

#ifdef __cplusplus
}
#endif

#endif /* TG_CONV2D_DSP_H */
