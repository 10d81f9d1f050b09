/* TFLite_Detection_PostProcess, float32: box decoding and fast or regular
 * non-max suppression with TFLM's results (see tg_detection_postprocess.h and
 * docs/aot-detection-postprocess.md for the semantics and why each step gives
 * the same bits).
 *
 * Floating point: every operation is rounded as TFLM rounds it (double for the
 * decoding, float elsewhere).  Products that feed an addition go through a
 * volatile so no compiler setting (e.g. -ffp-contract=fast in GNU C modes on
 * cores with an FMA) can fuse them. */
/* Size over speed: the post-processing runs once per inference on a few
 * hundred boxes (on mobilenet_ssd -Os costs 0.03 % more instructions and
 * saves 160 B) and is one of the larger kernels.  Rounding does not depend on
 * it: every floating-point operation is still the same IEEE operation. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("Os")
#endif

#include <math.h>

#include "tg_detection_postprocess.h"

#define TG_DP_SORT_RUN 16

/* std::max<float>(a, b) and std::min<float>(a, b), NaN behaviour included. */
TG_INLINE float tg_dp_maxf(float a, float b) { return (a < b) ? b : a; }
TG_INLINE float tg_dp_minf(float a, float b) { return (b < a) ? b : a; }

/* Decode every box to (ymin, xmin, ymax, xmax); 0 if one is empty. */
static int tg_dp_decode(const tg_detection_postprocess_params *p, const float *enc,
                        const float *anchors, float *decoded) {
  int ok = 1;
  int32_t i;
  for (i = 0; i < p->num_boxes; ++i) {
    const float *e = enc + (size_t)i * (size_t)p->box_stride;
    const float *a = anchors + 4 * (size_t)i;
    float *box = decoded + 4 * (size_t)i;
    volatile double ty = (double)e[0] / (double)p->y_scale * (double)a[2];
    volatile double tx = (double)e[1] / (double)p->x_scale * (double)a[3];
    const float ycenter = (float)(ty + (double)a[0]);
    const float xcenter = (float)(tx + (double)a[1]);
    const float half_h = (float)(0.5 * exp((double)e[2] / (double)p->h_scale) * (double)a[2]);
    const float half_w = (float)(0.5 * exp((double)e[3] / (double)p->w_scale) * (double)a[3]);
    box[0] = ycenter - half_h;
    box[1] = xcenter - half_w;
    box[2] = ycenter + half_h;
    box[3] = xcenter + half_w;
    if (box[0] >= box[2] || box[1] >= box[3]) {
      ok = 0;
    }
  }
  return ok;
}

static float tg_dp_iou(const float *bi, const float *bj) {
  volatile float area_i = (bi[2] - bi[0]) * (bi[3] - bi[1]);
  volatile float area_j = (bj[2] - bj[0]) * (bj[3] - bj[1]);
  volatile float inter;
  float ai = area_i, aj = area_j, in;
  if (ai <= 0.0f || aj <= 0.0f) {
    return 0.0f;
  }
  {
    const float ymin = tg_dp_maxf(bi[0], bj[0]);
    const float xmin = tg_dp_maxf(bi[1], bj[1]);
    const float ymax = tg_dp_minf(bi[2], bj[2]);
    const float xmax = tg_dp_minf(bi[3], bj[3]);
    inter = tg_dp_maxf(ymax - ymin, 0.0f) * tg_dp_maxf(xmax - xmin, 0.0f);
  }
  in = inter;
  return in / (ai + aj - in);
}

/* Stable sort of anchor indices by decreasing score s[idx * stride] (ties keep
 * their order).  The keys are never NaN (they passed `>= threshold`), so every
 * stable sort gives this one permutation: the one TFLM's merge sort gives. */
