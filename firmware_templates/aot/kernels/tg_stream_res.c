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
  tg_conv2d_dsp_params ap = p->pair.producer, cp = *c, qp = *q;
  tg_add_s8_params add = p->add;
  tg_stream_span s = {0, 0};
  int32_t r0;
  /* one flat run of elements per chunk */
  add.bc.ndim = 1;
  add.bc.stride1[0] = 1;
  add.bc.stride2[0] = 1;
  if (table) {
    tg_add_tables_s8(&p->add, tables);
  }
  for (r0 = 0; r0 < c->out.h; r0 += rows) {
    const int32_t n = c->out.h - r0 < rows ? c->out.h - r0 : rows;
    int8_t *out = output + r0 * out_row;
    const int8_t *skip = input + r0 * out_row;
    tg_stream_pair_chunk(&p->pair, &ap, &cp, input, buf, inner, &s, r0, n, part);
    if (p->projected) {
      /* the skip's rows straight into the output rows they are added into */
      const int8_t *in = tg_stream_chunk(&q->in, &q->out, q->stride_h, q->pad_h, r0, n, input,
                                         &qp.in, &qp.out, &qp.pad_h);
      tg_conv2d_dsp_s8(&qp, in, out, inner);
      skip = out;
    }
    /* element by element, each read before it is written: the output may be
     * the skip's own bytes */
    add.bc.dims[0] = n * out_row;
    if (table) {
      tg_add_with_tables_s8(&add, p->skip_first ? skip : part, p->skip_first ? part : skip, out,
                            tables);
    } else {
      tg_add_s8(&add, p->skip_first ? skip : part, p->skip_first ? part : skip, out);
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
