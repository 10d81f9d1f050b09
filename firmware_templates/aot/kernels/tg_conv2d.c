/* 2-D convolution, int8 (TFLite CONV_2D with per-channel quantization).
 *
 * Same integers as TFLite's reference kernel: the accumulator is
 * sum(filter * (input - input_zero_point)) over the taps inside the image
 * (padding taps contribute nothing), plus the bias, scaled by the channel's
 * multiplier, offset by the output zero point and clamped.
 *
 * Computed as kbias + sum(filter * window), where kbias = bias +
 * input_offset * sum(filter) is folded at build time and the window is
 * gathered with padding taps set to the input zero point, whose
 * (value + input_offset) is 0 -- exact, since integer sums do not depend on
 * their order.  The inner loop is then one contiguous int8 dot product per
 * output channel (two channels share each load of the window).
 */
#include "tg_conv2d.h"

static int8_t tg_conv_out(const tg_conv2d_params *p, int32_t oc, int32_t acc) {
  acc = tg_requantize(acc, p->multiplier[oc], p->shift[oc]) + p->output_offset;
  return (int8_t)tg_clamp_i32(acc, p->act_min, p->act_max);
}

/* out_px[oc] for oc in [oc_first, oc_last) from one gathered window of k bytes. */
static void tg_conv_channels(const tg_conv2d_params *p, const int8_t *window, int32_t k,
                             int32_t oc_first, int32_t oc_last, int8_t *out_px) {
  int32_t oc = oc_first;
  for (; oc + 1 < oc_last; oc += 2) {
    const int8_t *f0 = p->filter + oc * k;
    int32_t acc0 = p->kbias[oc], acc1 = p->kbias[oc + 1];
    tg_dot2_s8(window, f0, f0 + k, k, &acc0, &acc1);
    out_px[oc] = tg_conv_out(p, oc, acc0);
    out_px[oc + 1] = tg_conv_out(p, oc + 1, acc1);
  }
  for (; oc < oc_last; ++oc) {
    out_px[oc] = tg_conv_out(p, oc, p->kbias[oc] + tg_dot_s8(window, p->filter + oc * k, k));
  }
}

static void tg_fill_s8(int8_t *dst, int8_t value, int32_t n) {
  while (n-- > 0) {
    *dst++ = value;
  }
}

static void tg_copy_s8(int8_t *dst, const int8_t *src, int32_t n) {
  if (n >= 16) {
    memcpy(dst, src, (size_t)n);
    return;
  }
  while (n-- > 0) {
    *dst++ = *src++;
  }
}

void tg_conv2d_s8(const tg_conv2d_params *p, const int8_t *input, int8_t *output, void *scratch) {
  const int32_t in_h = p->in.h, in_w = p->in.w, in_c = p->in.c;
  const int32_t out_h = p->out.h, out_w = p->out.w, out_c = p->out.c;
  const int32_t fh = p->filter_h, fw = p->filter_w, fc = p->filter_c;
  const int32_t k = fh * fw * fc;
  const int32_t groups = in_c / fc;
  const int32_t per_group = out_c / groups;
  const int8_t pad_value = (int8_t)(-p->input_offset); /* the input zero point */
  int8_t *window = (int8_t *)scratch;
  int32_t b, oy, ox, g, ky, kx;

  for (b = 0; b < p->out.n; ++b) {
    const int8_t *in_b = input + b * in_h * in_w * in_c;
    for (oy = 0; oy < out_h; ++oy) {
      const int32_t iy0 = oy * p->stride_h - p->pad_h;
      for (ox = 0; ox < out_w; ++ox) {
        const int32_t ix0 = ox * p->stride_w - p->pad_w;
        int8_t *out_px = output + ((b * out_h + oy) * out_w + ox) * out_c;
        for (g = 0; g < groups; ++g) {
          int8_t *w = window;
          for (ky = 0; ky < fh; ++ky) {
            const int32_t iy = iy0 + ky * p->dilation_h;
            for (kx = 0; kx < fw; ++kx, w += fc) {
              const int32_t ix = ix0 + kx * p->dilation_w;
              if (iy >= 0 && iy < in_h && ix >= 0 && ix < in_w) {
                tg_copy_s8(w, in_b + (iy * in_w + ix) * in_c + g * fc, fc);
              } else {
                tg_fill_s8(w, pad_value, fc);
              }
            }
          }
          tg_conv_channels(p, window, k, g * per_group, (g + 1) * per_group, out_px);
        }
      }
    }
  }
}

/* First and one-past-last filter tap whose input coordinate
 * origin + tap * dilation lies in [0, size). */
static void tg_conv_tap_range(int32_t origin, int32_t dilation, int32_t taps, int32_t size,
                              int32_t *first, int32_t *last) {
  int32_t lo = 0;
  int32_t hi = taps;
  while (lo < taps && origin + lo * dilation < 0) {
    ++lo;
  }
  while (hi > lo && origin + (hi - 1) * dilation >= size) {
    --hi;
  }
  *first = lo;
  *last = hi;
}

