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
 * rounded to nearest (ties away from zero), saturating INT32_MIN*INT32_MIN. */
TG_INLINE int32_t tg_sat_rounding_doubling_high_mul(int32_t a, int32_t b) {
  if (a == b && a == INT32_MIN) {
    return INT32_MAX;
  }
  {
    const int64_t ab = (int64_t)a * (int64_t)b;
    const int64_t nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    /* Division truncates toward zero, as in gemmlowp (not a shift). */
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
  }
}

/* gemmlowp RoundingDivideByPOT: x / 2^exponent rounded to nearest, ties away
 * from zero; 0 <= exponent <= 31. */
TG_INLINE int32_t tg_rounding_divide_by_pot(int32_t x, int exponent) {
  const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
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
  return tg_sat_rounding_doubling_high_mul(tg_shift_left_wrap(x, (int)left_shift),
                                           multiplier);
}

TG_INLINE int8_t tg_sat_i8(int32_t v) {
  return (int8_t)tg_clamp_i32(v, INT8_MIN, INT8_MAX);
}

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

#ifdef __cplusplus
}
#endif

#endif /* TG_KERNELS_H */
