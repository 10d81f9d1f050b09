/* Common types and fixed-point helpers of tinygen's aot kernels.
 *
 * Every kernel of the aot runtime includes this header.  The helpers
 * reproduce, result for result, the integer arithmetic of TFLite's reference
 * kernels (gemmlowp's SaturatingRoundingDoublingHighMul and
 * RoundingDivideByPOT, composed as MultiplyByQuantizedMultiplier with TFLite's
 * default "double rounding"), so a model run by the aot runtime agrees with
 * the TFLM interpreter to the last bit.
 *
 * Assumes two's complement integers and an arithmetic right shift of negative
 * signed values (true of gcc, clang and arm-none-eabi-gcc on every target we
 * build for).  Plain C99, no allocation, no libc beyond <stdint.h>/<stddef.h>.
 */
#ifndef TG_KERNELS_H
#define TG_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#include <arm_acle.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Alignment of constant arrays and of the activation arena. */
#if defined(__GNUC__) || defined(__clang__)
#define TG_ALIGNED(n) __attribute__((aligned(n)))
#else
#define TG_ALIGNED(n)
#endif

#if defined(__GNUC__) || defined(__clang__)
#define TG_INLINE static inline __attribute__((always_inline))
#else
#define TG_INLINE static inline
#endif

/* A 4-D NHWC shape. */
typedef struct {
  int32_t n, h, w, c;
} tg_dims4;

/* Clamp range of a fused activation, already in the quantized domain. */
typedef struct {
  int32_t min, max;
} tg_act_range;

TG_INLINE int32_t tg_min_i32(int32_t a, int32_t b) { return a < b ? a : b; }
TG_INLINE int32_t tg_max_i32(int32_t a, int32_t b) { return a > b ? a : b; }
TG_INLINE int32_t tg_clamp_i32(int32_t v, int32_t lo, int32_t hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

/* gemmlowp SaturatingRoundingDoublingHighMul: the high 32 bits of 2*a*b,
 * rounded to nearest, saturating INT32_MIN*INT32_MIN.
 *
 * gemmlowp computes (a*b + nudge) / 2^31 with a truncating division and
 * nudge = 2^30 for a*b >= 0, 1 - 2^30 otherwise.  For every 64-bit product that
 * equals floor((a*b + 2^30) / 2^31) (for negative v = a*b + 1 - 2^30,
 * trunc(v / 2^31) = ceil(v / 2^31) = floor((v + 2^31 - 1) / 2^31)), which is
 * one add and one arithmetic shift (tests/aot/test_fixedpoint.py checks it
 * against the gemmlowp formula). */
TG_INLINE int32_t tg_sat_rounding_doubling_high_mul(int32_t a, int32_t b) {
  if (a == b && a == INT32_MIN) {
    return INT32_MAX;
  }
  return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31);
}

/* gemmlowp RoundingDivideByPOT: x / 2^exponent rounded to nearest, ties away
 * from zero; 0 <= exponent <= 31. */
