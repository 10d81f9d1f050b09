/* Depthwise 2-D convolution, int8, depth multiplier 1, DSP-extension kernel.
 *
 * For each output pixel and group of four channels: per filter tap inside
 * the image, one word of four inputs becomes two words of 16-bit lanes with
 * the input offset added (SXTAB16, SXTAB16 ROR #8) and meets the tap's
 * weights, stored pre-extended to the same lanes at build time, in four
 * SMLABB/SMLATT.  Taps outside the image are skipped, so the accumulator is
 * bias + sum(filter * (input + input_offset)) over the taps inside: TFLite's
 * reference sum.  Then per-channel requantization, clamp, store.  A last
 * group of fewer than four channels reads and writes only its own bytes.
 *
 * With fast requantization (see tg_dsp.h) the weights and biases are stored
 * doubled, so the accumulator already is the 2 * acc that tg_rq_fast needs;
 * 3x3 windows wholly inside the image then take a path with the nine taps
 * unrolled (three row pointers, the column step in a register) whose bias
 * has the input offset's share folded in (so raw inputs, SXTB16), and 3x3
 * windows clipped by the border one with their two or three columns
 * unrolled.  The fast records hold (multiplier, round) pairs for SMMLAR.
 *
 * Memory order: output pixels in raster order, each written after all of
 * its inputs were read.
 */
#include "tg_depthwise_dsp.h"

static void tg_dw_range(int32_t origin, int32_t dilation, int32_t taps, int32_t size,
                        int32_t *first, int32_t *last) {
  int32_t lo = 0, hi = taps;
  while (lo < taps && origin + lo * dilation < 0) {
    ++lo;
  }
  while (hi > lo && origin + (hi - 1) * dilation >= size) {
    --hi;
  }
  *first = lo;
  *last = hi;
}

/* Keeps the unrolled taps in order: without it GCC hoists all nine loads and
 * unpacks and spills them (a compiler barrier only, no instruction). */
#if defined(__GNUC__) || defined(__clang__)
#define TG_DW_ORDER() __asm__ volatile("" ::: "memory")
#else
#define TG_DW_ORDER() ((void)0)
#endif

/* one tap: four channels */
#define TG_DW_TAP(xw, wp)                            \
  do {                                               \
    const int32_t xe_ = tg_sxtab16(off2, (xw));      \
    const int32_t xo_ = tg_sxtab16_ror8(off2, (xw)); \
    int32_t w0_, w1_;                                \
    TG_LDRD(w0_, w1_, wp);                           \
    a0 = tg_smlabb(xe_, w0_, a0);                    \
    a2 = tg_smlatt(xe_, w0_, a2);                    \
    a1 = tg_smlabb(xo_, w1_, a1);                    \
    a3 = tg_smlatt(xo_, w1_, a3);                    \
  } while (0)

static uint32_t tg_dw_load_part(const int8_t *x, int32_t n) {
  uint32_t v = 0;
  memcpy(&v, x, (size_t)n);
  return v;
}

TG_INLINE uint32_t tg_dw_pack(int32_t a0, int32_t a1, int32_t a2, int32_t a3) {
  return ((uint32_t)a0 & 0xFFu) | (((uint32_t)a1 & 0xFFu) << 8) | (((uint32_t)a2 & 0xFFu) << 16) |
         ((uint32_t)a3 << 24);
}

static void tg_dw_store4(const tg_depthwise_dsp_params *p, const int32_t *rq, int32_t a0,
                         int32_t a1, int32_t a2, int32_t a3, int8_t *out, int32_t n) {
  uint32_t v;
  if (p->fast) {
    a0 = tg_rq_fast2a(a0, rq[4], rq[5], rq[12]);
    a1 = tg_rq_fast2a(a1, rq[6], rq[7], rq[13]);
    a2 = tg_rq_fast2a(a2, rq[8], rq[9], rq[14]);
    a3 = tg_rq_fast2a(a3, rq[10], rq[11], rq[15]);
  } else {
    a0 = tg_rq_exact(a0, rq[4], rq[8], rq[12]);
    a1 = tg_rq_exact(a1, rq[5], rq[9], rq[13]);
    a2 = tg_rq_exact(a2, rq[6], rq[10], rq[14]);
    a3 = tg_rq_exact(a3, rq[7], rq[11], rq[15]);
  }
  if (p->act_full) {
    a0 = tg_ssat8(a0);
    a1 = tg_ssat8(a1);
    a2 = tg_ssat8(a2);
    a3 = tg_ssat8(a3);
  } else {
    a0 = tg_clamp_i32(a0, p->act_min, p->act_max);
    a1 = tg_clamp_i32(a1, p->act_min, p->act_max);
    a2 = tg_clamp_i32(a2, p->act_min, p->act_max);
    a3 = tg_clamp_i32(a3, p->act_min, p->act_max);
  }
  v = tg_dw_pack(a0, a1, a2, a3);
  if (n == 4) {
    tg_store_u32(out, v);
  } else {
    memcpy(out, &v, (size_t)n);
  }
}

