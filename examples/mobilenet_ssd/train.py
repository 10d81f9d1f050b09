"""Train the example detector: MobileNetV2 (alpha 0.35, 96x96, from scratch) + SSD heads.

    python examples/mobilenet_ssd/train.py            # model.keras, anchors.npy, ssd.json

Architecture
  input      [1, 96, 96, 3] float, RGB pixel values 0..255 (scaled to [-1, 1] inside)
  backbone   keras.applications.MobileNetV2(alpha=0.35, weights=None), cut at two
             feature maps: block_6_expand_relu (12x12x96, stride 8) and
             block_13_expand_relu (6x6x192, stride 16); the layers after them are
             not part of the model
  heads      per map an SSDLite-style neck (3x3 depthwise + 1x1 conv to 96 channels,
             BN, ReLU6), then a 3x3 conv to A*4 box encodings and a 3x3 conv to A*3
             class logits, A = 4 anchors per cell (aspect 1, 2, 1/2 at the map's scale and
             a square one between this scale and the next)
  outputs    box_encodings [1, 720, 4] (ty, tx, th, tw; scales 10, 10, 5, 5) and
             class_scores [1, 720, 3] after a sigmoid (no background column)

Training: anchors matched to ground truth by IoU (>= 0.5 positive, < 0.4
negative, in between ignored; each object also gets its best anchor), sigmoid
focal loss (alpha 0.25, gamma 2) on the class logits + smooth L1 on the box
encodings of positives, both normalized by the number of positives; Adam with
cosine decay (1800 steps of 16 images, lr 4e-3); 5000 generated images
(make_data.py, seeds other than the calibration and test sets) with random
horizontal and vertical flips.  About 10 minutes on two busy CPU cores.

TFLite_Detection_PostProcess is not part of the Keras model: tinygen appends
it at conversion from ssd.json (`--detection`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import make_data  # noqa: E402
import ssd_utils  # noqa: E402

NUM_CLASSES = len(make_data.CLASSES)
ASPECTS = (1.0, 2.0, 0.5)
SCALES = (0.12, 0.24, 0.45)
FEATURE_LAYERS = ("block_6_expand_relu", "block_13_expand_relu")   # stride 8 and 16


def grids_for(size: int) -> tuple[int, int]:
    return size // 8, size // 16


def build_model(size: int = 96, alpha: float = 0.35, num_classes: int = NUM_CLASSES,
                prior: float = 0.01, bn_momentum: float = 0.9, neck: int = 96):
    """(inference model [box_encodings, class_scores], training model [boxes, logits])."""
    import keras
    L = keras.layers
    a = ssd_utils.anchors_per_cell(ASPECTS)
    inp = keras.Input((size, size, 3), name="image")
    x = L.Rescaling(1 / 127.5, offset=-1.0, name="to_unit_range")(inp)
    backbone = keras.applications.MobileNetV2(input_shape=(size, size, 3), input_tensor=x,
                                              alpha=alpha, include_top=False, weights=None)
    for layer in backbone.layers:
        if isinstance(layer, L.BatchNormalization):
            # Keras' 0.999 leaves the moving statistics far from the batch ones
            # after a few thousand steps; 0.9 follows a short training.
            layer.momentum = bn_momentum
    feats = [backbone.get_layer(name).output for name in FEATURE_LAYERS]
    bias = float(-np.log((1 - prior) / prior))
    boxes, logits = [], []
    for k, f in enumerate(feats):
        if neck:
            # SSDLite-style: a separable 3x3 conv widens the view before the heads
            f = L.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"neck_dw_{k}")(f)
            f = L.BatchNormalization(momentum=bn_momentum, name=f"neck_dw_bn_{k}")(f)
            f = L.ReLU(6.0, name=f"neck_dw_relu_{k}")(f)
            f = L.Conv2D(neck, 1, use_bias=False, name=f"neck_pw_{k}")(f)
            f = L.BatchNormalization(momentum=bn_momentum, name=f"neck_pw_bn_{k}")(f)
            f = L.ReLU(6.0, name=f"neck_pw_relu_{k}")(f)
        b = L.Conv2D(a * 4, 3, padding="same", name=f"box_head_{k}")(f)
        c = L.Conv2D(a * num_classes, 3, padding="same", name=f"class_head_{k}",
                     bias_initializer=keras.initializers.Constant(bias))(f)
        boxes.append(L.Reshape((-1, 4), name=f"box_reshape_{k}")(b))
        logits.append(L.Reshape((-1, num_classes), name=f"class_reshape_{k}")(c))
    box = L.Concatenate(axis=1, name="box_encodings")(boxes)
    logit = L.Concatenate(axis=1, name="class_logits")(logits)
    score = L.Activation("sigmoid", name="class_scores")(logit)
    model = keras.Model(inp, [box, score], name=f"mobilenetv2_{alpha}_ssd_{size}")
    train_model = keras.Model(inp, [box, logit])
    return model, train_model


def anchors_for(size: int) -> np.ndarray:
    return ssd_utils.make_anchors(grids_for(size), SCALES, ASPECTS)


def targets(boxes, classes, count, anchors, flip=None):
    """Batch targets: box [B, N, 4], class [B, N, C], weight [B, N]; flip [2, B]
    marks the images flipped horizontally (row 0) and vertically (row 1)."""
    bt, ct, wt = [], [], []
    for i in range(len(count)):
        b = boxes[i, :count[i]].copy()
        if flip is not None and flip[0][i]:
            b[:, [1, 3]] = 1.0 - b[:, [3, 1]]
        if flip is not None and flip[1][i]:
            b[:, [0, 2]] = 1.0 - b[:, [2, 0]]
        t = ssd_utils.match(b, classes[i, :count[i]], anchors, NUM_CLASSES)
        bt.append(t[0])
        ct.append(t[1])
        wt.append(t[2])
    return np.stack(bt), np.stack(ct), np.stack(wt)


def make_loss(tf, alpha=0.25, gamma=2.0):
    def loss_fn(box_t, cls_t, weight, box_p, logit_p):
        pos = tf.cast(weight > 0, tf.float32)
        valid = tf.cast(weight >= 0, tf.float32)
        num_pos = tf.maximum(tf.reduce_sum(pos), 1.0)
        ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=cls_t, logits=logit_p)
        p = tf.sigmoid(logit_p)
        p_t = cls_t * p + (1 - cls_t) * (1 - p)
        alpha_t = cls_t * alpha + (1 - cls_t) * (1 - alpha)
        focal = alpha_t * tf.pow(1 - p_t, gamma) * ce
        cls_loss = tf.reduce_sum(tf.reduce_sum(focal, -1) * valid) / num_pos
        d = tf.abs(box_t - box_p)
        huber = tf.where(d < 1.0, 0.5 * d * d, d - 0.5)
        box_loss = tf.reduce_sum(tf.reduce_sum(huber, -1) * pos) / num_pos
        return cls_loss + box_loss, cls_loss, box_loss
    return loss_fn


def train(size: int = 96, alpha: float = 0.35, steps: int = 1800, batch: int = 16,
          lr: float = 4e-3, train_images: int = 5000, seed: int = 0, prior: float = 0.01,
          neck: int = 96, log_every: int = 50, log=print):
    """Train a detector; returns (inference model, anchors)."""
    import keras
    import tensorflow as tf
    keras.utils.set_random_seed(seed)
    model, train_model = build_model(size, alpha, prior=prior, neck=neck)
    anchors = anchors_for(size)
    assert model.outputs[0].shape[1] == len(anchors), (model.outputs[0].shape, anchors.shape)
    t0 = time.time()
    x_all, b_all, c_all, n_all = make_data.make_set(train_images, make_data.TRAIN_SEED + seed,
                                                     size)
    log(f"generated {train_images} training images in {time.time() - t0:.0f} s; "
        f"{model.count_params():,} parameters, {len(anchors)} anchors")
    sched = keras.optimizers.schedules.CosineDecay(lr * 0.1, max(steps - steps // 20, 1),
                                                   warmup_target=lr,
                                                   warmup_steps=steps // 20, alpha=0.02)
    opt = keras.optimizers.Adam(learning_rate=sched)
    loss_fn = make_loss(tf)
    variables = train_model.trainable_variables

    @tf.function(jit_compile=False)
    def step(x, bt, ct, wt):
        with tf.GradientTape() as tape:
            pb, pl = train_model(x, training=True)
            loss, cl, bl = loss_fn(bt, ct, wt, pb, pl)
        grads = tape.gradient(loss, variables)
        opt.apply_gradients(zip(grads, variables))
        return loss, cl, bl

    rng = np.random.default_rng(seed)
    order = rng.permutation(train_images)
    at = 0
    t0 = time.time()
    hist = []
    for s in range(steps):
        if at + batch > train_images:
            order, at = rng.permutation(train_images), 0
        idx = order[at:at + batch]
        at += batch
        flip = rng.random((2, batch)) < 0.5                 # horizontal, vertical
        x = x_all[idx].astype(np.float32)
        x[flip[0]] = x[flip[0], :, ::-1]
        x[flip[1]] = x[flip[1], ::-1]
        bt, ct, wt = targets(b_all[idx], c_all[idx], n_all[idx], anchors, flip)
        loss, cl, bl = step(x, bt, ct, wt)
        hist.append((float(loss), float(cl), float(bl)))
        if log_every and ((s + 1) % log_every == 0 or s == 0):
            m = np.mean(hist[-log_every:], axis=0)
            log(f"step {s + 1}/{steps}: loss {m[0]:.3f} (class {m[1]:.3f}, box {m[2]:.3f})"
                f"  {time.time() - t0:.0f} s")
    return model, anchors


def write_spec(out: Path, anchors: np.ndarray, score_threshold: float,
               iou_threshold: float = 0.5, max_detections: int = 10) -> Path:
    np.save(out / "anchors.npy", anchors.astype(np.float32))
    spec = {"anchors": "anchors.npy", "num_classes": NUM_CLASSES,
            "max_detections": max_detections, "nms_score_threshold": score_threshold,
            "nms_iou_threshold": iou_threshold, "y_scale": 10.0, "x_scale": 10.0,
            "h_scale": 5.0, "w_scale": 5.0, "use_regular_nms": False}
    path = out / "ssd.json"
    path.write_text(json.dumps(spec, indent=2) + "\n")
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--alpha", type=float, default=0.35)
    ap.add_argument("--steps", type=int, default=1800)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=4e-3)
    ap.add_argument("--train-images", type=int, default=5000)
    ap.add_argument("--score-threshold", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--out", default=str(HERE))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    model, anchors = train(args.size, args.alpha, args.steps, args.batch, args.lr,
                           args.train_images, args.seed)
    model.save(out / "model.keras")
    write_spec(out, anchors, args.score_threshold)
    print(f"wrote {out / 'model.keras'}, anchors.npy, ssd.json in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
