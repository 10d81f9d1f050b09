/* Average and max pooling, int8.
 *
 * The window is clipped to the image (padding is not counted); the average
 * divides the window sum by the number of taps inside, rounding half away
 * from zero, as TFLite's reference kernel does.  Input and output share one
 * quantization, so no requantization happens.
 */
#include "tg_pooling.h"

typedef struct {
  int32_t y0, y1, x0, x1; /* window rows [y0, y1), columns [x0, x1) inside the image */
} tg_pool_window;

static tg_pool_window tg_pool_window_at(const tg_pool2d_params *p, int32_t oy, int32_t ox) {
  tg_pool_window w;
  const int32_t iy0 = oy * p->stride_h - p->pad_h;
  const int32_t ix0 = ox * p->stride_w - p->pad_w;
  w.y0 = tg_max_i32(0, iy0);
  w.y1 = tg_min_i32(p->in.h, iy0 + p->filter_h);
  w.x0 = tg_max_i32(0, ix0);
  w.x1 = tg_min_i32(p->in.w, ix0 + p->filter_w);
  return w;
}

void tg_avg_pool2d_s8(const tg_pool2d_params *p, const int8_t *input, int8_t *output) {
  const int32_t c = p->in.c;
  int32_t b, oy, ox, ch, y, x;
  for (b = 0; b < p->out.n; ++b) {
    const int8_t *in_b = input + b * p->in.h * p->in.w * c;
    for (oy = 0; oy < p->out.h; ++oy) {
      for (ox = 0; ox < p->out.w; ++ox) {
        const tg_pool_window w = tg_pool_window_at(p, oy, ox);
        const int32_t count = (w.y1 - w.y0) * (w.x1 - w.x0);
        int8_t *out_px = output + ((b * p->out.h + oy) * p->out.w + ox) * c;
        for (ch = 0; ch < c; ++ch) {
          int32_t acc = 0;
          for (y = w.y0; y < w.y1; ++y) {
            for (x = w.x0; x < w.x1; ++x) {
              acc += in_b[(y * p->in.w + x) * c + ch];
            }
          }
          if (count > 0) {
            acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
          }
          out_px[ch] = (int8_t)tg_clamp_i32(acc, p->act_min, p->act_max);
        }
      }
    }
  }
}

void tg_max_pool2d_s8(const tg_pool2d_params *p, const int8_t *input, int8_t *output) {
  const int32_t c = p->in.c;
  int32_t b, oy, ox, ch, y, x;
  for (b = 0; b < p->out.n; ++b) {
    const int8_t *in_b = input + b * p->in.h * p->in.w * c;
    for (oy = 0; oy < p->out.h; ++oy) {
      for (ox = 0; ox < p->out.w; ++ox) {
        const tg_pool_window w = tg_pool_window_at(p, oy, ox);
        int8_t *out_px = output + ((b * p->out.h + oy) * p->out.w + ox) * c;
        for (ch = 0; ch < c; ++ch) {
          int32_t best = INT8_MIN;
          for (y = w.y0; y < w.y1; ++y) {
            for (x = w.x0; x < w.x1; ++x) {
              best = tg_max_i32(best, in_b[(y * p->in.w + x) * c + ch]);
            }
          }
          out_px[ch] = (int8_t)tg_clamp_i32(best, p->act_min, p->act_max);
        }
      }
    }
  }
}
