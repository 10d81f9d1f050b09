"""Synthetic 3-axis vibration of a rotating machine, cut into windows, with faults.

No download: the signal is generated here.  A motor turns at about 3000 rpm
(shaft frequency ~50 Hz, a few per cent of slow speed variation), sampled at
1 kHz by a 3-axis accelerometer on the bearing housing:

* radial axes x and y: 1x (residual imbalance) with the orbit's 90 degree phase
  shift, 2x (misalignment), 3x; axial axis z: mostly 2x;
* broadband sensor noise on every axis.

Windows are WINDOW (64) samples x 3 axes, normalized with per-axis mean/std of
normal data (constants below, the same for every window: a per-window
normalization would hide the drift fault).  Training, calibration and the
normal half of the test set hold healthy windows only; the test set adds faults:

* ``bpfo``: outer-race bearing defect: impulses at BPFO = 3.58 x shaft, each a
  decaying ring of the housing resonance (~380 Hz), constant amplitude;
* ``bpfi``: inner-race defect: impulses at BPFI = 5.42 x shaft, amplitude-
  modulated by the shaft rotation (the defect passes through the load zone);
* ``imbalance``: the 1x component grows (x1.6 .. x2.6) on the radial axes;
* ``drift``: a slow offset ramp on one axis (a sensor or mounting drifting).

Severities vary, so some faulty windows are subtle.  Writes (next to this
file): train.npy (not committed: train.py regenerates it), calib.npy,
test.npz (x, y = 1 for a fault, kind = 0 normal / 1 bpfo / 2 bpfi /
3 imbalance / 4 drift; ``tinygen verify --data test.npz`` takes the array x).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

FS = 1000.0              # sampling rate, Hz
SHAFT_HZ = 50.0          # nominal shaft frequency (3000 rpm)
SPEED_VARIATION = 0.03   # +- relative speed between windows
WOBBLE = 0.005           # relative speed wobble within a window
WINDOW = 64              # time steps per window
AXES = 3
BPFO_ORDER = 3.58        # outer-race defect frequency / shaft frequency
BPFI_ORDER = 5.42        # inner-race defect frequency / shaft frequency
RESONANCE_HZ = 380.0     # housing resonance the bearing impulses excite
NOISE = 0.12             # sensor noise std (in g, before normalization)

KINDS = ["normal", "bpfo", "bpfi", "imbalance", "drift"]

# Per-axis statistics of healthy signal, measured once with normalization_stats()
# (seed 0, 200 windows) and frozen here so every window is normalized alike.
MEAN = np.array([0.0, 0.0, 0.0], np.float32)
STD = np.array([0.68, 0.68, 0.15], np.float32)


def raw_signal(n: int, rng: np.random.Generator, kind: str = "normal",
               severity: float = 1.0, speed: float | None = None) -> np.ndarray:
    """n samples x 3 axes of vibration (in g) for one machine state.

    speed: shaft frequency in Hz (random around SHAFT_HZ when None).
    severity: 0..1 scales the fault (ignored for normal).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; one of {KINDS}")
    t = np.arange(n) / FS
    f0 = speed if speed is not None else SHAFT_HZ * (1 + rng.uniform(-SPEED_VARIATION,
                                                                      SPEED_VARIATION))
    # slow speed wobble within the window; the shaft angle is the integral of speed
    wobble = 1 + WOBBLE * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t + rng.uniform(0, 2 * np.pi))
    theta = 2 * np.pi * np.cumsum(f0 * wobble) / FS + rng.uniform(0, 2 * np.pi)

    a1 = rng.uniform(0.8, 1.0)                  # residual imbalance (1x)
    a2 = rng.uniform(0.25, 0.35)                # misalignment (2x)
    a3 = rng.uniform(0.08, 0.12)                # 3x
    p2, p3 = rng.uniform(0, 2 * np.pi, 2)
    if kind == "imbalance":
        a1 *= 1.6 + 1.0 * severity
    x = a1 * np.cos(theta) + a2 * np.cos(2 * theta + p2) + a3 * np.cos(3 * theta + p3)
    y = a1 * np.sin(theta) + 0.9 * a2 * np.sin(2 * theta + p2) + a3 * np.sin(3 * theta + p3)
    z = 0.35 * a2 * np.cos(2 * theta + p2 + 0.5) + 0.1 * a1 * np.cos(theta + 1.0)
    sig = np.stack([x, y, z], axis=1)

    if kind in ("bpfo", "bpfi"):
        sig += bearing_impulses(theta, kind, severity, rng)
    sig += rng.normal(0.0, NOISE, sig.shape)
    if kind == "drift":
        axis = rng.integers(0, AXES)
        start = rng.uniform(0.4, 1.0) * severity + 0.3      # offset already reached, in g
        slope = rng.uniform(0.5, 2.0) * severity              # g per second
        sig[:, axis] += np.sign(rng.uniform(-1, 1)) * (start + slope * t)
    return sig.astype(np.float32)


