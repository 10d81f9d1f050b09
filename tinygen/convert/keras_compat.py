"""Keras 3 -> legacy tf_keras translation, so recurrent models convert to fused int8 ops.

Why this exists
---------------
With TF 2.21 / Keras 3 the TFLite converter cannot convert a Keras 3 LSTM: its
``while`` loop over TensorList ops fails to legalize (``from_keras_model``,
SavedModel export) or, traced with a fixed batch and frozen, becomes a
``WHILE`` subgraph on which the int8 calibrator *segfaults* (the whole Python
process dies; the same happens to GRU and SimpleRNN in either Keras).
Legacy Keras 2 (``tf_keras``) LSTM layers run through a tf.function carrying
the ``api_implements="lstm_<uuid>"`` attribute, which the converter's
composite-function pass fuses into ``UNIDIRECTIONAL_SEQUENCE_LSTM``.

So a Keras 3 model with recurrent layers is rebuilt as an equivalent tf_keras
model, layer by layer from its config, and the weights are copied over; the
float outputs are the same to float32 rounding.  GRU / SimpleRNN (and LSTMs
whose options rule the fused kernel out) have no fused TFLite op: they are
rebuilt with ``unroll=True`` so the converter sees straight-line ops instead of
a WHILE loop (needs a fixed number of time steps).

The contract with the convert stage
-----------------------------------
::

    if keras_compat.needs_legacy_conversion(model):
        model = keras_compat.to_tf_keras(model)        # raises TranslationError
    conv = keras_compat.tflite_converter(model, batch=1)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = ...                  # yields [float32 (1, ...)] lists
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    tflite = conv.convert()

``tflite_converter`` picks the one conversion route that works for each kind
of model (see its docstring): a tf_keras model must go through
``from_concrete_functions([cf], model)`` *with* the model as trackable object
(the SavedModel lowering keeps ``api_implements``; freezing the function
inlines it and loses the fusion), a Keras 3 model through the frozen route
(its variables stay as READ_VARIABLE ops on the SavedModel route and
calibration fails).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "TranslationError",
    "UnsupportedLayerError",
    "is_tf_keras_model",
    "needs_legacy_conversion",
    "recurrent_layers",
    "to_tf_keras",
    "concrete_function_for",
    "tflite_converter",
]


class TranslationError(ValueError):
    """A Keras 3 model (or one of its layers) has no tf_keras translation.

    The message is one line and names the layer, e.g.
    ``layer 'attn' (MultiHeadAttention): no tf_keras translation for this layer type``.
    """


UnsupportedLayerError = TranslationError   # the same class, by its other name

# Keras 3 class names of recurrent layers (what makes the direct route fail).
_RNN_CLASSES = {"LSTM", "GRU", "SimpleRNN"}
_RECURRENT_CLASSES = _RNN_CLASSES | {"RNN", "Bidirectional", "ConvLSTM1D", "ConvLSTM2D",
                                     "ConvLSTM3D", "StackedRNNCells"}
_REJECTED = {
    "RNN": "generic RNN(cell) layers have no fused TFLite op and lower to a WHILE loop",
    "ConvLSTM1D": "ConvLSTM has no fused TFLite op and lowers to a WHILE loop",
    "ConvLSTM2D": "ConvLSTM has no fused TFLite op and lowers to a WHILE loop",
    "ConvLSTM3D": "ConvLSTM has no fused TFLite op and lowers to a WHILE loop",
    "Lambda": "Lambda layers hold Python code that cannot be translated",
    "TFSMLayer": "a SavedModel wrapped as a layer cannot be translated",
}

# Activations whose tf_keras implementation computes exactly what Keras 3's does
# (checked numerically with TF 2.21 / Keras 3.15 / tf_keras 2.21).  Others
# (hard_sigmoid differs; hard_silu, log_sigmoid, ... are missing) are passed as
# the Keras 3 function itself, which runs on tf tensors with the TF backend.
_SAME_ACTIVATIONS = {
    "elu", "exponential", "gelu", "leaky_relu", "linear", "log_softmax", "mish", "relu",
    "relu6", "selu", "sigmoid", "silu", "softmax", "softplus", "softsign", "swish", "tanh",
}

# Config keys that only matter for training or for other backends.
_DROP_ALWAYS = {"seed", "use_cudnn", "build_config", "compile_config", "dtype"}
_DROP_SUFFIXES = ("_initializer", "_regularizer", "_constraint")
# Keras-3-only keys tf_keras does not know: dropped when they hold the value
# that means "feature off", otherwise the layer cannot be translated.
_DROP_IF_VALUE = {
    "lora_rank": None, "lora_alpha": None, "quantization_config": None,
    "rms_scaling": False, "zero_output_for_mask": False, "synchronized": False,
    "gradient_checkpointing": False,
}
# Renamed keys: Keras 3 name -> tf_keras name, per class.
_RENAMES = {"LeakyReLU": {"negative_slope": "alpha"}}


# ---------------------------------------------------------------------------
# model inspection


def _keras3():
    import keras
    return keras


def _tf_keras():
    import tf_keras
    return tf_keras


def is_tf_keras_model(model: Any) -> bool:
    """True for a legacy Keras 2 (``tf_keras``) model or layer."""
    return type(model).__module__.startswith("tf_keras.")


def _is_keras3(obj: Any) -> bool:
    mod = type(obj).__module__
    return mod.startswith("keras.") or mod == "keras"


def _sublayers(layer) -> list:
    """Direct children worth walking: nested models' layers and wrapped layers."""
    out = []
    if hasattr(layer, "layers") and isinstance(getattr(layer, "layers", None), list):
        out.extend(layer.layers)
    for attr in ("layer", "forward_layer", "backward_layer"):
        sub = getattr(layer, attr, None)
        if sub is not None and hasattr(sub, "get_config"):
            out.append(sub)
    return out


