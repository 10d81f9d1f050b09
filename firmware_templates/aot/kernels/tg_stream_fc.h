/* A convolution or depthwise convolution whose output map is read only by a
 * FULLY_CONNECTED layer, run without ever storing the map: the producer
 * kernel computes a few output rows at a time into scratch and the FC adds
 * their part of every unit's dot product to int32 accumulators.  Integer
 * sums do not depend on how they are split, so the outputs are the unfused
 * pair's bits; the FC's requantization runs once, at the end. */
#ifndef TG_STREAM_FC_H
#define TG_STREAM_FC_H

#include "tg_conv2d_dsp.h"
#include "tg_depthwise_dsp.h"
#include "tg_fully_connected_dsp.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  tg_conv2d_dsp_params producer;
  tg_fully_connected_dsp_params fc; /* batches 1, depth = the producer's output size */
  int32_t rows;                     /* producer output rows per chunk */
} tg_stream_fc_conv_params;

typedef struct {
  tg_depthwise_dsp_params producer;
  tg_fully_connected_dsp_params fc;
  int32_t rows;
} tg_stream_fc_dw_params;

/* scratch: 16 * ceil(units / 4) bytes of accumulators, then rows * out.w *
 * out.c bytes (rounded up to 16) of map rows, then (conv) the producer's own
 * scratch. */
void tg_stream_fc_conv_s8(const tg_stream_fc_conv_params *p, const int8_t *input, int8_t *output,
                          void *scratch);
void tg_stream_fc_dw_s8(const tg_stream_fc_dw_params *p, const int8_t *input, int8_t *output,
                        void *scratch);

/* The producer kernels have no row-range entry point; a chunk of output rows
 * [r0, r0 + n) is instead presented to them as a whole, smaller convolution:
 * the input starts at row top = max(0, r0 * stride_h - pad_h), the top padding
 * shrinks to what is still above that row, the input keeps its real bottom
 * (so bottom padding is unchanged) and the output is n rows high.  Window
 * positions relative to the shifted input are exactly the original ones, so
 * the kernels compute the same pixels with the same arithmetic.
 */

/* The chunk's first input row. */
TG_INLINE int32_t tg_stream_top(int32_t stride_h, int32_t pad_h, int32_t r0) {
  const int32_t top = r0 * stride_h - pad_h;
  return top < 0 ? 0 : top;
}

/* The chunk's geometry; returns where its input starts.  For the wide
 * (tg_dims4) parameters of the portable kernels. */
TG_INLINE const int8_t *tg_stream_chunk(const tg_dims4 *in, const tg_dims4 *out, int32_t stride_h,
                                        int32_t pad_h, int32_t r0, int32_t n, const int8_t *input,
                                        tg_dims4 *cin, tg_dims4 *cout, int32_t *cpad) {
  const int32_t top = tg_stream_top(stride_h, pad_h, r0);
  *cin = *in;
  *cout = *out;
  cin->h = in->h - top;
  cout->h = n;
  *cpad = pad_h + top - r0 * stride_h;
  return input + top * in->w * in->c;
}

/* The same for the dsp kernels' narrow parameters (tg_shape16, byte-wide
 * padding): every value is no larger than the whole layer's, which fit. */
TG_INLINE const int8_t *tg_stream_chunk16(const tg_shape16 *in, const tg_shape16 *out,
                                          int32_t stride_h, int32_t pad_h, int32_t r0, int32_t n,
                                          const int8_t *input, tg_shape16 *cin, tg_shape16 *cout,
                                          uint8_t *cpad) {
  const int32_t top = tg_stream_top(stride_h, pad_h, r0);
  *cin = *in;
  *cout = *out;
  cin->h = (uint16_t)(in->h - top);
  cout->h = (uint16_t)n;
  *cpad = (uint8_t)(pad_h + top - r0 * stride_h);
  return input + top * in->w * in->c;
}

