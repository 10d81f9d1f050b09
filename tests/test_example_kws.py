"""examples/kws_cnn: the MFCC front end, the espeak-ng dataset generator, the committed
artifacts, and (slow) the committed model verified on an emulated Cortex-M4."""

import importlib.util
import json
import shutil

import numpy as np
import pytest
from conftest import ROOT, run_cli
from scipy.fft import dct

KWS = ROOT / "examples" / "kws_cnn"


@pytest.fixture(scope="module")
def md():
    spec = importlib.util.spec_from_file_location("kws_make_dataset", KWS / "make_dataset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------
# MFCC against an independent computation


def _direct_dft_magnitude(frame, nfft=512):
    """|X[k]| by the DFT sum itself, k = 0..nfft/2 (no FFT)."""
    n = np.arange(frame.size)
    k = np.arange(nfft // 2 + 1)[:, None]
    return np.abs(np.sum(frame[None] * np.exp(-2j * np.pi * k * n / nfft), axis=1))


def _reference_mfcc(audio):
    """MFCC written out loop by loop from the spec in make_dataset.py's comment."""
    sr, win, hop, nfft, n_mel, n_ceps = 16000, 480, 320, 512, 40, 10
    hann = np.array([np.sin(np.pi * i / win) ** 2 for i in range(win)])   # periodic Hann
    mel = lambda f: 1127.0 * np.log(1.0 + f / 700.0)                   # noqa: E731 (same HTK scale)
    lo, hi = mel(20.0), mel(4000.0)
    edges = [lo + (hi - lo) * i / (n_mel + 1) for i in range(n_mel + 2)]
    out = []
    for t in range(49):
        frame = audio[t * hop: t * hop + win] * hann
        spec = _direct_dft_magnitude(frame, nfft)
        energies = []
        for m in range(n_mel):
            a, c, b = edges[m], edges[m + 1], edges[m + 2]
            e = 0.0
            for k, mag in enumerate(spec):
                x = mel(k * sr / nfft)
                if a < x <= c:
                    e += mag * (x - a) / (c - a)
                elif c < x < b:
                    e += mag * (b - x) / (b - c)
            energies.append(e)
        out.append(dct(np.log(np.array(energies) + 1e-6), type=2, norm="ortho")[:n_ceps])
    return np.array(out)


def test_frames_and_shape(md):
    assert md.NUM_FRAMES == 49
    audio = np.random.default_rng(0).uniform(-1, 1, 16000)
    f = md.frames(audio)
    assert f.shape == (49, 480)
    assert np.array_equal(f[3], audio[960:1440]) and np.array_equal(f[-1], audio[15360:15840])
    out = md.mfcc(audio)
    assert out.shape == (49, 10) and out.dtype == np.float32


def test_mfcc_matches_loop_by_loop_reference(md):
    rng = np.random.default_rng(1)
    t = np.arange(16000) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 440 * t) * np.hanning(16000)
             + 0.05 * rng.standard_normal(16000))
    np.testing.assert_allclose(md.mfcc(audio), _reference_mfcc(audio), rtol=1e-4, atol=1e-4)


def test_spectrum_is_the_dft_and_dct_is_orthonormal(md):
    audio = np.random.default_rng(2).uniform(-0.5, 0.5, 16000)
    spec = md.magnitude_spectrogram(audio)
    hann = 0.5 * (1 - np.cos(2 * np.pi * np.arange(480) / 480))
    for t in (0, 24, 48):
        direct = _direct_dft_magnitude(audio[t * 320: t * 320 + 480] * hann)
        np.testing.assert_allclose(spec[t], direct, rtol=1e-9, atol=1e-9)
    full = md.dct_matrix(40, 40)
    np.testing.assert_allclose(full.T @ full, np.eye(40), atol=1e-12)
    x = np.random.default_rng(3).standard_normal(40)
    np.testing.assert_allclose(x @ md.dct_matrix(), dct(x, type=2, norm="ortho")[:10], atol=1e-12)


@pytest.mark.parametrize("freq", [250.0, 700.0, 1500.0, 3000.0])
def test_pure_tone_energy_lands_in_its_mel_band(md, freq):
    t = np.arange(16000) / 16000
    logmel = md.log_mel(0.5 * np.sin(2 * np.pi * freq * t))
    edges_hz = md.mel_to_hz(np.linspace(md.hz_to_mel(20.0), md.hz_to_mel(4000.0), 42))
    centers = edges_hz[1:-1]
    expected = int(np.argmin(np.abs(centers - freq)))
    band = np.argmax(logmel, axis=1)
    assert np.all(np.abs(band - expected) <= 1), (freq, expected, band[:5])
    assert np.median(band) == expected
    # far from the tone (more than 3 bands away) the energy is much lower
    far = np.abs(np.arange(40) - expected) > 3
    assert np.all(logmel[:, far].max(axis=1) < logmel.max(axis=1) - 3.0)


