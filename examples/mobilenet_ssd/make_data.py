"""Generated detection data: circles, squares and triangles on textured backgrounds.

    python examples/mobilenet_ssd/make_data.py       # writes calib.npy, test.npz, test_gt.npz

Images are RGB pixel values 0..255 (what a camera gives), 96x96 by default,
with 0 to 3 objects each.  Class 0 = circle, 1 = square, 2 = triangle.  Object
boxes are (ymin, xmin, ymax, xmax) normalized to [0, 1], the tight box of the
object's drawn pixels.  Objects do not overlap each other.

Files (next to this script):
  calib.npy    [50, 96, 96, 3] float32   calibration images for tinygen
  test.npz     x: [200, 96, 96, 3] uint8  held-out images (tinygen verify --data)
  test_gt.npz  boxes [200, 3, 4] float32, classes [200, 3] int32 (-1 = none),
               count [200] int32: their ground truth
Training data is generated on the fly by train.py (other seeds).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CLASSES = ("circle", "square", "triangle")
MAX_OBJECTS = 3
SIZE = 96

CALIB_SEED, TEST_SEED, TRAIN_SEED = 1, 2, 1000


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A float image: base color, a linear gradient, a few sinusoidal textures, noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.empty((size, size, 3), np.float32)
    base = rng.uniform(30, 225, 3)
    gy, gx = rng.uniform(-60, 60, (2, 3))
    img[:] = base + yy[..., None] * gy + xx[..., None] * gx
    for _ in range(rng.integers(1, 4)):
        fy, fx = rng.uniform(-12, 12, 2)
        phase = rng.uniform(0, 2 * np.pi)
        amp = rng.uniform(5, 30) * rng.choice([-1.0, 1.0], 3)
        img += np.sin(2 * np.pi * (fy * yy + fx * xx) + phase)[..., None] * amp
    img += rng.normal(0, rng.uniform(3, 15), img.shape)
    return img


def shape_mask(cls: int, size: int, y0: float, x0: float, h: float, w: float,
               orient: int = 0) -> np.ndarray:
    """Boolean mask of a shape whose bounding box is (y0, x0, h, w) in pixels,
    tested at pixel centers."""
    py, px = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    v = (py - y0) / h                 # 0..1 inside the box
    u = (px - x0) / w
    if cls == 0:                      # circle (an ellipse in the box; h == w for a circle)
        return (u - 0.5) ** 2 + (v - 0.5) ** 2 <= 0.25
    if cls == 1:                      # square
        return (u >= 0) & (u < 1) & (v >= 0) & (v < 1)
    # triangle: apex on one side of the box, base on the opposite side
    if orient == 1:
        v = 1 - v
    elif orient == 2:
        u, v = v, u
    elif orient == 3:
        u, v = v, 1 - u
    return (v >= 0) & (v < 1) & (np.abs(u - 0.5) <= 0.5 * v)


def _tight_box(mask: np.ndarray) -> np.ndarray:
    size = mask.shape[0]
    rows = np.nonzero(mask.any(axis=1))[0]
    cols = np.nonzero(mask.any(axis=0))[0]
    return np.array([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1], np.float32) / size


def make_image(rng: np.random.Generator, size: int = SIZE, max_objects: int = MAX_OBJECTS,
               min_frac: float = 0.12, max_frac: float = 0.42, with_masks: bool = False):
    """One image: (uint8 [size, size, 3], boxes [k, 4], classes [k]) and, with
    with_masks, the background alone and the objects' masks as well."""
    bg = background(rng, size)
    img = bg.copy()
    boxes, classes, masks = [], [], []
    n = int(rng.integers(0, max_objects + 1))
    tries = 0
    while len(boxes) < n and tries < 50:
        tries += 1
        cls = int(rng.integers(0, len(CLASSES)))
        s = rng.uniform(min_frac, max_frac) * size
        if cls == 0:
            h = w = s
        else:
            aspect = rng.uniform(0.7, 1.4)
            h, w = s / np.sqrt(aspect), s * np.sqrt(aspect)
        h, w = min(h, size - 2), min(w, size - 2)
        y0 = rng.uniform(1, size - 1 - h)
        x0 = rng.uniform(1, size - 1 - w)
        mask = shape_mask(cls, size, y0, x0, h, w, int(rng.integers(0, 4)))
        if mask.sum() < 12:
            continue
        box = _tight_box(mask)
        # no overlap with earlier objects (a one-pixel gap), so boxes stay exact
        if any(box[0] < b[2] + 1 / size and b[0] < box[2] + 1 / size
               and box[1] < b[3] + 1 / size and b[1] < box[3] + 1 / size for b in boxes):
            continue
        # a color that stands out from the background under the object
        local = bg[mask].mean(axis=0)
        for _ in range(20):
            color = rng.uniform(0, 255, 3)
            if np.abs(color - local).sum() > 150:
                break
        shade = rng.normal(0, 4, (int(mask.sum()), 3))
        img[mask] = color + shade
        boxes.append(box)
        classes.append(cls)
        masks.append(mask)
    out = np.clip(np.round(img), 0, 255).astype(np.uint8)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    classes = np.asarray(classes, np.int32)
    if with_masks:
        return out, boxes, classes, np.clip(np.round(bg), 0, 255).astype(np.uint8), masks
    return out, boxes, classes


def make_set(n: int, seed: int, size: int = SIZE):
    """n images: (x uint8 [n, size, size, 3], boxes [n, 3, 4], classes [n, 3] (-1 pad),
    count [n])."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, size, size, 3), np.uint8)
    boxes = np.zeros((n, MAX_OBJECTS, 4), np.float32)
    classes = np.full((n, MAX_OBJECTS), -1, np.int32)
    count = np.zeros(n, np.int32)
    for i in range(n):
        img, b, c = make_image(rng, size)
        x[i] = img
        boxes[i, :len(b)] = b
        classes[i, :len(c)] = c
        count[i] = len(b)
    return x, boxes, classes, count


def ground_truth(boxes, classes, count):
    """Per image (boxes [g, 4], classes [g]), the format of ssd_utils.mean_average_precision."""
    return [(boxes[i, :count[i]], classes[i, :count[i]]) for i in range(len(count))]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=SIZE)
    ap.add_argument("--calib", type=int, default=50)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("-o", "--out", default=str(HERE))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cx, *_ = make_set(args.calib, CALIB_SEED, args.size)
    np.save(out / "calib.npy", cx.astype(np.float32))
    tx, tb, tc, tn = make_set(args.test, TEST_SEED, args.size)
    np.savez_compressed(out / "test.npz", x=tx)
    np.savez_compressed(out / "test_gt.npz", boxes=tb, classes=tc, count=tn)
    print(f"calib {cx.shape}, test {tx.shape}: {int(tn.sum())} objects, per class "
          f"{np.bincount(tc[tc >= 0], minlength=3).tolist()}")


if __name__ == "__main__":
    main()
