"""Train the LSTM autoencoder on healthy vibration and score faults, float and int8.

Model: LSTM(16) encoder -> RepeatVector(64) -> LSTM(16, return_sequences)
-> TimeDistributed(Dense(3)), trained to reconstruct normal windows only.
Anomaly score = mean squared reconstruction error of a window.  Reports the
ROC AUC of normal vs each fault type and overall for the float Keras model and
for the int8 model tinygen makes (tinygen.convert, run on TFLM, the bit-exact
reference of the firmware), and writes model.h5 and results.json.

Run from the repository root:  python3 examples/lstm_anomaly/train.py
(make_data.py is run first if its outputs are missing).  About two minutes on
two CPU cores.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import make_data  # noqa: E402

UNITS = 16
EPOCHS = 60


def roc_auc(scores_neg: np.ndarray, scores_pos: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counting one half.

    The Mann-Whitney U statistic from average ranks: equal to the area under
    the ROC curve.
    """
    neg = np.asarray(scores_neg, np.float64).ravel()
    pos = np.asarray(scores_pos, np.float64).ravel()
    if neg.size == 0 or pos.size == 0:
        raise ValueError("roc_auc needs at least one negative and one positive score")
    allv = np.concatenate([neg, pos])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(allv.size, np.float64)
    sorted_v = allv[order]
    # average rank (1-based) over each run of equal values
    starts = np.r_[0, np.nonzero(np.diff(sorted_v))[0] + 1]
    ends = np.r_[starts[1:], sorted_v.size]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = 0.5 * (s + 1 + e)
    u = ranks[neg.size:].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (neg.size * pos.size))


def auc_table(scores: np.ndarray, kind: np.ndarray) -> dict:
    normal = scores[kind == 0]
    table = {name: roc_auc(normal, scores[kind == k])
             for k, name in enumerate(make_data.KINDS) if k > 0}
    table["overall"] = roc_auc(normal, scores[kind > 0])
    return table


def build(keras):
    L = keras.layers
    return keras.Sequential([
        keras.Input((make_data.WINDOW, make_data.AXES), name="vibration"),
        L.LSTM(UNITS, name="encoder"),
        L.RepeatVector(make_data.WINDOW, name="repeat"),
        L.LSTM(UNITS, return_sequences=True, name="decoder"),
        L.TimeDistributed(L.Dense(make_data.AXES), name="reconstruction"),
    ], name="lstm_autoencoder")


def window_mse(x: np.ndarray, recon: np.ndarray) -> np.ndarray:
    return np.mean((x.reshape(len(x), -1) - recon.reshape(len(x), -1)) ** 2, axis=1)


def int8_scores(tflite: bytes, x: np.ndarray) -> np.ndarray:
    from tinygen.convert import dequantize, quantize
    from tinygen.ir import parse_tflite
    from tinygen.reference import TflmReference
    ir = parse_tflite(tflite)
    tin, tout = ir.input_tensors()[0], ir.output_tensors()[0]
    ref = TflmReference(tflite)
    recon = []
    for w in x:
        ref.reset()                          # LSTM state persists between invocations
        (q,) = ref.run([quantize(w[None], tin)])
        recon.append(dequantize(q, tout).reshape(w.shape))
    return window_mse(x, np.stack(recon))


def main():
    t0 = time.time()
    if not (HERE / "train.npy").exists() or not (HERE / "test.npz").exists():
        make_data.main()
    train = np.load(HERE / "train.npy")
    test = np.load(HERE / "test.npz")
    x, kind = test["x"], test["kind"]

    from tinygen import tfenv
    keras = tfenv.keras()
    keras.utils.set_random_seed(3)
    model = build(keras)
    model.compile(keras.optimizers.Adam(3e-3), "mse")
    n_val = len(train) // 10
    hist = model.fit(train[n_val:], train[n_val:], validation_data=(train[:n_val], train[:n_val]),
                     epochs=EPOCHS, batch_size=64, verbose=2,
                     callbacks=[keras.callbacks.ReduceLROnPlateau(patience=3, factor=0.5)])
    t_train = time.time() - t0
    model.save(HERE / "model.h5", include_optimizer=False)

    float_scores = window_mse(x, model.predict(x, batch_size=100, verbose=0))
    float_auc = auc_table(float_scores, kind)

    from tinygen.convert import convert
    from tinygen.load import load_model
    t1 = time.time()
    conv = convert(load_model(HERE / "model.h5"), HERE / "calib.npy")
    t_convert = time.time() - t1
    t2 = time.time()
    q_scores = int8_scores(conv.tflite, x)
    t_int8 = time.time() - t2
    int8_auc = auc_table(q_scores, kind)

    results = {
        "model": "LSTM(16) -> RepeatVector(64) -> LSTM(16) -> TimeDistributed(Dense(3))",
        "params": int(model.count_params()),
        "train_windows": int(len(train) - n_val),
        "epochs": EPOCHS,
        "val_mse": float(hist.history["val_loss"][-1]),
        "test_windows": {name: int(np.sum(kind == k)) for k, name in enumerate(make_data.KINDS)},
        "roc_auc": {"float": float_auc, "int8": int8_auc},
        "mean_score": {
            "float": {name: float(np.mean(float_scores[kind == k]))
                      for k, name in enumerate(make_data.KINDS)},
            "int8": {name: float(np.mean(q_scores[kind == k]))
                     for k, name in enumerate(make_data.KINDS)},
        },
        "int8_vs_float_score_correlation": float(np.corrcoef(float_scores, q_scores)[0, 1]),
        "tflite_bytes": len(conv.tflite),
        "int8_ops": [op.opcode for op in conv.ir.operators],
        "seconds": {"train": round(t_train, 1), "convert": round(t_convert, 1),
                    "int8_scoring_tflm": round(t_int8, 1)},
    }
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"ROC AUC ({len(x)} test windows)    float   int8")
    for name in list(float_auc):
        print(f"  {name:<12s}                 {float_auc[name]:.3f}   {int8_auc[name]:.3f}")
    print(f"train {t_train:.0f} s, convert {t_convert:.0f} s, int8 scoring {t_int8:.0f} s")


if __name__ == "__main__":
    main()
