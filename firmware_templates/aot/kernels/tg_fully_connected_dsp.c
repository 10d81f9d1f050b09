/* Fully connected layer, int8, DSP-extension kernel.
 *
 * Weights are interleaved at build time four rows at a time, so one pass
 * over the input serves four output units: per four inputs, one load and two
 * SXTB16 of the input, two double-word loads of the four rows' weights, eight
 * SXTB16 and eight SMLAD (16 multiply-accumulates).  The input is used raw:
 * the accumulator starts from bias + input_offset * sum(row) (folded at
 * build time), which gives TFLite's sum(w * (x + input_offset)) + bias
 * exactly.  No scratch memory.
 */
#include "tg_fully_connected_dsp.h"

#define TG_FC_ROW(acc, wv)                                      \
  do {                                                          \
    acc = tg_smlad(xe, tg_sxtb16((uint32_t)(wv)), acc);         \
    acc = tg_smlad(xo, tg_sxtb16_ror8((uint32_t)(wv)), acc);    \
  } while (0)

#define TG_FC_GROUP(xv)                                         \
  do {                                                          \
    const int32_t xe = tg_sxtb16(xv), xo = tg_sxtb16_ror8(xv);  \
    int32_t w0, w1, w2, w3;                                     \
    TG_LDRD(w0, w1, w);                                         \
    TG_LDRD(w2, w3, w);                                         \
    TG_FC_ROW(a0, w0);                                          \
    TG_FC_ROW(a1, w1);                                          \
    TG_FC_ROW(a2, w2);                                          \
    TG_FC_ROW(a3, w3);                                          \
  } while (0)

void tg_fully_connected_dsp_s8(const tg_fully_connected_dsp_params *p, const int8_t *input,
                               int8_t *output) {
  const int32_t depth = p->depth, units = p->units;
  const int32_t full = depth >> 2, tail = depth & 3;
  int32_t b, u, g;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *x_row = input + b * depth;
    int8_t *y = output + b * units;
    const int32_t *w = p->filter;
    const int32_t *rq = p->rq;
    for (u = 0; u < units; u += 4, rq += 16) {
      int32_t a0 = rq[0], a1 = rq[1], a2 = rq[2], a3 = rq[3];
      const int8_t *x = x_row;
      uint32_t v;
      if (full & 1) {
        v = tg_load_u32(x);
        x += 4;
        TG_FC_GROUP(v);
      }
      for (g = full >> 1; g > 0; --g) {
        v = tg_load_u32(x);
        TG_FC_GROUP(v);
        v = tg_load_u32(x + 4);
        x += 8;
        TG_FC_GROUP(v);
      }
      if (tail) {
        v = 0;
        memcpy(&v, x, (size_t)tail);
        TG_FC_GROUP(v);
      }
      if (p->fast) {
        a0 = tg_rq_fast(a0, rq[4], rq[8], rq[12]);
        a1 = tg_rq_fast(a1, rq[5], rq[9], rq[13]);
        a2 = tg_rq_fast(a2, rq[6], rq[10], rq[14]);
        a3 = tg_rq_fast(a3, rq[7], rq[11], rq[15]);
      } else {
        a0 = tg_rq_exact(a0, rq[4], rq[8], rq[12]);
        a1 = tg_rq_exact(a1, rq[5], rq[9], rq[13]);
        a2 = tg_rq_exact(a2, rq[6], rq[10], rq[14]);
        a3 = tg_rq_exact(a3, rq[7], rq[11], rq[15]);
      }
      if (p->act_full) {
        a0 = tg_ssat8(a0);
        a1 = tg_ssat8(a1);
        a2 = tg_ssat8(a2);
        a3 = tg_ssat8(a3);
      } else {
        a0 = tg_clamp_i32(a0, p->act_min, p->act_max);
        a1 = tg_clamp_i32(a1, p->act_min, p->act_max);
        a2 = tg_clamp_i32(a2, p->act_min, p->act_max);
        a3 = tg_clamp_i32(a3, p->act_min, p->act_max);
      }
      y[u] = (int8_t)a0;
      if (u + 1 < units) {
        y[u + 1] = (int8_t)a1;
      }
      if (u + 2 < units) {
        y[u + 2] = (int8_t)a2;
      }
      if (u + 3 < units) {
        y[u + 3] = (int8_t)a3;
      }
    }
  }
}