void tg_conv2d_direct_s8(const tg_conv2d_params *p, const int8_t *input, int8_t *output) {
  const int32_t in_h = p->in.h, in_w = p->in.w, in_c = p->in.c;
  const int32_t out_h = p->out.h, out_w = p->out.w, out_c = p->out.c;
  const int32_t fh = p->filter_h, fw = p->filter_w, fc = p->filter_c;
  const int32_t dh = p->dilation_h, dw = p->dilation_w;
  const int32_t per_group = out_c / (in_c / fc);
  const int32_t k = fh * fw * fc;
  /* a filter row (fw taps x fc channels) is contiguous in the input too */
  const int32_t row_contiguous = (dw == 1 && fc == in_c);
  int32_t b, oy, ox, oc, ky, kx;

  for (b = 0; b < p->out.n; ++b) {
    const int8_t *in_b = input + b * in_h * in_w * in_c;
    for (oy = 0; oy < out_h; ++oy) {
      const int32_t iy0 = oy * p->stride_h - p->pad_h;
      int32_t ky0, ky1;
      tg_conv_tap_range(iy0, dh, fh, in_h, &ky0, &ky1);
      for (ox = 0; ox < out_w; ++ox) {
        const int32_t ix0 = ox * p->stride_w - p->pad_w;
        int8_t *out_px = output + ((b * out_h + oy) * out_w + ox) * out_c;
        int32_t kx0, kx1, full;
        tg_conv_tap_range(ix0, dw, fw, in_w, &kx0, &kx1);
        full = (ky0 == 0 && ky1 == fh && kx0 == 0 && kx1 == fw);
        if (full && row_contiguous) {
          for (oc = 0; oc + 1 < out_c; oc += 2) {
            const int8_t *f0 = p->filter + oc * k;
            int32_t acc0 = p->kbias[oc], acc1 = p->kbias[oc + 1];
            for (ky = 0; ky < fh; ++ky) {
              tg_dot2_s8(in_b + ((iy0 + ky * dh) * in_w + ix0) * in_c, f0 + ky * fw * fc,
                         f0 + k + ky * fw * fc, fw * fc, &acc0, &acc1);
            }
            out_px[oc] = tg_conv_out(p, oc, acc0);
            out_px[oc + 1] = tg_conv_out(p, oc + 1, acc1);
          }
          for (; oc < out_c; ++oc) {
            const int8_t *f0 = p->filter + oc * k;
            int32_t acc = p->kbias[oc];
            for (ky = 0; ky < fh; ++ky) {
              acc += tg_dot_s8(in_b + ((iy0 + ky * dh) * in_w + ix0) * in_c, f0 + ky * fw * fc,
                               fw * fc);
            }
            out_px[oc] = tg_conv_out(p, oc, acc);
          }
          continue;
        }
        /* taps one by one; only those inside the image count */
        for (oc = 0; oc < out_c; ++oc) {
          const int32_t g = oc / per_group;
          const int8_t *f = p->filter + oc * k;
          int32_t acc, fsum = 0;
          if (full) {
            acc = p->kbias[oc];
          } else {
            acc = p->bias != NULL ? p->bias[oc] : 0;
          }
          for (ky = ky0; ky < ky1; ++ky) {
            const int8_t *x_row = in_b + (iy0 + ky * dh) * in_w * in_c + g * fc;
            for (kx = kx0; kx < kx1; ++kx) {
              const int8_t *fk = f + (ky * fw + kx) * fc;
              acc += tg_dot_s8(x_row + (ix0 + kx * dw) * in_c, fk, fc);
              if (!full) {
                fsum += tg_sum_s8(fk, fc);
              }
            }
          }
          out_px[oc] = tg_conv_out(p, oc, acc + fsum * p->input_offset);
        }
      }
    }
  }
}

void tg_conv2d_1x1_s8(const tg_conv2d_params *p, const int8_t *input, int8_t *output) {
  const int32_t in_h = p->in.h, in_w = p->in.w, in_c = p->in.c;
  const int32_t out_h = p->out.h, out_w = p->out.w, out_c = p->out.c;
  int32_t b, oy, ox;
  for (b = 0; b < p->out.n; ++b) {
    const int8_t *in_b = input + b * in_h * in_w * in_c;
    for (oy = 0; oy < out_h; ++oy) {
      const int8_t *in_row = in_b + oy * p->stride_h * in_w * in_c;
      for (ox = 0; ox < out_w; ++ox) {
        tg_conv_channels(p, in_row + ox * p->stride_w * in_c, in_c, 0, out_c,
                         output + ((b * out_h + oy) * out_w + ox) * out_c);
      }
    }
  }
}
