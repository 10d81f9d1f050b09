/* UNIDIRECTIONAL_SEQUENCE_LSTM, int8 x int8 -> int16 cell (see tg_lstm.h and
 * docs/aot-lstm.md).
 *
 * One time step of one sequence ("row"), for every unit u:
 *   pre_g   = sat16(fc16(x . W_in[g][u]) + fc16(h . W_rec[g][u]))     Q3.12
 *   i, f, o = sigmoid16(pre_i/f/o), g = tanh16(pre_g)                 Q0.15
 *   c[u]    = sat16(mul16(f, c[u]) + mul16(i, g)), clipped if asked   cell scale
 *   y[u]    = sat8(zp_h + requant(tanh16(c[u]) * o))                  hidden scale
 * and only when every unit is done does the new hidden state replace the old
 * one (all units' gates read the previous h).  Rows of different batches are
 * independent, so batch-major and time-major inputs only differ in where a
 * row lives.
 *
 * sigmoid16/tanh16 interpolate a 256-entry table of the logistic function at
 * steps of 1/24 (values in 1/65536), the table that TFLM's int16 LOGISTIC and
 * TANH (and therefore its LSTM) use.  Its values are measured, not copied:
 * tools/derive_sigmoid_lut.py reads them back from the TFLM interpreter's
 * int16 TANH outputs at inputs on the table's grid and generates
 * tg_lstm_sigmoid_lut.h; the tests check both functions on every int16 input
 * against the TFLM interpreter.
 */
#include "tg_lstm.h"

#include "tg_lstm_sigmoid_lut.h"

static const uint16_t tg_lstm_sigmoid_lut[256] = {TG_LSTM_SIGMOID_LUT_VALUES};

/* logistic(v / 4096) in 1/32768 steps, v a Q3.12 int16.  3v puts 24 table
 * steps in one unit of v/4096 at 9 fractional bits; the low 9 bits
 * interpolate linearly; negative inputs use 1 - logistic(|v|). */
TG_INLINE int16_t tg_lstm_sigmoid(int32_t v) {
  const int32_t x = v * 3;
  const uint32_t ax = (uint32_t)(x < 0 ? -x : x);
  const uint32_t k = ax >> 9;
  uint32_t r;
  if (k >= 255u) {
    r = 0x7FFFu << 10;
  } else {
    const uint32_t lo = tg_lstm_sigmoid_lut[k], hi = tg_lstm_sigmoid_lut[k + 1u];
    r = (lo << 9) + (ax & 0x1FFu) * (hi - lo);
  }
  r = x >= 0 ? r + (1u << 9) : (1u << 25) - r + (1u << 9) - 1u;
  return (int16_t)(r >> 10);
}

/* tanh in 1/32768 steps, as 2 * logistic(2 * .) - 1 from the same table:
 * x = (v * mult + round) >> shift carries 24 table steps per unit of the
 * argument at 8 fractional bits (the lowering picks mult/shift from the
 * input's power-of-two scale: 3/0 for a Q3.12 gate). */
TG_INLINE int16_t tg_lstm_tanh(int32_t v, int32_t mult, int32_t shift) {
  const int32_t round = shift > 0 ? ((int32_t)1 << (shift - 1)) : 0;
  const int32_t x = (v * mult + round) >> shift;
  const uint32_t ax = (uint32_t)(x < 0 ? -x : x);
  const uint32_t k = ax >> 8;
  int32_t r;
  if (k >= 255u) {
    r = (int32_t)(0xFFFFu << 8);
  } else {
    const uint32_t lo = tg_lstm_sigmoid_lut[k], hi = tg_lstm_sigmoid_lut[k + 1u];
    r = (int32_t)((lo << 8) + (ax & 0xFFu) * (hi - lo));
  }
  r = x >= 0 ? r - ((int32_t)1 << 23) + ((int32_t)1 << 7)
             : ((int32_t)1 << 23) - r + ((int32_t)1 << 7) - 1;
  return (int16_t)(r >> 8);
}

TG_INLINE int32_t tg_lstm_sat16(int32_t v) { return tg_clamp_i32(v, INT16_MIN, INT16_MAX); }

/* requantize and saturate to int16 (kept out of line: called 11 times per
 * unit, inlining it everywhere only makes the code bigger) */
static int32_t tg_lstm_rq16(int32_t acc, int32_t mult, int32_t shift) {
  return tg_lstm_sat16(tg_requantize(acc, mult, shift));
}

/* The same step as tg_lstm_row with the gate matmuls as one tg_dot4_s8 per
 * unit and operand (the four gates share each load of x and h) and every
 * requantization in the fast form the lowering proved exact. */
