"""TFLM's signal library: the custom ops an audio front end is built from.

A front end takes int16 audio and computes with int16/int32/uint32/uint64
tensors between these ops; every stage that would otherwise insist on a
full-int8 model asks `is_frontend` first.
"""

from __future__ import annotations

from .model import Model

# custom code -> the TFLM MicroMutableOpResolver method that registers it
# (micro_mutable_op_resolver.h: AddWindow() is AddCustom("SignalWindow",
# tflite::tflm_signal::Register_WINDOW()), and so on)
SIGNAL_OPS = {
    "SignalDelay": "AddDelay",
    "SignalEnergy": "AddEnergy",
    "SignalFftAutoScale": "AddFftAutoScale",
    "SignalFilterBank": "AddFilterBank",
    "SignalFilterBankLog": "AddFilterBankLog",
    "SignalFilterBankSpectralSubtraction": "AddFilterBankSpectralSubtraction",
    "SignalFilterBankSquareRoot": "AddFilterBankSquareRoot",
    "SignalFramer": "AddFramer",
    "SignalIrfft": "AddIrfft",
    "SignalOverlapAdd": "AddOverlapAdd",
    "SignalPCAN": "AddPCAN",
    "SignalRfft": "AddRfft",
    "SignalStacker": "AddStacker",
    "SignalWindow": "AddWindow",
}

# what a front end's input and outputs may be
FRONTEND_INPUT_DTYPES = ("int16",)
FRONTEND_OUTPUT_DTYPES = ("int8", "int16")


def signal_ops(model: Model) -> list[str]:
    """The model's signal ops, in first-use order."""
    return [name for name in model.op_names() if name in SIGNAL_OPS]


def is_frontend(model: Model) -> bool:
    return bool(signal_ops(model))


def is_image_frontend(model: Model) -> bool:
    """A camera front end (or a pipeline starting with one): raw uint8 frames
    [1, H, W, bytes per pixel] in, int8 out (`tinygen frontend --image`)."""
    ins = model.input_tensors()
    return bool(ins) and all(t.dtype == "uint8" and len(t.shape) == 4 for t in ins) \
        and all(t.dtype == "int8" for t in model.output_tensors())
