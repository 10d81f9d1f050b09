/* SIMD building blocks of tinygen's "dsp" kernels (Cortex-M4/M7/M33 DSP
 * extension), with portable C equivalents.
 *
 * On a core with the DSP extension (__ARM_FEATURE_DSP) every helper is one
 * instruction (ACLE intrinsics from arm_acle.h, or one asm instruction where
 * ACLE has none).  Elsewhere (the host test build, other cores) each helper is
 * plain C that computes the same bits, so the very same kernel code -- data
 * layouts, loop structure, requantization -- runs and is tested bit-exactly
 * on the host; QEMU runs the intrinsic build.
 *
 * Words hold two signed 16-bit lanes: "lo" (bits 0-15) and "hi" (16-31).
 * Weight and column buffers are int32_t arrays, so they are read through
 * their own type (no aliasing casts); activations are read with memcpy.
 * Assumes a little-endian target (all of ours are).
 */
#ifndef TG_DSP_H
#define TG_DSP_H

#include "tg_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A 4-D NHWC shape in 16 bits.  The dsp kernels' parameters hold their
 * shapes, window and flags in the narrowest type the lowering proves they fit
 * (tinygen/plan/narrow.py; a layer that does not fit gets the portable
 * kernel): a model has one such struct per layer in flash, and a halfword or
 * byte loads as cheaply as a word on Cortex-M (LDRH/LDRB extend for free). */
typedef struct {
  uint16_t n, h, w, c;
} tg_shape16;

TG_INLINE int32_t tg_lanes(int32_t lo, int32_t hi) {
  return (int32_t)(((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16));
}
TG_INLINE int32_t tg_lo16(int32_t x) { return (int32_t)(int16_t)(uint16_t)((uint32_t)x & 0xFFFFu); }
TG_INLINE int32_t tg_hi16(int32_t x) { return (int32_t)(int16_t)(uint16_t)((uint32_t)x >> 16); }

#ifdef TG_HAVE_DSP
/* lanes (b0, b2) and (b1, b3) of a word, each plus the lanes of `add` */
TG_INLINE int32_t tg_sxtab16(int32_t add, uint32_t x) { return __sxtab16(add, (int32_t)x); }
TG_INLINE int32_t tg_sxtab16_ror8(int32_t add, uint32_t x) {
  int32_t r;
  __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(add), "r"(x));
  return r;
}
/* acc + lo*lo + hi*hi */
TG_INLINE int32_t tg_smlad(int32_t a, int32_t b, int32_t acc) { return __smlad(a, b, acc); }
TG_INLINE int32_t tg_smlabb(int32_t a, int32_t b, int32_t acc) { return __smlabb(a, b, acc); }
/* lo*lo + hi*hi */
TG_INLINE int32_t tg_smuad(int32_t a, int32_t b) { return __smuad(a, b); }
TG_INLINE int32_t tg_smlatt(int32_t a, int32_t b, int32_t acc) { return __smlatt(a, b, acc); }
/* (a * b + 2^31) >> 32 */
TG_INLINE int32_t tg_smmulr(int32_t a, int32_t b) {
  int32_t r;
  __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
  return r;
}
/* acc + ((a * b + 2^31) >> 32), modulo 2^32 */
TG_INLINE int32_t tg_smmlar(int32_t a, int32_t b, int32_t acc) {
  int32_t r;
  __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
  return r;
}
#define tg_ssat8(x) __ssat((x), 8)
#else
TG_INLINE int32_t tg_sxtb16(uint32_t x) {
  return tg_lanes((int8_t)(x & 0xFFu), (int8_t)((x >> 16) & 0xFFu));
}
TG_INLINE int32_t tg_sxtb16_ror8(uint32_t x) { return tg_sxtb16((x >> 8) | (x << 24)); }
TG_INLINE uint32_t tg_load_u32(const int8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}
TG_INLINE int32_t tg_sxtab16(int32_t add, uint32_t x) {
  const int32_t e = tg_sxtb16(x);
  return tg_lanes(tg_lo16(add) + tg_lo16(e), tg_hi16(add) + tg_hi16(e));
}
TG_INLINE int32_t tg_sxtab16_ror8(int32_t add, uint32_t x) {
  return tg_sxtab16(add, (x >> 8) | (x << 24));
}
TG_INLINE int32_t tg_smlad(int32_t a, int32_t b, int32_t acc) {
  return (int32_t)((uint32_t)acc + (uint32_t)(tg_lo16(a) * tg_lo16(b)) +
                   (uint32_t)(tg_hi16(a) * tg_hi16(b)));
}
TG_INLINE int32_t tg_smlabb(int32_t a, int32_t b, int32_t acc) {
  return (int32_t)((uint32_t)acc + (uint32_t)(tg_lo16(a) * tg_lo16(b)));
}
TG_INLINE int32_t tg_smuad(int32_t a, int32_t b) { return tg_smlad(a, b, 0); }
TG_INLINE int32_t tg_smlatt(int32_t a, int32_t b, int32_t acc) {
  return (int32_t)((uint32_t)acc + (uint32_t)(tg_hi16(a) * tg_hi16(b)));
}
TG_INLINE int32_t tg_smmulr(int32_t a, int32_t b) {
  return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 31)) >> 32);
}
TG_INLINE int32_t tg_smmlar(int32_t a, int32_t b, int32_t acc) {
  return (int32_t)((uint32_t)acc + (uint32_t)tg_smmulr(a, b));
}
TG_INLINE int32_t tg_ssat8(int32_t x) { return tg_clamp_i32(x, -128, 127); }
#endif