static void tg_lstm_row_dsp(const tg_lstm_params *p, const int8_t *x, int8_t *h, int16_t *c,
                            int8_t *y) {
  const int32_t n_in = p->input_size, units = p->units;
  const int32_t w_in_unit = 4 * ((n_in + 3) >> 2), w_rec_unit = 4 * ((units + 3) >> 2);
  const int32_t *w_in = p->w4_in, *w_rec = p->w4_rec, *kb = p->kb4;
  int32_t u;
  for (u = 0; u < units; ++u, w_in += w_in_unit, w_rec += w_rec_unit, kb += 8) {
    int32_t ai[TG_LSTM_GATES], ar[TG_LSTM_GATES], act[TG_LSTM_GATES];
    int32_t c_new, t;
    int g;
    tg_dot4_s8(x, w_in, n_in >> 2, n_in & 3, kb, ai);
    tg_dot4_s8(h, w_rec, units >> 2, units & 3, kb + 4, ar);
    if (p->fast) {
      for (g = 0; g < TG_LSTM_GATES; ++g) {
        const int32_t pre = tg_lstm_sat16(
            tg_lstm_sat16(tg_rq_fast(ai[g], p->in_mult[g], p->in_rnd[g], p->in_shift[g])) +
            tg_lstm_sat16(tg_rq_fast(ar[g], p->rec_mult[g], p->rec_rnd[g], p->rec_shift[g])));
        act[g] = g == 2 ? tg_lstm_tanh(pre, 3, 0) : tg_lstm_sigmoid(pre);
      }
      c_new = tg_lstm_sat16(
          tg_lstm_sat16(
              tg_rq_fast(act[1] * (int32_t)c[u], p->forget_mult, p->forget_rnd, p->forget_shift)) +
          tg_lstm_sat16(tg_rq_fast(act[0] * act[2], p->input_mult, p->input_rnd, p->input_shift)));
    } else {
      for (g = 0; g < TG_LSTM_GATES; ++g) {
        const int32_t pre = tg_lstm_sat16(tg_lstm_rq16(ai[g], p->in_mult[g], p->in_shift[g]) +
                                          tg_lstm_rq16(ar[g], p->rec_mult[g], p->rec_shift[g]));
        act[g] = g == 2 ? tg_lstm_tanh(pre, 3, 0) : tg_lstm_sigmoid(pre);
      }
      c_new = tg_lstm_sat16(tg_lstm_rq16(act[1] * (int32_t)c[u], p->forget_mult, p->forget_shift) +
                            tg_lstm_rq16(act[0] * act[2], p->input_mult, p->input_shift));
    }
    if (p->use_cell_clip) {
      c_new = tg_clamp_i32(c_new, -p->cell_clip, p->cell_clip);
    }
    c[u] = (int16_t)c_new;
    t = tg_lstm_tanh(c_new, p->tanh_mult, p->tanh_shift);
    y[u] =
        p->fast
            ? tg_sat_i8(tg_rq_fast(t * act[3], p->hidden_mult, p->hidden_rnd, p->hidden_shift))
            : tg_sat_i8(p->hidden_zp + tg_requantize(t * act[3], p->hidden_mult, p->hidden_shift));
  }
  tg_copy_bytes(h, y, (size_t)units);
}

static void tg_lstm_row(const tg_lstm_params *p, const int8_t *x, int8_t *h, int16_t *c,
                        int8_t *y) {
  const int32_t n_in = p->input_size, units = p->units;
  const int32_t gate_in = units * n_in, gate_rec = units * units;
  int32_t u;
  for (u = 0; u < units; ++u) {
    int32_t acc_in[TG_LSTM_GATES], acc_rec[TG_LSTM_GATES], act[TG_LSTM_GATES];
    int32_t c_new, t;
    int g;
    for (g = 0; g < TG_LSTM_GATES; g += 2) {
      const int8_t *wi = p->w_in + g * gate_in + u * n_in;
      const int8_t *wr = p->w_rec + g * gate_rec + u * units;
      acc_in[g] = p->kbias_in[g * units + u];
      acc_in[g + 1] = p->kbias_in[(g + 1) * units + u];
      acc_rec[g] = p->kbias_rec[g * units + u];
      acc_rec[g + 1] = p->kbias_rec[(g + 1) * units + u];
      tg_dot2_s8(x, wi, wi + gate_in, n_in, &acc_in[g], &acc_in[g + 1]);
      tg_dot2_s8(h, wr, wr + gate_rec, units, &acc_rec[g], &acc_rec[g + 1]);
    }
    /* pre-activation: both matmuls requantized to Q3.12 and clamped on their
     * own, then added with saturation; i, f, o take the sigmoid, g the tanh */
    for (g = 0; g < TG_LSTM_GATES; ++g) {
      const int32_t pre = tg_lstm_sat16(tg_lstm_rq16(acc_in[g], p->in_mult[g], p->in_shift[g]) +
                                        tg_lstm_rq16(acc_rec[g], p->rec_mult[g], p->rec_shift[g]));
      act[g] = g == 2 ? tg_lstm_tanh(pre, 3, 0) : tg_lstm_sigmoid(pre);
    }

    c_new = tg_lstm_sat16(tg_lstm_rq16(act[1] * (int32_t)c[u], p->forget_mult, p->forget_shift) +
                          tg_lstm_rq16(act[0] * act[2], p->input_mult, p->input_shift));
    if (p->use_cell_clip) {
      c_new = tg_clamp_i32(c_new, -p->cell_clip, p->cell_clip);
    }
    c[u] = (int16_t)c_new;

    t = tg_lstm_tanh(c_new, p->tanh_mult, p->tanh_shift);
    y[u] = tg_sat_i8(p->hidden_zp + tg_requantize(t * act[3], p->hidden_mult, p->hidden_shift));
  }
  tg_copy_bytes(h, y, (size_t)units);
}

void tg_lstm_s8(const tg_lstm_params *p, const int8_t *input, int8_t *hidden, int16_t *cell,
                int8_t *output) {
  const int32_t batches = p->batches, steps = p->time_steps;
  int32_t t, b;
  for (t = 0; t < steps; ++t) {
    for (b = 0; b < batches; ++b) {
      const int32_t row = p->time_major ? t * batches + b : b * steps + t;
      if (p->w4_in != NULL) {
        tg_lstm_row_dsp(p, input + row * p->input_size, hidden + b * p->units, cell + b * p->units,
                        output + row * p->units);
      } else {
        tg_lstm_row(p, input + row * p->input_size, hidden + b * p->units, cell + b * p->units,
                    output + row * p->units);
      }
    }
  }
}
