"""A microphone front end as a .tflite graph of TFLM's signal ops.

int16 audio (one window of samples) in, int8 features (one frame) out:

    SignalWindow -> RESHAPE -> SignalFftAutoScale -> SignalRfft -> SignalEnergy ->
    SignalFilterBank -> SignalFilterBankSquareRoot ->
    [SignalFilterBankSpectralSubtraction -> [SignalPCAN]] ->
    SignalFilterBankLog -> QUANTIZE (int16 log features -> int8) -> RESHAPE

The tables (Hann window, mel filter bank, PCAN gain curve) follow TensorFlow's
microfrontend (tensorflow/lite/experimental/microfrontend/lib/*_util.c), the
same arithmetic TFLM's signal/python helpers use; the .tflite is the one
definition: the tflite_micro interpreter running it is the reference, and the
device runs the same graph.  Written with the `flatbuffers` package and the
schema Object API that ships with tflite_micro.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import TinygenError

# TFLite TensorType codes (schema.fbs)
_TYPES = {"float32": 0, "int32": 2, "uint8": 3, "bool": 6, "int16": 7, "int8": 9, "uint64": 12,
          "uint32": 15}
_NP = {"int32": np.int32, "int16": np.int16, "int8": np.int8, "uint8": np.uint8,
       "uint64": np.uint64, "uint32": np.uint32, "float32": np.float32}

_WINDOW_SHIFT = 12                 # Hann weights in Q12, as the microfrontend
_FILTERBANK_BITS = 12              # filter bank weights in Q12
_FILTERBANK_ALIGNMENT = 4          # bytes; index alignment = 4 / sizeof(int16)
_FILTERBANK_BLOCK = 4
_SPECTRAL_SUBTRACTION_BITS = 14
_PCAN_SNR_BITS = 12
_WIDE_DYNAMIC_BITS = 32
# The int16 log features mean log(energy) * 64; this scale gives them the
# microfrontend's float convention (value * 10 / 256), so the int8 scale below
# is in the same unit as TensorFlow's audio_microfrontend output.
_LOG_SCALE_SHIFT = 6
_LOG_FEATURE_SCALE = 10.0 / 256.0
# .tflite metadata entry: JSON with the sample rate, window and stride, which
# the graph itself cannot say (pipelines frame the audio with them)
METADATA_NAME = "tinygen_frontend"


@dataclass(frozen=True)
class FrontendParams:
    sample_rate: int = 16000
    window_ms: float = 30.0
    stride_ms: float = 20.0
    channels: int = 40
    lower_hz: float = 125.0
    upper_hz: float = 7500.0
    noise_reduction: bool = True
    pcan: bool = True
    smoothing_bits: int = 10
    even_smoothing: float = 0.025
    odd_smoothing: float = 0.06
    min_signal_remaining: float = 0.05
    pcan_strength: float = 0.95
    pcan_offset: float = 80.0
    pcan_gain_bits: int = 21
    log_correction_bits: int = 3
    out_scale: float = 26.0 / 255.0  # int8 features, as micro_speech's model input
    out_zero_point: int = -128

    @property
    def window_samples(self) -> int:
        return int(round(self.sample_rate * self.window_ms / 1000.0))

    @property
    def stride_samples(self) -> int:
        return int(round(self.sample_rate * self.stride_ms / 1000.0))

    @property
    def fft_length(self) -> int:
        return 1 << max(1, (self.window_samples - 1).bit_length())

    def check(self) -> None:
        """One line for parameters the graph cannot be built from."""
        if not 1000 <= self.sample_rate <= 192000:
            raise TinygenError(f"frontend: sample rate {self.sample_rate} Hz is outside "
                               "1000..192000")
        if self.window_samples < 16 or self.window_samples > 4096:
            raise TinygenError(f"frontend: a {self.window_ms} ms window is "
                               f"{self.window_samples} samples; use 16..4096")
        if not 0 < self.stride_samples <= self.window_samples:
            raise TinygenError(f"frontend: stride {self.stride_ms} ms must be positive and at "
                               f"most the window ({self.window_ms} ms)")
        if not 1 <= self.channels <= 256:
            raise TinygenError(f"frontend: {self.channels} mel channels; use 1..256")
        nyquist = self.sample_rate / 2
        if not 0 <= self.lower_hz < self.upper_hz <= nyquist:
            raise TinygenError(
                f"frontend: frequency range {self.lower_hz:g}..{self.upper_hz:g} Hz must be "
                f"increasing and within 0..{nyquist:g} Hz (half the sample rate)")
        if self.pcan and not self.noise_reduction:
            raise TinygenError("frontend: PCAN needs noise reduction (it divides by the noise "
                               "estimate SignalFilterBankSpectralSubtraction produces)")
        if not (self.out_scale > 0 and math.isfinite(self.out_scale)):
            raise TinygenError(f"frontend: output scale {self.out_scale} must be positive")
        if not -128 <= self.out_zero_point <= 127:
            raise TinygenError(f"frontend: output zero point {self.out_zero_point} is outside "
                               "the int8 range")

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(window_samples=self.window_samples, stride_samples=self.stride_samples,
                 fft_length=self.fft_length)
        return d


# ---------------------------------------------------------------------------
# tables (microfrontend arithmetic)


def hann_weights(n: int) -> np.ndarray:
    arg = 2.0 * math.pi / n
    w = [0.5 - 0.5 * math.cos(arg * (i + 0.5)) for i in range(n)]
    return np.array([math.floor(v * (1 << _WINDOW_SHIFT) + 0.5) for v in w], np.int16)


def _mel(freq: float) -> float:
    return 1127.0 * math.log1p(freq / 700.0)


@dataclass
class FilterBank:
    start_index: int
    end_index: int
    weights: np.ndarray
    unweights: np.ndarray
    freq_starts: np.ndarray
    weight_starts: np.ndarray
    widths: np.ndarray


def filter_bank(p: FrontendParams) -> FilterBank:
    """microfrontend's FilterbankPopulateState: channel 0 is the scratch channel
    the kernel discards, so every table has channels + 1 entries."""
    spectrum_size = p.fft_length // 2 + 1
    n = p.channels + 1
    index_alignment = _FILTERBANK_ALIGNMENT // 2
    mel_low, mel_hi = _mel(p.lower_hz), _mel(p.upper_hz)
    spacing = (mel_hi - mel_low) / n
    centers = [mel_low + spacing * (i + 1) for i in range(n)]
    hz_per_sbin = 0.5 * p.sample_rate / (spectrum_size - 1)
    start_index = int(1.5 + p.lower_hz / hz_per_sbin)
    freq_starts, weight_starts, widths = [0] * n, [0] * n, [0] * n
    actual_starts, actual_widths = [0] * n, [0] * n
    chan_start, weight_index, needs_zeros = start_index, 0, False
    for chan in range(n):
        freq = chan_start
        while freq < spectrum_size and _mel(freq * hz_per_sbin) <= centers[chan]:
            freq += 1
        width = freq - chan_start
        actual_starts[chan], actual_widths[chan] = chan_start, width
        if width == 0:
            # an empty channel multiplies a block of zero weights at the front
            freq_starts[chan], weight_starts[chan], widths[chan] = 0, 0, _FILTERBANK_BLOCK
            if not needs_zeros:
                needs_zeros = True
                for j in range(chan):
                    weight_starts[j] += _FILTERBANK_BLOCK
                weight_index += _FILTERBANK_BLOCK
        else:
            aligned = (chan_start // index_alignment) * index_alignment
            padded = ((chan_start - aligned + width - 1) // _FILTERBANK_BLOCK + 1) \
                * _FILTERBANK_BLOCK
            freq_starts[chan], weight_starts[chan], widths[chan] = aligned, weight_index, padded
            weight_index += padded
        chan_start = freq
    weights = np.zeros(weight_index, np.int16)
    unweights = np.zeros(weight_index, np.int16)
    end_index = 0
    for chan in range(n):
        freq = actual_starts[chan]
        offset = freq - freq_starts[chan]
        denom = mel_low if chan == 0 else centers[chan - 1]
        for j in range(actual_widths[chan]):
            w = (centers[chan] - _mel(freq * hz_per_sbin)) / (centers[chan] - denom)
            k = weight_starts[chan] + offset + j
            weights[k] = math.floor(w * (1 << _FILTERBANK_BITS) + 0.5)
            unweights[k] = math.floor((1.0 - w) * (1 << _FILTERBANK_BITS) + 0.5)
            freq += 1
        end_index = max(end_index, freq)
    reach = max(fs + w for fs, w in zip(freq_starts, widths))
    if end_index >= spectrum_size or reach > spectrum_size:
        raise TinygenError(
            f"frontend: {p.channels} channels up to {p.upper_hz:g} Hz do not fit a "
            f"{p.fft_length}-point FFT at {p.sample_rate} Hz; lower --upper-hz or --channels")
    if any(w == 0 for w in actual_widths[1:]):
        raise TinygenError(
            f"frontend: {p.channels} mel channels over {p.lower_hz:g}..{p.upper_hz:g} Hz leave "
            f"channels without an FFT bin at {p.fft_length} points; use fewer channels or a "
            "longer window")
    i16 = np.int16
    return FilterBank(start_index, end_index, weights, unweights, np.array(freq_starts, i16),
                      np.array(weight_starts, i16), np.array(widths, i16))


def pcan_gain_lut(p: FrontendParams) -> tuple[np.ndarray, int]:
    """microfrontend's PcanGainControlPopulateState: (gain LUT, snr_shift)."""
    input_bits = p.smoothing_bits - p.log_correction_bits

    def gain(x: int) -> int:
        xf = np.float32(x) / np.float32(2.0 ** input_bits)
        g = np.float32(2.0 ** p.pcan_gain_bits) * np.power(
            np.float32(xf + np.float32(p.pcan_offset)), np.float32(-p.pcan_strength))
        return 32767 if g > 32767 else int(np.float32(g + np.float32(0.5)))

    lut = np.zeros(4 * _WIDE_DYNAMIC_BITS - 3, np.int16)
    lut[0], lut[1] = gain(0), gain(1)
    for interval in range(2, _WIDE_DYNAMIC_BITS + 1):
        x0 = 1 << (interval - 1)
        x1 = x0 + (x0 >> 1)
        x2 = x0 + (x0 - 1) if interval == _WIDE_DYNAMIC_BITS else 2 * x0
        y0, y1, y2 = gain(x0), gain(x1), gain(x2)
        a1 = 4 * (y1 - y0) - (y2 - y0)
        a2 = (y2 - y0) - a1
        base = 4 * interval - 6
        lut[base:base + 3] = np.array([y0, a1, a2], np.int64).astype(np.int16)
    return lut, p.pcan_gain_bits - p.log_correction_bits - _PCAN_SNR_BITS


