/* A convolution whose output map is read only by a depthwise convolution,
 * run without storing the map: the depthwise runs on chunks of its output
 * rows (presented as smaller convolutions, see tg_stream_fc.h) and the
 * convolution computes, just before each chunk, the map rows the chunk's
 * windows reach that are not yet in a buffer of a few rows.  Every map pixel
 * is computed once, by the same kernel, so the outputs are the unfused pair's
 * bits; the arena holds the buffer instead of the map. */
#ifndef TG_STREAM_DW_H
#define TG_STREAM_DW_H

#include "tg_stream_fc.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  tg_conv2d_dsp_params producer;
  tg_depthwise_dsp_params consumer; /* its input is the producer's output */
  int32_t rows;                     /* depthwise output rows per chunk */
} tg_stream_conv_dw_params;

/* scratch: (the map rows one chunk's windows span) * out.w * out.c bytes of
 * the producer, rounded up to 16, then the producer's own scratch. */
void tg_stream_conv_dw_s8(const tg_stream_conv_dw_params *p, const int8_t *input, int8_t *output,
                          void *scratch);

#ifdef __cplusplus
}
#endif

#endif /* TG_STREAM_DW_H */