def _walk(layer):
    yield layer
    for sub in _sublayers(layer):
        yield from _walk(sub)


def recurrent_layers(model) -> list:
    """The recurrent layers of a Keras model at any depth (nested models, wrappers)."""
    return [l for l in _walk(model) if l is not model and type(l).__name__ in _RECURRENT_CLASSES]


def needs_legacy_conversion(model) -> bool:
    """True if ``model`` is a Keras 3 model that must be translated to tf_keras.

    That is the case when it holds any recurrent layer (LSTM, GRU, SimpleRNN,
    Bidirectional, ...): no conversion route of the TF 2.21 converter gives a
    usable int8 model for Keras 3 RNNs.  tf_keras models and Keras 3 models
    without recurrent layers convert directly (see :func:`tflite_converter`).
    """
    if is_tf_keras_model(model) or not _is_keras3(model):
        return False
    return bool(recurrent_layers(model))


# ---------------------------------------------------------------------------
# translation


def _lname(layer) -> str:
    return f"layer '{layer.name}' ({type(layer).__name__})"


def _activation(layer, key: str, value):
    if value is None or (isinstance(value, str) and value in _SAME_ACTIVATIONS):
        return value
    keras = _keras3()
    if keras.backend.backend() != "tensorflow":
        raise TranslationError(
            f"{_lname(layer)}: activation {value!r} needs the TensorFlow Keras backend")
    fn = getattr(layer, key, None)
    if fn is None or not callable(fn):
        raise TranslationError(f"{_lname(layer)}: cannot resolve activation {value!r}")
    return fn   # the Keras 3 function itself: computes on tf tensors


def _lstm_fusable(cfg: dict) -> bool:
    """The conditions under which tf_keras' LSTM takes the fusable (api_implements) path."""
    return (cfg.get("activation") == "tanh" and cfg.get("recurrent_activation") == "sigmoid"
            and cfg.get("use_bias", True) and not cfg.get("recurrent_dropout", 0.0))


def _layer_kwargs(layer, unroll_rnns: bool) -> dict:
    cls = type(layer).__name__
    cfg = dict(layer.get_config())
    kwargs = {}
    renames = _RENAMES.get(cls, {})
    for key, value in cfg.items():
        if key in _DROP_ALWAYS or key.endswith(_DROP_SUFFIXES):
            continue
        if key in ("activation", "recurrent_activation"):
            value = _activation(layer, key, value)
        kwargs[renames.get(key, key)] = value
    if cls in _RNN_CLASSES:
        if cfg.get("stateful"):
            raise TranslationError(f"{_lname(layer)}: stateful RNNs are not supported")
        fused = cls == "LSTM" and _lstm_fusable(cfg)
        kwargs["unroll"] = False if fused else bool(unroll_rnns or cfg.get("unroll"))
    kwargs["dtype"] = "float32"
    return kwargs