# ---------------------------------------------------------------------------
# the graph


def _flexbuffer_map(values: dict) -> bytes:
    """Custom options: a FlexBuffer map; the kernels read its values by index
    in key order, which the builder sorts."""
    from flatbuffers import flexbuffers
    b = flexbuffers.Builder()
    with b.Map():
        for key, value in values.items():
            if isinstance(value, bool):
                b.Bool(key, value)
            else:
                b.Int(key, int(value))
    return bytes(b.Finish())


class _Graph:
    """A one-subgraph .tflite under construction (the audio and the image front
    ends are both written through it)."""

    def __init__(self):
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s
        self.s = s
        self.tensors: list = []
        self.ops: list = []
        self.codes: dict = {}
        self.buffers = [s.BufferT()]

    def tensor(self, name, shape, dtype, data=None, scale=None, zp=0, axis=0) -> int:
        """scale: one float (per tensor) or a list (per channel along `axis`)."""
        s = self.s
        t = s.TensorT()
        t.name, t.shape, t.type = name, [int(d) for d in shape], _TYPES[dtype]
        buf = s.BufferT()
        if data is not None:
            arr = np.ascontiguousarray(np.asarray(data, _NP[dtype]).reshape(shape))
            buf.data = np.frombuffer(arr.tobytes(), np.uint8).copy()
        t.buffer = len(self.buffers)
        self.buffers.append(buf)
        if scale is not None:
            q = s.QuantizationParametersT()
            if isinstance(scale, (list, tuple, np.ndarray)):
                q.scale, q.zeroPoint = [float(v) for v in scale], [int(zp)] * len(scale)
                q.quantizedDimension = axis
            else:
                q.scale, q.zeroPoint = [float(scale)], [int(zp)]
            t.quantization = q
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(self, code, inputs, outputs, options: dict | None = None,
           builtin: tuple[str, object] | None = None) -> None:
        """options: a custom op's FlexBuffer map; builtin: (the BuiltinOptions
        member's name, its object-API options) for a builtin op."""
        s = self.s
        if code not in self.codes:
            oc = s.OperatorCodeT()
            if code.startswith("Signal"):
                oc.builtinCode = oc.deprecatedBuiltinCode = s.BuiltinOperator.CUSTOM
                oc.customCode = code
            else:
                oc.builtinCode = oc.deprecatedBuiltinCode = getattr(s.BuiltinOperator, code)
            oc.version = 1
            self.codes[code] = oc
        o = s.OperatorT()
        o.opcodeIndex = list(self.codes).index(code)
        o.inputs, o.outputs = list(inputs), list(outputs)
        if options is not None:
            o.customOptions = np.frombuffer(_flexbuffer_map(options), np.uint8).copy()
            o.customOptionsFormat = s.CustomOptionsFormat.FLEXBUFFERS
        if builtin is not None:
            o.builtinOptionsType = getattr(s.BuiltinOptions, builtin[0])
            o.builtinOptions = builtin[1]
        self.ops.append(o)

    def build(self, inputs, outputs, description: str, metadata: dict | None = None) -> bytes:
        import json

        import flatbuffers
        s = self.s
        m = s.ModelT()
        m.version, m.description = 3, description
        m.buffers, m.operatorCodes = self.buffers, list(self.codes.values())
        if metadata is not None:
            md = s.MetadataT()
            md.name, md.buffer = METADATA_NAME, len(self.buffers)
            buf = s.BufferT()
            buf.data = np.frombuffer(json.dumps(metadata).encode(), np.uint8).copy()
            m.buffers = self.buffers + [buf]
            m.metadata = [md]
        sg = s.SubGraphT()
        sg.tensors, sg.operators, sg.name = self.tensors, self.ops, "frontend"
        sg.inputs, sg.outputs = list(inputs), list(outputs)
        m.subgraphs = [sg]
        b = flatbuffers.Builder(4096)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def build_frontend(p: FrontendParams) -> bytes:
    """The front end's .tflite: input int16 [1, window_samples], output int8 [1, channels]."""
    p.check()
    g = _Graph()
    n, fft, ch = p.window_samples, p.fft_length, p.channels
    bins = fft // 2 + 1
    fb = filter_bank(p)

    # [1, n] like every model tinygen takes (axis 0 is the batch for sample files
    # and vectors); FftAutoScale wants one axis, hence the RESHAPE.
    audio = g.tensor("audio", [1, n], "int16")
    weights = g.tensor("window_weights", [n], "int16", hann_weights(n))
    windowed2 = g.tensor("windowed_2d", [1, n], "int16")
    g.op("SignalWindow", [audio, weights], [windowed2], {"shift": _WINDOW_SHIFT})
    windowed = g.tensor("windowed", [n], "int16")
    g.op("RESHAPE", [windowed2, g.tensor("shape_1d", [1], "int32", [n])], [windowed])
    scaled = g.tensor("fft_input", [n], "int16")
    scale_bits = g.tensor("fft_scale_bits", [], "int32")
    g.op("SignalFftAutoScale", [windowed], [scaled, scale_bits])
    spectrum = g.tensor("spectrum", [2 * bins], "int16")
    g.op("SignalRfft", [scaled], [spectrum], {"T": _TYPES["int16"], "fft_length": fft})
    energy = g.tensor("energy", [bins], "uint32")
    g.op("SignalEnergy", [spectrum], [energy],
         {"end_index": fb.end_index, "start_index": fb.start_index})
    tables = [g.tensor(name, [len(arr)], "int16", arr) for name, arr in (
        ("fb_weights", fb.weights), ("fb_unweights", fb.unweights),
        ("fb_freq_starts", fb.freq_starts), ("fb_weight_starts", fb.weight_starts),
        ("fb_widths", fb.widths))]
    mel = g.tensor("filter_bank", [ch], "uint64")
    g.op("SignalFilterBank", [energy] + tables, [mel], {"num_channels": ch})
    root = g.tensor("filter_bank_sqrt", [ch], "uint32")
    g.op("SignalFilterBankSquareRoot", [mel, scale_bits], [root])
    x = root
    if p.noise_reduction:
        one = 1 << _SPECTRAL_SUBTRACTION_BITS
        even = int(p.even_smoothing * one)
        odd = int(p.odd_smoothing * one)
        reduced = g.tensor("noise_reduced", [ch], "uint32")
        noise = g.tensor("noise_estimate", [ch], "uint32")
        g.op("SignalFilterBankSpectralSubtraction", [x], [reduced, noise], {
            "alternate_one_minus_smoothing": one - odd, "alternate_smoothing": odd,
            "clamping": False,
            "min_signal_remaining": int(p.min_signal_remaining * one),
            "num_channels": ch, "one_minus_smoothing": one - even, "smoothing": even,
            "smoothing_bits": p.smoothing_bits,
            "spectral_subtraction_bits": _SPECTRAL_SUBTRACTION_BITS})
        x = reduced
        if p.pcan:
            lut, snr_shift = pcan_gain_lut(p)
            gain = g.tensor("pcan_gain_lut", [len(lut)], "int16", lut)
            normalized = g.tensor("pcan", [ch], "uint32")
            g.op("SignalPCAN", [x, noise, gain], [normalized], {"snr_shift": snr_shift})
            x = normalized
    logs = g.tensor("log_features", [ch], "int16", scale=_LOG_FEATURE_SCALE, zp=0)
    g.op("SignalFilterBankLog", [x], [logs], {
        "input_correction_bits": p.log_correction_bits, "output_scale": 1 << _LOG_SCALE_SHIFT})
    flat = g.tensor("features_1d", [ch], "int8", scale=p.out_scale, zp=p.out_zero_point)
    g.op("QUANTIZE", [logs], [flat])
    features = g.tensor("features", [1, ch], "int8", scale=p.out_scale, zp=p.out_zero_point)
    g.op("RESHAPE", [flat, g.tensor("shape_2d", [2], "int32", [1, ch])], [features])
    desc = (f"tinygen front end: {p.sample_rate} Hz, {p.window_ms:g}/{p.stride_ms:g} ms, "
            f"{ch} mel channels {p.lower_hz:g}-{p.upper_hz:g} Hz, "
            f"noise reduction {'on' if p.noise_reduction else 'off'}, "
            f"PCAN {'on' if p.pcan else 'off'}")
    meta = {k: v for k, v in p.as_dict().items()}
    return g.build([audio], [features], desc, metadata=meta)


