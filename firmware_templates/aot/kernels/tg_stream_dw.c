/* Fused conv -> depthwise (see tg_stream_dw.h). */
#include "tg_stream_dw.h"

/* The rows kept move down to the buffer's start (dst < src): forward, a word
 * at a time.  Each word is read whole before it is written and reads run
 * ahead of writes, so the overlap is safe.  memmove links 256 B of newlib
 * for about 0.05 % fewer instructions on mobilenet_ssd (its copy is
 * unrolled four words deep). */
static void tg_stream_shift(int8_t *dst, const int8_t *src, int32_t n) {
  for (; n >= 4; n -= 4, dst += 4, src += 4) {
    tg_store_u32(dst, tg_load_u32(src));
  }
  for (; n > 0; --n) {
    *dst++ = *src++;
  }
}

void tg_stream_conv_dw_s8(const tg_stream_conv_dw_params *p, const int8_t *input, int8_t *output,
                          void *scratch) {
  const tg_conv2d_dsp_params *a = &p->producer;
  const tg_depthwise_dsp_params *d = &p->consumer;
  const int32_t map_h = d->in.h;
  const int32_t row = d->in.w * d->in.c; /* bytes of one map row */
  const int32_t reach = (p->rows - 1) * d->stride_h + (d->filter_h - 1) * d->dilation_h + 1;
  const int32_t span = reach < map_h ? reach : map_h; /* as the plan's scratch counts it */
  int8_t *buf = (int8_t *)scratch;
  void *inner = buf + ((span * row + 15) & ~15);
  tg_conv2d_dsp_params ap = *a;
  tg_depthwise_dsp_params dp = *d;
  int32_t lo = 0, hi = 0; /* map rows [lo, hi) are in buf, row lo first */
  int32_t r0;
  for (r0 = 0; r0 < d->out.h; r0 += p->rows) {
    const int32_t n = d->out.h - r0 < p->rows ? d->out.h - r0 : p->rows;
    int32_t top = r0 * d->stride_h - d->pad_h;
    int32_t end = (r0 + n - 1) * d->stride_h - d->pad_h + (d->filter_h - 1) * d->dilation_h + 1;
    top = top < 0 ? 0 : top;
    end = end > map_h ? map_h : end;
    end = end < top ? top : end;
    if (top > lo) {
      /* rows above the chunk's windows are not read again: drop them */
      if (hi > top) {
        tg_stream_shift(buf, buf + (top - lo) * row, (hi - top) * row);
      } else {
        hi = top;
      }
      lo = top;
    }
    if (end > hi) {
      /* the producer's rows [hi, end), as an (end - hi)-row convolution */
      const int8_t *in = tg_stream_chunk16(&a->in, &a->out, a->stride_h, a->pad_h, hi, end - hi,
                                           input, &ap.in, &ap.out, &ap.pad_h);
      tg_conv2d_dsp_s8(&ap, in, buf + (hi - lo) * row, inner);
      hi = end;
    }
    /* the chunk's geometry; its input starts at map row `top` = lo, in buf */
    (void)tg_stream_chunk16(&d->in, &d->out, d->stride_h, d->pad_h, r0, n, buf, &dp.in, &dp.out,
                            &dp.pad_h);
    tg_depthwise_dsp_s8(&dp, buf, output + r0 * d->out.w * d->out.c);
  }
}
