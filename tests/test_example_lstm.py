"""examples/lstm_anomaly: the vibration generator, the AUC code, the committed files,
and (slow) the example model and a foreign int8 LSTM verified bit-exact on an
emulated Cortex-M4."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, run_cli

EXAMPLE = ROOT / "examples" / "lstm_anomaly"


def _load(name: str, file: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLE / file)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


md = _load("lstm_anomaly_make_data", "make_data.py")
tr = _load("lstm_anomaly_train", "train.py")

N = 4096            # long signals for sharp spectral lines
F0 = 50.0           # fixed shaft speed


def _band_energy(sig: np.ndarray, f: float, width: float = 3.0) -> float:
    spec = np.abs(np.fft.rfft(sig * np.hanning(len(sig)))) ** 2
    freqs = np.fft.rfftfreq(len(sig), 1 / md.FS)
    return float(spec[(freqs > f - width) & (freqs < f + width)].sum())


def _pair(kind: str, seed: int, severity: float = 0.5):
    """A normal and a faulty signal drawn from the same random stream."""
    normal = md.raw_signal(N, np.random.default_rng(seed), "normal", speed=F0)
    faulty = md.raw_signal(N, np.random.default_rng(seed), kind, severity=severity, speed=F0)
    return normal, faulty


# --------------------------------------------------------------------------- generator

def test_windows_are_normalized_float32():
    w = md.windows(200, np.random.default_rng(0))
    assert w.shape == (200, md.WINDOW, md.AXES) and w.dtype == np.float32
    assert np.all(np.abs(w.mean(axis=(0, 1))) < 0.1)
    assert np.all((w.std(axis=(0, 1)) > 0.7) & (w.std(axis=(0, 1)) < 1.3))


@pytest.mark.parametrize("seed", range(3))
def test_bpfo_puts_energy_at_the_outer_race_frequency(seed):
    normal, faulty = _pair("bpfo", seed)
    bpfo, bpfi = md.BPFO_ORDER * F0, md.BPFI_ORDER * F0
    assert _band_energy(faulty[:, 0], bpfo) > 10 * _band_energy(normal[:, 0], bpfo)
    assert _band_energy(faulty[:, 0], bpfi) < 5 * _band_energy(normal[:, 0], bpfi)
    for f in (bpfo - F0, bpfo + F0):             # constant amplitude: no shaft sidebands
        assert _band_energy(faulty[:, 0], f) < 2 * _band_energy(normal[:, 0], f), f


@pytest.mark.parametrize("seed", range(3))
def test_bpfi_has_energy_at_the_inner_race_frequency_and_shaft_sidebands(seed):
    normal, faulty = _pair("bpfi", seed)
    bpfi = md.BPFI_ORDER * F0
    assert _band_energy(faulty[:, 0], bpfi) > 10 * _band_energy(normal[:, 0], bpfi)
    for f in (bpfi - F0, bpfi + F0):             # amplitude modulation by the shaft: sidebands
        assert _band_energy(faulty[:, 0], f) > 2.5 * _band_energy(normal[:, 0], f), f


@pytest.mark.parametrize("severity", [0.0, 0.5, 1.0])
def test_imbalance_raises_the_1x_amplitude(severity):
    normal, faulty = _pair("imbalance", 3, severity)
    for axis in (0, 1):
        ratio = np.sqrt(_band_energy(faulty[:, axis], F0) / _band_energy(normal[:, axis], F0))
        assert ratio == pytest.approx(1.6 + severity, rel=0.05)
    # the 2x line is untouched
    assert _band_energy(faulty[:, 0], 2 * F0) == pytest.approx(_band_energy(normal[:, 0], 2 * F0),
                                                               rel=0.05)


@pytest.mark.parametrize("seed", range(4))
def test_drift_is_a_slow_offset_ramp_on_one_axis(seed):
    normal = md.raw_signal(md.WINDOW, np.random.default_rng(seed), "normal")
    faulty = md.raw_signal(md.WINDOW, np.random.default_rng(seed), "drift", severity=0.5)
    diff = (faulty - normal).astype(np.float64)
    moved = np.nonzero(np.abs(diff).max(axis=0) > 1e-6)[0]
    assert len(moved) == 1                                     # one axis only
    d = diff[:, moved[0]]
    assert np.all(np.abs(d) >= 0.3 - 1e-6)                     # an offset ...
    t = np.arange(md.WINDOW) / md.FS
    slope, offset = np.polyfit(t, d, 1)
    assert np.allclose(d, slope * t + offset, atol=1e-5)       # ... that ramps linearly
    assert np.sign(slope) == np.sign(offset) and abs(slope) > 0


def test_drift_windows_are_offset_against_normal_ones():
    rng = np.random.default_rng(5)
    normal = md.windows(100, rng)
    drift = md.windows(100, rng, "drift")
    offset_normal = np.abs(normal.mean(axis=1)).max(axis=1)
    offset_drift = np.abs(drift.mean(axis=1)).max(axis=1)
    assert np.median(offset_drift) > 5 * np.median(offset_normal)


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError):
        md.raw_signal(10, np.random.default_rng(0), "cavitation")


def test_test_set_has_every_kind_and_consistent_labels():
    x, y, kind = md.make_test(np.random.default_rng(1), normal=20, per_fault=5)
    assert x.shape == (40, md.WINDOW, md.AXES)
    assert np.array_equal(y, (kind > 0).astype(np.int8))
    assert sorted(np.unique(kind)) == list(range(len(md.KINDS)))


# --------------------------------------------------------------------------- AUC

def _brute_force_auc(neg, pos):
    return float(np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg]))


@pytest.mark.parametrize("seed", range(20))
def test_roc_auc_matches_pairwise_count(seed):
    rng = np.random.default_rng(seed)
    neg = rng.integers(0, 6, rng.integers(1, 30)).astype(float)      # many ties
    pos = rng.integers(0, 6, rng.integers(1, 30)).astype(float) + rng.integers(0, 2)
    assert tr.roc_auc(neg, pos) == pytest.approx(_brute_force_auc(neg, pos), abs=1e-12)
    cont_neg, cont_pos = rng.normal(0, 1, 50), rng.normal(0.7, 1, 40)
    assert tr.roc_auc(cont_neg, cont_pos) == pytest.approx(_brute_force_auc(cont_neg, cont_pos),
                                                           abs=1e-12)


def test_roc_auc_edge_cases():
    assert tr.roc_auc([0, 1, 2], [3, 4]) == 1.0
    assert tr.roc_auc([3, 4], [0, 1, 2]) == 0.0
    assert tr.roc_auc([1, 1, 1], [1, 1]) == 0.5
    with pytest.raises(ValueError):
        tr.roc_auc([], [1.0])


def test_auc_table_per_fault_and_overall():
    kind = np.array([0, 0, 1, 2, 3, 4, 4])
    scores = np.array([0.1, 0.3, 0.2, 0.5, 0.9, 0.0, 1.0])
    t = tr.auc_table(scores, kind)
    assert t == {"bpfo": 0.5, "bpfi": 1.0, "imbalance": 1.0, "drift": 0.5,
                 "overall": pytest.approx(_brute_force_auc(scores[:2], scores[2:]))}


# --------------------------------------------------------------------------- committed files

def test_committed_data_files():
    calib = np.load(EXAMPLE / "calib.npy")
    assert calib.shape == (100, md.WINDOW, md.AXES) and calib.dtype == np.float32
    test = np.load(EXAMPLE / "test.npz")
    x, y, kind = test["x"], test["y"], test["kind"]
    assert x.shape[1:] == (md.WINDOW, md.AXES) and len(x) == len(y) == len(kind)
    assert np.array_equal(y, (kind > 0).astype(y.dtype))


def test_verify_data_takes_the_windows_from_test_npz():
    """`tinygen verify --data test.npz`: the array x feeds the one input; y and kind are labels."""
    from tinygen.convert import load_samples
    x = np.load(EXAMPLE / "test.npz")["x"]
    samples = load_samples(EXAMPLE / "test.npz", [(1, md.WINDOW, md.AXES)], what="data")
    assert len(samples) == len(x)
    assert np.array_equal(samples[7][0][0], x[7])


def test_results_int8_auc_close_to_float():
    res = json.loads((EXAMPLE / "results.json").read_text())
    f, q = res["roc_auc"]["float"], res["roc_auc"]["int8"]
    assert set(f) == set(q) == {"bpfo", "bpfi", "imbalance", "drift", "overall"}
    for k in f:
        assert abs(f[k] - q[k]) <= 0.02, k
    assert f["overall"] > 0.9


# --------------------------------------------------------------------------- on the emulated board

def _verify(model: Path, tmp_path: Path, *extra):
    report = tmp_path / "verify.json"
    r = run_cli("verify", "--board", "qemu-cortex-m4", model, "--samples", 5, *extra,
                "-o", tmp_path / "project", "--json", report, "-q", cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr + r.stdout
    data = json.loads(report.read_text())
    assert data["passed"] and data["bit_exact"] and data["vectors"] == 5
    assert all(o["max_abs_diff_lsb"] == 0 for o in data["outputs"])
    return data


@pytest.mark.slow
def test_example_model_verifies_bit_exact_on_qemu_cortex_m4(tmp_path):
    data = _verify(EXAMPLE / "model.h5", tmp_path, "--calib", EXAMPLE / "calib.npy")
    assert data["latency"]["instructions"] > 0


@pytest.mark.slow
def test_foreign_int8_lstm_verifies_bit_exact_on_qemu_cortex_m4(tmp_path):
    from tinygen.ir import parse_tflite
    ir = parse_tflite((EXAMPLE / "foreign_lstm.tflite").read_bytes())
    assert [op.opcode for op in ir.operators].count("UNIDIRECTIONAL_SEQUENCE_LSTM") == 2
    _verify(EXAMPLE / "foreign_lstm.tflite", tmp_path)
