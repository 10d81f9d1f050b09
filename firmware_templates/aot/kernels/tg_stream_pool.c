/* Fused conv -> pool (see tg_stream_pool.h). */
#include "tg_stream_pool.h"

void tg_stream_conv_pool_s8(const tg_stream_conv_pool_params *p, const int8_t *input,
                            int8_t *output, void *scratch) {
  const tg_conv2d_dsp_params *a = &p->producer;
  const tg_pool2d_params *q = &p->consumer;
  const int32_t map_h = q->in.h;
  const int32_t row = q->in.w * q->in.c; /* bytes of one map row */
  const int32_t span = q->filter_h < map_h ? q->filter_h : map_h;
  int8_t *buf = (int8_t *)scratch;
  void *inner = buf + ((span * row + 15) & ~15);
  tg_conv2d_dsp_params ap;
  tg_pool2d_params qp = *q;
  tg_stream_span held = {0, 0}; /* the map rows in buf */
  int32_t oy;
  for (oy = 0; oy < q->out.h; ++oy) {
    /* the pool clips its windows to the map: rows [top, end) */
    int32_t top = oy * q->stride_h - q->pad_h;
    int32_t end = top + q->filter_h;
    top = top < 0 ? 0 : top;
    end = end > map_h ? map_h : end;
    end = end < top ? top : end;
    tg_stream_fill(a, &ap, input, buf, row, inner, &held, top, end);
    (void)tg_stream_chunk(&q->in, &q->out, q->stride_h, q->pad_h, oy, 1, buf, &qp.in, &qp.out,
                          &qp.pad_h);
    if (p->max) {
      tg_max_pool2d_s8(&qp, buf, output + oy * q->out.w * q->out.c);
    } else {
      tg_avg_pool2d_s8(&qp, buf, output + oy * q->out.w * q->out.c);
    }
  }
}
