/* Depthwise 2-D convolution, int8 (TFLite DEPTHWISE_CONV_2D).
 *
 * Output channel oc = ic * depth_multiplier + m filters input channel ic with
 * filter column oc; taps outside the image are skipped; then bias,
 * per-channel requantization, output offset and clamp: the same integers as
 * TFLite's reference kernel.
 *
 * Windows wholly inside the image start from kbias = bias + input_offset *
 * sum(filter column) (folded at build time) and multiply raw inputs; border
 * windows start from the bias and add the offset to each input they use.
 * With depth_multiplier 1 on a DSP core, four channels are accumulated at
 * once (SXTB16 + SMLABB/SMLATT); everything else runs one channel at a time.
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

static int8_t tg_dw_out(const tg_depthwise_conv2d_params *p, int32_t oc, int32_t acc) {
  acc = tg_requantize(acc, p->multiplier[oc], p->shift[oc]) + p->output_offset;
  return (int8_t)tg_clamp_i32(acc, p->act_min, p->act_max);
}

void tg_depthwise_conv2d_s8(const tg_depthwise_conv2d_params *p, const int8_t *input,
                            int8_t *output) {
  const int32_t in_h = p->in.h, in_w = p->in.w, in_c = p->in.c;
  const int32_t out_h = p->out.h, out_w = p->out.w, out_c = p->out.c;
  const int32_t fw = p->filter_w, dm = p->depth_multiplier;
  const int32_t dh = p->dilation_h, dw = p->dilation_w;
  const int32_t x_step = dw * in_c; /* input stride between taps of a row */
  int32_t b, oy, ox, oc, ky, kx;

  for (b = 0; b < p->out.n; ++b) {
    const int8_t *in_b = input + b * in_h * in_w * in_c;
    for (oy = 0; oy < out_h; ++oy) {
      const int32_t iy0 = oy * p->stride_h - p->pad_h;
      int32_t ky0, ky1;
      tg_dw_tap_range(iy0, dh, p->filter_h, in_h, &ky0, &ky1);
      for (ox = 0; ox < out_w; ++ox) {
        const int32_t ix0 = ox * p->stride_w - p->pad_w;
        int8_t *out_px = output + ((b * out_h + oy) * out_w + ox) * out_c;
        int32_t kx0, kx1, full, off;
        tg_dw_tap_range(ix0, dw, fw, in_w, &kx0, &kx1);
        full = (ky0 == 0 && ky1 == p->filter_h && kx0 == 0 && kx1 == fw);
        off = full ? 0 : p->input_offset;
        oc = 0;
#ifdef TG_HAVE_DSP
        if (dm == 1) {
          /* two halfwords of the offset, for SADD16 on unpacked inputs */
          const int32_t off2 = (int32_t)(((uint32_t)off & 0xFFFFu) | ((uint32_t)off << 16));
          for (; oc + 4 <= out_c; oc += 4) {
            int32_t a0, a1, a2, a3;
            if (full) {
              a0 = p->kbias[oc];
              a1 = p->kbias[oc + 1];
              a2 = p->kbias[oc + 2];
              a3 = p->kbias[oc + 3];
            } else if (p->bias != NULL) {
              a0 = p->bias[oc];
              a1 = p->bias[oc + 1];
              a2 = p->bias[oc + 2];
              a3 = p->bias[oc + 3];
            } else {
              a0 = a1 = a2 = a3 = 0;
            }
            for (ky = ky0; ky < ky1; ++ky) {
              const int8_t *x = in_b + ((iy0 + ky * dh) * in_w + ix0 + kx0 * dw) * in_c + oc;
              const int8_t *f = p->filter + (ky * fw + kx0) * out_c + oc;
              for (kx = kx0; kx < kx1; ++kx, x += x_step, f += out_c) {
                const uint32_t wx = tg_load_u32(x), wf = tg_load_u32(f);
                const int32_t x02 = __sadd16(tg_sxtb16(wx), off2);
                const int32_t x13 = __sadd16(tg_sxtb16_ror8(wx), off2);
                const int32_t f02 = tg_sxtb16(wf), f13 = tg_sxtb16_ror8(wf);
                a0 = __smlabb(x02, f02, a0);
                a2 = __smlatt(x02, f02, a2);
                a1 = __smlabb(x13, f13, a1);
                a3 = __smlatt(x13, f13, a3);
              }
            }
            out_px[oc] = tg_dw_out(p, oc, a0);
            out_px[oc + 1] = tg_dw_out(p, oc + 1, a1);
            out_px[oc + 2] = tg_dw_out(p, oc + 2, a2);
            out_px[oc + 3] = tg_dw_out(p, oc + 3, a3);
          }
        }
#endif
        for (; oc < out_c; ++oc) {
          const int32_t ic = oc / dm;
          int32_t acc = full ? p->kbias[oc] : (p->bias != NULL ? p->bias[oc] : 0);
          for (ky = ky0; ky < ky1; ++ky) {
            const int8_t *x = in_b + ((iy0 + ky * dh) * in_w + ix0 + kx0 * dw) * in_c + ic;
            const int8_t *f = p->filter + (ky * fw + kx0) * out_c + oc;
            for (kx = kx0; kx < kx1; ++kx, x += x_step, f += out_c) {
              acc += (int32_t)*f * ((int32_t)*x + off);
            }
          }
          out_px[oc] = tg_dw_out(p, oc, acc);
        }
      }
    }
  }
}
