/* Kernels of camera front ends: RESIZE_NEAREST_NEIGHBOR, RESIZE_BILINEAR and
 * GATHER, as TFLM's reference kernels compute them.
 *
 * Every source coordinate and weight is worked out at build time by the
 * lowerings (tinygen/plan/ops/image.py) with TFLM's own arithmetic (the
 * float scale of GetNearestNeighbor, the Q10 scale of
 * ResizeBilinearInteger), so the kernels only index and interpolate. */
#ifndef TG_IMAGE_H
#define TG_IMAGE_H

#include "tg_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out[b][y][x][:] = in[b][src_y[y]][src_x[x]][:], pixel_bytes per pixel:
 * nearest-neighbour picks whole pixels, so every element type is served. */
typedef struct {
  int32_t batches;
  int32_t in_height, in_width;
  int32_t out_height, out_width;
  int32_t pixel_bytes;
  const int32_t *src_y; /* [out_height] */
  const int32_t *src_x; /* [out_width] */
} tg_resize_nearest_params;

void tg_resize_nearest(const tg_resize_nearest_params *p, const void *input, void *output);

/* Per output row y: the rows y0[y], y1[y] and the Q10 distance dy[y] of the
 * sample point from y0 (negative next to the top edge with half-pixel
 * centres, as in TFLM); the same per column. */
typedef struct {
  int32_t batches;
  int32_t in_height, in_width;
  int32_t out_height, out_width;
  int32_t depth;
  const int32_t *y0, *y1, *dy; /* [out_height] */
  const int32_t *x0, *x1, *dx; /* [out_width] */
} tg_resize_bilinear_params;

void tg_resize_bilinear_s8(const tg_resize_bilinear_params *p, const int8_t *input, int8_t *output);

/* GATHER: for every batch and outer index, coord_size slices of inner_bytes
 * picked from axis_size by the int32 coordinates.  TFLM leaves a coordinate
 * outside [0, axis_size) undefined (a debug check); here it is clamped into
 * range, so a bad index never reads outside the table. */
typedef struct {
  int32_t batch_size, outer_size, axis_size, coord_size;
  int32_t inner_bytes;
} tg_gather_rows_params;

void tg_gather_rows(const tg_gather_rows_params *p, const void *input, const int32_t *coords,
                    void *output);

#ifdef __cplusplus
}
#endif

#endif /* TG_IMAGE_H */