def make_frontend(p: FrontendParams):
    """The front end's bytes and IR, checked like any model tinygen takes and
    run once (one silent window) by the tflite_micro interpreter, its reference."""
    from ..reference import TflmReference
    from . import check_full_int8, parse_checked
    tflite = build_frontend(p)
    ir = parse_checked(tflite, "the front end")
    check_full_int8(ir, "the front end")
    TflmReference(tflite).run([np.zeros((1, p.window_samples), np.int16)])
    return tflite, ir


def _describe(t) -> str:
    q = f", scale {t.scale:.6g} zp {t.zero_point}" if t.quant else ""
    return f"{t.dtype} {list(t.shape)}{q}"


def feeding_tensors(frontend, model, output: str) -> tuple:
    """(the front end's one output, the model's one input, the two described
    for a refusal); TinygenError unless each has exactly one."""
    if len(frontend.outputs) != 1:
        raise TinygenError(f"the front end has {len(frontend.outputs)} outputs; it needs one "
                           f"({output})")
    if len(model.inputs) != 1:
        raise TinygenError(f"the model has {len(model.inputs)} inputs; a front end feeds one")
    f, m = frontend.output_tensors()[0], model.input_tensors()[0]
    return f, m, f"({_describe(f)})", f"the model's input '{m.name}' ({_describe(m)})"


