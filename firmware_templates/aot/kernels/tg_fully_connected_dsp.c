/* Fully connected layer, int8, DSP-extension kernel.
 *
 * Weights are interleaved at build time four rows at a time, so one pass
 * over the input serves four output units: per four inputs, one load and two
 * SXTB16 of the input, two double-word loads of the four rows' weights, eight
 * SXTB16 and eight SMLAD (16 multiply-accumulates).  The input is used raw:
 * the accumulator starts from bias + input_offset * sum(row) (folded at
 * build time), which gives TFLite's sum(w * (x + input_offset)) + bias
 * exactly.  No scratch memory.  The four-row dot product (tg_dot4_s8) lives in
 * tg_dsp.h: the LSTM's gate matmuls use it too.
 */
#include "tg_fully_connected_dsp.h"

static void tg_fc_requant(const tg_fully_connected_dsp_params *p, const int32_t *rq, int32_t *a) {
  int32_t i;
  for (i = 0; i < 4; ++i) {
    int32_t v = p->fast ? tg_rq_fast(a[i], rq[4 + i], rq[8 + i], rq[12 + i])
                        : tg_rq_exact(a[i], rq[4 + i], rq[8 + i], rq[12 + i]);
    a[i] = p->act_full ? tg_ssat8(v) : tg_clamp_i32(v, p->act_min, p->act_max);
  }
}

/* Requantizes and stores the first n of four accumulators (rows of one block). */
TG_INLINE void tg_fc_store4(const tg_fully_connected_dsp_params *p, const int32_t *rq, int32_t *acc,
                            int8_t *y, int32_t n) {
  if (n == 4 && p->fast && p->act_full) {
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
    int32_t i;
    tg_fc_requant(p, rq, acc);
    for (i = 0; i < n; ++i) {
      y[i] = (int8_t)acc[i];
    }
  }
}

void tg_fully_connected_dsp_s8(const tg_fully_connected_dsp_params *p, const int8_t *input,
                               int8_t *output) {
  const int32_t depth = p->depth, units = p->units;
  const int32_t full = depth >> 2, tail = depth & 3;
  const int32_t quads = (units + 3) >> 2;
  const int32_t w_quad = 4 * ((depth + 3) >> 2); /* words per block of four rows */
  int32_t b, u;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *x = input + b * depth;
    int8_t *y = output + b * units;
    const int32_t *w = p->filter;
    const int32_t *rq = p->rq;
    int32_t acc[4];
    for (u = 0; u < quads; ++u, w += w_quad, rq += 16, y += 4) {
      tg_dot4_s8(x, w, full, tail, rq, acc);
      /* the last block may be partial: zero-padded rows, only real units stored */
      tg_fc_store4(p, rq, acc, y, units - 4 * u < 4 ? units - 4 * u : 4);
    }
  }
}

/* The same layer with 16-bit weights (filter: per block of four rows and
 * group of four inputs, each row's (w0, w2) and (w1, w3) as 16-bit lanes):
 * per four inputs and four rows one load and two SXTB16 of the input, four
 * LDRD of the weights and eight SMLAD, 15 instructions for 16
 * multiply-accumulates against 19 when every weight word is unpacked with
 * SXTB16 on the fly.  Twice the weight flash; no scratch. */
#define TG_FC_W16_GROUP(v)                \
  do {                                    \
    const int32_t xe = tg_sxtb16(v);      \
    const int32_t xo = tg_sxtb16_ror8(v); \
    TG_SMLAD_4ROWS(xe, xo, w);            \
  } while (0)

void tg_fully_connected_dsp_w16_s8(const tg_fully_connected_dsp_params *p, const int8_t *input,
                                   int8_t *output) {
  const int32_t depth = p->depth, units = p->units;
  const int32_t full = depth >> 2, tail = depth & 3;
  const int32_t quads = (units + 3) >> 2;
  int32_t b, u;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *x0 = input + b * depth;
    const int8_t *pairs_end = x0 + 8 * (full >> 1);
    int8_t *y = output + b * units;
    const int32_t *w = p->filter;
    const int32_t *rq = p->rq;
    for (u = 0; u < quads; ++u, rq += 16, y += 4) {
      int32_t acc[4];
      int32_t a0 = rq[0], a1 = rq[1], a2 = rq[2], a3 = rq[3];
      const int8_t *x = x0;
      while (x < pairs_end) {
        uint32_t v = tg_load_u32(x);
        TG_FC_W16_GROUP(v);
        v = tg_load_u32(x + 4);
        x += 8;
        TG_FC_W16_GROUP(v);
      }
      if (full & 1) {
        const uint32_t v = tg_load_u32(x);
        x += 4;
        TG_FC_W16_GROUP(v);
      }
      if (tail) {
        const uint32_t v = tg_dot4_load_tail(x, tail);
        TG_FC_W16_GROUP(v);
      }
      acc[0] = a0;
      acc[1] = a1;
      acc[2] = a2;
      acc[3] = a3;
      tg_fc_store4(p, rq, acc, y, units - 4 * u < 4 ? units - 4 * u : 4);
    }
  }
}