def _construct(layer, tk_cls, kwargs: dict):
    """Build the tf_keras layer; drop Keras-3-only options that are switched off."""
    kwargs = dict(kwargs)
    for _ in range(len(kwargs) + 1):
        try:
            return tk_cls(**kwargs)
        except TypeError as exc:
            m = re.search(r"[Kk]eyword argument[s]?[^']*'(\w+)'|'(\w+)'", str(exc))
            key = (m.group(1) or m.group(2)) if m else None
            if key is None or key not in kwargs:
                raise TranslationError(f"{_lname(layer)}: tf_keras rejects its options "
                                       f"({str(exc).splitlines()[0][:160]})") from None
            value = kwargs[key]
            if key in _DROP_IF_VALUE and value == _DROP_IF_VALUE[key]:
                del kwargs[key]
                continue
            raise TranslationError(
                f"{_lname(layer)}: option {key}={value!r} has no tf_keras equivalent") from None
        except (ValueError, NotImplementedError) as exc:
            raise TranslationError(f"{_lname(layer)}: tf_keras cannot build it "
                                   f"({str(exc).splitlines()[0][:160]})") from None
    raise TranslationError(f"{_lname(layer)}: tf_keras rejects its options")


_REPEAT_CLASS = None


def _repeat_vector_layer(layer):
    """RepeatVector as BROADCAST_TO: tf_keras' RepeatVector converts to TILE, which TFLM lacks."""
    global _REPEAT_CLASS
    if _REPEAT_CLASS is None:
        import tensorflow as tf
        tfk = _tf_keras()

        class RepeatVectorBroadcast(tfk.layers.Layer):
            """(batch, features) -> (batch, n, features) with tf.broadcast_to."""

            def __init__(self, n, **kwargs):
                super().__init__(**kwargs)
                self.n = int(n)

            def call(self, x):
                batch = x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]
                return tf.broadcast_to(tf.expand_dims(x, 1), [batch, self.n, x.shape[-1]])

            def compute_output_shape(self, input_shape):
                return (input_shape[0], self.n, input_shape[-1])

            def get_config(self):
                return {**super().get_config(), "n": self.n}

        _REPEAT_CLASS = RepeatVectorBroadcast
    return _REPEAT_CLASS(layer.n, name=layer.name, dtype="float32")


