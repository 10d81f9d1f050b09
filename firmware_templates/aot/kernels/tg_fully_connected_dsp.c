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

/* the last 1..3 inputs of a row, zero-extended to a word (no read past them) */
static uint32_t tg_fc_load_tail(const int8_t *x, int32_t n) {
  uint32_t t = 0;
  memcpy(&t, x, (size_t)n);
  return t;
}

/* Four rows over one input row; the accumulators start from rq[0..3]. */
TG_INLINE void tg_fc_quad(const int8_t *x, const int32_t *w, int32_t full, int32_t tail,
                          const int32_t *rq, int32_t *acc) {
  int32_t a0 = rq[0], a1 = rq[1], a2 = rq[2], a3 = rq[3];
  int32_t g;
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
    TG_FC_GROUP(tg_fc_load_tail(x, tail));
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
}

static void tg_fc_requant(const tg_fully_connected_dsp_params *p, const int32_t *rq,
                          int32_t *a) {
  int32_t i;
  for (i = 0; i < 4; ++i) {
    int32_t v = p->fast ? tg_rq_fast(a[i], rq[4 + i], rq[8 + i], rq[12 + i])
                        : tg_rq_exact(a[i], rq[4 + i], rq[8 + i], rq[12 + i]);
    a[i] = p->act_full ? tg_ssat8(v) : tg_clamp_i32(v, p->act_min, p->act_max);
  }
}

void tg_fully_connected_dsp_s8(const tg_fully_connected_dsp_params *p, const int8_t *input,
                               int8_t *output) {
  const int32_t depth = p->depth, units = p->units;
  const int32_t full = depth >> 2, tail = depth & 3;
  const int32_t quads = units >> 2;
  const int32_t quick = p->fast && p->act_full;
  const int32_t w_quad = 4 * ((depth + 3) >> 2);   /* words per block of four rows */
  int32_t b, u;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *x = input + b * depth;
    int8_t *y = output + b * units;
    const int32_t *w = p->filter;
    const int32_t *rq = p->rq;
    int32_t acc[4];
    for (u = 0; u < quads; ++u, w += w_quad, rq += 16, y += 4) {
      tg_fc_quad(x, w, full, tail, rq, acc);
      if (quick) {
        int32_t m0, m1;
        const int32_t *r = rq + 4;
        int32_t a0 = tg_shift_left_wrap(acc[0], 1), a1 = tg_shift_left_wrap(acc[1], 1);
        int32_t a2 = tg_shift_left_wrap(acc[2], 1), a3 = tg_shift_left_wrap(acc[3], 1);
        TG_LDRD(m0, m1, r);
        a0 = tg_smmulr(a0, m0);
        a1 = tg_smmulr(a1, m1);
        TG_LDRD(m0, m1, r);
        a2 = tg_smmulr(a2, m0);
        a3 = tg_smmulr(a3, m1);
        TG_LDRD(m0, m1, r);
        a0 += m0 - (int32_t)((uint32_t)a0 >> 31);
        a1 += m1 - (int32_t)((uint32_t)a1 >> 31);
        TG_LDRD(m0, m1, r);
        a2 += m0 - (int32_t)((uint32_t)a2 >> 31);
        a3 += m1 - (int32_t)((uint32_t)a3 >> 31);
        TG_LDRD(m0, m1, r);
        y[0] = (int8_t)tg_ssat8(a0 >> m0);
        y[1] = (int8_t)tg_ssat8(a1 >> m1);
        TG_LDRD(m0, m1, r);
        y[2] = (int8_t)tg_ssat8(a2 >> m0);
        y[3] = (int8_t)tg_ssat8(a3 >> m1);
      } else {
        tg_fc_requant(p, rq, acc);
        y[0] = (int8_t)acc[0];
        y[1] = (int8_t)acc[1];
        y[2] = (int8_t)acc[2];
        y[3] = (int8_t)acc[3];
      }
    }
    if (units & 3) {
      /* the last, partial block: zero-padded rows, only real units stored */
      int32_t i;
      tg_fc_quad(x, w, full, tail, rq, acc);
      tg_fc_requant(p, rq, acc);
      for (i = 0; i < (units & 3); ++i) {
        y[i] = (int8_t)acc[i];
      }
    }
  }
}
