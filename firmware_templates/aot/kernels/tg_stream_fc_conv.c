/* Fused conv -> FULLY_CONNECTED (see tg_stream_fc.h). */
#include "tg_stream_fc.h"

void tg_stream_fc_conv_s8(const tg_stream_fc_conv_params *p, const int8_t *input, int8_t *output,
                          void *scratch) {
  const tg_conv2d_dsp_params *c = &p->producer;
  const int32_t row_bytes = c->out.w * c->out.c;
  const int32_t quads = (p->fc.units + 3) >> 2;
  int32_t *acc = (int32_t *)scratch;
  int8_t *map = (int8_t *)(acc + 4 * quads);
  void *inner = map + ((p->rows * row_bytes + 15) & ~15);
  tg_conv2d_dsp_params cp = *c;
  int32_t r0;
  tg_stream_start(&p->fc, acc);
  for (r0 = 0; r0 < c->out.h; r0 += p->rows) {
    const int32_t n = c->out.h - r0 < p->rows ? c->out.h - r0 : p->rows;
    const int8_t *in = tg_stream_chunk16(&c->in, &c->out, c->stride_h, c->pad_h, r0, n, input,
                                         &cp.in, &cp.out, &cp.pad_h);
    tg_conv2d_dsp_s8(&cp, in, map, inner);
    tg_stream_add(&p->fc, map, r0 * row_bytes, n * row_bytes, acc);
  }
  tg_stream_finish(&p->fc, acc, output);
}
