"""A TensorFlow Lite Micro source tree, as made by TFLM's ``create_tflm_tree.py``.

tinygen never ships TFLM's sources: the user makes a tree with TFLM's own
project generator and passes it with ``--tflm-source`` (or
``TINYGEN_TFLM_SOURCE``).  This module reads such a tree once and decides how
to build it; ``project/tflm_library.json.j2`` only prints those decisions, for
real boards and emulated ones alike.

What is decided here, from the tree's files and never from its name:

* the kernel flavour: a tree whose ``third_party/cmsis_nn/Source`` exists has
  TFLM's CMSIS-NN kernels in ``kernels/cmsis_nn``; they need ``-DCMSIS_NN``
  (without it ``conv.h`` and friends define inline fallbacks that clash with
  the CMSIS-NN registrations) and CMSIS-NN's C sources.  A reference tree gets
  neither.
* which files are left out: TFLM's target glue (``micro_time.cc``,
  ``system_setup.cc``, ``debug_log.cc``) is replaced by tinygen's own
  ``tg_tflm_target.cc``, because the cortex_m_generic timer needs CMSIS device
  headers no tree carries and the generic one returns 0 ticks;
* whether the tree can run a model at all: every kernel the model's resolver
  registers must be defined in the tree, and a tree made for another target
  (Xtensa, ARC, CEVA, ...) is refused for a Cortex-M board.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import TinygenError

SOURCE_ENV = "TINYGEN_TFLM_SOURCE"

FLAVOUR_CMSIS_NN = "cmsis-nn"
FLAVOUR_REFERENCE = "reference"

MICRO = Path("tensorflow") / "lite" / "micro"
CMSIS_NN_SOURCE = Path("third_party") / "cmsis_nn" / "Source"

# Kernel folders TFLM's generator fills for other targets (OPTIMIZED_KERNEL_DIR).
_FOREIGN_KERNEL_DIRS = {
    "xtensa": "Xtensa (HiFi/Vision DSP)",
    "arc_mli": "Synopsys ARC (MLI)",
    "ceva": "CEVA DSP",
    "esp_nn": "Espressif ESP-NN",
    "ethos_u": "Arm Ethos-U NPU",
}

# TFLM's target files that tinygen replaces (tg_tflm_target.cc defines their symbols).
REPLACED_TARGET_FILES = (
    "tensorflow/lite/micro/micro_time.cc",
    "tensorflow/lite/micro/system_setup.cc",
    "tensorflow/lite/micro/debug_log.cc",
    "tensorflow/lite/micro/cortex_m_generic/micro_time.cc",
    "tensorflow/lite/micro/cortex_m_generic/debug_log.cc",
)

_INCLUDE_DIRS = ("third_party/flatbuffers/include", "third_party/gemmlowp",
                 "third_party/ruy", "third_party/kissfft")
_CMSIS_NN_INCLUDE_DIRS = ("third_party/cmsis_nn", "third_party/cmsis_nn/Include")

_REGISTRATION_DEF = re.compile(
    r"^\s*(?:TFLMRegistration|TfLiteRegistration)\s*\*?\s*Register_(\w+)\s*\(\s*\)\s*\{",
    re.MULTILINE)
_RESOLVER_METHOD = re.compile(r"TfLiteStatus\s+(Add\w+)\s*\(")
_REGISTER_CALL = re.compile(r"Register_(\w+)\s*\(\s*\)")


@dataclass(frozen=True)
class TflmTree:
    root: Path
    flavour: str                          # FLAVOUR_CMSIS_NN or FLAVOUR_REFERENCE
    registrations: frozenset[str]         # Register_X functions the tree defines
    resolver_methods: dict                # MicroMutableOpResolver method -> Register_X
    kernel_files: dict                    # kernel .cc (relative to root) -> its Register_X

    @property
    def cmsis_nn(self) -> bool:
        return self.flavour == FLAVOUR_CMSIS_NN

    def defines(self) -> list[str]:
        """Preprocessor flags every file that includes TFLM headers needs."""
        flags = ["-DTF_LITE_STATIC_MEMORY", "-DTF_LITE_DISABLE_X86_NEON"]
        if self.cmsis_nn:
            flags.append("-DCMSIS_NN")
        return flags

    def include_dirs(self) -> list[str]:
        """Include folders relative to the tree root (the root itself first)."""
        dirs = ["."] + list(_INCLUDE_DIRS)
        if self.cmsis_nn:
            dirs += list(_CMSIS_NN_INCLUDE_DIRS)
        return dirs

    def src_filter(self, methods: list[str] | None = None) -> list[str]:
        """PlatformIO srcFilter of the sources to compile, relative to the root.

        With the model's resolver methods, only the kernels it registers are
        compiled (plus the shared kernel helpers): a TFLM tree has ~120 kernel
        files and a model uses a handful, and compiling the rest is most of a
        build's time.  The linker would drop them anyway (--gc-sections)."""
        keep = ["+<tensorflow/>"]
        needed = None if methods is None else {self.resolver_methods[m] for m in methods
                                               if m in self.resolver_methods}
        if needed is None or any(r in self.signal_registrations() for r in needed):
            keep.append("+<signal/>")
        if self.cmsis_nn:
            keep.append(f"+<{CMSIS_NN_SOURCE.as_posix()}/>")
        drop = ["-<tensorflow/lite/micro/examples/>", "-<tensorflow/lite/micro/tools/>",
                "-<**/*_test.cc>", "-<**/test_helpers.cc>", "-<**/test_helper_custom_ops.cc>",
                "-<**/mock_micro_graph.cc>", "-<**/fake_micro_context.cc>",
                "-<**/kernel_runner.cc>"]
        drop += [f"-<{f}>" for f in REPLACED_TARGET_FILES]
        if needed is not None:
            drop += [f"-<{f}>" for f in self.unused_kernel_files(needed)]
        return keep + drop

    def signal_registrations(self) -> set[str]:
        return {r for f, regs in self.kernel_files.items() if f.startswith("signal/")
                for r in regs}

    def unused_kernel_files(self, needed: set[str]) -> list[str]:
        """Kernel files of ops the model does not use, with their X_common.cc."""
        unused_ops = {f for f, regs in self.kernel_files.items()
                      if regs and not (set(regs) & needed) and f.startswith("tensorflow/")}
        used_stems = {Path(f).stem for f, regs in self.kernel_files.items()
                      if regs and f not in unused_ops}
        # depthwise_conv_common.cc uses conv_common.cc's tensor indices
        # (kConvInputTensor, ...): a model with DEPTHWISE_CONV_2D and no CONV_2D
        # needs conv_common.cc all the same
        used_stems |= {d for s in used_stems for d in _COMMON_NEEDED_BY.get(s, ())}
        unused_stems = {Path(f).stem for f in unused_ops} - used_stems
        commons = [f for f, regs in self.kernel_files.items()
                   if not regs and Path(f).stem.endswith("_common")
                   and Path(f).stem[: -len("_common")] in unused_stems]
        return sorted(unused_ops) + sorted(commons)

    def library_flags(self) -> list[str]:
        """build.flags of lib/tflite-micro/library.json (paths relative to the tree)."""
        return ([f"-I {d}" for d in self.include_dirs() if d != "."] + self.defines()
                + ["-Wno-unused-parameter", "-Wno-missing-field-initializers"])

    def project_flags(self, lib_dir: str) -> list[str]:
        """Flags the project's own sources need to include TFLM headers: the
        defines must match the library's (CMSIS_NN changes kernels/*.h)."""
        return self.defines() + [f"-I {lib_dir}/{d}" for d in self.include_dirs() if d != "."]

    def describe(self) -> str:
        return f"{self.root} ({self.flavour} kernels)"


    def missing_methods(self, methods: list[str]) -> list[str]:
        """Resolver methods whose kernel the tree does not define (or does not know)."""
        missing = []
        for method in methods:
            reg = self.resolver_methods.get(method)
            if reg is None or reg not in self.registrations:
                missing.append(method)
        return missing



