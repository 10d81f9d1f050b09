/* 2-D convolution, int8, DSP-extension kernel (TFLite CONV_2D, one group).
 *
 * Output pixels are taken two at a time (raster order).  The receptive field
 * of each is expanded into a 16-bit column with the input offset added
 * (SXTAB16), taps outside the image being 0; then every pair of output
 * channels is one 2x2 block of tg_mm_2x2_w16 (8 SMLAD per 16 multiply-
 * accumulates, the weights stored as 16-bit lanes), requantized per channel
 * and clamped.  The accumulator is
 * bias + sum(filter * (input + input_offset)) over the taps inside the image,
 * exactly TFLite's reference sum.
 *
 * A window that lies wholly inside the image and whose filter rows are whole
 * groups of four values (or a single row: 1x1 convolutions) is expanded
 * straight from the input; any other window is first gathered into an int8
 * buffer with the input zero point in the padding.
 *
 * Memory order: pixel q's outputs are written after its inputs were read and
 * before pixel q+2's are read (the planner may overlap the output with the
 * input accordingly; see tinygen/analyze/memory_plan.py).
 */
#include "tg_conv2d_dsp.h"

/* n bytes, a word at a time (unaligned words are fine on ARMv7-M) */
TG_INLINE void tg_conv_dsp_copy(int8_t *dst, const int8_t *src, int32_t n) {
  for (; n >= 4; n -= 4, dst += 4, src += 4) {
    tg_store_u32(dst, tg_load_u32(src));
  }
  for (; n > 0; --n) {
    *dst++ = *src++;
  }
}

/* tg_expand_s8 out of line for the window code: one copy instead of one
 * per use. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
static void
tg_conv_dsp_expand(const int8_t *src, int32_t n, int32_t off2, int32_t *col) {
  tg_expand_s8(src, n, off2, col, 4);
}

static void tg_conv_dsp_column(const tg_conv2d_dsp_params *p, const int8_t *input, int32_t q,
                               int8_t *win, int32_t *col) {
  const int32_t in_h = p->in.h, in_w = p->in.w, c = p->in.c;
  const int32_t out_hw = p->out.h * p->out.w;
  const int32_t b = q / out_hw, r = q - b * out_hw;
  const int32_t oy = r / p->out.w, ox = r - oy * p->out.w;
  const int32_t iy0 = oy * p->stride_h - p->pad_h, ix0 = ox * p->stride_w - p->pad_w;
  const int32_t fh = p->filter_h, fw = p->filter_w, dh = p->dilation_h, dw = p->dilation_w;
  const int32_t row_bytes = fw * c, row_k = p->row_k;
  const int32_t off2 = tg_lanes(p->input_offset, p->input_offset);
  const int8_t *in_b = input + b * in_h * in_w * c;
  int32_t ky, kx, i;
  if (p->direct_rows && iy0 >= 0 && ix0 >= 0 && iy0 + (fh - 1) * dh < in_h && ix0 + fw - 1 < in_w &&
      (row_k == row_bytes || ((iy0 + (fh - 1) * dh) * in_w + ix0) * c + row_k <= in_h * in_w * c)) {
    /* row_k is a multiple of 4 (or this is the only row): whole groups; a
     * padded row reads row_k - row_bytes bytes past the window, inside the
     * image (tested above), which meet zero weights */
    const int8_t *src = in_b + (iy0 * in_w + ix0) * c;
    const int32_t step = dh * in_w * c;
    if (row_k == 4) {
      /* one group per row (3x3 or 4xN on one channel): without the general
       * loop's tests, a third of such a column's cost */
      for (ky = 0; ky < fh; ++ky, src += step, col += 4) {
        const uint32_t v = tg_load_u32(src);
        col[0] = tg_sxtab16(off2, v);
        col[1] = tg_sxtab16_ror8(off2, v);
      }
      return;
    }
    for (ky = 0; ky < fh; ++ky, src += step) {
      tg_conv_dsp_expand(src, row_k, off2, col);
      col += row_k; /* row_k / 4 groups of four words (two columns) */
    }
    return;
  }
  if (iy0 >= 0 && ix0 >= 0 && iy0 + (fh - 1) * dh < in_h && ix0 + (fw - 1) * dw < in_w && dw == 1) {
    /* inside the image, rows contiguous: gather whole rows */
    const int8_t *src = in_b + (iy0 * in_w + ix0) * c;
    int8_t *w = win;
    for (ky = 0; ky < fh; ++ky, src += dh * in_w * c, w += row_k) {
      tg_conv_dsp_copy(w, src, row_bytes);
    }
  } else if (dw == 1) {
    /* clipped by the border, taps of a row contiguous: one fill of the
     * window and per row one copy of the columns inside, not a test and a
     * copy per tap (with one input channel, as in a spectrogram's first
     * layer, a tap is a byte) */
    const int8_t pad = (int8_t)(-p->input_offset);
    const int32_t kx0 = ix0 < 0 ? (-ix0 < fw ? -ix0 : fw) : 0;
    const int32_t kx1 = in_w - ix0 < fw ? (in_w - ix0 > kx0 ? in_w - ix0 : kx0) : fw;
    int8_t *w = win + kx0 * c;
    memset(win, pad, (size_t)(fh * row_k));
    for (ky = 0; ky < fh && kx0 < kx1; ++ky, w += row_k) {
      const int32_t iy = iy0 + ky * dh;
      if (iy >= 0 && iy < in_h) {
        tg_conv_dsp_copy(w, in_b + (iy * in_w + ix0 + kx0) * c, (kx1 - kx0) * c);
      }
    }
  } else {
    const int8_t pad = (int8_t)(-p->input_offset);
    int8_t *w = win;
    for (ky = 0; ky < fh; ++ky) {
      const int32_t iy = iy0 + ky * dh;
      for (kx = 0; kx < fw; ++kx, w += c) {
        const int32_t ix = ix0 + kx * dw;
        if (iy >= 0 && iy < in_h && ix >= 0 && ix < in_w) {
          tg_conv_dsp_copy(w, in_b + (iy * in_w + ix) * c, c);
        } else {
          for (i = 0; i < c; ++i) {
            w[i] = pad;
          }
        }
      }
    }
  }
  /* padded rows (row_k > row_bytes, dilation_w 1 only) end in bytes the
   * copies above do not write: whatever they hold meets zero weights */
  tg_conv_dsp_expand(win, fh * row_k, off2, col);
}

