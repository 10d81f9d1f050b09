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
 * TANH (and therefore its LSTM) use; the tests check both functions on every
 * int16 input against the TFLM interpreter.
 */
#include "tg_lstm.h"

static const uint16_t tg_lstm_sigmoid_lut[256] = {
  32768, 33451, 34133, 34813, 35493, 36169, 36843, 37513, 38180, 38841, 39498, 40149,
  40794, 41432, 42064, 42688, 43304, 43912, 44511, 45102, 45683, 46255, 46817, 47369,
  47911, 48443, 48964, 49475, 49975, 50464, 50942, 51409, 51865, 52311, 52745, 53169,
  53581, 53983, 54374, 54755, 55125, 55485, 55834, 56174, 56503, 56823, 57133, 57433,
  57724, 58007, 58280, 58544, 58800, 59048, 59288, 59519, 59743, 59959, 60168, 60370,
  60565, 60753, 60935, 61110, 61279, 61441, 61599, 61750, 61896, 62036, 62172, 62302,
  62428, 62549, 62666, 62778, 62886, 62990, 63090, 63186, 63279, 63368, 63454, 63536,
  63615, 63691, 63765, 63835, 63903, 63968, 64030, 64090, 64148, 64204, 64257, 64308,
  64357, 64405, 64450, 64494, 64536, 64576, 64614, 64652, 64687, 64721, 64754, 64786,
  64816, 64845, 64873, 64900, 64926, 64950, 64974, 64997, 65019, 65039, 65060, 65079,
  65097, 65115, 65132, 65149, 65164, 65179, 65194, 65208, 65221, 65234, 65246, 65258,
  65269, 65280, 65291, 65301, 65310, 65319, 65328, 65337, 65345, 65352, 65360, 65367,
  65374, 65381, 65387, 65393, 65399, 65404, 65410, 65415, 65420, 65425, 65429, 65433,
  65438, 65442, 65445, 65449, 65453, 65456, 65459, 65462, 65465, 65468, 65471, 65474,
  65476, 65479, 65481, 65483, 65485, 65488, 65489, 65491, 65493, 65495, 65497, 65498,
  65500, 65501, 65503, 65504, 65505, 65507, 65508, 65509, 65510, 65511, 65512, 65513,
  65514, 65515, 65516, 65517, 65517, 65518, 65519, 65520, 65520, 65521, 65522, 65522,
  65523, 65523, 65524, 65524, 65525, 65525, 65526, 65526, 65526, 65527, 65527, 65528,
  65528, 65528, 65529, 65529, 65529, 65529, 65530, 65530, 65530, 65530, 65531, 65531,
  65531, 65531, 65531, 65532, 65532, 65532, 65532, 65532, 65532, 65533, 65533, 65533,
  65533, 65533, 65533, 65533, 65533, 65534, 65534, 65534, 65534, 65534, 65534, 65534,
  65534, 65534, 65534, 65535,
};

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

TG_INLINE int32_t tg_lstm_sat16(int32_t v) {
  return tg_clamp_i32(v, INT16_MIN, INT16_MAX);
}

/* requantize and saturate to int16 (kept out of line: called 11 times per
 * unit, inlining it everywhere only makes the code bigger) */
static int32_t tg_lstm_rq16(int32_t acc, int32_t mult, int32_t shift) {
  return tg_lstm_sat16(tg_requantize(acc, mult, shift));
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
                                        tg_lstm_rq16(acc_rec[g], p->rec_mult[g],
                                                     p->rec_shift[g]));
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
      tg_lstm_row(p, input + row * p->input_size, hidden + b * p->units,
                  cell + b * p->units, output + row * p->units);
    }
  }
}