# kernel stems whose X_common.cc another kernel's sources use
_COMMON_NEEDED_BY = {"depthwise_conv": ("conv",)}


def tflm_source_from(option: str | os.PathLike | None) -> Path | None:
    """``--tflm-source`` if given, else ``$TINYGEN_TFLM_SOURCE``, else None."""
    if option:
        return Path(option)
    env = os.environ.get(SOURCE_ENV, "").strip()
    return Path(env) if env else None


def open_tree(path: str | os.PathLike, what: str = "--tflm-source") -> TflmTree:
    """Read a TFLM tree; one-line errors for anything that is not one."""
    root = Path(path).expanduser()
    if not root.exists():
        raise TinygenError(f"{what} {root} does not exist")
    if not (root / MICRO).is_dir():
        raise TinygenError(
            f"{what} {root} is not a TFLM source tree (no tensorflow/lite/micro in it); make "
            "one with TFLM's create_tflm_tree.py (see docs/tflm-source.md)")
    required = [MICRO / "micro_interpreter.h", MICRO / "micro_mutable_op_resolver.h",
                Path("third_party") / "flatbuffers" / "include" / "flatbuffers" / "flatbuffers.h"]
    absent = [p.as_posix() for p in required if not (root / p).is_file()]
    if absent:
        raise TinygenError(
            f"{what} {root} is an incomplete TFLM tree: {', '.join(absent)} missing; make it "
            "again with create_tflm_tree.py (see docs/tflm-source.md)")
    kernels = root / MICRO / "kernels"
    foreign = [name for name in _FOREIGN_KERNEL_DIRS if (kernels / name).is_dir()]
    if foreign:
        raise TinygenError(
            f"{what} {root} was made for another target ({_FOREIGN_KERNEL_DIRS[foreign[0]]} "
            f"kernels in kernels/{foreign[0]}); for a Cortex-M board make it with "
            "--makefile_options=\"TARGET=cortex_m_generic OPTIMIZED_KERNEL_DIR=cmsis_nn "
            "TARGET_ARCH=cortex-m4\" or without OPTIMIZED_KERNEL_DIR")
    has_cmsis_kernels = (kernels / "cmsis_nn").is_dir()
    has_cmsis_sources = (root / CMSIS_NN_SOURCE).is_dir()
    if has_cmsis_kernels != has_cmsis_sources:
        half = "kernels/cmsis_nn" if has_cmsis_kernels else CMSIS_NN_SOURCE.as_posix()
        other = CMSIS_NN_SOURCE.as_posix() if has_cmsis_kernels else "kernels/cmsis_nn"
        raise TinygenError(
            f"{what} {root} has {half} but not {other}; a CMSIS-NN tree needs both: make it "
            "again with create_tflm_tree.py and OPTIMIZED_KERNEL_DIR=cmsis_nn")
    flavour = FLAVOUR_CMSIS_NN if has_cmsis_kernels else FLAVOUR_REFERENCE
    kernel_files, methods = _scan(str(root.resolve()))
    registrations = frozenset(r for _f, regs in kernel_files for r in regs)
    return TflmTree(root=root, flavour=flavour, registrations=registrations,
                    resolver_methods=dict(methods),
                    kernel_files={f: tuple(regs) for f, regs in kernel_files})


