/* Fused conv -> conv (see tg_stream_conv.h). */
#include "tg_stream_conv.h"

void tg_stream_pair_chunk(const tg_stream_conv_conv_params *p, tg_conv2d_dsp_params *t,
                          const int8_t *input, int8_t *buf, void *inner, tg_stream_span *s,
                          int32_t r0, int32_t n, int8_t *out) {
  const tg_conv2d_dsp_params *a = &p->producer;
  const tg_conv2d_dsp_params *c = &p->consumer;
  const int32_t map_h = c->in.h;
  const int32_t row = c->in.w * c->in.c;
  int32_t top = r0 * c->stride_h - c->pad_h;
  int32_t end = (r0 + n - 1) * c->stride_h - c->pad_h + (c->filter_h - 1) * c->dilation_h + 1;
  top = top < 0 ? 0 : top;
  end = end > map_h ? map_h : end;
  end = end < top ? top : end;
  tg_stream_fill(a, t, input, buf, row, inner, s, top, end);
  *t = *c;
  (void)tg_stream_chunk16(&c->in, &c->out, c->stride_h, c->pad_h, r0, n, buf, &t->in, &t->out,
                          &t->pad_h);
  /* the buffer ends at row hi: the kernel's bounds (a padded filter row may
   * read a few bytes past its window where the input goes on) are the
   * buffer's; the chunk's windows end at hi or meet the real bottom padding */
  t->in.h = (uint16_t)(s->hi - s->lo);
  tg_conv2d_dsp_s8(t, buf, out, inner);
}

void tg_stream_conv_conv_s8(const tg_stream_conv_conv_params *p, const int8_t *input,
                            int8_t *output, void *scratch) {
  const tg_conv2d_dsp_params *c = &p->consumer;
  const int32_t out_row = c->out.w * c->out.c;
  int8_t *buf = (int8_t *)scratch;
  void *inner = buf + tg_stream_buf_bytes(p);
  tg_conv2d_dsp_params t;
  tg_stream_span s = {0, 0};
  int32_t r0;
  for (r0 = 0; r0 < c->out.h; r0 += p->rows) {
    const int32_t n = c->out.h - r0 < p->rows ? c->out.h - r0 : p->rows;
    tg_stream_pair_chunk(p, &t, input, buf, inner, &s, r0, n, output + r0 * out_row);
  }
}