class _Translator:
    def __init__(self, unroll_rnns: bool):
        self.unroll_rnns = unroll_rnns
        self.layers: dict[int, Any] = {}      # id(keras3 layer) -> tf_keras layer
        self.pairs: list[tuple[Any, Any]] = []  # weights to copy, after building

    def layer(self, layer):
        key = id(layer)
        if key not in self.layers:
            self.layers[key] = self._translate(layer)
        return self.layers[key]

    def _translate(self, layer):
        tfk = _tf_keras()
        cls = type(layer).__name__
        if not _is_keras3(layer):
            if is_tf_keras_model(layer):
                raise TranslationError(f"{_lname(layer)}: a tf_keras layer inside a Keras 3 model")
            raise TranslationError(f"{_lname(layer)}: custom layer classes cannot be translated")
        if cls in ("Functional", "Sequential", "Model"):
            return self.model(layer)
        if cls in _REJECTED:
            raise TranslationError(f"{_lname(layer)}: {_REJECTED[cls]}")
        tk_cls = getattr(tfk.layers, cls, None)
        if tk_cls is None:
            raise TranslationError(f"{_lname(layer)}: no tf_keras translation for this layer type")
        if cls == "RepeatVector":
            new = _repeat_vector_layer(layer)
        elif cls == "TimeDistributed":
            new = _construct(layer, tk_cls, {"layer": self._inner(layer.layer),
                                             "name": layer.name})
        elif cls == "Bidirectional":
            if type(layer.forward_layer).__name__ not in _RNN_CLASSES:
                raise TranslationError(f"{_lname(layer)}: only LSTM/GRU/SimpleRNN can be "
                                       "wrapped in Bidirectional")
            fwd = self._inner(layer.forward_layer)
            bwd = self._inner(layer.backward_layer)
            new = _construct(layer, tk_cls, {"layer": fwd, "backward_layer": bwd,
                                             "merge_mode": layer.merge_mode, "name": layer.name})
        else:
            new = _construct(layer, tk_cls, _layer_kwargs(layer, self.unroll_rnns))
        self.pairs.append((layer, new))
        return new

    def _inner(self, layer):
        """A wrapped layer: translated without its own weight copy (the wrapper copies)."""
        cls = type(layer).__name__
        if cls in _REJECTED:
            raise TranslationError(f"{_lname(layer)}: {_REJECTED[cls]}")
        tk_cls = getattr(_tf_keras().layers, cls, None)
        if tk_cls is None or not type(layer).__module__.startswith("keras."):
            raise TranslationError(f"{_lname(layer)}: no tf_keras translation for this layer type")
        return _construct(layer, tk_cls, _layer_kwargs(layer, self.unroll_rnns))

    # -- graphs ----------------------------------------------------------------

    def model(self, model, batch_size: int | None = None):
        cls = type(model).__name__
        if cls == "Sequential":
            return self._sequential(model, batch_size)
        if cls == "Functional" or hasattr(model, "_nodes_by_depth"):
            return self._functional(model, batch_size)
        raise TranslationError(f"model '{model.name}' ({cls}): subclassed models have no config "
                               "graph to translate; build it with the functional API")

    def _input(self, name: str, shape, dtype, batch_size):
        tfk = _tf_keras()
        dims = tuple(None if d is None else int(d) for d in shape)
        return tfk.Input(shape=dims[1:], batch_size=batch_size if batch_size else dims[0],
                         dtype=str(dtype) if dtype else "float32", name=name)

    def _call(self, layer, tk_layer, args, kwargs):
        kwargs = {k: v for k, v in kwargs.items()
                  if k != "training" and not (k == "mask" and v is None)}
        try:
            return tk_layer(*args, **kwargs)
        except TranslationError:
            raise
        except Exception as exc:  # tf_keras raises ValueError, TypeError, ...
            raise TranslationError(f"{_lname(layer)}: the tf_keras layer cannot be applied "
                                   f"({_reason(exc)})") from None

    def _sequential(self, model, batch_size):
        try:
            inputs = model.inputs
        except (AttributeError, ValueError):
            raise TranslationError(f"model '{model.name}' (Sequential) is not built: give it an "
                                   "Input layer or call build() first") from None
        if not inputs:
            raise TranslationError(f"model '{model.name}' (Sequential) has no inputs")
        t = inputs[0]
        x = inp = self._input(_input_name(t, model.name + "_input"), t.shape, t.dtype, batch_size)
        for layer in model.layers:
            if type(layer).__name__ == "InputLayer":
                continue
            x = self._call(layer, self.layer(layer), (x,), {})
        return _tf_keras().Model(inp, x, name=model.name)

    def _functional(self, model, batch_size):
        tfk = _tf_keras()
        cfg = model.get_config()
        by_name = {l.name: l for l in model.layers}
        tensors: dict[tuple[str, int, int], Any] = {}
        inputs_spec = cfg["input_layers"]
        input_keys = _triples(inputs_spec)
        by_input = {_input_name(t, ""): t for t in model.inputs}
        for key in input_keys:
            t = by_input.get(key[0])
            if t is None:
                raise TranslationError(f"model '{model.name}': input '{key[0]}' not found")
            tensors[key] = self._input(key[0], t.shape, t.dtype, batch_size)

        pending = []
        for entry in cfg["layers"]:
            if entry["class_name"] == "InputLayer":
                continue
            layer = by_name.get(entry["name"])
            if layer is None:
                raise TranslationError(f"model '{model.name}': layer '{entry['name']}' listed "
                                       "in the config is missing")
            for node_index, node in enumerate(entry.get("inbound_nodes", [])):
                pending.append((layer, node_index, node))

        while pending:
            progressed = False
            rest = []
            for layer, node_index, node in pending:
                refs = list(_tensor_refs(node))
                if not all(r in tensors for r in refs):
                    rest.append((layer, node_index, node))
                    continue
                args = _fill(node.get("args", []), tensors)
                kwargs = _fill(node.get("kwargs", {}), tensors)
                out = self._call(layer, self.layer(layer), args, kwargs)
                outs = out if isinstance(out, (list, tuple)) else [out]
                for ti, o in enumerate(_flatten(outs)):
                    tensors[(layer.name, node_index, ti)] = o
                progressed = True
            if not progressed:
                names = sorted({l.name for l, _, _ in rest})
                raise TranslationError(f"model '{model.name}': cannot order the graph at "
                                       f"layers {', '.join(names[:5])}")
            pending = rest

        def resolve(spec):
            if _is_triple(spec):
                return tensors[tuple(spec)]
            if isinstance(spec, dict):
                return {k: resolve(v) for k, v in spec.items()}
            return [resolve(s) for s in spec]

        ins = [tensors[k] for k in input_keys]
        outs = resolve(cfg["output_layers"])
        return tfk.Model(ins if len(ins) > 1 or not _is_triple(inputs_spec) else ins[0],
                         outs, name=model.name)

    def copy_weights(self):
        for src, dst in self.pairs:
            w_src = src.get_weights()
            w_dst = dst.get_weights()
            shapes_src = [tuple(w.shape) for w in w_src]
            shapes_dst = [tuple(w.shape) for w in w_dst]
            if shapes_src != shapes_dst:
                raise TranslationError(f"{_lname(src)}: weight layout differs in tf_keras "
                                       f"({shapes_src} vs {shapes_dst})")
            if w_src:
                dst.set_weights(w_src)


