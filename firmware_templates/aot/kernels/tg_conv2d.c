/* 2-D convolution, int8 (TFLite CONV_2D with per-channel quantization).
 *
 * Same integer arithmetic as TFLite's reference kernel: the accumulator is
 * sum(filter * (input - input_zero_point)) over the taps that fall inside the
 * image (padding taps contribute nothing), plus the bias, scaled by the
 * channel's multiplier, offset by the output zero point and clamped.
 */
#include "tg_conv2d.h"

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

void tg_conv2d_s8(const tg_conv2d_params *p, const int8_t *input, int8_t *output) {
  const int32_t in_h = p->in.h, in_w = p->in.w, in_c = p->in.c;
  const int32_t out_h = p->out.h, out_w = p->out.w, out_c = p->out.c;
  const int32_t fh = p->filter_h, fw = p->filter_w, fc = p->filter_c;
  const int32_t groups = in_c / fc;
  const int32_t filters_per_group = out_c / groups;
  const int32_t filter_stride_oc = fh * fw * fc;
  int32_t b, oy, ox, oc, ky, kx, ic;

  for (b = 0; b < p->out.n; ++b) {
    const int8_t *in_b = input + b * in_h * in_w * in_c;
    for (oy = 0; oy < out_h; ++oy) {
      const int32_t iy0 = oy * p->stride_h - p->pad_h;
      int32_t ky_first, ky_last;
      tg_conv_tap_range(iy0, p->dilation_h, fh, in_h, &ky_first, &ky_last);
      for (ox = 0; ox < out_w; ++ox) {
        const int32_t ix0 = ox * p->stride_w - p->pad_w;
        int32_t kx_first, kx_last;
        tg_conv_tap_range(ix0, p->dilation_w, fw, in_w, &kx_first, &kx_last);
        for (oc = 0; oc < out_c; ++oc) {
          const int32_t group = oc / filters_per_group;
          const int8_t *f_oc = p->filter + oc * filter_stride_oc;
          int32_t acc = 0;
          for (ky = ky_first; ky < ky_last; ++ky) {
            const int32_t iy = iy0 + ky * p->dilation_h;
            for (kx = kx_first; kx < kx_last; ++kx) {
              const int32_t ix = ix0 + kx * p->dilation_w;
              const int8_t *x = in_b + (iy * in_w + ix) * in_c + group * fc;
              const int8_t *f = f_oc + (ky * fw + kx) * fc;
              for (ic = 0; ic < fc; ++ic) {
                acc += (int32_t)f[ic] * ((int32_t)x[ic] + p->input_offset);
              }
            }
          }
          if (p->bias != NULL) {
            acc += p->bias[oc];
          }
          acc = tg_requantize(acc, p->multiplier[oc], p->shift[oc]);
          acc += p->output_offset;
          acc = tg_clamp_i32(acc, p->act_min, p->act_max);
          output[((b * out_h + oy) * out_w + ox) * out_c + oc] = (int8_t)acc;
        }
      }
    }
  }
}