def frames_per_input(frontend, model) -> int:
    """How many front-end frames make the model's input window; TinygenError,
    one line naming what differs, when the features cannot feed the model.

    The features are stacked frame after frame, so the model's input must be
    frames x features with the features innermost (size-1 axes ignored:
    [1, 49, 40, 1] is 49 frames of 40), or flat ([1, 1960] is 49 frames of 40)."""
    f, m, fd, md = feeding_tensors(frontend, model, "the features of a frame")
    what = f"the front end's features {fd} do not fit {md}"
    if f.dtype != m.dtype:
        raise TinygenError(f"{what}: type {f.dtype} vs {m.dtype}")
    if f.scale != m.scale and abs(f.scale - m.scale) > 1e-6 * max(abs(m.scale), 1e-30):
        raise TinygenError(f"{what}: scale {f.scale:.6g} vs {m.scale:.6g} (make the front end "
                           f"with --out-scale {m.scale:.9g})")
    if f.zero_point != m.zero_point:
        raise TinygenError(f"{what}: zero point {f.zero_point} vs {m.zero_point} (make the "
                           f"front end with --out-zero-point {m.zero_point})")
    feats = [int(d) for d in f.shape if int(d) != 1]
    dims = [int(d) for d in m.shape if int(d) != 1]
    if len(dims) == 1 and len(feats) == 1 and dims[0] % feats[0] == 0:
        return dims[0] // feats[0]          # a flat input: the frames stacked end to end
    k = len(dims) - len(feats)
    if k < 0 or dims[k:] != feats:
        raise TinygenError(f"{what}: the model's innermost axes {dims[max(k, 0):]} are not "
                           f"the front end's {feats} features of a frame")
    return int(np.prod(dims[:k])) if k else 1
