"""Kernel families of the aot runtime; each module registers its lowerings on
import, and lower() dispatches an operator to its family's lowering."""

import importlib as _importlib
import pkgutil as _pkgutil

# Import every module of this package once, so a new kernel family only has to
# be dropped in here (no list of imports to keep in sync between authors).
for _info in sorted(_pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _info.name.startswith("_"):
        _importlib.import_module(f"{__name__}.{_info.name}")


from ..lowering import KernelCall, LoweringContext, LoweringError, registered_lowering  # noqa: E402
from ..lowering import registered_opcodes as _registered  # noqa: E402


def supported_opcodes() -> set[str]:
    return _registered()


def lower(op, ctx: LoweringContext) -> KernelCall:
    fn = registered_lowering(op.opcode)
    if fn is None:
        raise LoweringError(f"tinygen has no aot kernel for {op.opcode}")
    for t in list(op.inputs) + list(op.outputs):
        tt = ctx.model.tensors[t] if t >= 0 else None
        # A zero scale on a quantized integer tensor turns every multiplier
        # TFLM derives from it into inf or 0 (it divides without checking).
        if tt is not None and tt.quant is not None and tt.dtype in ("int8", "uint8", "int16") \
                and float(tt.quant.scale[0]) == 0.0:
            raise LoweringError(f"tensor '{tt.name}' has quantization scale 0")
    return fn(op, ctx)