TG_INLINE void tg_store_u32(int8_t *p, uint32_t v) { memcpy(p, &v, 4); }

/* ---- requantization ------------------------------------------------------
 * Per output channel the lowering stores one record of 4 words.  When it
 * has proved at build time that, for every input, |acc| < 2^30 and that
 * the rounding below cannot overflow (and every channel shifts right by
 * e >= 1), the record is {bias, multiplier, round, e} with
 * round = 2^(e-1) + output_offset * 2^e and
 *
 *   out = (smmulr(2 * acc, multiplier) + round - (x < 0)) >> e
 *
 * which is exactly TFLite's MultiplyByQuantizedMultiplier (double rounding)
 * plus the output offset: smmulr(2a, m) = floor((a*m + 2^30) / 2^31) is
 * SaturatingRoundingDoublingHighMul when 2a does not overflow, and
 * (x + 2^(e-1) - (x < 0)) >> e is RoundingDivideByPOT (ties away from zero).
 * Otherwise ("exact" records {bias, multiplier, shift, output_offset}) the
 * generic reference arithmetic runs. */
TG_INLINE int32_t tg_rq_fast(int32_t acc, int32_t mult, int32_t round, int32_t e) {
  const int32_t x = tg_smmulr(tg_shift_left_wrap(acc, 1), mult);
  return (x + round - (int32_t)((uint32_t)x >> 31)) >> e;
}

/* The same from 2 * acc (kernels whose weights are stored doubled). */
TG_INLINE int32_t tg_rq_fast2(int32_t acc2, int32_t mult, int32_t round, int32_t e) {
  const int32_t x = tg_smmulr(acc2, mult);
  return (x + round - (int32_t)((uint32_t)x >> 31)) >> e;
}

/* The same in one instruction less: round rides in SMMLAR's accumulator
 * (the 64-bit product's low word does not change the high word's rounding),
 * and the sign correction takes the sign of acc2 instead of x's.  They differ
 * only when acc2 < 0 and x = 0, where (round - 1) >> e = round >> e because
 * e >= 1 and round = 2^(e-1) + offset * 2^e. */
TG_INLINE int32_t tg_rq_fast2a(int32_t acc2, int32_t mult, int32_t round, int32_t e) {
  return (tg_smmlar(acc2, mult, round) + (acc2 >> 31)) >> e;
}

TG_INLINE int32_t tg_rq_exact(int32_t acc, int32_t mult, int32_t shift, int32_t offset) {
  return tg_requantize(acc, mult, shift) + offset;
}

/* Clamp to the fused activation; SSAT alone when the range is all of int8. */
TG_INLINE int32_t tg_act(int32_t v, int32_t full, int32_t lo, int32_t hi) {
  v = tg_ssat8(v);
  if (!full) {
    v = v < lo ? lo : (v > hi ? hi : v);
  }
  return v;
}