def check_model_ops(tree: TflmTree, methods: list[str], what: str = "--tflm-source") -> None:
    """Refuse, before compiling, a tree that lacks a kernel the model's resolver adds."""
    missing = tree.missing_methods(methods)
    if missing:
        names = ", ".join(f"{m} (Register_{tree.resolver_methods.get(m, '?')})" for m in missing)
        them = "it" if len(missing) == 1 else "them"
        raise TinygenError(
            f"{what} {tree.root} has no kernel for {names}: the model needs {them}; use a "
            "tree made from a TFLM release that has these ops, or --runtime aot")


@lru_cache(maxsize=8)
def _scan(root: str):
    """(kernel file, its registrations) pairs and (resolver method, registration) pairs."""
    base = Path(root)
    kernel_files = []
    for sub in (MICRO / "kernels", Path("signal") / "micro" / "kernels"):
        folder = base / sub
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*.cc")):
            if path.name.endswith("_test.cc"):
                continue
            regs = tuple(sorted(set(_REGISTRATION_DEF.findall(path.read_text(errors="replace")))))
            kernel_files.append((path.relative_to(base).as_posix(), regs))
    header = base / MICRO / "micro_mutable_op_resolver.h"
    text = header.read_text(errors="replace")
    starts = list(_RESOLVER_METHOD.finditer(text))
    methods: dict[str, str] = {}
    # A method's registration is the first Register_X() between its name and the next method.
    for k, match in enumerate(starts):
        end = starts[k + 1].start() if k + 1 < len(starts) else len(text)
        call = _REGISTER_CALL.search(text, match.end(), end)
        if call:
            methods.setdefault(match.group(1), call.group(1))
    return tuple(kernel_files), tuple(sorted(methods.items()))