def _reason(exc: Exception) -> str:
    """The informative line of a tf_keras exception text (skips its call-context frame)."""
    for line in str(exc).splitlines():
        line = line.strip()
        if line and not line.startswith(("Exception encountered when calling",
                                         "Call arguments received", "\u2022")):
            return line[:200]
    return type(exc).__name__


def _input_name(t, default: str) -> str:
    hist = getattr(t, "_keras_history", None)
    if hist is not None and getattr(hist, "operation", None) is not None:
        return hist.operation.name
    return default


def _is_triple(x) -> bool:
    return (isinstance(x, (list, tuple)) and len(x) == 3 and isinstance(x[0], str)
            and isinstance(x[1], int) and isinstance(x[2], int))


def _triples(spec) -> list[tuple[str, int, int]]:
    if _is_triple(spec):
        return [tuple(spec)]
    if isinstance(spec, dict):
        return [t for v in spec.values() for t in _triples(v)]
    return [t for v in spec for t in _triples(v)]


def _is_ref(x) -> bool:
    return isinstance(x, dict) and x.get("class_name") == "__keras_tensor__"


def _ref_key(x) -> tuple[str, int, int]:
    name, node, idx = x["config"]["keras_history"]
    return (name, int(node), int(idx))


def _tensor_refs(obj):
    if _is_ref(obj):
        yield _ref_key(obj)
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensor_refs(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensor_refs(v)


def _fill(obj, tensors):
    if _is_ref(obj):
        return tensors[_ref_key(obj)]
    if isinstance(obj, dict):
        return {k: _fill(v, tensors) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_fill(v, tensors) for v in obj) if isinstance(obj, tuple) \
            else [_fill(v, tensors) for v in obj]
    return obj


def _flatten(x):
    if isinstance(x, (list, tuple)):
        for v in x:
            yield from _flatten(v)
    elif isinstance(x, dict):
        for v in x.values():
            yield from _flatten(v)
    else:
        yield x


def to_tf_keras(model, batch_size: int | None = None, unroll_rnns: bool = True):
    """Rebuild a Keras 3 Sequential/Functional model as a tf_keras functional model.

    Layers are rebuilt from their configs with the same names; weights are
    copied layer by layer (shapes checked).  Inference options only:
    initializers, regularizers, constraints and seeds are dropped, the dtype
    policy becomes float32.  LSTMs with the standard activations (tanh /
    sigmoid), a bias and no recurrent dropout keep ``unroll=False`` so the
    converter fuses them (even if the Keras 3 layer said ``unroll=True``);
    other LSTMs, GRU and SimpleRNN are rebuilt with ``unroll=True`` when
    ``unroll_rnns`` (the default), since their WHILE loops crash int8 calibration.

    Args:
        model: a built Keras 3 ``Sequential`` or functional ``Model``
            (nested models are translated recursively).
        batch_size: fixed batch dimension for the tf_keras Input layers
            (None keeps the Keras 3 model's, normally dynamic).
        unroll_rnns: see above.

    Returns:
        a ``tf_keras.Model`` computing the same function.

    Raises:
        TranslationError: one line naming the first layer that cannot be
            translated (custom or Lambda layers, stateful RNNs, ConvLSTM, layer
            types or options tf_keras lacks, unroll without a fixed time axis...).
    """
    if is_tf_keras_model(model):
        return model
    if not _is_keras3(model):
        raise TranslationError(f"{type(model).__name__} is not a Keras 3 model")
    tr = _Translator(unroll_rnns)
    from .. import tfenv
    with tfenv.quiet():
        new = tr.model(model, batch_size)
        tr.copy_weights()
    return new


# ---------------------------------------------------------------------------
# conversion helpers


def _input_specs(model, batch: int | None):
    import tensorflow as tf
    specs = []
    for i, t in enumerate(model.inputs):
        dims = list(t.shape)
        name = _input_name(t, f"input_{i}") if _is_keras3(model) else t.name.split(":")[0]
        if any(d is None for d in dims[1:]):
            raise TranslationError(f"model input '{name}' has an unknown dimension {dims}; "
                                   "firmware needs a fixed input shape")
        shape = [batch] + [int(d) for d in dims[1:]]
        dtype = tf.as_dtype(getattr(t.dtype, "name", t.dtype))
        specs.append(tf.TensorSpec(shape, dtype, name=re.sub(r"\W", "_", name)))
    return specs


def concrete_function_for(model, batch: int | None = 1):
    """A ConcreteFunction computing ``model(x, training=False)`` for a fixed batch.

    A fixed batch of 1 keeps the converter from emitting SHAPE / STRIDED_SLICE /
    PACK ops for every Flatten/Reshape (what a dynamic batch produces).
    Works for Keras 3 and tf_keras models; one positional argument per model
    input, in ``model.inputs`` order.
    """
    import tensorflow as tf
    specs = _input_specs(model, batch)
    if len(specs) == 1:
        fn = tf.function(lambda x: model(x, training=False), input_signature=specs)
    else:
        fn = tf.function(lambda *xs: model(list(xs), training=False), input_signature=specs)
    return fn.get_concrete_function()


def tflite_converter(model, batch: int = 1, concrete_function=None):
    """A ``tf.lite.TFLiteConverter`` for ``model`` on the route that works for it.

    * tf_keras model (e.g. from :func:`to_tf_keras`):
      ``from_concrete_functions([cf], model)``; the converter lowers to a
      SavedModel, which keeps the ``api_implements`` attributes, so LSTMs fuse.
      (Without the trackable object, the function is frozen and inlined, the
      LSTM becomes a WHILE loop and int8 calibration segfaults.)
    * Keras 3 model without recurrent layers: the same call with
      ``experimental_lower_to_saved_model = False`` (variables are frozen into
      constants; the SavedModel route leaves READ_VARIABLE ops for Keras 3
      variables and calibration fails).
    * Keras 3 model with recurrent layers: TranslationError (translate first).

    Only the route is set: the caller adds the quantization settings
    (optimizations, representative_dataset, TFLITE_BUILTINS_INT8, int8 in/out).
    ``concrete_function`` defaults to ``concrete_function_for(model, batch)``;
    the converter keeps a reference to ``model``.
    """
    import tensorflow as tf
    if needs_legacy_conversion(model):
        raise TranslationError(f"model '{model.name}' has recurrent layers: translate it with "
                               "keras_compat.to_tf_keras() first")
    cf = concrete_function if concrete_function is not None else concrete_function_for(model, batch)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([cf], model)
    if not is_tf_keras_model(model):
        conv.experimental_lower_to_saved_model = False
    return conv