/* ---- column buffers --------------------------------------------------------
 * A "column" is a run of int8 values expanded to 16-bit lanes with the input
 * offset added, four values per group of two words: (x0, x2) and (x1, x3) --
 * exactly what SXTAB16 and SXTAB16 ROR #8 make of one little-endian word,
 * and the lanes SXTB16 / SXTB16 ROR #8 make of a word of four int8 weights.
 * `stride` is the distance in words between groups (2: one column; 4: two
 * interleaved columns, the second at +2). n bytes are read; the last group
 * is completed with the value whose expansion is 0 (-offset). */
TG_INLINE void tg_expand_s8(const int8_t *src, int32_t n, int32_t off2, int32_t *dst,
                            int32_t stride) {
  while (n >= 8) {
    const uint32_t a = tg_load_u32(src), b = tg_load_u32(src + 4);
    dst[0] = tg_sxtab16(off2, a);
    dst[1] = tg_sxtab16_ror8(off2, a);
    dst[stride] = tg_sxtab16(off2, b);
    dst[stride + 1] = tg_sxtab16_ror8(off2, b);
    src += 8;
    n -= 8;
    dst += 2 * stride;
  }
  if (n >= 4) {
    const uint32_t a = tg_load_u32(src);
    dst[0] = tg_sxtab16(off2, a);
    dst[1] = tg_sxtab16_ror8(off2, a);
    src += 4;
    n -= 4;
    dst += stride;
  }
  if (n > 0) {
    int32_t v[4] = {0, 0, 0, 0};
    int32_t i;
    for (i = 0; i < n; ++i) {
      v[i] = (int32_t)src[i] + tg_lo16(off2);
    }
    dst[0] = tg_lanes(v[0], v[2]);
    dst[1] = tg_lanes(v[1], v[3]);
  }
}

/* ---- the matrix-multiplication micro-kernel -------------------------------
 * Two output channels x two columns (CMSIS-NN style 2x2 blocking): `w`
 * holds, per group of four k, one word of four int8 weights for channel a and
 * one for channel b; `col` holds per group the two words of column 0 then
 * the two of column 1.  Per group: 3 double-word loads, 4 SXTB16, 8 SMLAD
 * for 16 multiply-accumulates (loop unrolled twice). */
typedef struct {
  int32_t w[2];
} tg_w2;

#ifdef TG_HAVE_DSP
/* two words, post-incremented pointer: one LDRD (GCC does not form it) */
#define TG_LDRD(lo, hi, ptr) \
  __asm__("ldrd %0, %1, [%2], #8" : "=r"(lo), "=r"(hi), "+r"(ptr) : "m"(*(const tg_w2 *)(ptr)))
#else
#define TG_LDRD(lo, hi, ptr) \
  do {                       \
    (lo) = (ptr)[0];         \
    (hi) = (ptr)[1];         \
    (ptr) += 2;              \
  } while (0)
#endif

/* Four rows of 16-bit weights against one group of four inputs as the
 * 16-bit pairs xe = (x0, x2) and xo = (x1, x3): each row's (w0, w2) and
 * (w1, w3) words in turn at w, which moves past them, into the caller's
 * accumulators a0..a3.  The FC's and the LSTM's inner loops. */
#define TG_SMLAD_4ROWS(xe, xo, w) \
  do {                            \
    int32_t we_, wo_;             \
    TG_LDRD(we_, wo_, w);         \
    a0 = tg_smlad(xe, we_, a0);   \
    a0 = tg_smlad(xo, wo_, a0);   \
    TG_LDRD(we_, wo_, w);         \
    a1 = tg_smlad(xe, we_, a1);   \
    a1 = tg_smlad(xo, wo_, a1);   \
    TG_LDRD(we_, wo_, w);         \
    a2 = tg_smlad(xe, we_, a2);   \
    a2 = tg_smlad(xo, wo_, a2);   \
    TG_LDRD(we_, wo_, w);         \
    a3 = tg_smlad(xe, we_, a3);   \
    a3 = tg_smlad(xo, wo_, a3);   \
  } while (0)

