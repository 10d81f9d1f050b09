/* Audio front-end kernels (see tg_signal.h).  Every narrowing store below is
 * deliberate: the reference keeps intermediate values in int16/uint32 and
 * lets them wrap, and the features only agree bit for bit if we do too. */
#include "tg_signal.h"

/* Bits needed to hold x; 32 for 0, as TFLM's gcc build counts it (its
 * FftAutoScale and PCAN depend on that value). */
static uint32_t tg_msb32(uint32_t x) {
#if defined(__GNUC__) || defined(__clang__)
  return x ? 32u - (uint32_t)__builtin_clz(x) : 32u;
#else
  uint32_t n = 0;
  if (x == 0) return 32u;
  while (x) {
    x >>= 1;
    ++n;
  }
  return n;
#endif
}

void tg_window_s16(const tg_window_params *p, const int16_t *in, const int16_t *weights,
                   int16_t *out) {
  int32_t base, i;
  for (base = 0; base < p->size; base += p->window_size) {
    for (i = 0; i < p->window_size; ++i) {
      const int32_t v = ((int32_t)in[base + i] * weights[i]) >> p->shift;
      out[base + i] = (int16_t)tg_clamp_i32(v, INT16_MIN, INT16_MAX);
    }
  }
}

void tg_fft_auto_scale_s16(const tg_fft_auto_scale_params *p, const int16_t *in, int16_t *out,
                           int32_t *scale_bits) {
  /* The largest magnitude, kept in an int16 as the reference keeps it: a
   * sample of -32768 wraps it back to -32768 and the scale becomes 0. */
  int16_t peak = 0;
  int32_t i, bits;
  for (i = 0; i < p->size; ++i) {
    const int32_t v = in[i];
    if (v > peak) {
      peak = (int16_t)v;
    } else if (-v > peak) {
      peak = (int16_t)(-v);
    }
  }
  bits = 15 - (int32_t)tg_msb32((uint32_t)(int32_t)peak);
  if (bits < 0) bits = 0;
  for (i = 0; i < p->size; ++i) out[i] = (int16_t)((int32_t)in[i] * (1 << bits));
  *scale_bits = bits;
}

/* ---- FFT: kissfft's fixed-point arithmetic (Q15 twiddles, each stage
 * divides by its radix with rounding), decimation in time. ---- */

typedef struct {
  int16_t r, i;
} tg_c16;

/* x * 2^-15, rounded half up, kept in 16 bits. */
TG_INLINE int16_t tg_q15(int32_t x) { return (int16_t)((x + (1 << 14)) >> 15); }

TG_INLINE tg_c16 tg_c16_scale(tg_c16 a, int32_t q15) {
  tg_c16 o;
  o.r = tg_q15((int32_t)a.r * q15);
  o.i = tg_q15((int32_t)a.i * q15);
  return o;
}

TG_INLINE tg_c16 tg_c16_mul(tg_c16 a, tg_c16 b) {
  tg_c16 o;
  o.r = tg_q15((int32_t)a.r * b.r - (int32_t)a.i * b.i);
  o.i = tg_q15((int32_t)a.r * b.i + (int32_t)a.i * b.r);
  return o;
}

TG_INLINE tg_c16 tg_c16_add(tg_c16 a, tg_c16 b) {
  tg_c16 o;
  o.r = (int16_t)(a.r + b.r);
  o.i = (int16_t)(a.i + b.i);
  return o;
}

TG_INLINE tg_c16 tg_c16_sub(tg_c16 a, tg_c16 b) {
  tg_c16 o;
  o.r = (int16_t)(a.r - b.r);
  o.i = (int16_t)(a.i - b.i);
  return o;
}

TG_INLINE tg_c16 tg_c16_at(const int16_t *table, int32_t k) {
  tg_c16 o;
  o.r = table[2 * k];
  o.i = table[2 * k + 1];
  return o;
}

/* 32767 / radix: the stage's division by its radix as a Q15 product. */
#define TG_DIV2 16383
#define TG_DIV4 8191