def test_filterbank_triangles_peak_at_one_and_cover_20_to_4000_hz(md):
    fb = md.mel_filterbank()
    assert fb.shape == (257, 40)
    assert np.all(fb >= 0) and np.all(fb.max(axis=0) <= 1.0) and np.all(fb.max(axis=0) > 0.5)
    freqs = np.arange(257) * 16000 / 512
    assert not fb[freqs > 4000].any() and not fb[freqs < 20].any()


# ---------------------------------------------------------------------------
# dataset generation (espeak-ng is installed by scripts/setup.sh)


def test_dataset_two_words_two_voices(md):
    assert shutil.which("espeak-ng"), "espeak-ng missing: run scripts/setup.sh"
    kwargs = dict(words=["yes", "no"], unknown_words=["cat"],
                  train_voices=[("en-us", "m1")], test_voices=[("en-gb", "f2")],
                  unknown_per_voice=1, silence_per_voice=1, train_copies=1, test_copies=1)
    data = md.make_dataset(**kwargs)
    yes, no, unk, sil = (md.LABELS.index(w) for w in ("yes", "no", "_unknown_", "_silence_"))
    for split, voice in (("train", "en-us+m1"), ("test", "en-gb+f2")):
        x, y, v = data[f"x_{split}"], data[f"y_{split}"], data[f"voice_{split}"]
        assert x.shape == (4, 49, 10, 1) and x.dtype == np.float32
        assert np.all(np.isfinite(x))
        assert sorted(y.tolist()) == sorted([yes, no, unk, sil])
        assert set(v) == {voice}
        assert not np.allclose(x[y == yes], x[y == no])
    assert list(data["labels"]) == md.LABELS
    again = md.make_dataset(**kwargs)                        # seeded: reproducible
    np.testing.assert_array_equal(again["x_test"], data["x_test"])
    with pytest.raises(ValueError, match="both train and test"):
        md.make_dataset(**{**kwargs, "test_voices": [("en-us", "m1")]})


def test_default_split_holds_out_languages_and_variants(md):
    import subprocess
    assert not set(md.TRAIN_LANGS) & set(md.TEST_LANGS)
    assert not set(md.TRAIN_VARIANTS) & set(md.TEST_VARIANTS)
    # espeak-ng silently ignores an unknown variant: every name must be a real one
    listing = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True,
                             check=True).stdout.split("\n")[1:]
    variants = {line.split()[-1].split("/")[-1] for line in listing if line.strip()}
    assert set(md.TRAIN_VARIANTS + md.TEST_VARIANTS) - {""} <= variants
    langs = {line.split()[1] for line in subprocess.run(
        ["espeak-ng", "--voices"], capture_output=True, text=True,
        check=True).stdout.split("\n")[1:] if line.strip()}
    assert set(md.TRAIN_LANGS + md.TEST_LANGS) <= langs


# ---------------------------------------------------------------------------
# the committed artifacts


def test_committed_artifacts_are_consistent(md):
    labels = (KWS / "labels.txt").read_text().split()
    assert labels == md.LABELS
    assert (KWS / "model.h5").stat().st_size < 200_000
    calib = np.load(KWS / "calib.npy")
    assert calib.dtype == np.float32 and calib.shape[1:] == (49, 10, 1) and 100 <= len(calib) <= 200
    with np.load(KWS / "test.npz") as t:
        x, y = t["x"], t["y"]
    assert x.dtype == np.float32 and x.shape[1:] == (49, 10, 1) and len(x) == len(y) >= 200
    assert set(np.unique(y)) == set(range(len(labels)))
    np.testing.assert_array_equal(np.load(KWS / "test_x.npy"), x)
    results = json.loads((KWS / "results.json").read_text())
    assert results["labels"] == labels and results["test_clips"] == len(y)
    assert 0.0 < results["int8_accuracy"] <= 1.0


# ---------------------------------------------------------------------------
# slow: the committed model through tinygen


@pytest.mark.slow
def test_kws_verifies_bit_exact_on_emulated_cortex_m4(tmp_path):
    report = tmp_path / "kws.json"
    r = run_cli("verify", "--board", "qemu-cortex-m4", KWS / "model.h5",
                "--calib", KWS / "calib.npy", "--samples", 5,
                "-o", tmp_path / "proj", "--json", report, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASS: bit-exact" in r.stdout
    data = json.loads(report.read_text())
    assert data["passed"] and data["bit_exact"] and data["vectors"] == 5
    assert data["outputs"][0]["max_abs_diff_lsb"] == 0
    assert data["latency"]["instructions"] > 0


@pytest.mark.slow
def test_kws_int8_accuracy_matches_results_json():
    from tinygen.convert import convert, quantize
    from tinygen.load import load_model
    from tinygen.reference import TflmReference
    conv = convert(load_model(KWS / "model.h5"), KWS / "calib.npy")
    tin = conv.ir.input_tensors()[0]
    ref = TflmReference(conv.tflite)
    with np.load(KWS / "test.npz") as t:
        x, y = t["x"], t["y"]
    pred = np.array([np.argmax(ref.run([quantize(v[None], tin)])[0]) for v in x])
    results = json.loads((KWS / "results.json").read_text())
    assert abs(float(np.mean(pred == y)) - results["int8_accuracy"]) < 1e-3