/* Fast requantization of four channels and store: the accumulators are
 * 2 * acc; rq: (multiplier, round) of each channel, then the 4 shifts.  The
 * tg_rq_fast2a form: the rounding constant rides in SMMLAR.  Indexed loads,
 * which GCC pairs into LDRDs at offsets: the post-incremented TG_LDRD on a
 * copy of the pointer cost register moves (and its taps run behind a
 * barrier or in asm, so GCC cannot hoist these loads into them). */
TG_INLINE void tg_dw_rq4_fast(int32_t a0, int32_t a1, int32_t a2, int32_t a3, const int32_t *rq,
                              int8_t *out) {
  a0 = tg_smmlar(a0, rq[0], rq[1]) + (a0 >> 31);
  a1 = tg_smmlar(a1, rq[2], rq[3]) + (a1 >> 31);
  a2 = tg_smmlar(a2, rq[4], rq[5]) + (a2 >> 31);
  a3 = tg_smmlar(a3, rq[6], rq[7]) + (a3 >> 31);
  out[0] = (int8_t)tg_ssat8(a0 >> rq[8]);
  out[1] = (int8_t)tg_ssat8(a1 >> rq[9]);
  out[2] = (int8_t)tg_ssat8(a2 >> rq[10]);
  out[3] = (int8_t)tg_ssat8(a3 >> rq[11]);
}

/* Any window shape, fast requantization, full int8 range, whole groups:
 * nrows x ncols taps from x (steps cs / rs), weights from w (the window's
 * first tap of group 0; wskip words skipped after each row, wgroup words per
 * group). */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
static void
tg_dw_window_fast(const int8_t *x, int32_t cs, int32_t rs, const int32_t *w, int32_t nrows,
                  int32_t ncols, int32_t wskip, int32_t wgroup, const int32_t *rq, int8_t *out,
                  int32_t groups, int32_t off2, int32_t rqs) {
  for (; groups > 0; --groups, x += 4, w += wgroup, rq += rqs, out += 4) {
    const int8_t *xr = x;
    const int32_t *wt = w;
    int32_t a0 = rq[0], a1 = rq[1], a2 = rq[2], a3 = rq[3], r, k;
    if (ncols == 2) { /* the left and right edges of 3x3 windows */
      for (r = nrows; r > 0; --r, xr += rs, wt += wskip) {
        uint32_t v = tg_load_u32(xr);
        TG_DW_TAP(v, wt);
        TG_DW_ORDER();
        v = tg_load_u32(xr + cs);
        TG_DW_TAP(v, wt);
      }
    } else if (ncols == 3) { /* the top and bottom edges */
      for (r = nrows; r > 0; --r, xr += rs, wt += wskip) {
        uint32_t v = tg_load_u32(xr);
        TG_DW_TAP(v, wt);
        TG_DW_ORDER();
        v = tg_load_u32(xr + cs);
        TG_DW_TAP(v, wt);
        TG_DW_ORDER();
        v = tg_load_u32(xr + 2 * cs);
        TG_DW_TAP(v, wt);
      }
    } else {
      for (r = nrows; r > 0; --r, xr += rs, wt += wskip) {
        const int8_t *xc = xr;
        for (k = ncols; k > 0; --k, xc += cs) {
          const uint32_t v = tg_load_u32(xc);
          TG_DW_TAP(v, wt);
        }
      }
    }
    tg_dw_rq4_fast(a0, a1, a2, a3, rq + 4, out);
  }
}

