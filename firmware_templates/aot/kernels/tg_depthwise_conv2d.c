/* Depthwise 2-D convolution, int8 (TFLite DEPTHWISE_CONV_2D).
 *
 * Output channel ic * depth_multiplier + m filters input channel ic with
 * filter column ic * depth_multiplier + m; taps outside the image are
 * skipped; then bias, per-channel requantization, output offset and clamp,
 * exactly as TFLite's reference kernel does.
 */
#include "tg_depthwise_conv2d.h"

static void tg_dw_tap_range(int32_t origin, int32_t dilation, int32_t taps, int32_t size,
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

void tg_depthwise_conv2d_s8(const tg_depthwise_conv2d_params *p, const int8_t *input,
                            int8_t *output) {
  const int32_t in_h = p->in.h, in_w = p->in.w, in_c = p->in.c;
  const int32_t out_h = p->out.h, out_w = p->out.w, out_c = p->out.c;
  const int32_t fw = p->filter_w, dm = p->depth_multiplier;
  int32_t b, oy, ox, ic, m, ky, kx;

  for (b = 0; b < p->out.n; ++b) {
    const int8_t *in_b = input + b * in_h * in_w * in_c;
    for (oy = 0; oy < out_h; ++oy) {
      const int32_t iy0 = oy * p->stride_h - p->pad_h;
      int32_t ky_first, ky_last;
      tg_dw_tap_range(iy0, p->dilation_h, p->filter_h, in_h, &ky_first, &ky_last);
      for (ox = 0; ox < out_w; ++ox) {
        const int32_t ix0 = ox * p->stride_w - p->pad_w;
        int8_t *out_px = output + ((b * out_h + oy) * out_w + ox) * out_c;
        int32_t kx_first, kx_last;
        tg_dw_tap_range(ix0, p->dilation_w, fw, in_w, &kx_first, &kx_last);
        for (ic = 0; ic < in_c; ++ic) {
          for (m = 0; m < dm; ++m) {
            const int32_t oc = ic * dm + m;
            int32_t acc = 0;
            for (ky = ky_first; ky < ky_last; ++ky) {
              const int32_t iy = iy0 + ky * p->dilation_h;
              const int8_t *in_row = in_b + iy * in_w * in_c + ic;
              const int8_t *f_row = p->filter + ky * fw * out_c + oc;
              for (kx = kx_first; kx < kx_last; ++kx) {
                const int32_t ix = ix0 + kx * p->dilation_w;
                acc += (int32_t)f_row[kx * out_c] *
                       ((int32_t)in_row[ix * in_c] + p->input_offset);
              }
            }
            if (p->bias != NULL) {
              acc += p->bias[oc];
            }
            acc = tg_requantize(acc, p->multiplier[oc], p->shift[oc]);
            acc += p->output_offset;
            out_px[oc] = (int8_t)tg_clamp_i32(acc, p->act_min, p->act_max);
          }
        }
      }
    }
  }
}