/* Requantize a 2x2 block and store it; out0/out1 are the two pixels' rows.
 * Fast sums are 2 * acc (weights and bias stored doubled). */
TG_INLINE void tg_conv_dsp_store(const tg_conv2d_dsp_params *p, const int32_t *rq, int32_t a00,
                                 int32_t a01, int32_t a10, int32_t a11, int8_t *out0, int8_t *out1,
                                 int32_t both) {
  if (p->fast) {
    a00 = tg_rq_fast2(a00, rq[2], rq[4], rq[6]);
    a10 = tg_rq_fast2(a10, rq[2], rq[4], rq[6]);
    a01 = tg_rq_fast2(a01, rq[3], rq[5], rq[7]);
    a11 = tg_rq_fast2(a11, rq[3], rq[5], rq[7]);
  } else {
    a00 = tg_rq_exact(a00, rq[2], rq[4], rq[6]);
    a10 = tg_rq_exact(a10, rq[2], rq[4], rq[6]);
    a01 = tg_rq_exact(a01, rq[3], rq[5], rq[7]);
    a11 = tg_rq_exact(a11, rq[3], rq[5], rq[7]);
  }
  out0[0] = (int8_t)tg_act(a00, p->act_full, p->act_min, p->act_max);
  out1[0] = (int8_t)tg_act(a10, p->act_full, p->act_min, p->act_max);
  if (both) {
    out0[1] = (int8_t)tg_act(a01, p->act_full, p->act_min, p->act_max);
    out1[1] = (int8_t)tg_act(a11, p->act_full, p->act_min, p->act_max);
  }
}

/* The weights are stored as 16-bit lanes: per group of four k and pair of
 * channels the words (a0, a2), (a1, a3), (b0, b2), (b1, b3), already the
 * lanes of the column words, so no SXTB16 runs here: 2 + 2 LDRD and 8 SMLAD
 * per 16 multiply-accumulates (int8 weights took 3 LDRD, 4 SXTB16 and 8
 * SMLAD), at twice the weight flash.  Unrolled four times; the 13 live
 * values (four sums, two pointers, the end, four column and two weight
 * words) just fit the M4's registers. */
