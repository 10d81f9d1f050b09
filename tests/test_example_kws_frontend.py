"""examples/kws_frontend: the keyword spotter trained on a tinygen front end's
features.  Fast: the committed files fit together (front end as `tinygen
frontend` makes it, model input = its features, labels, clips).  Slow: a
committed .wav verified through the pipeline on qemu-cortex-m4 (0 LSB), and
the reference's answer at the clip's end is the clip's word."""

import json
import wave

import numpy as np
import pytest
from conftest import ROOT, run_cli

from tinygen.convert.frontend import FrontendParams, build_frontend, frames_per_input
from tinygen.convert.pipeline import build_pipeline
from tinygen.ir import parse_tflite

EX = ROOT / "examples" / "kws_frontend"
pytestmark = pytest.mark.skipif(not (EX / "model.tflite").exists(),
                                reason="examples/kws_frontend not trained here")


def test_the_committed_files_fit_together():
    fe = (EX / "frontend.tflite").read_bytes()
    r = json.loads((EX / "results.json").read_text())
    keep = {k: v for k, v in r["frontend"].items()
            if k not in ("window_samples", "stride_samples", "fft_length")}
    assert fe == build_frontend(FrontendParams(**keep))   # the definition, rebuilt identically
    model = parse_tflite((EX / "model.tflite").read_bytes())
    assert frames_per_input(parse_tflite(fe), model) == 49
    labels = (EX / "labels.txt").read_text().split()
    assert len(labels) == int(np.prod(model.output_tensors()[0].shape)) == 12
    wavs = sorted((EX / "clips").glob("*.wav"))
    assert wavs
    for w in wavs:
        with wave.open(str(w)) as f:
            assert (f.getframerate(), f.getnchannels(), f.getsampwidth()) == (16000, 1, 2)
    assert r["frontend"]["channels"] == 40 and 0 < r["int8_accuracy"] <= 1


def _answer(clip_path) -> str:
    from tinygen.data import read_raw_audio, stride_chunks
    from tinygen.reference import TflmReference
    tflite, info, _ = build_pipeline((EX / "frontend.tflite").read_bytes(),
                                     (EX / "model.tflite").read_bytes())
    ref = TflmReference(tflite)
    for chunk in stride_chunks(read_raw_audio(clip_path, 16000), info.stride_samples):
        out = ref.run([chunk[None]])
    labels = (EX / "labels.txt").read_text().split()
    return labels[int(np.argmax(out[1]))]


@pytest.mark.slow
def test_a_wav_verified_through_the_pipeline_on_the_device(tmp_path):
    wav = EX / "clips" / "yes.wav"
    if not wav.exists():
        wav = sorted((EX / "clips").glob("*.wav"))[0]
    assert _answer(wav).strip("_") == wav.stem
    report = tmp_path / "r.json"
    r = run_cli("verify", "--board", "qemu-cortex-m4", "--frontend", EX / "frontend.tflite",
                EX / "model.tflite", "--raw", wav, "--runtime", "aot", "-o", tmp_path / "proj",
                "--json", report, timeout=1800)
    assert r.returncode == 0, r.stdout + r.stderr
    d = json.loads(report.read_text())
    assert d["bit_exact"] and d["vectors"] == 50
    assert d["pipeline"]["parts"]["model"]["instructions"] > 0
