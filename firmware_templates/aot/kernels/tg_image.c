/* Camera front-end kernels (see tg_image.h). */
#include "tg_image.h"

void tg_resize_nearest(const tg_resize_nearest_params *p, const void *input, void *output) {
  const uint8_t *in = (const uint8_t *)input;
  uint8_t *out = (uint8_t *)output;
  const size_t px = (size_t)p->pixel_bytes;
  const size_t row = (size_t)p->in_width * px;
  int32_t b, y, x;
  for (b = 0; b < p->batches; ++b) {
    const uint8_t *img = in + (size_t)b * (size_t)p->in_height * row;
    for (y = 0; y < p->out_height; ++y) {
      const uint8_t *src_row = img + (size_t)p->src_y[y] * row;
      for (x = 0; x < p->out_width; ++x) {
        tg_copy_bytes(out, src_row + (size_t)p->src_x[x] * px, px);
        out += px;
      }
    }
  }
}

/* TFLM's ResizeBilinearInteger sums the four Q20 products in int64.  For int8
 * the sum stays below 2^29 in magnitude (|q| <= 128, each pair of Q10 weights
 * adds up to at most 2048 in magnitude), so int32 holds it exactly. */
void tg_resize_bilinear_s8(const tg_resize_bilinear_params *p, const int8_t *input,
                           int8_t *output) {
  const int32_t depth = p->depth;
  const size_t row = (size_t)p->in_width * (size_t)depth;
  int32_t b, y, x, c;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *img = input + (size_t)b * (size_t)p->in_height * row;
    for (y = 0; y < p->out_height; ++y) {
      const int8_t *r0 = img + (size_t)p->y0[y] * row;
      const int8_t *r1 = img + (size_t)p->y1[y] * row;
      const int32_t wy1 = p->dy[y], wy0 = 1024 - wy1;
      for (x = 0; x < p->out_width; ++x) {
        const int32_t wx1 = p->dx[x], wx0 = 1024 - wx1;
        const int8_t *a = r0 + (size_t)p->x0[x] * (size_t)depth;
        const int8_t *bb = r1 + (size_t)p->x0[x] * (size_t)depth;
        const int8_t *cc = r0 + (size_t)p->x1[x] * (size_t)depth;
        const int8_t *d = r1 + (size_t)p->x1[x] * (size_t)depth;
        for (c = 0; c < depth; ++c) {
          const int32_t acc =
              a[c] * wy0 * wx0 + bb[c] * wy1 * wx0 + cc[c] * wy0 * wx1 + d[c] * wy1 * wx1;
#ifdef TG_SINGLE_ROUNDING
          *output++ = (int8_t)((acc + (1 << 19)) >> 20);
#else
          /* round half away from zero, then C's division toward zero */
          *output++ = (int8_t)((acc + (acc > 0 ? (1 << 19) : -(1 << 19))) / (1 << 20));
#endif
        }
      }
    }
  }
}

void tg_gather_rows(const tg_gather_rows_params *p, const void *input, const int32_t *coords,
                    void *output) {
  const uint8_t *in = (const uint8_t *)input;
  uint8_t *out = (uint8_t *)output;
  const size_t inner = (size_t)p->inner_bytes;
  int32_t b, o, i;
  for (b = 0; b < p->batch_size; ++b) {
    const int32_t *cb = coords + (size_t)b * (size_t)p->coord_size;
    for (o = 0; o < p->outer_size; ++o) {
      const uint8_t *slab =
          in + ((size_t)b * (size_t)p->outer_size + (size_t)o) * (size_t)p->axis_size * inner;
      for (i = 0; i < p->coord_size; ++i) {
        const int32_t k = tg_clamp_i32(cb[i], 0, p->axis_size - 1);
        tg_copy_bytes(out, slab + (size_t)k * inner, inner);
        out += inner;
      }
    }
  }
}
