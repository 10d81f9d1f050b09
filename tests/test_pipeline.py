"""Pipelines: a front end and a model as one streaming firmware (raw samples
in, each stride's features and the model's answer out), `--frontend`/`--raw`
on build and verify, and the one-line refusals of audio and graphs that do
not fit.  The reference is the tflite_micro interpreter: the pipeline's
features are checked against the front end run alone on the same frames, and
the device against the pipeline (slow, qemu-cortex-m4, aot and tflm)."""

import json
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from test_frontend import audio_windows

from tinygen.convert.frontend import FrontendParams, _Graph, build_frontend
from tinygen.convert.pipeline import build_pipeline, frontend_info
from tinygen.data import read_raw_audio, stride_chunks
from tinygen.errors import TinygenError
from tinygen.ir import parse_tflite
from tinygen.reference import TflmReference

sys.path.insert(0, str(Path(__file__).parent / "aot"))

SCALE, ZP = 26.0 / 255.0, -128


def window_model(shape=(1, 49, 40, 1), scale=SCALE, zp=ZP) -> bytes:
    """A model whose answer is its input window, flattened (so the test sees
    exactly what the pipeline fed it)."""
    g = _Graph()
    x = g.tensor("x", list(shape), "int8", scale=scale, zp=zp)
    n = int(np.prod(shape))
    y = g.tensor("y", [1, n], "int8", scale=scale, zp=zp)
    g.op("RESHAPE", [x, g.tensor("s", [2], "int32", [1, n])], [y])
    return g.build([x], [y], "window model")


