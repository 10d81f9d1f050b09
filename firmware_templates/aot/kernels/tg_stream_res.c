/* Fused conv -> conv -> ADD residual blocks (see tg_stream_conv.h). */
#include "tg_stream_conv.h"

TG_INLINE void tg_stream_res(const tg_stream_res_params *p, const int8_t *input, int8_t *output,
                             void *scratch, int32_t table) {
  const tg_conv2d_dsp_params *c = &p->pair.consumer;
  const tg_conv2d_dsp_params *q = &p->proj;
  const int32_t rows = p->pair.rows;
  const int32_t out_row = c->out.w * c->out.c;
  int8_t *buf = (int8_t *)scratch;
  int8_t *part = buf + tg_stream_buf_bytes(&p->pair);
  int8_t *tables = part + ((rows * out_row + 15) & ~15);
  void *inner = tables + (table ? TG_ADD_TABLE_BYTES : 0);
  tg_conv2d_dsp_params t;
  tg_stream_span s = {0, 0};
  int32_t r0, i;
  if (table) {
    tg_add_tables_s8(&p->add, tables);
  }
  for (r0 = 0; r0 < c->out.h; r0 += rows) {
    const int32_t n = c->out.h - r0 < rows ? c->out.h - r0 : rows;
    int8_t *out = output + r0 * out_row;
    const int8_t *skip = input + r0 * out_row;
    tg_stream_pair_chunk(&p->pair, &t, input, buf, inner, &s, r0, n, part);
    if (p->projected) {
      /* the skip's rows straight into the output rows they are added into */
      const int8_t *in;
      t = *q;
      in = tg_stream_chunk16(&q->in, &q->out, q->stride_h, q->pad_h, r0, n, input, &t.in, &t.out,
                             &t.pad_h);
      tg_conv2d_dsp_s8(&t, in, out, inner);
      skip = out;
    }
    /* element by element, each read before it is written: the output may be
     * the skip's own bytes; a row per call, as add.bc describes it */
    for (i = 0; i < n; ++i, skip += out_row, out += out_row) {
      const int8_t *mine = part + i * out_row;
      const int8_t *in1 = p->skip_first ? skip : mine;
      const int8_t *in2 = p->skip_first ? mine : skip;
      if (table) {
        tg_add_with_tables_s8(&p->add, in1, in2, out, tables);
      } else {
        tg_add_s8(&p->add, in1, in2, out);
      }
    }
  }
}

void tg_stream_res_s8(const tg_stream_res_params *p, const int8_t *input, int8_t *output,
                      void *scratch) {
  tg_stream_res(p, input, output, scratch, 1);
}

void tg_stream_res_direct_s8(const tg_stream_res_params *p, const int8_t *input, int8_t *output,
                             void *scratch) {
  tg_stream_res(p, input, output, scratch, 0);
}
