/* TFLite_Detection_PostProcess (SSD box decoding + non-max suppression), float32.
 *
 * Reproduces TFLM's kernel (tensorflow/lite/micro/kernels/detection_postprocess.cc)
 * result for result: the same box decoding arithmetic (double precision, libm
 * exp), the same IoU arithmetic, the same candidate order (scores descending,
 * ties by ascending anchor; in regular NMS ties by ascending position in the
 * running candidate list) and the same rows in the outputs.  See
 * docs/aot-detection-postprocess.md.
 *
 * Inputs: box_encodings [1, N, box_stride] (ty, tx, th, tw, ...),
 *         class_scores [1, N, num_classes_with_background],
 *         anchors [N, 4] (y_center, x_center, height, width).
 * Outputs: boxes [1, output_rows, 4] (ymin, xmin, ymax, xmax),
 *          classes [1, output_rows], scores [1, output_rows], num_detections [1].
 * Rows at or past num_detections are written as zeros.  If a decoded box is
 * empty (ymin >= ymax or xmin >= xmax; TFLM fails the invocation) every
 * output is zero, num_detections included.
 *
 * Scratch: the lowering sizes it and gives the byte offset of each part (all
 * offsets from the 16-byte aligned scratch pointer).  Needs libm (exp). */
#ifndef TG_DETECTION_POSTPROCESS_H
#define TG_DETECTION_POSTPROCESS_H

#include "tg_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One entry of regular NMS's running candidate list. */
typedef struct {
  float score;
  uint16_t anchor;
  uint16_t cls;
} tg_dp_candidate;

typedef struct {
  int32_t num_boxes;                   /* N (<= 65535) */
  int32_t box_stride;                  /* floats per box encoding (>= 4) */
  int32_t num_classes;                 /* classes without background (<= 65535) */
  int32_t num_classes_with_background; /* columns of class_scores */
  int32_t max_detections;
  int32_t nms_limit;   /* selections per NMS run that can reach the outputs */
  int32_t output_rows; /* rows of boxes/classes/scores (>= max_detections) */
  float score_threshold;
  float iou_threshold;
  float y_scale, x_scale, h_scale, w_scale;
  /* scratch layout (byte offsets) */
  uint32_t off_decoded;    /* float[4 * N] */
  uint32_t off_max_scores; /* float[N] (fast NMS) */
  uint32_t off_candidates; /* tg_dp_candidate[2 * max_detections] (regular NMS) */
  uint32_t off_keep;       /* uint16_t[N] */
  uint32_t off_sort_tmp;   /* uint16_t[N] */
  uint32_t off_selected;   /* uint16_t[nms_limit] */
  uint32_t off_active;     /* uint8_t[N] */
} tg_detection_postprocess_params;

/* use_regular_nms false (TFLM's fast NMS) and true. */
void tg_detection_postprocess_fast(const tg_detection_postprocess_params *p,
                                   const float *box_encodings, const float *class_scores,
                                   const float *anchors, float *boxes, float *classes,
                                   float *scores, float *num_detections, void *scratch);
void tg_detection_postprocess_regular(const tg_detection_postprocess_params *p,
                                      const float *box_encodings, const float *class_scores,
                                      const float *anchors, float *boxes, float *classes,
                                      float *scores, float *num_detections, void *scratch);

#ifdef __cplusplus
}
#endif

#endif /* TG_DETECTION_POSTPROCESS_H */