/* The nine taps of a 3x3 window wholly inside the image, four channels:
 * a0..a3 += raw inputs (the input offset is folded into the bias) times the
 * weights at w (advanced past them); x ends two rows further down.  On DSP
 * cores one asm block: in C, GCC precomputes the eight tap offsets from
 * cs and rs, runs out of registers and reloads them from the stack, one per
 * tap; here x, cs and rs stay in registers and [x, cs, lsl #1] addresses
 * the third column. */
#ifdef TG_HAVE_DSP
#define TG_DW_ASM_TAP(addr)              \
  "ldr %[v], " addr                      \
  "\n\t"                                 \
  "sxtb16 %[e], %[v]\n\t"                \
  "sxtb16 %[v], %[v], ror #8\n\t"        \
  "ldrd %[w0], %[w1], [%[w]], #8\n\t"    \
  "smlabb %[a0], %[e], %[w0], %[a0]\n\t" \
  "smlatt %[a2], %[e], %[w0], %[a2]\n\t" \
  "smlabb %[a1], %[v], %[w1], %[a1]\n\t" \
  "smlatt %[a3], %[v], %[w1], %[a3]\n\t"
#define TG_DW_ASM_ROW            \
  TG_DW_ASM_TAP("[%[x]]")        \
  TG_DW_ASM_TAP("[%[x], %[cs]]") \
  TG_DW_ASM_TAP("[%[x], %[cs], lsl #1]")
#define TG_DW3X3_TAPS(x, cs, rs, w)                                                       \
  do {                                                                                    \
    int32_t v_, e_, w0_, w1_;                                                             \
    __asm__(TG_DW_ASM_ROW "add %[x], %[x], %[rs]\n\t" TG_DW_ASM_ROW                       \
                          "add %[x], %[x], %[rs]\n\t" TG_DW_ASM_ROW                       \
            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "+r"(x),    \
              [w] "+r"(w), [v] "=&r"(v_), [e] "=&r"(e_), [w0] "=&r"(w0_), [w1] "=&r"(w1_) \
            : [cs] "r"(cs), [rs] "r"(rs)                                                  \
            : "memory");                                                                  \
  } while (0)
#else
#define TG_DW_TAP_IN(xw, wp)                \
  do {                                      \
    const int32_t xe_ = tg_sxtb16(xw);      \
    const int32_t xo_ = tg_sxtb16_ror8(xw); \
    int32_t w0_, w1_;                       \
    TG_LDRD(w0_, w1_, wp);                  \
    a0 = tg_smlabb(xe_, w0_, a0);           \
    a2 = tg_smlatt(xe_, w0_, a2);           \
    a1 = tg_smlabb(xo_, w1_, a1);           \
    a3 = tg_smlatt(xo_, w1_, a3);           \
  } while (0)
#define TG_DW3X3_TAPS(x, cs, rs, w)                 \
  do {                                              \
    int32_t r_;                                     \
    for (r_ = 0; r_ < 3; ++r_, (x) += (rs)) {       \
      TG_DW_TAP_IN(tg_load_u32(x), w);              \
      TG_DW_TAP_IN(tg_load_u32((x) + (cs)), w);     \
      TG_DW_TAP_IN(tg_load_u32((x) + 2 * (cs)), w); \
    }                                               \
    (x) -= (rs);                                    \
  } while (0)
#endif

/* 3x3 windows wholly inside the image, fast requantization, full int8
 * range: n_px output pixels of a row (input and output advancing by px_step
 * and out_step bytes), `groups` whole groups of four channels each.  x: the
 * first window's top-left input; cs / rs: input steps between columns / rows
 * of taps; rq: records with the folded bias (5 fields). */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline)) /* its own register allocation: no spills in the taps */
#endif
static void
tg_dw3x3_fast(const int8_t *x, int32_t cs, int32_t rs, const int32_t *w_px, const int32_t *rq_px,
              int8_t *out, int32_t groups, int32_t n_px, int32_t px_step, int32_t out_step) {
  const int32_t back = 4 - 2 * rs; /* from the last row to the next group's first */
  for (; n_px > 0; --n_px, x += px_step - 4 * groups, out += out_step - 4 * groups) {
    const int32_t *w = w_px, *rq = rq_px;
    int32_t g;
    for (g = groups; g > 0; --g) {
      int32_t a0, a1, a2, a3;
      const int32_t *kb = rq + 16;
      TG_LDRD(a0, a1, kb);
      TG_LDRD(a2, a3, kb);
      TG_DW3X3_TAPS(x, cs, rs, w);
      x += back;
      tg_dw_rq4_fast(a0, a1, a2, a3, rq + 4, out);
      rq += 20;
      out += 4;
    }
  }
}