def speechlike(seconds: float, seed: int = 0, rate: int = 16000) -> np.ndarray:
    wins = audio_windows(int(seconds * rate) // 480 + 1, 480, seed=seed).reshape(-1)
    return wins[: int(seconds * rate)]


def write_wav(path: Path, samples: np.ndarray, rate=16000, channels=1, width=2) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        data = np.repeat(samples, channels)
        w.writeframes(data.astype("<i2").tobytes() if width == 2 else
                      (data >> 8).astype(np.int8).tobytes())
    return path


def test_frontend_records_its_rate_window_and_stride():
    info = frontend_info(build_frontend(FrontendParams(sample_rate=8000, window_ms=32,
                                                       stride_ms=16, upper_hz=3800, channels=20)))
    assert (info.sample_rate, info.window_samples, info.stride_samples) == (8000, 256, 128)
    g = _Graph()
    x = g.tensor("x", [1, 4], "int16")
    y = g.tensor("y", [1, 4], "int16")
    g.op("RESHAPE", [x, g.tensor("s", [2], "int32", [1, 4])], [y])
    with pytest.raises(TinygenError, match="does not record its sample rate and stride"):
        frontend_info(g.build([x], [y], "no metadata"))


def test_pipeline_is_the_front_end_frame_by_frame_then_the_model():
    """Stride k's features are the front end's (run alone, in order) on samples
    [k*stride - (window - stride), k*stride + stride), zeros before the start;
    the model sees the last 49 frames, the first frame standing in for those
    not seen yet."""
    p = FrontendParams()
    fe = build_frontend(p)
    tflite, info, frames = build_pipeline(fe, window_model())
    assert frames == 49 and (info.window_samples, info.stride_samples) == (480, 320)
    ir = parse_tflite(tflite)
    assert [t.dtype for t in ir.input_tensors()] == ["int16"]
    assert [list(t.shape) for t in ir.input_tensors()] == [[1, 320]]
    assert [list(t.shape) for t in ir.output_tensors()] == [[1, 40], [1, 1960]]
    audio = speechlike(1.1, seed=3)
    strides = stride_chunks([audio], 320)
    pipe, alone = TflmReference(tflite), TflmReference(fe)
    padded = np.concatenate([np.zeros(160, np.int16), strides.reshape(-1)])
    feats = []
    for k, chunk in enumerate(strides):
        f, window = pipe.run([chunk[None]])
        want = alone.run([padded[k * 320:k * 320 + 480][None]])[0]
        assert np.array_equal(f, want), k
        feats.append(want[0])
        rows = [feats[max(0, j)] for j in range(k - 48, k + 1)]
        assert np.array_equal(window.reshape(49, 40), np.stack(rows)), k


def test_pipeline_runs_bit_exact_with_aot_on_the_host(tmp_path):
    from harness import build_host, run_host, run_tflm
    tflite, _, _ = build_pipeline(build_frontend(FrontendParams()), window_model())
    batches = [[c[None]] for c in stride_chunks([speechlike(0.5, seed=5)], 320)]
    ours, ref = run_host(build_host(tflite, tmp_path), batches), run_tflm(tflite, batches)
    for a_row, r_row in zip(ours, ref):
        for a, r in zip(a_row, r_row):
            assert np.array_equal(a, r)


@pytest.mark.parametrize("kwargs,needle", [
    (dict(zp=0), "zero point -128 vs 0 (make the front end with --out-zero-point 0)"),
    (dict(shape=(1, 49, 32, 1)), "innermost axes [32] are not the front end's [40] features"),
])
def test_a_model_the_features_do_not_fit_is_refused_in_one_line(kwargs, needle, tmp_path):
    fe = tmp_path / "fe.tflite"
    fe.write_bytes(build_frontend(FrontendParams()))
    m = tmp_path / "m.tflite"
    m.write_bytes(window_model(**kwargs))
    r = run_cli("build", "--board", "qemu-cortex-m4", "--frontend", fe, m,
                "-o", tmp_path / "proj")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.count("tinygen: error:") == 1 and needle in r.stderr
    assert not (tmp_path / "proj").exists()


def put(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("make,needle", [
    (lambda d: write_wav(d / "a.wav", speechlike(0.1), rate=8000),
     "8000 Hz, the front end takes 16000 Hz"),
    (lambda d: write_wav(d / "a.wav", speechlike(0.1), channels=2),
     "2 channels, the front end takes 1 (mono)"),
    (lambda d: write_wav(d / "a.wav", speechlike(0.1), width=1),
     "8-bit samples, the front end takes 16-bit"),
    (lambda d: (np.save(d / "a.npy", speechlike(0.1).astype(np.float32)), d / "a.npy")[1],
     "the samples are float32; give int16 samples"),
    (lambda d: put(d / "a.mp3", b"ID3"), "a .mp3; give a .wav"),
    (lambda d: put(d / "a.wav", b"RIFF...."), "not a PCM .wav"),
    (lambda d: (np.savez(d / "a.npz", x=speechlike(0.1)), (d / "a.npz").rename(d / "a.npy"),
                d / "a.npy")[2], "is not a NumPy .npy file"),
    (lambda d: put(d / "a.npy", b"\x93NUMPY cut"), "not a readable NumPy"),
])
def test_raw_audio_that_does_not_fit_is_one_line(make, needle, tmp_path):
    path = make(tmp_path)
    with pytest.raises(TinygenError) as e:
        read_raw_audio(path, 16000)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_raw_clips_and_strides(tmp_path):
    one = read_raw_audio(write_wav(tmp_path / "a.wav", speechlike(0.5)), 16000)
    assert len(one) == 1 and np.array_equal(one[0], speechlike(0.5))
    np.save(tmp_path / "b.npy", np.stack([speechlike(0.11), speechlike(0.11, seed=1)]))
    two = read_raw_audio(tmp_path / "b.npy", 16000)
    chunks = stride_chunks(two, 320)               # 1,760 samples: 5.5 strides each
    assert chunks.shape == (2 * 6, 320) and chunks.dtype == np.int16
    assert np.array_equal(chunks[6:].reshape(-1)[:1760], speechlike(0.11, seed=1))
    assert np.array_equal(chunks[5, :160], speechlike(0.11)[1600:])
    assert not chunks[5, 160:].any()               # the clip's last stride, completed with zeros


def test_raw_needs_a_frontend(tmp_path):
    m = tmp_path / "m.tflite"
    m.write_bytes(window_model())
    r = run_cli("verify", "--board", "qemu-cortex-m4", m, "--raw", tmp_path / "a.wav")
    assert r.returncode == 2 and "--raw needs --frontend" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["aot", "tflm"])
def test_verify_streams_a_wav_through_the_pipeline_on_the_device(runtime, tmp_path):
    from test_tflm_runtime import tree_path
    fe = tmp_path / "fe.tflite"
    fe.write_bytes(build_frontend(FrontendParams()))
    m = tmp_path / "m.tflite"
    m.write_bytes(window_model())
    wav = write_wav(tmp_path / "clip.wav", speechlike(1.0, seed=9))
    report = tmp_path / "r.json"
    extra = ["--tflm-source", tree_path("reference")] if runtime == "tflm" else []
    r = run_cli("verify", "--board", "qemu-cortex-m4", "--frontend", fe, m, "--raw", wav,
                "--runtime", runtime, *extra, "-o", tmp_path / "proj", "--json", report,
                timeout=1800)
    assert r.returncode == 0, r.stdout + r.stderr
    d = json.loads(report.read_text())
    assert d["passed"] and d["bit_exact"] and d["runtime"] == runtime
    assert [o["name"] for o in d["outputs"]] == ["frontend/features", "model/y"]
    for o in d["outputs"]:
        assert o["max_abs_diff_lsb"] == 0 and o["exact_match_pct"] == 100.0
    p = d["pipeline"]
    assert (p["stride_samples"], p["frames"], p["stride_ms"]) == (320, 49, 20.0)
    assert p["instructions_per_stride"] > 0 and 0 < p["realtime_fraction"] < 1
    assert "pipeline:" in r.stdout and "of real time" in r.stdout
    parts = p["parts"]
    # per-operator counters split the stride (aot's own, TFLM's profiler hook)
    fe, stack, model = parts["frontend"], parts["stacking"], parts["model"]
    assert fe["instructions"] > stack["instructions"] > 0 and model["instructions"] >= 0
    assert fe["instructions"] + stack["instructions"] + model["instructions"] \
        <= p["instructions_per_stride"]
    assert "frontend: " in r.stdout and "instructions per stride" in r.stdout
    if runtime == "aot":
        assert fe["arena_bytes"] > 0 and fe["state_bytes"] == 2 * 640 + 4 + 4 * 40   # history: 2 strides
        assert stack["state_bytes"] == 4 + 2 * 49 * 40
    else:
        assert parts["frontend"]["tflm_arena_bytes"] > 0


def test_model_every_is_refused_where_it_cannot_hold(tmp_path):
    fe = tmp_path / "fe.tflite"
    fe.write_bytes(build_frontend(FrontendParams()))
    m = tmp_path / "m.tflite"
    m.write_bytes(window_model())
    for extra, needle in ((["--frontend", fe, "--runtime", "tflm"], "needs --runtime aot"),
                          ([], "--model-every needs --frontend"),
                          (["--frontend", fe, "--model-every", "0"], "1 or more")):
        args = ["--model-every", "3"] + extra if "--model-every" not in extra else extra
        r = run_cli("build", "--board", "qemu-cortex-m4", m, *args, "-o", tmp_path / "p")
        assert r.returncode == 2 and needle in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and not (tmp_path / "p").exists()


@pytest.mark.slow
def test_verify_with_the_model_every_third_stride(tmp_path):
    """The model (an average pool over the window) at every third stride of
    each of two clips: features every stride and answers at theirs, 0 LSB; the
    model's instructions fall to a third of the strides."""
    sys.path.insert(0, str(Path(__file__).parent / "aot"))
    from test_signal import _pooled_model
    fe = tmp_path / "fe.tflite"
    fe.write_bytes(build_frontend(FrontendParams()))
    m = tmp_path / "m.tflite"
    m.write_bytes(_pooled_model(SCALE, ZP))
    np.save(tmp_path / "clips.npy", np.stack([speechlike(0.5, seed=1), speechlike(0.5, seed=2)]))
    report = tmp_path / "r.json"
    r = run_cli("verify", "--board", "qemu-cortex-m4", "--frontend", fe, m, "--raw",
                tmp_path / "clips.npy", "--model-every", "3", "--runtime", "aot",
                "-o", tmp_path / "proj", "--json", report, "--html", tmp_path / "r.html",
                timeout=1800)
    assert r.returncode == 0, r.stdout + r.stderr
    d = json.loads(report.read_text())
    assert d["passed"] and d["bit_exact"] and d["vectors"] == 50
    assert [o["max_abs_diff_lsb"] for o in d["outputs"]] == [0, 0]
    p = d["pipeline"]
    assert p["model_every"] == 3 and "model every 3 strides" in r.stdout
    per_stride = [o for o in d["latency"]["per_op"] if o["op"] == "AVERAGE_POOL_2D"][0]
    # strides 2, 5, ..., 23 of each 25-stride clip ran the model: 16 of 50
    assert per_stride["min"] == 0 and per_stride["mean"] == pytest.approx(
        per_stride["max"] * 16 / 50, rel=0.05)
    assert p["instructions_worst_stride"] > p["instructions_per_stride"]
    assert 0 < p["realtime_fraction"] < p["worst_realtime_fraction"] < 1


def test_clip_features_are_what_the_pipeline_streams():
    """The features a KWS model trains on (clip_features) are the pipeline's,
    stride for stride, from a fresh start; a clip that is not a whole number of
    strides ends with zeros, as --raw sends it."""
    from tinygen.convert.pipeline import clip_features
    fe = build_frontend(FrontendParams())
    tflite, _, _ = build_pipeline(fe, window_model())
    clip = speechlike(0.51, seed=11)
    feats = clip_features(fe, clip)
    strides = stride_chunks([clip], 320)
    assert feats.shape == (len(strides), 40) == (26, 40) and feats.dtype == np.int8
    pipe = TflmReference(tflite)
    for k, chunk in enumerate(strides):
        assert np.array_equal(pipe.run([chunk[None]])[0].reshape(-1), feats[k]), k
    with pytest.raises(TinygenError, match="a clip is int16 samples"):
        clip_features(fe, clip.astype(np.float32))


@pytest.mark.slow
def test_raw_clips_each_start_from_a_fresh_state(tmp_path):
    """Two clips in one .npy: the device and the reference reset at the second
    clip's first stride, so its answer is the one it gets alone (the features
    a model trains on: clip_features)."""
    fe = tmp_path / "fe.tflite"
    fe.write_bytes(build_frontend(FrontendParams()))
    m = tmp_path / "m.tflite"
    m.write_bytes(window_model())
    clips = np.stack([speechlike(0.5, seed=1), speechlike(0.5, seed=2)])
    np.save(tmp_path / "clips.npy", clips)
    report = tmp_path / "r.json"
    r = run_cli("verify", "--board", "qemu-cortex-m4", "--frontend", fe, m, "--raw",
                tmp_path / "clips.npy", "--runtime", "aot", "-o", tmp_path / "proj",
                "--json", report, timeout=1800)
    assert r.returncode == 0, r.stdout + r.stderr
    d = json.loads(report.read_text())
    assert d["bit_exact"] and d["vectors"] == 2 * 25
    # bit-exact against a reference that resets at clip starts (below): the
    # device reset too


def test_the_reference_resets_at_clip_starts():
    from tinygen.data import clip_starts
    from tinygen.verify.device_run import run_reference
    tflite, _, _ = build_pipeline(build_frontend(FrontendParams()), window_model())
    ir = parse_tflite(tflite)
    clips = [speechlike(0.3, seed=1), speechlike(0.3, seed=2)]
    vectors = [[c[None]] for c in stride_chunks(clips, 320)]
    alone = run_reference(ir, vectors[15:])
    with clip_starts([0, 15]):
        fresh = run_reference(ir, vectors)[15:]
    carried = run_reference(ir, vectors)[15:]
    same = [np.array_equal(a[0], b[0]) for a, b in zip(alone, fresh)]
    assert all(same) and all(np.array_equal(a[1], b[1]) for a, b in zip(alone, fresh))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(alone, carried))


