/* Fused conv -> depthwise (see tg_stream_dw.h). */
#include "tg_stream_dw.h"

void tg_stream_conv_dw_s8(const tg_stream_conv_dw_params *p, const int8_t *input, int8_t *output,
                          void *scratch) {
  const tg_conv2d_dsp_params *a = &p->producer;
  const tg_depthwise_dsp_params *d = &p->consumer;
  const int32_t map_h = d->in.h;
  const int32_t row = d->in.w * d->in.c; /* bytes of one map row */
  const int32_t reach = (p->rows - 1) * d->stride_h + (d->filter_h - 1) * d->dilation_h + 1;
  const int32_t span = reach < map_h ? reach : map_h; /* as the plan's scratch counts it */
  int8_t *buf = (int8_t *)scratch;
  void *inner = buf + ((span * row + 15) & ~15);
  tg_conv2d_dsp_params ap;
  tg_depthwise_dsp_params dp = *d;
  tg_stream_span held = {0, 0}; /* the map rows in buf */
  int32_t r0;
  for (r0 = 0; r0 < d->out.h; r0 += p->rows) {
    const int32_t n = d->out.h - r0 < p->rows ? d->out.h - r0 : p->rows;
    int32_t top = r0 * d->stride_h - d->pad_h;
    int32_t end = (r0 + n - 1) * d->stride_h - d->pad_h + (d->filter_h - 1) * d->dilation_h + 1;
    top = top < 0 ? 0 : top;
    end = end > map_h ? map_h : end;
    end = end < top ? top : end;
    tg_stream_fill(a, &ap, input, buf, row, inner, &held, top, end);
    /* the chunk's geometry; its input starts at map row `top` = held.lo, in buf */
    (void)tg_stream_chunk16(&d->in, &d->out, d->stride_h, d->pad_h, r0, n, buf, &dp.in, &dp.out,
                            &dp.pad_h);
    tg_depthwise_dsp_s8(&dp, buf, output + r0 * d->out.w * d->out.c);
  }
}