#define TG_MM_2X2_GROUP()                                   \
  do {                                                      \
    int32_t wa, wb, x0e, x0o, x1e, x1o, wae, wbe, wao, wbo; \
    TG_LDRD(wa, wb, w);                                     \
    TG_LDRD(x0e, x0o, col);                                 \
    wae = tg_sxtb16((uint32_t)wa);                          \
    wbe = tg_sxtb16((uint32_t)wb);                          \
    s00 = tg_smlad(x0e, wae, s00);                          \
    s01 = tg_smlad(x0e, wbe, s01);                          \
    wao = tg_sxtb16_ror8((uint32_t)wa);                     \
    wbo = tg_sxtb16_ror8((uint32_t)wb);                     \
    s00 = tg_smlad(x0o, wao, s00);                          \
    s01 = tg_smlad(x0o, wbo, s01);                          \
    TG_LDRD(x1e, x1o, col);                                 \
    s10 = tg_smlad(x1e, wae, s10);                          \
    s11 = tg_smlad(x1e, wbe, s11);                          \
    s10 = tg_smlad(x1o, wao, s10);                          \
    s11 = tg_smlad(x1o, wbo, s11);                          \
  } while (0)

TG_INLINE void tg_mm_2x2(const int32_t *col, const int32_t *w, int32_t groups, int32_t *a00,
                         int32_t *a01, int32_t *a10, int32_t *a11) {
  int32_t s00 = *a00, s01 = *a01, s10 = *a10, s11 = *a11;
  const int32_t *end = w + 2 * groups;
  if (groups & 1) {
    TG_MM_2X2_GROUP();
  }
  while (w < end) {
    TG_MM_2X2_GROUP();
    TG_MM_2X2_GROUP();
  }
  *a00 = s00;
  *a01 = s01;
  *a10 = s10;
  *a11 = s11;
}

#define TG_DOT4_ROW(acc, wv)                                 \
  do {                                                       \
    acc = tg_smlad(xe, tg_sxtb16((uint32_t)(wv)), acc);      \
    acc = tg_smlad(xo, tg_sxtb16_ror8((uint32_t)(wv)), acc); \
  } while (0)

#define TG_DOT4_GROUP(xv)                                      \
  do {                                                         \
    const int32_t xe = tg_sxtb16(xv), xo = tg_sxtb16_ror8(xv); \
    int32_t w0, w1, w2, w3;                                    \
    TG_LDRD(w0, w1, w);                                        \
    TG_LDRD(w2, w3, w);                                        \
    TG_DOT4_ROW(a0, w0);                                       \
    TG_DOT4_ROW(a1, w1);                                       \
    TG_DOT4_ROW(a2, w2);                                       \
    TG_DOT4_ROW(a3, w3);                                       \
  } while (0)

/* the last 1..3 inputs of a row, zero-extended to a word (no read past them) */
TG_INLINE uint32_t tg_dot4_load_tail(const int8_t *x, int32_t n) {
  uint32_t t = 0;
  memcpy(&t, x, (size_t)n);
  return t;
}

/* ---- four rows of int8 weights against one raw int8 vector -----------------
 * w: per group of four inputs one word of each of the four rows (the rows
 * interleaved at build time, the depth padded with zero weights); per four
 * inputs one load and two SXTB16 of the input, two LDRD, eight SXTB16 and
 * eight SMLAD.  full / tail: whole groups and the 1..3 inputs after them
 * (never read past).  The accumulators start from rq[0..3]. */
TG_INLINE void tg_dot4_s8(const int8_t *x, const int32_t *w, int32_t full, int32_t tail,
                          const int32_t *rq, int32_t *acc) {
  int32_t a0 = rq[0], a1 = rq[1], a2 = rq[2], a3 = rq[3];
  int32_t g;
  uint32_t v;
  if (full & 1) {
    v = tg_load_u32(x);
    x += 4;
    TG_DOT4_GROUP(v);
  }
  for (g = full >> 1; g > 0; --g) {
    v = tg_load_u32(x);
    TG_DOT4_GROUP(v);
    v = tg_load_u32(x + 4);
    x += 8;
    TG_DOT4_GROUP(v);
  }
  if (tail) {
    TG_DOT4_GROUP(tg_dot4_load_tail(x, tail));
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
}

#ifdef __cplusplus
}
#endif

#endif /* TG_DSP_H */
