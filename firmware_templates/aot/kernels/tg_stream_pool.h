/* A convolution whose output map is read only by an average or max pool,
 * run without storing the map: the pool runs one output row at a time and the
 * convolution computes, just before, the map rows that row's windows reach
 * and a buffer of a few rows does not hold yet (as tg_stream_dw.c does for a
 * depthwise consumer).  Every map pixel is computed once by the same kernel,
 * so the outputs are the unfused pair's bits.
 *
 * The pool's output rows are written after the rows of input they need have
 * been read, so the planner may place the output over the start of the
 * input (plan/fuse.py computes that bound). */
#ifndef TG_STREAM_POOL_H
#define TG_STREAM_POOL_H

#include "tg_pooling.h"
#include "tg_stream_fc.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  tg_conv2d_dsp_params producer;
  tg_pool2d_params consumer; /* its input is the producer's output */
  int32_t max;               /* 1: MAX_POOL_2D, 0: AVERAGE_POOL_2D */
} tg_stream_conv_pool_params;

/* scratch: the map rows one pool row's windows span (at most filter_h) *
 * out.w * out.c bytes of the producer, rounded up to 16, then the producer's
 * own scratch. */
void tg_stream_conv_pool_s8(const tg_stream_conv_pool_params *p, const int8_t *input,
                            int8_t *output, void *scratch);

#ifdef __cplusplus
}
#endif

#endif /* TG_STREAM_POOL_H */
