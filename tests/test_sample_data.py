"""Calibration (--calib) and test (--data) files from users' pipelines: non-finite
values, other dtypes, object and structured arrays, --samples beyond the data.

The loader's decisions are checked directly (fast); a few cases run the CLI as a
user would, to see one line on stderr, the exit code and nothing written."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_cli

from tinygen import data
from tinygen.data import load_samples
from tinygen.errors import TinygenError

SHAPE = (1, 12, 12, 3)


def _calib(n=20, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n,) + SHAPE[1:]).astype(np.float32)


def _notes():
    got = []
    return got, got.append


def assert_one_line_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    errors = [l for l in r.stderr.splitlines() if l.startswith("tinygen: error:")]
    assert len(errors) == 1, r.stderr
    for n in needles:
        assert n in errors[0], errors[0]
    return errors[0]


# --------------------------------------------------------------------------- non-finite


@pytest.mark.parametrize("value,kind", [(np.inf, "+Inf"), (-np.inf, "-Inf"), (np.nan, "NaN")])
@pytest.mark.parametrize("where", [(0, 0, 0, 0), (13, 11, 5, 2)])
def test_one_nonfinite_value_is_an_error_naming_sample_and_count(tmp_path, value, kind, where):
    x = _calib()
    x[where] = value
    path = tmp_path / "calib.npy"
    np.save(path, x)
    with pytest.raises(TinygenError) as err:
        load_samples(path, [SHAPE])
    msg = str(err.value)
    assert str(path) in msg and "input 0" in msg and kind in msg
    assert f"sample {where[0]}," in msg and "1 of 20 samples" in msg
    assert "--drop-nonfinite" in msg and "\n" not in msg


def test_count_and_first_bad_sample_over_several_inputs(tmp_path):
    a, b = _calib(10, 1), np.random.default_rng(2).normal(size=(10, 4)).astype(np.float32)
    a[6, 0, 0, 0] = np.nan
    b[3, 1] = np.inf
    b[6, 2] = -np.inf          # the same sample as a's NaN: counted once
    path = tmp_path / "two.npz"
    np.savez(path, image=a, extra=b)
    with pytest.raises(TinygenError) as err:
        load_samples(path, [SHAPE, (1, 4)])
    msg = str(err.value)
    assert "2 of 10 samples" in msg
    assert "sample 3, input 1 (array 'extra')" in msg and "+Inf" in msg


def test_all_nan_is_named_as_such(tmp_path):
    path = tmp_path / "nan.npy"
    np.save(path, np.full((5,) + SHAPE[1:], np.nan, np.float32))
    with pytest.raises(TinygenError, match=r"5 of 5 samples hold non-finite values .*NaN"):
        load_samples(path, [SHAPE])
    with pytest.raises(TinygenError, match="all 5 samples hold non-finite values"):
        load_samples(path, [SHAPE], drop_nonfinite=True)


def test_drop_nonfinite_keeps_exactly_the_finite_samples_and_says_so(tmp_path):
    x = _calib(12)
    bad = [2, 7, 8]
    for i, v in zip(bad, (np.nan, np.inf, -np.inf)):
        x[i, 3, 3, 1] = v
    path = tmp_path / "calib.npy"
    np.save(path, x)
    notes, note = _notes()
    got = load_samples(path, [SHAPE], drop_nonfinite=True, note=note)
    keep = [i for i in range(12) if i not in bad]
    assert len(got) == 9 and got.dropped == 3 and got.total == 12
    for s, i in zip(got, keep):
        np.testing.assert_array_equal(s[0][0], x[i])
    assert len(notes) == 1 and "dropped 3 of 12 samples" in notes[0] and "9 remain" in notes[0]


def test_the_cli_policy_reaches_the_loader(tmp_path):
    x = _calib(4)
    x[1, 0, 0, 0] = np.nan
    path = tmp_path / "calib.npy"
    np.save(path, x)
    notes, note = _notes()
    with data.sample_policy(drop_nonfinite=True, note=note):
        assert len(load_samples(path, [SHAPE])) == 3
    assert notes and "dropped 1 of 4" in notes[0]
    with pytest.raises(TinygenError):
        load_samples(path, [SHAPE])       # outside the policy: refused again


# --------------------------------------------------------------------------- dtypes


def test_float64_becomes_float32_with_a_note(tmp_path):
    x = _calib(6).astype(np.float64) + 1e-9
    path = tmp_path / "f64.npy"
    np.save(path, x)
    notes, note = _notes()
    got = load_samples(path, [SHAPE], note=note)
    assert got[0][0].dtype == np.float32
    np.testing.assert_array_equal(got[4][0][0], x[4].astype(np.float32))
    assert len(notes) == 1 and "float64" in notes[0] and "float32" in notes[0]


def test_float64_beyond_float32_range_is_refused(tmp_path):
    x = _calib(3).astype(np.float64)
    x[2, 0, 0, 0] = 1e300           # finite in float64, +Inf once the model sees it
    path = tmp_path / "big.npy"
    np.save(path, x)
    with pytest.raises(TinygenError, match="beyond the float32 range"):
        load_samples(path, [SHAPE])


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_, np.int8])
def test_integers_for_calibration_become_float32_with_a_note(tmp_path, dtype):
    x = (np.random.default_rng(0).integers(0, 2, (5,) + SHAPE[1:])).astype(dtype)
    path = tmp_path / "ints.npy"
    np.save(path, x)
    notes, note = _notes()
    got = load_samples(path, [SHAPE], note=note)
    assert got[0][0].dtype == np.float32
    np.testing.assert_array_equal(got[3][0][0], x[3].astype(np.float32))
    assert len(notes) == 1 and np.dtype(dtype).name in notes[0]


def test_integers_as_test_vectors_are_int8_only_in_range(tmp_path):
    path = tmp_path / "ints.npy"
    x = np.random.default_rng(0).integers(-128, 128, (4,) + SHAPE[1:]).astype(np.int64)
    np.save(path, x)
    notes, note = _notes()
    got = load_samples(path, [SHAPE], "data", integers="int8", note=note)
    assert got[0][0].dtype == np.int8 and np.array_equal(got[2][0][0], x[2])
    assert len(notes) == 1 and "int8 quantized" in notes[0]

    np.save(path, (x * 4).astype(np.int32))          # signed, beyond int8: neither reading fits
    with pytest.raises(TinygenError, match=r"int32 values in \[-512, 508\], outside int8"):
        load_samples(path, [SHAPE], "data", integers="int8")


def test_unsigned_test_vectors_are_real_values(tmp_path):
    """Camera pixels come as uint8: quantized vectors are int8, so unsigned
    data is taken as the float values it holds (the SSD example's test.npz)."""
    path = tmp_path / "pixels.npy"
    x = np.random.default_rng(1).integers(0, 256, (4,) + SHAPE[1:]).astype(np.uint8)
    np.save(path, x)
    notes, note = _notes()
    got = load_samples(path, [SHAPE], "data", integers="int8", note=note)
    assert got[0][0].dtype == np.float32
    np.testing.assert_array_equal(got[3][0][0], x[3].astype(np.float32))
    assert len(notes) == 1 and "uint8" in notes[0] and "float32" in notes[0]


def test_int8_test_vectors_pass_unchanged_without_a_note(tmp_path):
    path = tmp_path / "q.npy"
    x = np.random.default_rng(0).integers(-128, 128, (3,) + SHAPE[1:]).astype(np.int8)
    np.save(path, x)
    notes, note = _notes()
    got = load_samples(path, [SHAPE], "data", integers="int8", note=note)
    assert got[1][0].dtype == np.int8 and np.array_equal(got[1][0][0], x[1]) and not notes


# --------------------------------------------------------------------------- refused files


def _object_npz(path):
    np.savez(path, x=np.array([np.zeros(3), "label"], dtype=object))


def _object_npy(path):
    np.save(path, np.array([np.zeros(3), None], dtype=object), allow_pickle=True)


def _structured(path):
    np.save(path, np.zeros(4, dtype=[("pixels", "f4", SHAPE[1:]), ("label", "i4")]))


def _strings(path):
    np.save(path, np.array(["a.png", "b.png"]))


def _complex(path):
    np.save(path, np.zeros((2,) + SHAPE[1:], np.complex64))


def _bad_zip(path):
    np.savez(path, x=_calib(2))
    path.write_bytes(path.read_bytes()[:100])


@pytest.mark.parametrize("make,name,needle", [
    (_object_npz, "obj.npz", "Python objects"),
    (_object_npy, "obj.npy", "Python objects"),
    (_structured, "rec.npy", "structured array (fields pixels, label)"),
    (_strings, "names.npy", "expected numbers"),
    (_complex, "c.npy", "complex64"),
    (_bad_zip, "cut.npz", "not a readable NumPy"),
])
def test_unusable_arrays_are_refused_in_one_line(tmp_path, make, name, needle):
    path = tmp_path / name
    make(path)
    for check in (lambda: load_samples(path, [SHAPE]),
                  lambda: data.check_sample_file(path)):
        with pytest.raises(TinygenError) as err:
            check()
        assert needle in str(err.value) and str(path) in str(err.value)
        assert "\n" not in str(err.value)


def test_labels_beside_x_are_not_read(tmp_path):
    """test.npz with x and an object array of labels: only x feeds the model."""
    path = tmp_path / "test.npz"
    np.savez(path, x=_calib(3), y=np.array(["cat", "dog", "cat"]))
    assert len(load_samples(path, [SHAPE], "data")) == 3


# --------------------------------------------------------------------------- --samples


def test_samples_beyond_the_data_says_how_many_run(cnn_tflite, cnn_calib):
    from tinygen.load import load_ir
    from tinygen.verify import make_vector_set
    ir = load_ir(cnn_tflite)
    notes, note = _notes()
    with data.sample_policy(note=note):
        vectors, floats = make_vector_set(ir, 500, None, str(cnn_calib))
    assert len(vectors) == len(floats) == 24
    assert len(notes) == 1 and "--samples 500" in notes[0] and "verifying 24" in notes[0]
    with data.sample_policy(note=note):
        assert len(make_vector_set(ir, 5, None, str(cnn_calib))[0]) == 5
    assert len(notes) == 1


def test_random_vector_cap_is_said():
    notes, note = _notes()
    assert data.random_vector_count(100, 432, note=note) == 100 and not notes
    assert data.random_vector_count(100_000_000, 432, note=note) == data.MAX_RANDOM_VECTORS
    assert f"verifying {data.MAX_RANDOM_VECTORS:,}" in notes[-1]
    assert "--samples 100,000,000" in notes[-1]
    # big inputs: the memory bound, not the count, decides
    big = 96 * 96 * 3
    n = data.random_vector_count(100_000_000, big, note=note)
    assert n * 5 * big <= data.MAX_RANDOM_VECTOR_BYTES < (n + 1) * 5 * big


def test_verify_runs_the_capped_count_it_announces(cnn_tflite, monkeypatch):
    from tinygen.load import load_ir
    from tinygen.verify import make_vector_set
    monkeypatch.setattr(data, "MAX_RANDOM_VECTORS", 37)
    notes, note = _notes()
    with data.sample_policy(note=note):
        vectors, _ = make_vector_set(load_ir(cnn_tflite), 100_000_000, None, None)
    assert len(vectors) == 37 and "verifying 37" in notes[0]


# --------------------------------------------------------------------------- the CLI


@pytest.mark.slow
def test_convert_with_inf_calibration_fails_in_one_line_and_writes_nothing(cnn_h5, tmp_path):
    x = _calib(24)
    x[9, 1, 1, 1] = np.inf
    calib = tmp_path / "calib.npy"
    np.save(calib, x)
    out = tmp_path / "out" / "m.tflite"
    r = run_cli("convert", cnn_h5, "--calib", calib, "-o", out)
    assert_one_line_error(r, "calib.npy", "sample 9", "1 of 24 samples", "+Inf")
    assert not out.parent.exists()

    r = run_cli("convert", cnn_h5, "--calib", calib, "-o", out, "--drop-nonfinite")
    assert r.returncode == 0, r.stderr
    assert "dropped 1 of 24 samples" in r.stderr
    import json
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["samples"] == 23 and report["calibration_samples_dropped"] == 1
    assert all(np.isfinite(o["cosine"]) for o in report["outputs"])


@pytest.mark.slow
def test_verify_refuses_nan_data_before_building(cnn_h5, tmp_path):
    x = _calib(6)
    x[4, 0, 0, 0] = np.nan
    bad = tmp_path / "test.npy"
    np.save(bad, x)
    out = tmp_path / "proj"
    r = run_cli("verify", cnn_h5, "--data", bad, "-o", out, timeout=300)
    assert_one_line_error(r, "data file", "sample 4", "1 of 6 samples", "NaN")
    assert not out.exists()


def test_verify_refuses_an_object_npz_before_anything(cnn_tflite, tmp_path):
    bad = tmp_path / "test.npz"
    _object_npz(bad)
    r = run_cli("verify", cnn_tflite, "--data", bad, "-o", tmp_path / "proj")
    assert_one_line_error(r, "test.npz", "Python objects")
    assert not (tmp_path / "proj").exists()