static void tg_dp_sort(uint16_t *idx, uint16_t *tmp, int32_t n, const float *s, int32_t stride) {
  uint16_t *src = idx, *dst = tmp;
  int32_t lo, width;
  for (lo = 0; lo < n; lo += TG_DP_SORT_RUN) {
    const int32_t hi = lo + TG_DP_SORT_RUN < n ? lo + TG_DP_SORT_RUN : n;
    int32_t i;
    for (i = lo + 1; i < hi; ++i) {
      const uint16_t cur = idx[i];
      const float key = s[(size_t)cur * (size_t)stride];
      int32_t j = i;
      while (j > lo && s[(size_t)idx[j - 1] * (size_t)stride] < key) {
        idx[j] = idx[j - 1];
        --j;
      }
      idx[j] = cur;
    }
  }
  for (width = TG_DP_SORT_RUN; width < n; width *= 2) {
    for (lo = 0; lo < n; lo += 2 * width) {
      const int32_t mid = lo + width < n ? lo + width : n;
      const int32_t hi = lo + 2 * width < n ? lo + 2 * width : n;
      int32_t l = lo, r = mid, k = lo;
      while (k < hi) {
        if (l < mid && (r >= hi || !(s[(size_t)src[r] * (size_t)stride] >
                                     s[(size_t)src[l] * (size_t)stride]))) {
          dst[k++] = src[l++];
        } else {
          dst[k++] = src[r++];
        }
      }
    }
    {
      uint16_t *t = src;
      src = dst;
      dst = t;
    }
  }
  if (src != idx) {
    memcpy(idx, src, (size_t)n * sizeof(uint16_t));
  }
}

/* TFLM's NonMaxSuppressionSingleClassHelper on scores s[i * stride]: keep the
 * anchors with score >= threshold, visit them by decreasing score, select an
 * active one and deactivate the later ones it overlaps (IoU > threshold).
 * Stops after `limit` selections (the selections before are the same). */
static int32_t tg_dp_nms(const tg_detection_postprocess_params *p, uint8_t *scratch, const float *s,
                         int32_t stride, int32_t limit) {
  const float *decoded = (const float *)(void *)(scratch + p->off_decoded);
  uint16_t *keep = (uint16_t *)(void *)(scratch + p->off_keep);
  uint16_t *tmp = (uint16_t *)(void *)(scratch + p->off_sort_tmp);
  uint16_t *selected = (uint16_t *)(void *)(scratch + p->off_selected);
  uint8_t *active = scratch + p->off_active;
  const float thr = p->score_threshold;
  int32_t kept = 0, out_size, n_sel = 0, i, j;
  for (i = 0; i < p->num_boxes; ++i) {
    if (s[(size_t)i * (size_t)stride] >= thr) {
      keep[kept++] = (uint16_t)i;
    }
  }
  tg_dp_sort(keep, tmp, kept, s, stride);
  out_size = kept < limit ? kept : limit;
  for (i = 0; i < kept; ++i) {
    active[i] = 1;
  }
  for (i = 0; i < kept && n_sel < out_size; ++i) {
    const float *bi;
    if (!active[i]) {
      continue;
    }
    selected[n_sel++] = keep[i];
    if (n_sel >= out_size) {
      break;
    }
    bi = decoded + 4 * (size_t)keep[i];
    for (j = i + 1; j < kept; ++j) {
      if (active[j] && tg_dp_iou(bi, decoded + 4 * (size_t)keep[j]) > p->iou_threshold) {
        active[j] = 0;
      }
    }
  }
  return n_sel;
}

/* Class of the highest score in a row: the first maximum, as TFLM's partial
 * sort of one element finds it (a later class wins only if strictly greater). */
static int32_t tg_dp_best_class(const float *row, int32_t num_classes) {
  int32_t best = 0, c;
  for (c = 1; c < num_classes; ++c) {
    if (row[best] < row[c]) {
      best = c;
    }
  }
  return best;
}

static void tg_dp_write_row(float *boxes, float *classes, float *scores, int32_t row,
                            const float *box, int32_t cls, float score) {
  float *b = boxes + 4 * (size_t)row;
  b[0] = box[0];
  b[1] = box[1];
  b[2] = box[2];
  b[3] = box[3];
  classes[row] = (float)cls;
  scores[row] = score;
}

static void tg_dp_zero_rows(const tg_detection_postprocess_params *p, float *boxes, float *classes,
                            float *scores, int32_t from) {
  int32_t r;
  for (r = from; r < p->output_rows; ++r) {
    float *b = boxes + 4 * (size_t)r;
    b[0] = 0.0f;
    b[1] = 0.0f;
    b[2] = 0.0f;
    b[3] = 0.0f;
    classes[r] = 0.0f;
    scores[r] = 0.0f;
  }
}

/* Decode the boxes; 0 (every output written as zeros) if one is empty. */
static int tg_dp_start(const tg_detection_postprocess_params *p, const float *box_encodings,
                       const float *anchors, float *boxes, float *classes, float *scores,
                       float *num_detections, uint8_t *sc) {
  if (!tg_dp_decode(p, box_encodings, anchors, (float *)(void *)(sc + p->off_decoded))) {
    /* TFLM returns an error here; we report no detections. */
    tg_dp_zero_rows(p, boxes, classes, scores, 0);
    num_detections[0] = 0.0f;
    return 0;
  }
  return 1;
}

