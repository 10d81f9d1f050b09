"""Audio front ends: .tflite graphs of TFLM's signal ops (int16 audio in, int8
features out), made by `tinygen frontend`, run by the tflite_micro interpreter
(the reference), accepted by inspect/build/verify with the tflm runtime and
run by the aot runtime's own signal kernels (tests/aot/test_signal.py checks
them op by op).  The slow tests verify them on an emulated Cortex-M4 with both
shared TFLM trees and with aot, at 0 LSB."""

import json

import numpy as np
import pytest
from conftest import run_cli
from test_tflm_runtime import TREES, tree_path

from tinygen.convert.frontend import FrontendParams, build_frontend, filter_bank, make_frontend
from tinygen.errors import TinygenError
from tinygen.ir import parse_tflite
from tinygen.ir.flexbuffer import loads as flex_decode
from tinygen.ir.signal_ops import SIGNAL_OPS, is_frontend
from tinygen.reference import TflmReference

CHAINS = {
    "full": FrontendParams(),
    "no_pcan": FrontendParams(pcan=False),
    "plain": FrontendParams(noise_reduction=False, pcan=False),
}


def audio_windows(n_windows: int, samples: int, seed: int = 0) -> np.ndarray:
    """Tones, chirps, noise, silence and full-scale clipping: what a microphone gives."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 16000.0
    out = []
    for k in range(n_windows):
        kind = k % 5
        if kind == 0:
            x = 3000 * np.sin(2 * np.pi * rng.uniform(100, 7000) * t)
        elif kind == 1:
            x = rng.normal(0, rng.uniform(10, 3000), samples)
        elif kind == 2:
            x = np.zeros(samples)
        elif kind == 3:
            x = 40000 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t)   # clips
        else:
            x = 800 * np.sin(2 * np.pi * (300 + 4000 * t) * t) + rng.normal(0, 50, samples)
        out.append(np.clip(np.round(x), -32768, 32767).astype(np.int16))
    return np.stack(out)


@pytest.mark.parametrize("chain", sorted(CHAINS))
def test_reference_runs_the_frontend(chain):
    p = CHAINS[chain]
    tflite, ir = make_frontend(p)
    assert is_frontend(ir)
    assert [t.dtype for t in ir.input_tensors()] == ["int16"]
    assert list(ir.input_tensors()[0].shape) == [1, p.window_samples] == [1, 480]
    out = ir.output_tensors()[0]
    assert (out.dtype, list(out.shape)) == ("int8", [1, 40])
    assert abs(out.scale - p.out_scale) < 1e-7 and out.zero_point == p.out_zero_point
    ref = TflmReference(tflite)
    feats = [ref.run([w[None]])[0][0] for w in audio_windows(10, p.window_samples)]
    assert all(f.dtype == np.int8 and f.shape == (40,) for f in feats)
    # silence is the quietest frame, and a tone is not flat
    assert feats[2].astype(int).sum() < feats[0].astype(int).sum()
    assert len(set(feats[0].tolist())) > 5
    signal = [op.opcode for op in ir.operators if op.opcode in SIGNAL_OPS]
    assert signal[:4] == ["SignalWindow", "SignalFftAutoScale", "SignalRfft", "SignalEnergy"]
    assert ("SignalPCAN" in signal) == p.pcan
    assert ("SignalFilterBankSpectralSubtraction" in signal) == p.noise_reduction


def test_custom_options_are_flexbuffer_maps_the_kernels_read_by_key_order():
    ir = parse_tflite(build_frontend(FrontendParams()))
    opts = {op.opcode: flex_decode(op.custom_options) for op in ir.operators
            if op.is_custom and op.custom_options}
    assert opts["SignalWindow"] == {"shift": 12}
    assert opts["SignalRfft"] == {"T": 7, "fft_length": 512}
    # the kernels take values by index in sorted key order (spectral subtraction: 9)
    ss = opts["SignalFilterBankSpectralSubtraction"]
    assert list(ss) == sorted(ss) and len(ss) == 9 and ss["clamping"] is False
    assert opts["SignalFilterBank"] == {"num_channels": 40}
    e = opts["SignalEnergy"]
    assert 0 < e["start_index"] < e["end_index"] <= 257


def test_filter_bank_tables():
    p = FrontendParams()
    fb = filter_bank(p)
    # every used tap's weight and unweight sum to one in Q12 (rounding: +-1)
    used = (fb.weights != 0) | (fb.unweights != 0)
    assert np.all(np.abs(fb.weights[used].astype(int) + fb.unweights[used] - 4096) <= 1)
    assert len(fb.freq_starts) == p.channels + 1
    assert np.all(fb.widths % 4 == 0) and np.all(fb.freq_starts % 2 == 0)
    assert int((fb.freq_starts + fb.widths).max()) <= p.fft_length // 2 + 1


@pytest.mark.parametrize("kwargs,needle", [
    (dict(upper_hz=9000), "half the sample rate"),
    (dict(channels=200), "without an FFT bin"),
    (dict(window_ms=0.5), "samples; use 16..4096"),
    (dict(stride_ms=40), "at most the window"),
    (dict(noise_reduction=False), "PCAN needs noise reduction"),
    (dict(out_zero_point=300), "zero point"),
])
def test_bad_parameters_are_one_line(kwargs, needle):
    with pytest.raises(TinygenError) as e:
        build_frontend(FrontendParams(**kwargs))
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_frontend_cli_writes_the_tflite(tmp_path):
    out = tmp_path / "fe.tflite"
    r = run_cli("frontend", "-o", out, "--channels", "32", "--window-ms", "25", "--stride-ms",
                "10", "--no-noise-reduction")
    assert r.returncode == 0, r.stderr
    ir = parse_tflite(out.read_bytes())
    assert list(ir.input_tensors()[0].shape) == [1, 400]
    assert list(ir.output_tensors()[0].shape) == [1, 32]
    assert "SignalPCAN" not in ir.op_names()
    assert "int16 [400]" in r.stdout and "every 160 samples" in r.stdout
    bad = run_cli("frontend", "-o", tmp_path / "bad.tflite", "--upper-hz", "12000")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.count("\n") == 1 and not (tmp_path / "bad.tflite").exists()
    h = run_cli("frontend", "--help")
    assert h.returncode == 0 and "--sample-rate" in h.stdout and "--no-pcan" in h.stdout


@pytest.fixture(scope="module")
def fe_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fe") / "frontend.tflite"
    path.write_bytes(build_frontend(FrontendParams()))
    return path


def test_inspect_takes_a_frontend(fe_file):
    r = run_cli("inspect", fe_file, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    ops = {o["opcode"]: o for o in d["ops"]}
    assert ops["SignalWindow"]["tflm_method"] == "AddWindow"
    assert ops["SignalPCAN"]["tflm_method"] == "AddPCAN"
    assert all(o["supported"]["tflm"] for o in d["ops"])
    assert all(o["supported"]["aot"] for o in d["ops"])
    assert d["tflm_arena"]["total"] > 0


def test_aot_refuses_a_signal_op_it_does_not_implement_in_one_line(tmp_path):
    """A 480-point FFT (TFLM's kissfft takes it; the aot kernel does powers of two)."""
    from tinygen.convert.frontend import _Graph
    g = _Graph()
    x = g.tensor("x", [1, 480], "int16")
    y = g.tensor("y", [1, 482], "int16")
    g.op("SignalRfft", [x], [y], {"T": 7, "fft_length": 480})
    f = tmp_path / "fft480.tflite"
    f.write_bytes(g.build([x], [y], "fft"))
    r = run_cli("build", f, "--board", "qemu-cortex-m4", "--runtime", "aot",
                "-o", tmp_path / "proj")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("tinygen: error:") and "SignalRfft" in line
    assert "powers of two" in line and "--runtime tflm" in line
    assert not (tmp_path / "proj").exists()


def test_int16_input_is_still_refused_without_signal_ops(tmp_path):
    from tinygen.convert import check_full_int8
    ir = parse_tflite(build_frontend(FrontendParams()))
    plain = type(ir)(tensors=ir.tensors, operators=[o for o in ir.operators
                                                    if not o.is_custom],
                     inputs=ir.inputs, outputs=ir.outputs, tflite=ir.tflite)
    with pytest.raises(TinygenError, match="not a full-int8 model: input 'audio' is int16"):
        check_full_int8(plain, "m.tflite")


def test_tflm_tree_compiles_signal_only_for_frontends():
    from tinygen.codegen.tflm import resolver_entries
    from tinygen.project.tflm_tree import open_tree
    t = open_tree(tree_path("reference"))
    methods = [e.method for e in resolver_entries(parse_tflite(build_frontend(FrontendParams())))]
    assert t.missing_methods(methods) == []
    assert "+<signal/>" in t.src_filter(methods)
    assert t.resolver_methods["AddWindow"] == "WINDOW"


# ---------------------------------------------------------------------------
# built, run in QEMU, verified against the tflite_micro interpreter (slow)


@pytest.mark.slow
@pytest.mark.parametrize("tree_name", TREES)
@pytest.mark.parametrize("chain", ["full", "plain"])
def test_frontend_verifies_bit_exact_with_tflm(chain, tree_name, tmp_path):
    tree = tree_path(tree_name)
    p = CHAINS[chain]
    fe = tmp_path / "frontend.tflite"
    fe.write_bytes(build_frontend(p))
    data_file = tmp_path / "audio.npy"
    np.save(data_file, audio_windows(10, p.window_samples, seed=1))
    report = tmp_path / "report.json"
    r = run_cli("verify", "--board", "qemu-cortex-m4", fe, "--data", data_file,
                "--runtime", "tflm", "--tflm-source", tree, "-o", tmp_path / "proj",
                "--json", report, timeout=1800)
    assert r.returncode == 0, r.stdout + r.stderr
    d = json.loads(report.read_text())
    assert d["passed"] and d["bit_exact"] and d["runtime"] == "tflm", d
    for o in d["outputs"]:
        assert o["max_abs_diff_lsb"] == 0 and o["exact_match_pct"] == 100.0
    assert d["latency"]["instructions"] > 0
    used, reserved = d["device"]["arena_used_bytes"], d["device"]["arena_bytes"]
    assert 0 < used <= reserved


@pytest.mark.slow
@pytest.mark.parametrize("chain", ["full", "plain"])
def test_frontend_verifies_bit_exact_with_aot(chain, tmp_path):
    """tinygen's own signal kernels (tg_signal.c) on the emulated M4, stateful
    noise reduction included: the interpreter's features to the last bit."""
    p = CHAINS[chain]
    fe = tmp_path / "frontend.tflite"
    fe.write_bytes(build_frontend(p))
    data_file = tmp_path / "audio.npy"
    np.save(data_file, audio_windows(10, p.window_samples, seed=1))
    report = tmp_path / "report.json"
    r = run_cli("verify", "--board", "qemu-cortex-m4", fe, "--data", data_file,
                "--runtime", "aot", "-o", tmp_path / "proj", "--json", report, timeout=1800)
    assert r.returncode == 0, r.stdout + r.stderr
    d = json.loads(report.read_text())
    assert d["passed"] and d["bit_exact"] and d["runtime"] == "aot", d
    for o in d["outputs"]:
        assert o["max_abs_diff_lsb"] == 0 and o["exact_match_pct"] == 100.0
    assert d["latency"]["instructions"] > 0


# ---------------------------------------------------------------------------
# a front end feeding a model: what differs, in one line


def _model_with_input(shape, dtype="int8", scale=26.0 / 255.0, zp=-128):
    from tinygen.convert.frontend import _Graph
    g = _Graph()
    x = g.tensor("x", shape, dtype, scale=scale, zp=zp)
    y = g.tensor("y", [int(np.prod(shape))], dtype, scale=scale, zp=zp)
    g.op("RESHAPE", [x], [y])
    return parse_tflite(g.build([x], [y], "test model"))


def test_frontend_feeds_a_kws_input_window():
    from tinygen.convert.frontend import frames_per_input
    fe = parse_tflite(build_frontend(FrontendParams()))
    assert frames_per_input(fe, _model_with_input([1, 49, 40, 1])) == 49
    assert frames_per_input(fe, _model_with_input([1, 1960])) == 49
    assert frames_per_input(fe, _model_with_input([40])) == 1


@pytest.mark.parametrize("shape,kwargs,needle", [
    ([1, 49, 40, 1], dict(scale=0.1), "scale 0.101961 vs 0.1 (make the front end with "
                                      "--out-scale 0.100000001)"),
    ([1, 49, 40, 1], dict(zp=0), "zero point -128 vs 0 (make the front end with "
                                 "--out-zero-point 0)"),
    ([1, 49, 40, 1], dict(dtype="int16", scale=0.1, zp=0), "type int8 vs int16"),
    ([1, 49, 32, 1], {}, "innermost axes [32] are not the front end's [40] features"),
    ([1, 40, 49], {}, "innermost axes [49] are not"),
    ([1, 1961], {}, "innermost axes [1961] are not"),
])
def test_frontend_that_does_not_fit_the_model_says_what_differs(shape, kwargs, needle):
    from tinygen.convert.frontend import frames_per_input
    fe = parse_tflite(build_frontend(FrontendParams()))
    with pytest.raises(TinygenError) as e:
        frames_per_input(fe, _model_with_input(shape, **kwargs))
    msg = str(e.value)
    assert needle in msg and "\n" not in msg
    assert msg.startswith("the front end's features (int8 [1, 40], scale 0.101961 zp -128) do "
                          "not fit the model's input 'x'")


def test_audio_vectors_for_a_frontend(fe_file, tmp_path):
    from tinygen.verify.vectors import make_vectors, precheck_sample_files
    ir = parse_tflite(fe_file.read_bytes())
    good = tmp_path / "audio.npy"
    np.save(good, audio_windows(3, 480))
    precheck_sample_files(fe_file, good, None)
    vecs = make_vectors(ir, None, str(good), None)
    assert len(vecs) == 3 and vecs[0][0].dtype == np.int16 and vecs[0][0].shape == (1, 480)
    assert np.array_equal(vecs[0][0][0], audio_windows(3, 480)[0])
    rand = make_vectors(ir, 4, None, None)
    assert rand[0][0].dtype == np.int16 and int(np.abs(rand[0][0]).max()) > 128
    bad = tmp_path / "float.npy"
    np.save(bad, np.zeros((2, 480), np.float32))
    with pytest.raises(TinygenError, match="int16 audio: give int16 samples"):
        precheck_sample_files(fe_file, bad, None)
