"""Train the keyword spotter on the features of a tinygen front end, so that
training, the reference and the device share one definition of the features.

The clips are kws_cnn's (espeak-ng synthesis, augmentation, background noise:
examples/kws_cnn/make_dataset.py); the features are not numpy MFCCs but what
`tinygen frontend` makes (log-mel, 40 channels, noise reduction and PCAN,
int8), computed by the tflite_micro interpreter exactly as the device's
pipeline streams a clip (tinygen.convert.pipeline.clip_features).  The model
takes the last 49 frames of a 1 s clip, dequantized; its int8 input is the
front end's int8 output (same scale and zero point: `tinygen verify
--frontend` refuses a model whose input differs).

    python examples/kws_frontend/train.py [--epochs 30]

writes frontend.tflite, model.tflite (int8), labels.txt, clips/*.wav (one
held-out clip per class), results.json, and data/test_clips.npy (int16
[325, 16000], the held-out clips; not committed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import wave
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "kws_cnn"))
sys.path.insert(0, str(HERE.parent.parent))

import make_dataset  # noqa: E402
import train as kws_train  # noqa: E402

from tinygen.convert.frontend import FrontendParams, build_frontend  # noqa: E402
from tinygen.convert.pipeline import build_pipeline, clip_features  # noqa: E402

# 16 kHz, 30/20 ms, 40 channels 125..7500 Hz, int8 26/255 zp -128; noise
# reduction and PCAN off: their noise estimate starts at zero in every 1 s
# clip and is still settling when the word comes (a model trained with them on
# held it out at 38% on new voices, float; see README)
FRONTEND = FrontendParams(noise_reduction=False, pcan=False)
FRAMES = 49
CALIB_SAMPLES = 160


def to_int16(clip: np.ndarray) -> np.ndarray:
    """[-1, 1] float audio as a 16-bit microphone gives it."""
    return np.clip(np.round(np.asarray(clip) * 32767.0), -32768, 32767).astype(np.int16)


class Featurizer:
    """clip (float, [-1, 1]) -> float32 [49, 40]: the dequantized int8 window the
    model sees after the clip.  One interpreter per thread."""

    def __init__(self, frontend: bytes):
        self.frontend = frontend
        self.local = threading.local()

    def __call__(self, clip: np.ndarray) -> np.ndarray:
        from tinygen.reference import TflmReference
        if not hasattr(self.local, "ref"):
            self.local.ref = TflmReference(self.frontend)
        q = clip_features(self.frontend, to_int16(clip), self.local.ref)[-FRAMES:]
        return ((q.astype(np.float32) - FRONTEND.out_zero_point)
                * np.float32(FRONTEND.out_scale)).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(FRONTEND.sample_rate)
        w.writeframes(samples.astype("<i2").tobytes())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--dataset", type=Path, default=HERE / "data" / "dataset_plain.npz")
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    frontend = build_frontend(FRONTEND)
    (args.out / "frontend.tflite").write_bytes(frontend)
    # the dataset's clips through the front end instead of the numpy MFCCs
    make_dataset.mfcc = Featurizer(frontend)
    make_dataset.NUM_CEPS = FRONTEND.channels
    data = make_dataset.load_or_make(args.dataset)
    labels = [str(s) for s in data["labels"]]
    xtr, ytr = data["x_train"], data["y_train"]
    xte, yte = data["x_test"], data["y_test"]
    print(f"train {len(ytr)} clips, test {len(yte)} clips, features {xtr.shape[1:]} "
          f"in {time.time() - t0:.0f} s")

    from tinygen import tfenv
    keras = tfenv.keras()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model = kws_train.build_model(keras, len(labels))
    steps = args.epochs * int(np.ceil(len(ytr) / 64))
    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(3e-3, steps)),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    t1 = time.time()
    for epoch in range(args.epochs):
        hist = model.fit(kws_train.spec_augment(xtr, rng), ytr, epochs=1, batch_size=64,
                         verbose=0, shuffle=True)
        if epoch % 10 == 9 or epoch == args.epochs - 1:
            print(f"epoch {epoch + 1}: loss {hist.history['loss'][0]:.3f} "
                  f"train acc {hist.history['accuracy'][0]:.3f}")
    train_s = time.time() - t1
    float_pred = np.argmax(model.predict(xte, verbose=0), axis=1)
    float_acc = float(np.mean(float_pred == yte))
    print(f"float accuracy on held-out voices: {float_acc:.4f}, trained in {train_s:.0f} s")

    # int8: calibrated on training windows plus one that spans the front end's
    # whole int8 range, so the model's input quantization is the front end's
    from tinygen.convert import convert
    from tinygen.convert.frontend import frames_per_input
    from tinygen.ir import parse_tflite
    from tinygen.load import load_model
    h5 = args.out / "data" / "model.h5"
    h5.parent.mkdir(parents=True, exist_ok=True)
    model.save(h5, include_optimizer=False)
    span = np.zeros((1,) + xtr.shape[1:], np.float32)
    span.reshape(-1)[0] = np.float32((127 - FRONTEND.out_zero_point) * FRONTEND.out_scale)
    calib = np.concatenate([span, xtr[rng.choice(len(xtr), CALIB_SAMPLES, replace=False)]])
    calib_path = args.out / "data" / "calib.npy"
    np.save(calib_path, calib)
    conv = convert(load_model(h5), calib_path)
    frames_per_input(parse_tflite(frontend), conv.ir)      # refuses if they do not fit
    (args.out / "model.tflite").write_bytes(conv.tflite)
    (args.out / "labels.txt").write_text("\n".join(labels) + "\n")

    # int8 accuracy: the model on the held-out windows as the front end gives
    # them (int8, recovered exactly from the dequantized floats)
    from tinygen.reference import TflmReference
    tin = conv.ir.input_tensors()[0]
    q = np.clip(np.round(xte / np.float32(tin.scale)) + tin.zero_point, -128, 127).astype(np.int8)
    ref = TflmReference(conv.tflite)
    int8_pred = np.array([int(np.argmax(ref.run([w[None]])[0])) for w in q])
    int8_acc = float(np.mean(int8_pred == yte))
    print(f"int8 accuracy on held-out voices (tflite_micro interpreter): {int8_acc:.4f}; "
          f"top-1 agreement with float {float(np.mean(int8_pred == float_pred)):.4f}")

    # the same clips as samples, and the joined pipeline on the ones kept as
    # .wav: streamed stride by stride, its answer after the clip is the model's
    make_dataset.mfcc = to_int16
    audio, ya, _ = make_dataset.make_split(
        make_dataset.pick_voices(make_dataset.TEST_LANGS, make_dataset.TEST_VARIANTS, 5, seed=2),
        make_dataset.WORDS, make_dataset.UNKNOWN_WORDS, 2, 1, 1, "test")
    audio = audio[..., 0].astype(np.int16)
    assert np.array_equal(ya, yte)
    pipeline, info, _ = build_pipeline(frontend, conv.tflite)
    pipe = TflmReference(pipeline)
    kept = {}
    for c, name in enumerate(labels):
        idx = np.flatnonzero((yte == c) & (int8_pred == c))
        if not idx.size:
            continue
        clip = audio[idx[0]]
        pipe.reset()
        for k in range(len(clip) // info.stride_samples):
            out = pipe.run([clip[k * info.stride_samples:(k + 1) * info.stride_samples][None]])
        assert int(np.argmax(out[1])) == c, name      # the pipeline answers as the model did
        kept[name] = int(idx[0])
    np.save(args.out / "data" / "test_clips.npy", audio)      # 10 MB: not committed
    np.save(args.out / "data" / "test_labels.npy", yte)
    clips = args.out / "clips"
    clips.mkdir(exist_ok=True)
    for name, i in kept.items():
        write_wav(clips / f"{name.strip('_')}.wav", audio[i])
    results = {
        "labels": labels, "train_clips": int(len(ytr)), "test_clips": int(len(yte)),
        "frontend": FRONTEND.as_dict(), "epochs": args.epochs,
        "train_seconds": round(train_s, 1), "params": int(model.count_params()),
        "float_accuracy": round(float_acc, 4), "int8_accuracy": round(int8_acc, 4),
        "wav_clips_answered_by_the_pipeline": sorted(kept),
        "int8_float_top1_agreement": round(float(np.mean(int8_pred == float_pred)), 4),
        "model_tflite_bytes": len(conv.tflite), "frontend_tflite_bytes": len(frontend),
        "total_seconds": round(time.time() - t0, 1),
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
