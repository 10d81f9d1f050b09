/* A convolution whose output map is read only by another convolution, run
 * without storing the map, and the same pair inside a residual block whose
 * ADD is done a chunk of rows at a time, so that neither inner map of the
 * block is stored.
 *
 * The consumer runs on chunks of its output rows, presented as smaller
 * convolutions (see tg_stream_fc.h); just before each chunk the producer
 * computes the map rows the chunk's windows reach that are not yet in a
 * buffer of a few rows.  In a residual block the chunk then goes to a row
 * buffer and is added to the skip's matching rows: the block's input itself
 * (identity) or a convolution of it (projection) computed a chunk at a time
 * into the output rows it is about to be added into.  Every value is computed
 * once by the same kernels as unfused, so the outputs are the unfused
 * operators' bits.  The output may lie over the input from the bound the
 * planner computes (tinygen/plan/fuse.py, stream_overlap): chunk by chunk,
 * no output byte is written over an input byte still to be read. */
#ifndef TG_STREAM_CONV_H
#define TG_STREAM_CONV_H

#include "tg_elementwise.h"
#include "tg_stream_fc.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  tg_conv2d_dsp_params producer;
  tg_conv2d_dsp_params consumer; /* its input is the producer's output */
  int32_t rows;                  /* consumer output rows per chunk */
} tg_stream_conv_conv_params;

typedef struct {
  tg_stream_conv_conv_params pair;
  tg_conv2d_dsp_params proj; /* projected: the skip is this convolution of the input */
  tg_add_s8_params add;      /* skip + consumer output, one shape; bc: one output row */
  int32_t projected;         /* 0: the skip is the input itself (same shape as the output) */
  int32_t skip_first;        /* the skip is the ADD's first operand */
} tg_stream_res_params;

/* The map buffer's bytes, as the plan's scratch counts them. */
TG_INLINE int32_t tg_stream_buf_bytes(const tg_stream_conv_conv_params *p) {
  const tg_conv2d_dsp_params *c = &p->consumer;
  const int32_t reach = (p->rows - 1) * c->stride_h + (c->filter_h - 1) * c->dilation_h + 1;
  const int32_t span = reach < c->in.h ? reach : c->in.h;
  return (span * c->in.w * c->in.c + 15) & ~15;
}

/* One chunk, what both kernels share (tg_stream_conv.c): the consumer's
 * output rows [r0, r0 + n) into out, the map rows they need made first.
 * t is the caller's one working copy of a convolution's parameters, set
 * from the producer's or the consumer's and reshaped for each call (one
 * copy on the stack rather than one per convolution). */
void tg_stream_pair_chunk(const tg_stream_conv_conv_params *p, tg_conv2d_dsp_params *t,
                          const int8_t *input, int8_t *buf, void *inner, tg_stream_span *s,
                          int32_t r0, int32_t n, int8_t *out);

/* scratch: (the map rows one chunk's windows span) * consumer in.w * in.c
 * bytes, rounded up to 16, then the largest scratch of the convolutions. */
void tg_stream_conv_conv_s8(const tg_stream_conv_conv_params *p, const int8_t *input,
                            int8_t *output, void *scratch);

/* (tg_stream_res.c) scratch: the map rows as above; rows * out.w * out.c
 * bytes of consumer output, rounded up to 16; TG_ADD_TABLE_BYTES of ADD
 * tables, built once (tg_add_tables_s8); then the largest scratch of the
 * convolutions.  The _direct_ variant rescales each element (tg_add_s8)
 * and has no tables.  Two functions rather than a flag, so that a model
 * links only the ADD kernel it uses. */
void tg_stream_res_s8(const tg_stream_res_params *p, const int8_t *input, int8_t *output,
                      void *scratch);
void tg_stream_res_direct_s8(const tg_stream_res_params *p, const int8_t *input, int8_t *output,
                             void *scratch);

#ifdef __cplusplus
}
#endif

#endif /* TG_STREAM_CONV_H */
