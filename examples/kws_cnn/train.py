"""Train the keyword-spotting DS-CNN on the espeak-ng dataset and check it through tinygen.

    python examples/kws_cnn/train.py

1. makes (or reads) the dataset with make_dataset.py (examples/kws_cnn/data/, not committed)
2. trains a small DS-CNN on the 49x10x1 MFCCs (12 classes), a few minutes on a CPU
3. reports float accuracy on the held-out voices
4. converts it with tinygen to full-int8 TFLite (calibration: calib.npy) and runs
   the int8 model on the tflite_micro interpreter (the firmware's bit-exact
   reference) over the same held-out clips
5. writes model.h5, calib.npy, test.npz (x, y), test_x.npy (x only, for
   `tinygen verify --data`), labels.txt and results.json next to this file
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
sys.path.insert(0, str(HERE.parent.parent))

import make_dataset  # noqa: E402

CHANNELS = 48
CALIB_SAMPLES = 160
TEST_SAMPLES = 325


def build_model(keras, num_classes: int, ch: int = CHANNELS):
    """DS-CNN (as in 'Hello Edge' / MLPerf Tiny KWS) with `ch` channels."""
    L = keras.layers
    inp = keras.Input((make_dataset.NUM_FRAMES, make_dataset.NUM_CEPS, 1), name="mfcc")
    x = L.Conv2D(ch, (10, 4), strides=(2, 2), padding="same", use_bias=False)(inp)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    for _ in range(4):
        x = L.DepthwiseConv2D((3, 3), padding="same", use_bias=False)(x)
        x = L.BatchNormalization()(x)
        x = L.ReLU()(x)
        x = L.Conv2D(ch, (1, 1), use_bias=False)(x)
        x = L.BatchNormalization()(x)
        x = L.ReLU()(x)
    x = L.Dropout(0.2)(x)
    x = L.AveragePooling2D(pool_size=x.shape[1:3])(x)
    x = L.Flatten()(x)
    x = L.Dense(num_classes)(x)
    out = L.Softmax()(x)
    return keras.Model(inp, out, name="kws_ds_cnn")


def spec_augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random time shift by up to 3 frames and one masked band of up to 6 frames."""
    x = x.copy()
    for i in range(len(x)):
        x[i] = np.roll(x[i], rng.integers(-3, 4), axis=0)
        if rng.random() < 0.5:
            t0 = rng.integers(0, x.shape[1] - 6)
            x[i, t0:t0 + rng.integers(1, 7)] = x[i].mean(axis=0)
    return x


def per_voice_accuracy(pred, y, voices):
    out = {}
    for v in sorted(set(voices)):
        m = voices == v
        out[str(v)] = round(float(np.mean(pred[m] == y[m])), 4)
    return out


def per_lang_accuracy(pred, y, voices):
    langs = np.array([v.split("+")[0] for v in voices])
    return per_voice_accuracy(pred, y, langs)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--dataset", type=Path, default=make_dataset.DEFAULT_OUT)
    ap.add_argument("--out", type=Path, default=HERE, help="where model.h5 etc. are written")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    t0 = time.time()
    data = make_dataset.load_or_make(args.dataset)
    labels = [str(s) for s in data["labels"]]
    xtr, ytr = data["x_train"], data["y_train"]
    xte, yte, vte = data["x_test"], data["y_test"], data["voice_test"]
    print(f"train {len(ytr)} clips, test {len(yte)} clips on {len(set(vte))} held-out voices")

    from tinygen import tfenv
    keras = tfenv.keras()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model = build_model(keras, len(labels))
    steps = args.epochs * int(np.ceil(len(ytr) / 64))
    lr = keras.optimizers.schedules.CosineDecay(3e-3, steps)
    model.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    t1 = time.time()
    for epoch in range(args.epochs):
        hist = model.fit(spec_augment(xtr, rng), ytr, epochs=1, batch_size=64, verbose=0,
                         shuffle=True)
        if epoch % 10 == 9 or epoch == args.epochs - 1:
            print(f"epoch {epoch + 1}: loss {hist.history['loss'][0]:.3f} "
                  f"train acc {hist.history['accuracy'][0]:.3f}")
    train_s = time.time() - t1
    float_pred = np.argmax(model.predict(xte, verbose=0), axis=1)
    float_acc = float(np.mean(float_pred == yte))
    print(f"float accuracy on held-out voices: {float_acc:.4f} ({len(yte)} clips), "
          f"trained in {train_s:.0f} s")

    model_path = args.out / "model.h5"
    model.save(model_path, include_optimizer=False)
    calib_idx = rng.choice(len(xtr), CALIB_SAMPLES, replace=False)
    np.save(args.out / "calib.npy", xtr[calib_idx].astype(np.float32))
    np.savez(args.out / "test.npz", x=xte[:TEST_SAMPLES].astype(np.float32),
             y=yte[:TEST_SAMPLES].astype(np.int64))
    np.save(args.out / "test_x.npy", xte[:TEST_SAMPLES].astype(np.float32))
    (args.out / "labels.txt").write_text("\n".join(labels) + "\n")

    # int8 through tinygen, run on the tflite_micro interpreter
    from tinygen.convert import convert, quantize
    from tinygen.load import load_model
    from tinygen.reference import TflmReference
    conv = convert(load_model(model_path), args.out / "calib.npy")
    tin, tout = conv.ir.input_tensors()[0], conv.ir.output_tensors()[0]
    ref = TflmReference(conv.tflite)
    int8_pred = np.array([int(np.argmax(ref.run([quantize(x[None], tin)])[0]))
                          for x in xte])
    int8_acc = float(np.mean(int8_pred == yte))
    agree = float(np.mean(int8_pred == float_pred))
    print(f"int8 accuracy on held-out voices (TFLM interpreter): {int8_acc:.4f}; "
          f"top-1 agreement with float {agree:.4f}")
    print(conv.report.summary())

    confusion = np.zeros((len(labels), len(labels)), np.int64)
    np.add.at(confusion, (yte, int8_pred), 1)
    results = {
        "labels": labels,
        "train_clips": int(len(ytr)), "test_clips": int(len(yte)),
        "train_voices": int(len(set(data["voice_train"]))), "test_voices": int(len(set(vte))),
        "test_languages": sorted({v.split("+")[0] for v in vte}),
        "params": int(model.count_params()),
        "epochs": args.epochs, "train_seconds": round(train_s, 1),
        "float_accuracy": round(float_acc, 4),
        "int8_accuracy": round(int8_acc, 4),
        "int8_float_top1_agreement": round(agree, 4),
        "int8_accuracy_per_language": per_lang_accuracy(int8_pred, yte, vte),
        "float_accuracy_per_language": per_lang_accuracy(float_pred, yte, vte),
        "int8_confusion_rows_true_cols_pred": confusion.tolist(),
        "tflite_bytes": len(conv.tflite),
        "input_quantization": {"scale": float(tin.scale), "zero_point": int(tin.zero_point)},
        "model_h5_bytes": model_path.stat().st_size,
        "total_seconds": round(time.time() - t0, 1),
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {model_path} ({results['model_h5_bytes']:,} B), calib.npy, test.npz, "
          f"test_x.npy, labels.txt, results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