#define TG_MM_W16_GROUP()               \
  do {                                  \
    int32_t x0e, x0o, x1e, x1o, we, wo; \
    TG_LDRD(x0e, x0o, col);             \
    TG_LDRD(x1e, x1o, col);             \
    TG_LDRD(we, wo, w);                 \
    s00 = tg_smlad(x0e, we, s00);       \
    s10 = tg_smlad(x1e, we, s10);       \
    s00 = tg_smlad(x0o, wo, s00);       \
    s10 = tg_smlad(x1o, wo, s10);       \
    TG_LDRD(we, wo, w);                 \
    s01 = tg_smlad(x0e, we, s01);       \
    s11 = tg_smlad(x1e, we, s11);       \
    s01 = tg_smlad(x0o, wo, s01);       \
    s11 = tg_smlad(x1o, wo, s11);       \
  } while (0)

TG_INLINE void tg_mm_2x2_w16(const int32_t *col, const int32_t *w, int32_t groups, int32_t *a00,
                             int32_t *a01, int32_t *a10, int32_t *a11) {
  int32_t s00 = *a00, s01 = *a01, s10 = *a10, s11 = *a11;
  const int32_t *end = w + 4 * groups;
  switch (groups & 3) {
    case 3:
      TG_MM_W16_GROUP();
      /* fall through */
    case 2:
      TG_MM_W16_GROUP();
      /* fall through */
    case 1:
      TG_MM_W16_GROUP();
      /* fall through */
    default:
      break;
  }
  while (w < end) {
    TG_MM_W16_GROUP();
    TG_MM_W16_GROUP();
    TG_MM_W16_GROUP();
    TG_MM_W16_GROUP();
  }
  *a00 = s00;
  *a01 = s01;
  *a10 = s10;
  *a11 = s11;
}

/* tg_mm_2x2_w16 for two groups */
TG_INLINE void tg_mm_2x2_w16_g2(const int32_t *col, const int32_t *w, int32_t *a00, int32_t *a01,
                                int32_t *a10, int32_t *a11) {
  int32_t s00 = *a00, s01 = *a01, s10 = *a10, s11 = *a11;
  TG_MM_W16_GROUP();
  TG_MM_W16_GROUP();
  *a00 = s00;
  *a01 = s01;
  *a10 = s10;
  *a11 = s11;
}

/* The fast-requantization blocks, MM the matrix product of one block. */
#define TG_CONV_FAST_BLOCKS(MM)                 \
  while (out0 < end) {                          \
    int32_t a00, a01, a10, a11, m0, m1;         \
    TG_LDRD(a00, a01, rq);                      \
    a10 = a00;                                  \
    a11 = a01;                                  \
    MM;                                         \
    w += 4 * g4;                                \
    TG_LDRD(m0, m1, rq);                        \
    a00 = tg_smmulr(a00, m0);                   \
    a10 = tg_smmulr(a10, m0);                   \
    a01 = tg_smmulr(a01, m1);                   \
    a11 = tg_smmulr(a11, m1);                   \
    TG_LDRD(m0, m1, rq);                        \
    a00 += m0 - (int32_t)((uint32_t)a00 >> 31); \
    a10 += m0 - (int32_t)((uint32_t)a10 >> 31); \
    a01 += m1 - (int32_t)((uint32_t)a01 >> 31); \
    a11 += m1 - (int32_t)((uint32_t)a11 >> 31); \
    TG_LDRD(m0, m1, rq);                        \
    out0[0] = (int8_t)tg_ssat8(a00 >> m0);      \
    out0[d] = (int8_t)tg_ssat8(a10 >> m0);      \
    out0[1] = (int8_t)tg_ssat8(a01 >> m1);      \
    out0[d + 1] = (int8_t)tg_ssat8(a11 >> m1);  \
    out0 += 2;                                  \
  }