static void tg_fft_radix2(tg_c16 *x, int32_t n, int32_t m, const int16_t *tw) {
  const int32_t span = 2 * m, stride = n / span;
  int32_t k, base;
  for (k = 0; k < m; ++k) {
    const tg_c16 w = tg_c16_at(tw, k * stride);
    for (base = k; base < n; base += span) {
      const tg_c16 a = tg_c16_scale(x[base], TG_DIV2);
      const tg_c16 t = tg_c16_mul(tg_c16_scale(x[base + m], TG_DIV2), w);
      x[base + m] = tg_c16_sub(a, t);
      x[base] = tg_c16_add(a, t);
    }
  }
}

#ifndef TG_HAVE_DSP
/* inverse: kissfft's inverse butterfly rotates the odd difference the other
 * way, which is the forward one with outputs m and 3m exchanged. */
static void tg_fft_radix4(tg_c16 *x, int32_t n, int32_t m, const int16_t *tw, int32_t inverse) {
  const int32_t span = 4 * m, stride = n / span;
  const int32_t q1 = inverse ? 3 * m : m, q3 = inverse ? m : 3 * m;
  int32_t k, base;
  for (k = 0; k < m; ++k) {
    const tg_c16 w1 = tg_c16_at(tw, k * stride);
    const tg_c16 w2 = tg_c16_at(tw, 2 * k * stride);
    const tg_c16 w3 = tg_c16_at(tw, 3 * k * stride);
    for (base = k; base < n; base += span) {
      tg_c16 *f = x + base;
      const tg_c16 a0 = tg_c16_scale(f[0], TG_DIV4);
      const tg_c16 b1 = tg_c16_mul(tg_c16_scale(f[m], TG_DIV4), w1);
      const tg_c16 b2 = tg_c16_mul(tg_c16_scale(f[2 * m], TG_DIV4), w2);
      const tg_c16 b3 = tg_c16_mul(tg_c16_scale(f[3 * m], TG_DIV4), w3);
      const tg_c16 diff02 = tg_c16_sub(a0, b2);
      const tg_c16 sum02 = tg_c16_add(a0, b2);
      const tg_c16 sum13 = tg_c16_add(b1, b3);
      const tg_c16 diff13 = tg_c16_sub(b1, b3);
      f[2 * m] = tg_c16_sub(sum02, sum13);
      f[0] = tg_c16_add(sum02, sum13);
      f[q1].r = (int16_t)(diff02.r + diff13.i);
      f[q1].i = (int16_t)(diff02.i - diff13.r);
      f[q3].r = (int16_t)(diff02.r - diff13.i);
      f[q3].i = (int16_t)(diff02.i + diff13.r);
    }
  }
}
#endif

#ifdef TG_HAVE_DSP
/* The same arithmetic on (re, im) packed in one word (re in the low half):
 * SMUSD/SMUADX give the complex product's two sums, SADD16/SSUB16/SASX/SSAX
 * the 16-bit wrapping adds, SHADD16/SHSUB16 the halving ones. */