def test_build_with_a_frontend_keeps_the_joined_graph(tmp_path):
    fe = tmp_path / "fe.tflite"
    fe.write_bytes(build_frontend(FrontendParams()))
    m = tmp_path / "m.tflite"
    m.write_bytes(window_model())
    r = run_cli("build", "--board", "qemu-cortex-m4", "--runtime", "aot", "--frontend", fe, m,
                "--no-compile", "-o", tmp_path / "proj")
    assert r.returncode == 0, r.stderr
    joined = (tmp_path / "proj" / "pipeline.tflite").read_bytes()
    assert joined == build_pipeline(fe.read_bytes(), m.read_bytes())[0]
    assert parse_tflite(joined).op_names()[0] == "SignalFramer"


def test_damaged_metadata_is_no_metadata_and_a_damaged_front_end_one_line():
    """Every byte of a front end overwritten in turn: reading tinygen's
    metadata gives the JSON or None, never an exception (the fuzz test found a
    metadata name that was not UTF-8 raising UnicodeDecodeError in build),
    and joining a damaged front end is a TinygenError or a pipeline."""
    from tinygen.convert.pipeline import tinygen_metadata
    fe = build_frontend(FrontendParams())
    feat = parse_tflite(fe).output_tensors()[0]
    model = window_model(scale=feat.scale, zp=feat.zero_point)
    assert tinygen_metadata(fe)["sample_rate"] == 16000
    for pos in range(0, len(fe), 7):
        for value in (0x01, 0xF0):
            bad = bytearray(fe)
            bad[pos] = value
            d = tinygen_metadata(bytes(bad))
            assert d is None or isinstance(d, dict)
    for pos in range(0, 400, 3):
        bad = bytearray(fe)
        bad[pos] ^= 0xFF
        try:
            build_pipeline(bytes(bad), model)
        except TinygenError as e:
            assert "\n" not in str(e)