/* One 2x2 block (or its first output channel when both is 0) with any
 * requantization and clamp.  The general loop and an odd last channel share
 * this one out-of-line copy of the matrix product: inlined in both it took
 * 0.6 KB more, and neither is the common case (fast requantization over the
 * full int8 range, an even channel count), which keeps its own loop. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
static void
tg_conv_dsp_block(const tg_conv2d_dsp_params *p, const int32_t *col, const int32_t *w,
                  const int32_t *rq, int8_t *out0, int8_t *out1, int32_t both) {
  int32_t a00 = rq[0], a01 = rq[1];
  int32_t a10 = a00, a11 = a01;
  tg_mm_2x2_w16(col, w, p->groups4, &a00, &a01, &a10, &a11);
  tg_conv_dsp_store(p, rq, a00, a01, a10, a11, out0, out1, both);
}

/* Every pair of output channels of two columns; fast requantization and the
 * full int8 range (the common case) in a loop of its own.  With fast
 * requantization the weights and bias are stored doubled, so the sums are
 * the 2 * acc SMMULR takes (|2 * acc| < 2^31 is part of the lowering's
 * proof). */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
static void
tg_conv_dsp_channels(const tg_conv2d_dsp_params *p, const int32_t *col, int8_t *out0,
                     int8_t *out1) {
  const int32_t oc = p->out.c, g4 = p->groups4;
  const int32_t *w = p->filter;
  const int32_t *rq = p->rq;
  int8_t *end = out0 + (oc & ~1);
  if (p->fast && p->act_full) {
    /* the second pixel's outputs at a fixed distance: one pointer fewer to
     * keep (it would live on the stack: a load and a store per block) */
    const int32_t d = (int32_t)(out1 - out0);
    /* depth 5-8 (MobileNetV2's 8 -> 48 expansions, person detection's
     * 8 -> 16): the two groups inline, no entry switch or loop test, and GCC
     * allocates the block's registers better with a constant depth (a copy
     * for depth 13-16 too saved mobilenet_ssd another 0.2 M instructions
     * but took MobileNetV1's code past a quarter of TFLM's) */
    if (g4 == 2) {
      TG_CONV_FAST_BLOCKS(tg_mm_2x2_w16_g2(col, w, &a00, &a01, &a10, &a11));
    } else {
      TG_CONV_FAST_BLOCKS(tg_mm_2x2_w16(col, w, g4, &a00, &a01, &a10, &a11));
    }
    out1 = out0 + d;
  } else {
    for (; out0 < end; out0 += 2, out1 += 2, w += 4 * g4, rq += 8) {
      tg_conv_dsp_block(p, col, w, rq, out0, out1, 1);
    }
  }
  if (oc & 1) {
    tg_conv_dsp_block(p, col, w, rq, out0, out1, 0);
  }
}

void tg_conv2d_dsp_s8(const tg_conv2d_dsp_params *p, const int8_t *input, int8_t *output,
                      void *scratch) {
  const int32_t n_px = p->out.n * p->out.h * p->out.w;
  const int32_t oc = p->out.c;
  int32_t *col = (int32_t *)scratch;
  int8_t *win = (int8_t *)(col + 4 * p->groups4);
  int32_t q;
  if (p->pointwise) {
    /* 1x1, stride 1, no padding: pixel q is input pixel q, expanded here
     * rather than through the window code (its call and set-up cost as much
     * as a short column: an 8 -> 12 layer's pixel) */
    const int32_t c = p->in.c;
    const int32_t off2 = tg_lanes(p->input_offset, p->input_offset);
    for (q = 0; q < n_px; q += 2) {
      const int32_t q1 = q + 1 < n_px ? q + 1 : q;
      tg_expand_s8(input + q * c, c, off2, col, 4);
      tg_expand_s8(input + q1 * c, c, off2, col + 2, 4);
      tg_conv_dsp_channels(p, col, output + q * oc, output + q1 * oc);
    }
    return;
  }
  for (q = 0; q < n_px; q += 2) {
    /* a last odd pixel is computed twice into the same bytes */
    const int32_t q1 = q + 1 < n_px ? q + 1 : q;
    tg_conv_dsp_column(p, input, q, win, col);
    tg_conv_dsp_column(p, input, q1, win, col + 2);
    tg_conv_dsp_channels(p, col, output + q * oc, output + q1 * oc);
  }
}
