/* SOFTMAX over the innermost dimension, int8 in, int8 or int16 out.
 *
 * The same computation as TFLM's int8 softmax (reference_ops::Softmax): the
 * difference to the row maximum is scaled to Q5.26 by beta * input_scale,
 * exponentiated in gemmlowp fixed point, summed in Q12.19, and each exp is
 * multiplied by the fixed-point reciprocal of the sum.
 */
#include "tg_elementwise.h"
#include "tg_ew_fixedpoint.h"

#define TG_SOFTMAX_DIFF_INTEGER_BITS 5
#define TG_SOFTMAX_ACCUM_INTEGER_BITS 12

static int tg_clz_u32(uint32_t x) {
#if defined(__GNUC__) || defined(__clang__)
  return x ? __builtin_clz(x) : 32;
#else
  int n = 0;
  if (x == 0) {
    return 32;
  }
  while (!(x & 0x80000000u)) {
    x <<= 1;
    ++n;
  }
  return n;
#endif
}

/* exp((x - max) * beta * scale) in Q0.31 for an element kept by diff_min. */
TG_INLINE int32_t tg_softmax_exp(const tg_softmax_s8_params *p, int32_t diff) {
  const int32_t scaled =
      tg_requantize_greater_than_one(diff, p->input_multiplier, p->input_left_shift);
  return tg_fx_exp_on_negative_values(scaled, TG_SOFTMAX_DIFF_INTEGER_BITS);
}

/* Shared row loop: writes out8 (int8 output) or, when it is NULL, out16. */
static void tg_softmax_rows(const tg_softmax_s8_params *p, const int8_t *in, int8_t *out8,
                            int16_t *out16) {
  const int32_t depth = p->depth;
  int32_t i, c;
  for (i = 0; i < p->outer; ++i) {
    const int8_t *row = in + (size_t)i * (size_t)depth;
    int32_t max_in_row = INT8_MIN;
    int32_t sum_of_exps = 0; /* Q12.19 */
    int headroom_plus_one, num_bits_over_unit, exponent;
    int32_t shifted_scale;
    for (c = 0; c < depth; ++c) {
      if (row[c] > max_in_row) {
        max_in_row = row[c];
      }
    }
    for (c = 0; c < depth; ++c) {
      const int32_t diff = (int32_t)row[c] - max_in_row;
      if (diff >= p->diff_min) {
        /* Q0.31 -> Q12.19: a rounding division by 2^12 */
        sum_of_exps = tg_fx_add(
            sum_of_exps,
            tg_rounding_divide_by_pot(tg_softmax_exp(p, diff), TG_SOFTMAX_ACCUM_INTEGER_BITS));
      }
    }
    /* 1 / sum: normalise the sum to [1, 2), invert in Q0.31, remember the
     * power of two. */
    headroom_plus_one = tg_clz_u32((uint32_t)sum_of_exps);
    num_bits_over_unit = TG_SOFTMAX_ACCUM_INTEGER_BITS - headroom_plus_one;
    shifted_scale = tg_fx_one_over_one_plus_x(
        (int32_t)(((uint32_t)sum_of_exps << headroom_plus_one) - ((uint32_t)1 << 31)));
    exponent = num_bits_over_unit + 31 - (out16 ? 16 : 8);
    for (c = 0; c < depth; ++c) {
      const int32_t diff = (int32_t)row[c] - max_in_row;
      const size_t o = (size_t)i * (size_t)depth + (size_t)c;
      if (diff >= p->diff_min) {
        const int32_t unsat =
            tg_rounding_divide_by_pot(tg_fx_mul(shifted_scale, tg_softmax_exp(p, diff)), exponent);
        if (out16) {
          out16[o] = (int16_t)tg_clamp_i32(unsat - 32768, INT16_MIN, INT16_MAX);
        } else {
          out8[o] = (int8_t)tg_clamp_i32(unsat - 128, INT8_MIN, INT8_MAX);
        }
      } else if (out16) {
        out16[o] = INT16_MIN;
      } else {
        out8[o] = INT8_MIN;
      }
    }
  }
}

void tg_softmax_s8(const tg_softmax_s8_params *p, const int8_t *in, int8_t *out) {
  tg_softmax_rows(p, in, out, NULL);
}

void tg_softmax_s8_s16(const tg_softmax_s8_params *p, const int8_t *in, int16_t *out) {
  tg_softmax_rows(p, in, NULL, out);
}