TG_INLINE int32_t tg_rounding_divide_by_pot(int32_t x, int exponent) {
  const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* tg_rounding_divide_by_pot for an exponent fixed over a loop: the mask and
 * threshold computed once. */
typedef struct {
  int32_t exponent, mask, half;
} tg_pot_divisor;

TG_INLINE tg_pot_divisor tg_pot_divisor_of(int exponent) {
  tg_pot_divisor d;
  d.exponent = exponent;
  d.mask = (int32_t)(((int64_t)1 << exponent) - 1);
  d.half = d.mask >> 1;
  return d;
}

TG_INLINE int32_t tg_divide_by_pot(int32_t x, const tg_pot_divisor *d) {
  return (x >> d->exponent) + ((x & d->mask) > d->half + (x < 0 ? 1 : 0) ? 1 : 0);
}

/* x * 2^left_shift with the wrap-around of a 32-bit multiply (TFLite computes
 * `x * (1 << left_shift)` in int32; done unsigned here to stay defined). */
TG_INLINE int32_t tg_shift_left_wrap(int32_t x, int left_shift) {
  return (int32_t)((uint32_t)x << left_shift);
}

/* TFLite MultiplyByQuantizedMultiplier(int32 x, multiplier, shift): scale an
 * accumulator by multiplier * 2^(shift - 31).  shift > 0 shifts left before
 * the high multiply, shift < 0 divides (rounding) after it. */
TG_INLINE int32_t tg_requantize(int32_t x, int32_t multiplier, int32_t shift) {
#ifdef TG_SINGLE_ROUNDING
  /* TFLite built with TFLITE_SINGLE_ROUNDING=1 (not the TFLM default). */
  const int total_shift = 31 - shift;
  const int64_t round = (int64_t)1 << (total_shift - 1);
  return (int32_t)(((int64_t)x * (int64_t)multiplier + round) >> total_shift);
#else
  const int left_shift = shift > 0 ? (int)shift : 0;
  const int right_shift = shift > 0 ? 0 : (int)-shift;
  return tg_rounding_divide_by_pot(
      tg_sat_rounding_doubling_high_mul(tg_shift_left_wrap(x, left_shift), multiplier),
      right_shift);
#endif
}

/* TFLite MultiplyByQuantizedMultiplierSmallerThanOneExp (left_shift <= 0). */
TG_INLINE int32_t tg_requantize_smaller_than_one(int32_t x, int32_t multiplier,
                                                 int32_t left_shift) {
  return tg_rounding_divide_by_pot(tg_sat_rounding_doubling_high_mul(x, multiplier),
                                   (int)-left_shift);
}

/* TFLite MultiplyByQuantizedMultiplierGreaterThanOne (left_shift >= 0). */
TG_INLINE int32_t tg_requantize_greater_than_one(int32_t x, int32_t multiplier,
                                                 int32_t left_shift) {
  return tg_sat_rounding_doubling_high_mul(tg_shift_left_wrap(x, (int)left_shift), multiplier);
}

TG_INLINE int8_t tg_sat_i8(int32_t v) { return (int8_t)tg_clamp_i32(v, INT8_MIN, INT8_MAX); }

/* Copy n bytes (reshape-like operators whose output cannot alias the input). */
TG_INLINE void tg_copy_bytes(void *dst, const void *src, size_t n) {
  uint8_t *d = (uint8_t *)dst;
  const uint8_t *s = (const uint8_t *)src;
  if (d == s) {
    return;
  }
  while (n--) {
    *d++ = *s++;
  }
}

/* ---- int8 dot products ---------------------------------------------------
 * Accumulated in int32 (wrapping like the reference kernels' accumulators).
 * On cores with the DSP extension (Cortex-M4/M7/M33) four products take two
 * SMLADs; integer sums are exact in any order, so the result is the same. */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && (defined(__GNUC__) || defined(__clang__))
#define TG_HAVE_DSP 1
TG_INLINE uint32_t tg_load_u32(const int8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4); /* one unaligned LDR on ARMv7E-M */
  return v;
}
/* bytes 0 and 2 sign-extended to two halfwords */
TG_INLINE int32_t tg_sxtb16(uint32_t x) { return __sxtb16((int32_t)x); }
/* bytes 1 and 3 sign-extended to two halfwords */
TG_INLINE int32_t tg_sxtb16_ror8(uint32_t x) {
  int32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
  return r;
}
#endif

TG_INLINE int32_t tg_dot_s8(const int8_t *a, const int8_t *b, int32_t n) {
  int32_t acc = 0;
#ifdef TG_HAVE_DSP
  while (n >= 4) {
    const uint32_t wa = tg_load_u32(a), wb = tg_load_u32(b);
    acc = __smlad(tg_sxtb16(wa), tg_sxtb16(wb), acc);
    acc = __smlad(tg_sxtb16_ror8(wa), tg_sxtb16_ror8(wb), acc);
    a += 4;
    b += 4;
    n -= 4;
  }
#endif
  while (n-- > 0) {
    acc += (int32_t)*a++ * (int32_t)*b++;
  }
  return acc;
}

/* Two dot products sharing one vector: *acc0 += x.w0, *acc1 += x.w1. */
TG_INLINE void tg_dot2_s8(const int8_t *x, const int8_t *w0, const int8_t *w1, int32_t n,
                          int32_t *acc0, int32_t *acc1) {
  int32_t s0 = *acc0, s1 = *acc1;
#ifdef TG_HAVE_DSP
  while (n >= 4) {
    const uint32_t wx = tg_load_u32(x);
    const int32_t xe = tg_sxtb16(wx), xo = tg_sxtb16_ror8(wx);
    const uint32_t a = tg_load_u32(w0), b = tg_load_u32(w1);
    s0 = __smlad(xe, tg_sxtb16(a), s0);
    s0 = __smlad(xo, tg_sxtb16_ror8(a), s0);
    s1 = __smlad(xe, tg_sxtb16(b), s1);
    s1 = __smlad(xo, tg_sxtb16_ror8(b), s1);
    x += 4;
    w0 += 4;
    w1 += 4;
    n -= 4;
  }
#endif
  while (n-- > 0) {
    const int32_t v = *x++;
    s0 += v * (int32_t)*w0++;
    s1 += v * (int32_t)*w1++;
  }
  *acc0 = s0;
  *acc1 = s1;
}

/* Sum of an int8 vector. */
TG_INLINE int32_t tg_sum_s8(const int8_t *a, int32_t n) {
  int32_t acc = 0;
  while (n-- > 0) {
    acc += *a++;
  }
  return acc;
}

#ifdef __cplusplus
}
#endif

#endif /* TG_KERNELS_H */
