"""The prefixed C API shared by both runtimes: names and the model header.

`--name kws` makes every public symbol of the generated model start with
`kws_` (kws_init, kws_invoke, kws_info, ...) and its header `kws.h`, so that
several models link into one image.  The name is checked here, once, for
every front end.
"""

from __future__ import annotations

import re
from pathlib import Path

from .. import __version__
from ..errors import TinygenError
from ..ir import Model
from .render import render_to

DEFAULT_NAME = "model"

_C_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# C11 and C++17 keywords, the alternative operator spellings and the names
# <stdint.h>/<stddef.h> take: a prefix equal to one of these makes the header
# fail to compile in the user's file, far from the cause.
C_KEYWORDS = frozenset("""
auto break case char const continue default do double else enum extern float for goto
if inline int long register restrict return short signed sizeof static struct switch
typedef union unsigned void volatile while _Alignas _Alignof _Atomic _Bool _Complex
_Generic _Imaginary _Noreturn _Static_assert _Thread_local
alignas alignof and and_eq asm bitand bitor bool catch char16_t char32_t class compl
constexpr const_cast decltype delete dynamic_cast explicit export false friend mutable
namespace new noexcept not not_eq nullptr operator or or_eq private protected public
reinterpret_cast static_assert static_cast template this thread_local throw true try
typeid typename using virtual wchar_t xor xor_eq
main NULL size_t int8_t uint8_t int16_t uint16_t int32_t uint32_t int64_t uint64_t
""".split())

# Prefixes tinygen's own code uses: a model named like them would define
# tg_model_init twice, or shadow the runtime's symbols.
RESERVED_PREFIXES = ("tg", "tflite")


def check_name(name: str) -> str:
    """The model's C name, or a TinygenError saying what is wrong with it."""
    if not _C_IDENTIFIER.fullmatch(name or ""):
        raise TinygenError(
            f"--name {name!r} is not a C identifier (letters, digits and _, not starting "
            "with a digit): it prefixes the model's C functions, e.g. kws -> kws_init()")
    if name in C_KEYWORDS:
        raise TinygenError(f"--name {name!r} is a C/C++ keyword or standard name; "
                           f"choose another (e.g. {name}_model)")
    if name.startswith("__") or (name.startswith("_") and name[1:2].isupper()):
        raise TinygenError(f"--name {name!r} is reserved by the C standard (leading __ or _ "
                           "and a capital); choose another")
    low = name.lower()
    if low in RESERVED_PREFIXES or low.startswith(tuple(f"{r}_" for r in RESERVED_PREFIXES)):
        raise TinygenError(f"--name {name!r} collides with tinygen's own tg_/tflite symbols; "
                           "choose another")
    if len(name) > 40:
        raise TinygenError(f"--name {name!r} is longer than 40 characters")
    return name


def check_names(names: list[str]) -> list[str]:
    """Several models for one image: each name valid, no two the same."""
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        check_name(n)
        if n in seen:
            raise TinygenError(f"two models are named {n!r} (models {seen[n] + 1} and {i + 1}); "
                               "each model in one image needs its own --name")
        # kws and KWS make one KWS_ macro prefix
        clash = next((o for o in seen if o.upper() == n.upper()), None)
        if clash is not None:
            raise TinygenError(f"model names {clash!r} and {n!r} differ only in case: their "
                               f"{n.upper()}_* macros would collide")
        seen[n] = i
    return names


def header_name(name: str) -> str:
    return f"{name}.h"


_DTYPE_NAMES = {"float32", "int32", "uint8", "int16", "int8"}


def _tensor_rows(tensors) -> list[dict]:
    rows = []
    for t in tensors:
        count = 1
        for d in t.shape:
            count *= int(d)
        rows.append({"name": t.name.replace("*/", "* /"),
                     "shape": ", ".join(str(int(d)) for d in t.shape),
                     "dtype_name": t.dtype if t.dtype in _DTYPE_NAMES else str(t.dtype),
                     "scale": f"{float(t.scale):.9g}" if t.quant else "0",
                     "zero_point": t.zero_point if t.quant else 0,
                     "bytes": t.nbytes, "count": count})
    return rows


def render_header(model: Model, name: str, runtime: str, arena_bytes: int, out_dir: Path,
                  extra_macros: list[tuple[str, str]] | None = None) -> Path:
    """`<name>.h`: the model's prefixed API, identical in form for both runtimes."""
    ctx = {"version": __version__, "runtime": runtime, "name": name, "NAME": name.upper(),
           "guard": f"{name.upper()}_TINYGEN_H", "signature_hex": model.signature,
           "arena_bytes": arena_bytes, "extra_macros": extra_macros or [],
           "inputs": _tensor_rows(model.input_tensors()),
           "outputs": _tensor_rows(model.output_tensors())}
    return render_to("common/model_api.h.j2", Path(out_dir) / header_name(name), ctx)