/* A streamed producer's map rows [lo, hi) held in a row buffer, row lo
 * first. */
typedef struct {
  int32_t lo, hi;
} tg_stream_span;

/* Kept rows move down to the buffer's start (dst < src): forward, a word at
 * a time.  Each word is read whole before it is written and reads run ahead
 * of writes, so the overlap is safe.  memmove links 256 B of newlib for
 * about 0.05 % fewer instructions on mobilenet_ssd (its copy is unrolled
 * four words deep). */
TG_INLINE void tg_stream_shift(int8_t *dst, const int8_t *src, int32_t n) {
  for (; n >= 4; n -= 4, dst += 4, src += 4) {
    tg_store_u32(dst, tg_load_u32(src));
  }
  for (; n > 0; --n) {
    *dst++ = *src++;
  }
}

/* Makes the convolution a's map rows [top, end) (row bytes each) the
 * buffer's content: the rows above top, which no later window reads, are
 * dropped and the missing ones computed as one smaller convolution, through
 * t, the caller's working copy of a convolution's parameters. */
TG_INLINE void tg_stream_fill(const tg_conv2d_dsp_params *a, tg_conv2d_dsp_params *t,
                              const int8_t *input, int8_t *buf, int32_t row, void *inner,
                              tg_stream_span *s, int32_t top, int32_t end) {
  if (top > s->lo) {
    if (s->hi > top) {
      tg_stream_shift(buf, buf + (top - s->lo) * row, (s->hi - top) * row);
    } else {
      s->hi = top; /* a stride past the window: rows [hi, top) are never needed */
    }
    s->lo = top;
  }
  if (end > s->hi) {
    const int8_t *in;
    *t = *a;
    in = tg_stream_chunk16(&a->in, &a->out, a->stride_h, a->pad_h, s->hi, end - s->hi, input,
                           &t->in, &t->out, &t->pad_h);
    tg_conv2d_dsp_s8(t, in, buf + (s->hi - s->lo) * row, inner);
    s->hi = end;
  }
}

/* acc[0 .. 4 * quads): FC accumulators, started from the biases */
TG_INLINE void tg_stream_start(const tg_fully_connected_dsp_params *fc, int32_t *acc) {
  const int32_t quads = (fc->units + 3) >> 2;
  int32_t u, i;
  for (u = 0; u < quads; ++u) {
    for (i = 0; i < 4; ++i) {
      acc[4 * u + i] = fc->rq[16 * u + i];
    }
  }
}

/* the chunk's n map bytes at depth d0 (a multiple of 4 unless it is the last) */
TG_INLINE void tg_stream_add(const tg_fully_connected_dsp_params *fc, const int8_t *x, int32_t d0,
                             int32_t n, int32_t *acc) {
  const int32_t quads = (fc->units + 3) >> 2;
  const int32_t w_quad = 4 * ((fc->depth + 3) >> 2);
  const int32_t *w = fc->filter + d0; /* four words per group of 4 inputs */
  int32_t u;
  for (u = 0; u < quads; ++u, w += w_quad) {
    tg_dot4_s8(x, w, n >> 2, n & 3, acc + 4 * u, acc + 4 * u);
  }
}

TG_INLINE void tg_stream_finish(const tg_fully_connected_dsp_params *fc, const int32_t *acc,
                                int8_t *output) {
  int32_t k;
  for (k = 0; k < fc->units; ++k) {
    const int32_t *rq = fc->rq + 16 * (k >> 2) + (k & 3);
    const int32_t v = fc->fast ? tg_rq_fast(acc[k], rq[4], rq[8], rq[12])
                               : tg_rq_exact(acc[k], rq[4], rq[8], rq[12]);
    output[k] = (int8_t)(fc->act_full ? tg_ssat8(v) : tg_clamp_i32(v, fc->act_min, fc->act_max));
  }
}

#ifdef __cplusplus
}
#endif

#endif /* TG_STREAM_FC_H */