def bearing_impulses(theta: np.ndarray, kind: str, severity: float,
                     rng: np.random.Generator) -> np.ndarray:
    """Impulses at the defect frequency, each ringing the housing resonance."""
    n = theta.shape[0]
    order = BPFO_ORDER if kind == "bpfo" else BPFI_ORDER
    phase = order * theta / (2 * np.pi)                 # defect passes, in units of impacts
    hits = np.nonzero(np.diff(np.floor(phase)) > 0)[0] + 1
    ring_t = np.arange(24) / FS
    ring = np.exp(-ring_t * 250.0) * np.sin(2 * np.pi * RESONANCE_HZ * ring_t)
    amp = (0.5 + 1.0 * severity) * rng.uniform(0.9, 1.1)
    out = np.zeros((n, AXES))
    direction = np.array([1.0, 0.7, 0.25])             # mostly radial
    for h in hits:
        a = amp
        if kind == "bpfi":                              # load zone: modulated by the shaft
            a *= 0.5 * (1 + np.cos(theta[h]))
        seg = ring[: n - h] * a
        out[h:h + seg.shape[0]] += seg[:, None] * direction
    return out


def normalize(sig: np.ndarray) -> np.ndarray:
    return ((sig - MEAN) / STD).astype(np.float32)


def windows(count: int, rng: np.random.Generator, kind: str = "normal") -> np.ndarray:
    """count normalized windows [count, WINDOW, 3] of one kind, severities uniform 0..1."""
    return np.stack([normalize(raw_signal(WINDOW, rng, kind, severity=rng.uniform(0.0, 1.0)))
                     for _ in range(count)])


def normalization_stats(seed: int = 0, count: int = 200):
    rng = np.random.default_rng(seed)
    raw = np.concatenate([raw_signal(WINDOW, rng) for _ in range(count)])
    return raw.mean(axis=0), raw.std(axis=0)


def make_test(rng: np.random.Generator, normal: int = 200, per_fault: int = 50):
    xs = [windows(normal, rng)]
    kinds = [np.zeros(normal, np.int8)]
    for k, name in enumerate(KINDS[1:], start=1):
        xs.append(windows(per_fault, rng, name))
        kinds.append(np.full(per_fault, k, np.int8))
    x = np.concatenate(xs)
    kind = np.concatenate(kinds)
    order = rng.permutation(len(x))
    return x[order], (kind[order] > 0).astype(np.int8), kind[order]


def main():
    rng = np.random.default_rng(2024)
    train = windows(3000, rng)
    calib = windows(100, rng)
    x, y, kind = make_test(rng)
    np.save(HERE / "train.npy", train)
    np.save(HERE / "calib.npy", calib)
    np.savez(HERE / "test.npz", x=x, y=y, kind=kind)
    print(f"train {train.shape}, calib {calib.shape}, test {x.shape} "
          f"({', '.join(f'{n}: {int(np.sum(kind == k))}' for k, n in enumerate(KINDS))})")


if __name__ == "__main__":
    main()