void tg_depthwise_dsp_s8(const tg_depthwise_dsp_params *p, const int8_t *input, int8_t *output) {
  const int32_t in_h = p->in.h, in_w = p->in.w, c = p->in.c;
  const int32_t out_h = p->out.h, out_w = p->out.w;
  const int32_t fh = p->filter_h, fw = p->filter_w, dh = p->dilation_h, dw = p->dilation_w;
  const int32_t taps = fh * fw;
  const int32_t groups = (c + 3) >> 2;
  const int32_t x_step = dw * c, row_step = dh * in_w * c;
  const int32_t off2 = tg_lanes(p->input_offset, p->input_offset);
  const int32_t rqs = p->rq_words;
  /* whole groups the unrolled 3x3 path can take */
  const int32_t fastw = (p->fast && p->act_full) ? c >> 2 : 0;
  const int32_t fast3 = (fh == 3 && fw == 3) ? fastw : 0;
  int32_t b, oy, ox, g, ky, kx;

  for (b = 0; b < p->out.n; ++b) {
    const int8_t *in_b = input + b * in_h * in_w * c;
    int8_t *out_px = output + b * out_h * out_w * c;
    for (oy = 0; oy < out_h; ++oy) {
      const int32_t iy0 = oy * p->stride_h - p->pad_h;
      int32_t ky0, ky1;
      tg_dw_range(iy0, dh, fh, in_h, &ky0, &ky1);
      for (ox = 0; ox < out_w; ++ox, out_px += c) {
        const int32_t ix0 = ox * p->stride_w - p->pad_w;
        int32_t kx0, kx1;
        const int8_t *x0;
        const int32_t *wg = p->filter;
        const int32_t *rq = p->rq;
        tg_dw_range(ix0, dw, fw, in_w, &kx0, &kx1);
        /* first tap inside the image (none: no tap is read) */
        x0 = ky0 < ky1 && kx0 < kx1 ? in_b + ((iy0 + ky0 * dh) * in_w + ix0 + kx0 * dw) * c : in_b;
        g = 0;
        if (fast3 && ky1 - ky0 == 3 && kx1 - kx0 == 3) {
          if (fast3 * 4 == c) {
            /* the run of interior pixels of this row, in one call */
            int32_t n = 1;
            while (ox + n < out_w && (ox + n) * p->stride_w - p->pad_w + 2 * dw < in_w) {
              ++n;
            }
            tg_dw3x3_fast(x0, x_step, row_step, wg, rq, out_px, fast3, n, p->stride_w * c, c);
            ox += n - 1;
            out_px += (n - 1) * c;
            continue;
          }
          tg_dw3x3_fast(x0, x_step, row_step, wg, rq, out_px, fast3, 1, 0, 0);
          g = fast3;
          wg += 2 * taps * g;
          rq += rqs * g;
        } else if (fastw && ky0 < ky1 && kx0 < kx1) {
          tg_dw_window_fast(x0, x_step, row_step, wg + (ky0 * fw + kx0) * 2, ky1 - ky0, kx1 - kx0,
                            2 * (fw - (kx1 - kx0)), 2 * taps, rq, out_px, fastw, off2, rqs);
          g = fastw;
          wg += 2 * taps * g;
          rq += rqs * g;
        }
        for (; g < groups; ++g, wg += 2 * taps, rq += rqs) {
          const int32_t n = c - 4 * g < 4 ? c - 4 * g : 4;
          int32_t a0 = rq[0], a1 = rq[1], a2 = rq[2], a3 = rq[3];
          const int8_t *xr = x0 + 4 * g;
          for (ky = ky0; ky < ky1; ++ky, xr += row_step) {
            const int32_t *wt = wg + (ky * fw + kx0) * 2;
            const int8_t *x = xr;
            for (kx = kx0; kx < kx1; ++kx, x += x_step) {
              const uint32_t v = n == 4 ? tg_load_u32(x) : tg_dw_load_part(x, n);
              TG_DW_TAP(v, wt);
            }
          }
          tg_dw_store4(p, rq, a0, a1, a2, a3, out_px + 4 * g, n);
        }
      }
    }
  }
}