static void tg_dp_finish(const tg_detection_postprocess_params *p, float *boxes, float *classes,
                         float *scores, float *num_detections, int32_t count) {
  tg_dp_zero_rows(p, boxes, classes, scores, count);
  num_detections[0] = (float)count;
}

/* Fast and regular NMS are two entry points, not a flag, so that a model
 * links the one its options name (the other is about a sixth of the
 * kernel's code). */
void tg_detection_postprocess_fast(const tg_detection_postprocess_params *p,
                                   const float *box_encodings, const float *class_scores,
                                   const float *anchors, float *boxes, float *classes,
                                   float *scores, float *num_detections, void *scratch) {
  uint8_t *sc = (uint8_t *)scratch;
  const float *decoded = (const float *)(const void *)(sc + p->off_decoded);
  const int32_t ncwb = p->num_classes_with_background;
  const int32_t label_offset = ncwb - p->num_classes;
  const uint16_t *selected = (const uint16_t *)(void *)(sc + p->off_selected);
  float *max_scores = (float *)(void *)(sc + p->off_max_scores);
  int32_t count, k, row;
  if (!tg_dp_start(p, box_encodings, anchors, boxes, classes, scores, num_detections, sc)) {
    return;
  }
  for (row = 0; row < p->num_boxes; ++row) {
    const float *r = class_scores + (size_t)row * (size_t)ncwb + label_offset;
    max_scores[row] = r[tg_dp_best_class(r, p->num_classes)];
  }
  count = tg_dp_nms(p, sc, max_scores, 1, p->nms_limit);
  for (k = 0; k < count; ++k) {
    const int32_t anchor = selected[k];
    const float *r = class_scores + (size_t)anchor * (size_t)ncwb + label_offset;
    const int32_t cls = tg_dp_best_class(r, p->num_classes);
    tg_dp_write_row(boxes, classes, scores, k, decoded + 4 * (size_t)anchor, cls, r[cls]);
  }
  tg_dp_finish(p, boxes, classes, scores, num_detections, count);
}

void tg_detection_postprocess_regular(const tg_detection_postprocess_params *p,
                                      const float *box_encodings, const float *class_scores,
                                      const float *anchors, float *boxes, float *classes,
                                      float *scores, float *num_detections, void *scratch) {
  uint8_t *sc = (uint8_t *)scratch;
  const float *decoded = (const float *)(const void *)(sc + p->off_decoded);
  const int32_t ncwb = p->num_classes_with_background;
  const int32_t label_offset = ncwb - p->num_classes;
  const uint16_t *selected = (const uint16_t *)(void *)(sc + p->off_selected);
  /* Per class: NMS, then keep the max_detections best of (kept so far,
   * this class's selections), ties to the earlier list position.  Both
   * lists are already in that order, so a merge gives TFLM's partial sort. */
  tg_dp_candidate *cur = (tg_dp_candidate *)(void *)(sc + p->off_candidates);
  tg_dp_candidate *next = cur + p->max_detections;
  int32_t count = 0, k, col;
  if (!tg_dp_start(p, box_encodings, anchors, boxes, classes, scores, num_detections, sc)) {
    return;
  }
  for (col = 0; col < p->num_classes; ++col) {
    const float *s = class_scores + col + label_offset;
    const int32_t n_sel = tg_dp_nms(p, sc, s, ncwb, p->nms_limit);
    int32_t ia = 0, ib = 0, m = 0;
    while (m < p->max_detections && (ia < count || ib < n_sel)) {
      const float sb = ib < n_sel ? s[(size_t)selected[ib] * (size_t)ncwb] : 0.0f;
      if (ia < count && (ib >= n_sel || !(sb > cur[ia].score))) {
        next[m++] = cur[ia++];
      } else {
        next[m].score = sb;
        next[m].anchor = selected[ib++];
        next[m].cls = (uint16_t)col;
        ++m;
      }
    }
    {
      tg_dp_candidate *t = cur;
      cur = next;
      next = t;
    }
    count = m;
  }
  for (k = 0; k < count; ++k) {
    tg_dp_write_row(boxes, classes, scores, k, decoded + 4 * (size_t)cur[k].anchor, cur[k].cls,
                    cur[k].score);
  }
  tg_dp_finish(p, boxes, classes, scores, num_detections, count);
}
