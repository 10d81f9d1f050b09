/* Sparse int8 matrix product (FULLY_CONNECTED, 1x1 CONV_2D).
 *
 * out[r][o] = act(requantize(kbias[o] + sum over the non-zero w[o][d] of
 *                            w[o][d] * x[r][d]) + output_offset)
 *
 * the same integers as the dense kernels (zero weights add nothing, and
 * integer sums do not depend on their order).  Two input vectors at a time
 * share every load of a stored weight and its column; their two output rows
 * are written only while those two are read, so the output may start inside
 * the input (plan/ops/sparse.py, pairs_overlap).  Every parameter is read
 * into a local first: the int8 output stores may alias anything, and would
 * otherwise make the compiler reload them after each.
 */
#include "tg_sparse_mm.h"

TG_INLINE int32_t tg_sparse_rq(int32_t fast, int32_t acc, int32_t m, int32_t a, int32_t b) {
  return fast ? tg_rq_fast(acc, m, a, b) : tg_rq_exact(acc, m, a, b);
}

/* the compressed rows with 8-bit (C = uint8_t) or 16-bit columns */
#define TG_SPARSE_BODY(C, cols)                                                                  \
  do {                                                                                           \
    const int8_t *x0 = input;                                                                    \
    int8_t *y = output;                                                                          \
    for (r = 0; r + 1 < rows; r += 2, x0 += 2 * depth, y += 2 * units) {                         \
      const int8_t *x1 = x0 + depth;                                                             \
      for (o = 0; o < units; ++o) {                                                              \
        const int32_t *q = rq + 4 * o;                                                           \
        const int32_t first = start[o], n = start[o + 1] - first;                                \
        const int8_t *v = val + first;                                                           \
        const C *c = (cols) + first;                                                             \
        int32_t acc0 = q[0], acc1 = q[0];                                                        \
        for (j = 0; j < n; ++j) {                                                                \
          const int32_t w = v[j];                                                                \
          const uint32_t d = c[j];                                                               \
          acc0 += w * x0[d];                                                                     \
          acc1 += w * x1[d];                                                                     \
        }                                                                                        \
        y[o] = (int8_t)tg_act(tg_sparse_rq(fast, acc0, q[1], q[2], q[3]), full, lo, hi);         \
        y[units + o] = (int8_t)tg_act(tg_sparse_rq(fast, acc1, q[1], q[2], q[3]), full, lo, hi); \
      }                                                                                          \
    }                                                                                            \
    if (r < rows) {                                                                              \
      for (o = 0; o < units; ++o) {                                                              \
        const int32_t *q = rq + 4 * o;                                                           \
        const int32_t first = start[o], n = start[o + 1] - first;                                \
        const C *c = (cols) + first;                                                             \
        int32_t acc0 = q[0];                                                                     \
        for (j = 0; j < n; ++j) {                                                                \
          acc0 += (int32_t)val[first + j] * x0[c[j]];                                            \
        }                                                                                        \
        y[o] = (int8_t)tg_act(tg_sparse_rq(fast, acc0, q[1], q[2], q[3]), full, lo, hi);         \
      }                                                                                          \
    }                                                                                            \
  } while (0)

void tg_sparse_mm_s8(const tg_sparse_mm_params *p, const int8_t *input, int8_t *output) {
  const int32_t depth = p->depth, units = p->units, rows = p->rows;
  const int32_t fast = p->fast, full = p->act_full, lo = p->act_min, hi = p->act_max;
  const uint16_t *start = p->row_start;
  const int8_t *val = p->val;
  const int32_t *rq = p->rq;
  int32_t o, r, j;
  if (p->col8 != NULL) {
    TG_SPARSE_BODY(uint8_t, p->col8);
  } else {
    TG_SPARSE_BODY(uint16_t, p->col16);
  }
}