TG_INLINE int32_t tg_w_load(const void *p) {
  int32_t v;
  memcpy(&v, p, 4);
  return v;
}
TG_INLINE void tg_w_store(void *p, int32_t v) { memcpy(p, &v, 4); }
TG_INLINE int32_t tg_w_pack(int32_t lo, int32_t hi) {
  return (int32_t)(((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16));
}
/* the high half of hi_from, the low half of lo_from */
TG_INLINE int32_t tg_w_merge(int32_t hi_from, int32_t lo_from) {
  return (int32_t)(((uint32_t)hi_from & 0xFFFF0000u) | ((uint32_t)lo_from & 0xFFFFu));
}
TG_INLINE int32_t tg_w_scale(int32_t x, int32_t q15) {
  return tg_w_pack(__smlabb(x, q15, 1 << 14) >> 15, __smlatb(x, q15, 1 << 14) >> 15);
}
TG_INLINE int32_t tg_w_mul(int32_t a, int32_t b) {
  /* SMLADX wraps where the reference's int32 sum wraps (all four -32768) */
  return tg_w_pack(__smlsd(a, b, 1 << 14) >> 15, __smladx(a, b, 1 << 14) >> 15);
}

static void tg_fft_radix4_dsp(tg_c16 *x, int32_t n, int32_t m, const int16_t *tw, int32_t inverse) {
  const int32_t span = 4 * m, stride = n / span;
  const int32_t q1 = inverse ? 3 * m : m, q3 = inverse ? m : 3 * m;
  int32_t k, base;
  for (k = 0; k < m; ++k) {
    const int32_t w1 = tg_w_load(tw + 2 * k * stride);
    const int32_t w2 = tg_w_load(tw + 4 * k * stride);
    const int32_t w3 = tg_w_load(tw + 6 * k * stride);
    for (base = k; base < n; base += span) {
      tg_c16 *f = x + base;
      const int32_t a0 = tg_w_scale(tg_w_load(f), TG_DIV4);
      const int32_t b1 = tg_w_mul(tg_w_scale(tg_w_load(f + m), TG_DIV4), w1);
      const int32_t b2 = tg_w_mul(tg_w_scale(tg_w_load(f + 2 * m), TG_DIV4), w2);
      const int32_t b3 = tg_w_mul(tg_w_scale(tg_w_load(f + 3 * m), TG_DIV4), w3);
      const int32_t diff02 = (int32_t)__ssub16(a0, b2), sum02 = (int32_t)__sadd16(a0, b2);
      const int32_t sum13 = (int32_t)__sadd16(b1, b3), diff13 = (int32_t)__ssub16(b1, b3);
      tg_w_store(f + 2 * m, (int32_t)__ssub16(sum02, sum13));
      tg_w_store(f, (int32_t)__sadd16(sum02, sum13));
      tg_w_store(f + q1, (int32_t)__ssax(diff02, diff13));
      tg_w_store(f + q3, (int32_t)__sasx(diff02, diff13));
    }
  }
}

static void tg_rfft_split_dsp(const tg_c16 *x, int32_t n, const int16_t *split, int16_t *dst) {
  int32_t i;
  for (i = 1; i <= n / 2; ++i) {
    const int32_t near = tg_w_load(x + i), far = tg_w_load(x + n - i);
    /* (re, -im) of the mirrored bin, the negation wrapping in 16 bits */
    const int32_t mirror = tg_w_merge((int32_t)__ssub16(0, far), far);
    const int32_t a = tg_w_scale(near, TG_DIV2), b = tg_w_scale(mirror, TG_DIV2);
    const int32_t sum = (int32_t)__sadd16(a, b);
    const int32_t t = tg_w_mul((int32_t)__ssub16(a, b), tg_w_load(split + 2 * (i - 1)));
    tg_w_store(dst + 2 * i, (int32_t)__shadd16(sum, t));
    tg_w_store(dst + 2 * (n - i),
               tg_w_merge((int32_t)__shsub16(t, sum), (int32_t)__shsub16(sum, t)));
  }
}
#endif

TG_INLINE void tg_fft_stage4(tg_c16 *x, int32_t n, int32_t m, const int16_t *tw, int32_t inverse) {
#ifdef TG_HAVE_DSP
  tg_fft_radix4_dsp(x, n, m, tw, inverse);
#else
  tg_fft_radix4(x, n, m, tw, inverse);
#endif
}

void tg_rfft_s16(const tg_rfft_params *p, const int16_t *in, int16_t *out, void *scratch) {
  const int32_t n = p->fft_length / 2; /* complex points */
  const int32_t len = p->input_length;
  tg_c16 *x = (tg_c16 *)scratch;
  int32_t frame, i, s, m;
  for (frame = 0; frame < p->frames; ++frame) {
    const int16_t *src = in + frame * len;
    int16_t *dst = out + 2 * frame * p->output_stride;
    /* samples 2c and 2c+1 are the real and imaginary parts of complex input
     * c; the first stage reads them in digit-reversed order */
    for (i = 0; i < n; ++i) {
      const int32_t at = 2 * (int32_t)p->order[i];
      x[i].r = at < len ? src[at] : 0;
      x[i].i = at + 1 < len ? src[at + 1] : 0;
    }
    for (s = 0, m = 1; s < p->num_stages; ++s) {
      if (p->radix[s] == 4) {
        tg_fft_stage4(x, n, m, p->twiddles, 0);
      } else {
        tg_fft_radix2(x, n, m, p->twiddles);
      }
      m *= p->radix[s];
    }
    /* split the packed transform into the real input's spectrum */
    {
      const tg_c16 dc = tg_c16_scale(x[0], TG_DIV2);
      dst[0] = (int16_t)(dc.r + dc.i);
      dst[1] = 0;
      dst[2 * n] = (int16_t)(dc.r - dc.i);
      dst[2 * n + 1] = 0;
    }
#ifdef TG_HAVE_DSP
    tg_rfft_split_dsp(x, n, p->super_twiddles, dst);
#else
    for (i = 1; i <= n / 2; ++i) {
      tg_c16 mirror = x[n - i];
      tg_c16 a, b, sum, diff, t;
      mirror.i = (int16_t)(-mirror.i);
      a = tg_c16_scale(x[i], TG_DIV2);
      b = tg_c16_scale(mirror, TG_DIV2);
      sum = tg_c16_add(a, b);
      diff = tg_c16_sub(a, b);
      t = tg_c16_mul(diff, tg_c16_at(p->super_twiddles, i - 1));
      dst[2 * i] = (int16_t)((sum.r + t.r) >> 1);
      dst[2 * i + 1] = (int16_t)((sum.i + t.i) >> 1);
      /* at i == n/2 both lines address the same bin; this one is kept */
      dst[2 * (n - i)] = (int16_t)((sum.r - t.r) >> 1);
      dst[2 * (n - i) + 1] = (int16_t)((t.i - sum.i) >> 1);
    }
#endif
  }
}

void tg_energy_s16(const tg_energy_params *p, const int16_t *spectrum, uint32_t *out) {
  int32_t i;
  /* bins outside [start, end) are never read with a non-zero weight; zero
   * them so the tensor is defined */
  for (i = 0; i < p->size; ++i) {
    if (i < p->start_index || i >= p->end_index) {
      out[i] = 0;
    } else {
      const int32_t re = spectrum[2 * i], im = spectrum[2 * i + 1];
      /* unsigned: (-32768)^2 twice is 2^31 */
      out[i] = (uint32_t)(re * re) + (uint32_t)(im * im);
    }
  }
}

void tg_filter_bank(const tg_filter_bank_params *p, const uint32_t *in, const int16_t *weights,
                    const int16_t *unweights, const int16_t *frequency_starts,
                    const int16_t *weight_starts, const int16_t *widths, uint64_t *out) {
  /* Channel c's value is its rising slope plus channel c-1's falling one;
   * channel 0 only lends its falling slope to channel 1. */
  uint64_t carried = 0;
  int32_t c, j;
  for (c = 0; c <= p->num_channels; ++c) {
    uint64_t rising = carried, falling = 0;
    const uint32_t *x = in + frequency_starts[c];
    const int16_t *w = weights + weight_starts[c];
    const int16_t *u = unweights + weight_starts[c];
    for (j = 0; j < widths[c]; ++j) {
      rising += (uint64_t)(int64_t)w[j] * x[j];
      falling += (uint64_t)(int64_t)u[j] * x[j];
    }
    if (c > 0) out[c - 1] = rising;
    carried = falling;
  }
}

/* Integer square root rounded to nearest, saturating at the type's maximum
 * (the reference's Sqrt32/Sqrt64 contract). */
/* Bits needed to hold a 64-bit value (0 for 0). */
static uint32_t tg_bits64(uint64_t x) {
  const uint32_t hi = (uint32_t)(x >> 32);
  if (hi) return 32u + tg_msb32(hi);
  return x ? tg_msb32((uint32_t)x) : 0u;
}

/* Digit-by-digit: starts at the highest power of four in v; 32-bit
 * arithmetic when v fits (most of a quiet frame's channels). */
static uint32_t tg_sqrt_rounded(uint64_t v) {
  const uint32_t start = (tg_bits64(v) - 1u) & ~1u;
  if (v == 0) return 0;
  if ((v >> 32) == 0) {
    uint32_t root = 0, rest = (uint32_t)v, bit = 1u << start;
    while (bit) {
      if (rest >= root + bit) {
        rest -= root + bit;
        root = (root >> 1) + bit;
      } else {
        root >>= 1;
      }
      bit >>= 2;
    }
    if (rest > root && root != 0xFFFFu) ++root;
    return root;
  } else {
    uint64_t root = 0, rest = v, bit = (uint64_t)1 << start;
    while (bit) {
      if (rest >= root + bit) {
        rest -= root + bit;
        root = (root >> 1) + bit;
      } else {
        root >>= 1;
      }
      bit >>= 2;
    }
    if (rest > root && root != 0xFFFFFFFFu) ++root;
    return (uint32_t)root;
  }
}

void tg_filter_bank_sqrt(const tg_filter_bank_sqrt_params *p, const uint64_t *in,
                         const int32_t *scale_bits, uint32_t *out) {
  const int32_t s = *scale_bits;
  int32_t c;
  for (c = 0; c < p->num_channels; ++c) {
    const uint32_t r = tg_sqrt_rounded(in[c]);
    out[c] = s <= 0 ? r : (s >= 32 ? 0u : r >> s);
  }
}

void tg_spectral_subtraction(const tg_spectral_subtraction_params *p, const uint32_t *in,
                             uint32_t *out, uint32_t *noise_out, void *state) {
  uint32_t *noise = (uint32_t *)state;
  int32_t c;
  for (c = 0; c < p->num_channels; ++c) {
    const int odd = c & 1;
    const uint32_t smooth = odd ? p->alternate_smoothing : p->smoothing;
    const uint32_t keep = odd ? p->alternate_one_minus_smoothing : p->one_minus_smoothing;
    const uint32_t signal = in[c] << p->smoothing_bits;
    uint32_t estimate, floor_value, remaining;
    noise[c] = (uint32_t)(((uint64_t)signal * smooth + (uint64_t)noise[c] * keep) >>
                          p->spectral_subtraction_bits);
    estimate = noise[c];
    if (estimate > signal) {
      estimate = signal;
      if (p->clamping) noise[c] = estimate;
    }
    floor_value =
        (uint32_t)(((uint64_t)in[c] * p->min_signal_remaining) >> p->spectral_subtraction_bits);
    remaining = (signal - estimate) >> p->smoothing_bits;
    out[c] = remaining > floor_value ? remaining : floor_value;
  }
  for (c = 0; c < p->num_channels; ++c) noise_out[c] = noise[c];
}

/* PCAN's gain curve: a quadratic per octave of the noise estimate. */
static int16_t tg_pcan_gain(uint32_t x, const int16_t *lut) {
  uint32_t octave;
  int32_t frac, acc;
  const int16_t *q;
  if (x <= 2) return lut[x];
  octave = tg_msb32(x);
  q = lut + 4 * (int32_t)octave - 6;
  frac = (int32_t)((octave < 11 ? x << (11 - octave) : x >> (octave - 11)) & 0x3FF);
  acc = ((int32_t)q[2] * frac) >> 5;
  acc = (int32_t)((uint32_t)acc + ((uint32_t)q[1] << 5));
  acc = (int32_t)((uint32_t)acc * (uint32_t)frac);
  acc = (int32_t)((uint32_t)acc + (1u << 14)) >> 15;
  return (int16_t)(acc + q[0]);
}

void tg_pcan(const tg_pcan_params *p, const uint32_t *in, const uint32_t *noise,
             const int16_t *gain_lut, uint32_t *out) {
  int32_t c;
  for (c = 0; c < p->num_channels; ++c) {
    const uint32_t gain = (uint32_t)(int32_t)tg_pcan_gain(noise[c], gain_lut);
    const uint32_t snr = (uint32_t)(((uint64_t)in[c] * gain) >> p->snr_shift);
    /* shrink: quadratic below 2.0 (Q12), linear minus 1.0 (Q6) above */
    out[c] = snr < (2u << 12) ? (snr * snr) >> 20 : (snr >> 6) - (1u << 6);
  }
}

static uint32_t tg_log_q16(uint32_t x, uint32_t out_scale, const uint16_t *lut) {
  const uint32_t whole = tg_msb32(x) - 1;
  int32_t frac = (int32_t)(x - ((uint32_t)1 << whole));
  uint32_t seg, log2_value, ln_value;
  int32_t c0, c1;
  if (whole < 16) {
    frac <<= 16 - whole;
  } else {
    frac >>= whole - 16;
  }
  seg = (uint32_t)frac >> 9;
  c0 = lut[seg];
  c1 = lut[seg + 1];
  log2_value =
      (whole << 16) + (uint32_t)(frac + c0 + (((c1 - c0) * (frac - (int32_t)(seg << 9))) >> 16));
  ln_value = (uint32_t)(((uint64_t)45426 * log2_value + 32768u) >> 16);
  return (out_scale * ln_value + 32768u) >> 16;
}

void tg_filter_bank_log(const tg_filter_bank_log_params *p, const uint32_t *in, int16_t *out) {
  int32_t c;
  for (c = 0; c < p->num_channels; ++c) {
    const uint32_t x = in[c] << p->correction_bits;
    if (x > 1) {
      const uint32_t v = tg_log_q16(x, p->output_scale, p->log_lut);
      out[c] = (int16_t)(v < 32767u ? v : 32767u);
    } else {
      out[c] = 0;
    }
  }
}

void tg_framer_s16(const tg_framer_params *p, const int16_t *in, int16_t *out, uint8_t *valid,
                   void *state) {
  int32_t *held = (int32_t *)state; /* samples beyond `initial`, per stream */
  int16_t *samples = (int16_t *)(held + p->outer_dims);
  int32_t s, f;
  *valid = 1;
  for (s = 0; s < p->outer_dims; ++s) {
    int16_t *fifo = samples + s * p->capacity; /* oldest sample first */
    int32_t count = held[s] + p->initial;
    for (f = 0; f < p->n_frames; ++f) {
      const int32_t frame = s * p->n_frames + f;
      memcpy(fifo + count, in + frame * p->frame_step, sizeof(int16_t) * (size_t)p->frame_step);
      count += p->frame_step;
      if (count >= p->frame_size) {
        memcpy(out + frame * p->frame_size, fifo, sizeof(int16_t) * (size_t)p->frame_size);
        count -= p->frame_step;
        memmove(fifo, fifo + p->frame_step, sizeof(int16_t) * (size_t)count);
      } else {
        *valid = 0; /* that frame's output is left as it was, as TFLM leaves it */
      }
    }
    held[s] = count - p->initial;
  }
}

void tg_stacker_s16(const tg_stacker_params *p, const int16_t *in, int16_t *out, uint8_t *valid,
                    void *state) {
  int32_t *started = (int32_t *)state;
  int16_t *rows = (int16_t *)(started + 1); /* oldest frame first */
  const int32_t ch = p->num_channels, kept = p->left_context * ch;
  int32_t i;
  if (!*started) {
    /* the first frame also stands for the left context it does not have yet */
    for (i = 0; i <= p->left_context; ++i) memcpy(rows + i * ch, in, sizeof(int16_t) * (size_t)ch);
    *started = 1;
  } else {
    memmove(rows, rows + ch, sizeof(int16_t) * (size_t)kept);
    memcpy(rows + kept, in, sizeof(int16_t) * (size_t)ch);
  }
  memcpy(out, rows, sizeof(int16_t) * (size_t)(kept + ch));
  *valid = 1;
}

void tg_delay_s16(const tg_delay_params *p, const int16_t *in, int16_t *out, void *state) {
  const int32_t n = p->frame_size, d = p->delay;
  int32_t s;
  for (s = 0; s < p->outer_dims; ++s) {
    int16_t *held = (int16_t *)state + s * d; /* the last d samples seen, oldest first */
    const int16_t *x = in + s * n;
    int16_t *y = out + s * n;
    if (d <= n) {
      /* the held samples come out first, then all but the newest d inputs */
      memcpy(y, held, sizeof(int16_t) * (size_t)d);
      memcpy(y + d, x, sizeof(int16_t) * (size_t)(n - d));
      memcpy(held, x + (n - d), sizeof(int16_t) * (size_t)d);
    } else {
      memcpy(y, held, sizeof(int16_t) * (size_t)n);
      memmove(held, held + n, sizeof(int16_t) * (size_t)(d - n));
      memcpy(held + (d - n), x, sizeof(int16_t) * (size_t)n);
    }
  }
}

void tg_overlap_add_s16(const tg_overlap_add_params *p, const int16_t *in, int16_t *out,
                        void *state) {
  const int32_t size = p->frame_size, step = p->frame_step;
  int32_t s, f, i;
  for (s = 0; s < p->outer_dims; ++s) {
    int16_t *acc = (int16_t *)state + s * size;
    for (f = 0; f < p->n_frames; ++f) {
      const int16_t *x = in + (s * p->n_frames + f) * size;
      i = 0;
#ifdef TG_HAVE_DSP
      for (; i + 2 <= size; i += 2) { /* two saturating lanes per QADD16 */
        int32_t a, b;
        memcpy(&a, acc + i, 4);
        memcpy(&b, x + i, 4);
        a = (int32_t)__qadd16(a, b);
        memcpy(acc + i, &a, 4);
      }
#endif
      for (; i < size; ++i) {
        /* TFLM saturates the running sum itself, not only what it outputs */
        const int32_t v = (int32_t)acc[i] + x[i];
        acc[i] = (int16_t)(v > 32767 ? 32767 : (v < -32768 ? -32768 : v));
      }
      memcpy(out + (s * p->n_frames + f) * step, acc, sizeof(int16_t) * (size_t)step);
      memmove(acc, acc + step, sizeof(int16_t) * (size_t)(size - step));
      memset(acc + (size - step), 0, sizeof(int16_t) * (size_t)step);
    }
  }
}

void tg_overlap_add_f32(const tg_overlap_add_params *p, const float *in, float *out, void *state) {
  const int32_t size = p->frame_size, step = p->frame_step;
  int32_t s, f, i;
  for (s = 0; s < p->outer_dims; ++s) {
    float *acc = (float *)state + s * size;
    for (f = 0; f < p->n_frames; ++f) {
      const float *x = in + (s * p->n_frames + f) * size;
      /* one float add per sample in TFLM's order: the same rounding */
      for (i = 0; i < size; ++i) acc[i] += x[i];
      memcpy(out + (s * p->n_frames + f) * step, acc, sizeof(float) * (size_t)step);
      memmove(acc, acc + step, sizeof(float) * (size_t)(size - step));
      memset(acc + (size - step), 0, sizeof(float) * (size_t)step);
    }
  }
}

void tg_irfft_s16(const tg_irfft_params *p, const int16_t *in, int16_t *out, void *scratch) {
  const int32_t n = p->fft_length / 2; /* complex points */
  tg_c16 *packed = (tg_c16 *)scratch;
  int32_t frame, k, s, m;
  for (frame = 0; frame < p->frames; ++frame) {
    const int16_t *bins = in + frame * 2 * p->input_stride;
    tg_c16 *x = (tg_c16 *)(void *)(out + frame * p->fft_length);
    /* kiss_fftri: fold the half spectrum into an n-point complex one, every
     * sum and negation kept in 16 bits as kissfft keeps it */
    packed[0].r = (int16_t)(bins[0] + bins[2 * n]);
    packed[0].i = (int16_t)(bins[0] - bins[2 * n]);
    packed[0] = tg_c16_scale(packed[0], TG_DIV2);
    for (k = 1; k <= n / 2; ++k) {
      tg_c16 fk = tg_c16_at(bins, k), fnkc = tg_c16_at(bins, n - k), fek, fok;
      fnkc.i = (int16_t)(-fnkc.i);
      fk = tg_c16_scale(fk, TG_DIV2);
      fnkc = tg_c16_scale(fnkc, TG_DIV2);
      fek = tg_c16_add(fk, fnkc);
      fok = tg_c16_mul(tg_c16_sub(fk, fnkc), tg_c16_at(p->super_twiddles, k - 1));
      packed[k] = tg_c16_add(fek, fok);
      /* at k == n/2 this overwrites the line above, as in kissfft */
      packed[n - k] = tg_c16_sub(fek, fok);
      packed[n - k].i = (int16_t)(-packed[n - k].i);
    }
    /* the complex inverse FFT writes the output frame directly */
    for (k = 0; k < n; ++k) x[k] = packed[p->order[k]];
    for (s = 0, m = 1; s < p->num_stages; ++s) {
      if (p->radix[s] == 4) {
        tg_fft_stage4(x, n, m, p->twiddles, 1);
      } else {
        tg_fft_radix2(x, n, m, p->twiddles);
      }
      m *= p->radix[s];
    }
  }
}
