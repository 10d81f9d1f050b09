/* gemmlowp-style fixed-point transcendental functions used by the softmax
 * kernel (private to tg_softmax.c).
 *
 * (LOGISTIC and TANH are tables built with the same arithmetic in
 * tinygen/plan/fixedpoint.py.)
 *
 * A value "Qk" is an int32 with k integer bits and 31-k fractional bits.
 * Multiplication of two fixed-point values is the saturating rounding
 * doubling high multiply (Qa * Qb -> Q(a+b)); additions wrap like the int32
 * additions of the reference.  The polynomial, the Newton-Raphson steps and
 * their constants are those of gemmlowp's fixedpoint.h, which the TFLM
 * reference kernels use, so results agree bit for bit.
 */
#ifndef TG_EW_FIXEDPOINT_H
#define TG_EW_FIXEDPOINT_H

#include "tg_kernels.h"

#define TG_FX_ONE_Q0 INT32_MAX /* the largest Q0.31 value stands for 1.0 */

TG_INLINE int32_t tg_fx_mul(int32_t a, int32_t b) {
  return tg_sat_rounding_doubling_high_mul(a, b);
}

TG_INLINE int32_t tg_fx_add(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }

TG_INLINE int32_t tg_fx_sub(int32_t a, int32_t b) { return (int32_t)((uint32_t)a - (uint32_t)b); }

/* x * 2^e for 0 < e < 31, saturating to the int32 range. */
TG_INLINE int32_t tg_fx_sat_shl(int32_t x, int e) {
  const int32_t limit = (int32_t)(((uint32_t)1 << (31 - e)) - 1u);
  if (x > limit) {
    return INT32_MAX;
  }
  if (x < -limit) {
    return INT32_MIN;
  }
  return (int32_t)((uint32_t)x << e);
}

/* (a + b) / 2 rounded half away from zero, without overflow. */
TG_INLINE int32_t tg_fx_rounding_half_sum(int32_t a, int32_t b) {
  const int64_t sum = (int64_t)a + (int64_t)b;
  const int64_t sign = sum >= 0 ? 1 : -1;
  return (int32_t)((sum + sign) / 2);
}

/* exp(x) for x in [-1/4, 0), x and result in Q0.31. */
static inline int32_t tg_fx_exp_quarter_interval(int32_t a) {
  const int32_t exp_minus_one_eighth = 1895147668; /* exp(-1/8) */
  const int32_t one_third = 715827883;
  const int32_t x = tg_fx_add(a, (int32_t)1 << 28); /* a + 1/8 */
  const int32_t x2 = tg_fx_mul(x, x);
  const int32_t x3 = tg_fx_mul(x2, x);
  const int32_t x4 = tg_fx_mul(x2, x2);
  const int32_t x4_over_4 = tg_rounding_divide_by_pot(x4, 2);
  const int32_t poly =
      tg_rounding_divide_by_pot(tg_fx_add(tg_fx_mul(tg_fx_add(x4_over_4, x3), one_third), x2), 1);
  return tg_fx_add(exp_minus_one_eighth, tg_fx_mul(exp_minus_one_eighth, tg_fx_add(x, poly)));
}

/* exp(a) for a <= 0; a has `integer_bits` integer bits (1..5), the result is
 * Q0.31.  Splits a into a multiple of 1/4 and a remainder in [-1/4, 0); the
 * multiple is applied as a product of exp(-2^k) constants. */
static inline int32_t tg_fx_exp_on_negative_values(int32_t a, int integer_bits) {
  static const int32_t exp_minus_pow2[7] = {
      1672461947, /* exp(-1/4) */
      1302514674, /* exp(-1/2) */
      790015084,  /* exp(-1) */
      290630308,  /* exp(-2) */
      39332535,   /* exp(-4) */
      720401,     /* exp(-8) */
      242,        /* exp(-16) */
  };
  const int fractional_bits = 31 - integer_bits;
  const int32_t one_quarter = (int32_t)1 << (fractional_bits - 2);
  const int32_t mask = one_quarter - 1;
  const int32_t a_mod_quarter_minus_quarter = tg_fx_sub(a & mask, one_quarter);
  int32_t result =
      tg_fx_exp_quarter_interval(tg_fx_sat_shl(a_mod_quarter_minus_quarter, integer_bits));
  const int32_t remainder = tg_fx_sub(a_mod_quarter_minus_quarter, a);
  int e;
  for (e = -2; e <= 4; ++e) {
    if (integer_bits > e) {
      const int shift = fractional_bits + e;
      if (remainder & ((int32_t)1 << shift)) {
        result = tg_fx_mul(result, exp_minus_pow2[e + 2]);
      }
    }
  }
  if (a == 0) {
    result = TG_FX_ONE_Q0;
  }
  return result;
}

/* Three Newton-Raphson steps for 1 / half_denominator, in Q2.29. */
static inline int32_t tg_fx_newton_reciprocal_q2(int32_t half_denominator) {
  const int32_t c48_over_17 = 1515870810;
  const int32_t c_neg_32_over_17 = -1010580540;
  const int32_t one_q2 = (int32_t)1 << 29;
  int32_t x = tg_fx_add(c48_over_17, tg_fx_mul(half_denominator, c_neg_32_over_17));
  int i;
  for (i = 0; i < 3; ++i) {
    const int32_t half_denominator_times_x = tg_fx_mul(half_denominator, x);
    const int32_t one_minus = tg_fx_sub(one_q2, half_denominator_times_x);
    x = tg_fx_add(x, tg_fx_sat_shl(tg_fx_mul(x, one_minus), 2));
  }
  return x;
}

/* 1 / (1 + a) for a in [0, 1), Q0.31 in and out. */
static inline int32_t tg_fx_one_over_one_plus_x(int32_t a) {
  const int32_t half_denominator = tg_fx_rounding_half_sum(a, TG_FX_ONE_Q0);
  const int32_t x = tg_fx_newton_reciprocal_q2(half_denominator);
  return tg_fx_sat_shl(x, 1);
}

#endif /* TG_EW_FIXEDPOINT_H */
