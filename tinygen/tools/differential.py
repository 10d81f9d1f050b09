"""Differential acceptance: the tflite_micro interpreter and tinygen on the same models.

    python3 -m tinygen.tools.differential [--quick] [--zoo] [--markdown FILE] [--json FILE]

Every model of the corpus (tinygen/tools/corpus.py) goes to

* the reference: TFLM's interpreter (tflite_micro) loads it and runs three
  input vectors (all -128, all 127, random), in a child process so that a
  crash of the C++ interpreter is a verdict ("rejects"), not the end;
* tinygen, the way `tinygen build` takes it: load and check the .tflite,
  analyze it for a board (op support from the aot lowering, the TFLM arena,
  the fit) and require that the aot runtime runs and fits; then generate the
  aot C for the host, compile it with -Wall -Wextra -Werror and run the same
  vectors.

The contract (any breach is a finding and makes the exit status 1):

* TFLM runs the model  -> tinygen's outputs equal TFLM's (0 LSB), or tinygen
  refuses it with one line (a TinygenError);
* TFLM rejects it      -> tinygen refuses it with one line;
* never a traceback, a crash, a hang, generated C that does not compile, or
  a lowering that fails after analysis accepted the model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .corpus import Case, built_cases, mutations, zoo_cases

HOST_CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O1")
DEFAULT_BOARD = "qemu-cortex-m4"      # both runtimes, 4 MB: a refusal is rarely "does not fit"

MAIN_C = r"""/* stdin -> model -> stdout, once per input set */
#include <stdio.h>
#include "tg_model_api.h"

int main(void) {
  int i;
  if (tg_model_init() != 0) return 2;
  for (;;) {
    for (i = 0; i < tg_model_info.num_inputs; ++i) {
      size_t want = tg_model_info.inputs[i].bytes;
      size_t got = fread(tg_model_input(i), 1, want, stdin);
      if (got == 0 && i == 0) return 0;
      if (got != want) return 3;
    }
    if (tg_model_run() != 0) return 4;
    for (i = 0; i < tg_model_info.num_outputs; ++i) {
      size_t want = tg_model_info.outputs[i].bytes;
      if (fwrite(tg_model_output(i), 1, want, stdout) != want) return 5;
    }
    fflush(stdout);
  }
}
"""

# outcomes
BOTH_ACCEPT = "accepted by both (0 LSB)"
BOTH_REFUSE = "refused by both"
TINYGEN_REFUSES = "refused by tinygen only"
FINDINGS = ("wrong answer", "aot lowering bug (refused with an internal error)",
            "tinygen accepts what TFLM rejects", "tinygen traceback", "tinygen crash",
            "tinygen hang", "generated C does not compile", "generated program fails",
            "refusal is not one line")


@dataclass
class Result:
    name: str
    note: str
    tflm: str                   # "runs" or "rejects: <why>"
    outcome: str
    detail: str = ""            # tinygen's refusal line, or what went wrong
    seconds: float = 0.0


# ---------------------------------------------------------------------------
# child processes


def _in_child(fn, timeout: float):
    """fn() in a forked child: ("ok", value), ("error", text), ("crash", signal
    name) or ("timeout", None).  The child's stdout/stderr go to /dev/null
    (TFLM prints its complaints from C)."""
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            try:
                reply = ("ok", fn())
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                reply = ("error", (type(exc).__name__, str(exc), traceback.format_exc()))
            with os.fdopen(write_end, "wb") as f:
                pickle.dump(reply, f)
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    deadline = time.monotonic() + timeout
    os.set_blocking(read_end, False)
    with os.fdopen(read_end, "rb") as f:
        while True:
            try:
                chunk = f.read()
            except BlockingIOError:
                chunk = None
            if chunk:
                chunks.append(chunk)
            elif chunk == b"":
                break
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                rest = f.read()
                if rest:
                    chunks.append(rest)
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return "timeout", None
            time.sleep(0.01)
    if not done:
        _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return "crash", signal.Signals(os.WTERMSIG(status)).name
    data = b"".join(chunks)
    if not data:
        return "crash", f"exit status {os.WEXITSTATUS(status)}"
    return pickle.loads(data)


# ---------------------------------------------------------------------------
# the reference


def _tflm_inputs(interp) -> list[dict]:
    details = []
    for i in range(64):
        try:
            details.append(interp.get_input_details(i))
        except Exception:  # noqa: BLE001 - past the last input
            break
    return details


def input_vectors(details: list[dict], seed: int) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    vectors = []
    for kind in ("min", "max", "random"):
        row = []
        for d in details:
            dt = np.dtype(d["dtype"])
            shape = tuple(int(v) for v in d["shape"])
            if dt.kind in "iu":
                info = np.iinfo(dt)
                lo, hi = max(info.min, -(1 << 15)), min(info.max, (1 << 15) - 1)
                v = {"min": np.full(shape, lo), "max": np.full(shape, hi),
                     "random": rng.integers(lo, hi + 1, size=shape)}[kind]
            elif dt.kind == "b":
                v = rng.integers(0, 2, size=shape) if kind == "random" else \
                    np.full(shape, kind == "max")
            else:
                v = {"min": np.full(shape, -1.0), "max": np.full(shape, 1.0),
                     "random": rng.standard_normal(shape)}[kind]
            row.append(np.asarray(v).astype(dt))
        vectors.append(row)
    return vectors


def run_tflm(tflite: bytes, seed: int):
    """(inputs, outputs) of TFLM's interpreter on three vectors; raises when
    TFLM refuses the model."""
    from tflite_micro.python.tflite_micro import runtime
    interp = runtime.Interpreter.from_bytes(tflite, arena_size=max(1 << 20, 16 * len(tflite)))
    details = _tflm_inputs(interp)
    if not details:
        raise RuntimeError("no inputs")
    vectors = input_vectors(details, seed)
    outputs = []
    for row in vectors:
        for i, v in enumerate(row):
            interp.set_input(v, i)
        interp.invoke()
        outs = []
        for j in range(64):
            try:
                outs.append(np.array(interp.get_output(j)).copy())
            except Exception:  # noqa: BLE001 - past the last output
                break
        outputs.append(outs)
    return vectors, outputs


# ---------------------------------------------------------------------------
# tinygen


def _cache_dir() -> Path:
    d = Path(os.environ.get("TG_DIFFERENTIAL_CACHE",
                            Path(tempfile.gettempdir()) / "tinygen-differential-cache"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def _cc(args: list[str]) -> None:
    res = subprocess.run(args, capture_output=True, text=True)
    if res.returncode != 0:
        raise _CompileError((res.stderr or res.stdout).strip().splitlines()[0]
                            if (res.stderr or res.stdout).strip() else f"exit {res.returncode}")


class _CompileError(Exception):
    pass


class _ProgramError(Exception):
    pass


def compile_host(src_dir: Path, work: Path, cc: str = "gcc") -> Path:
    """The generated sources plus a stdin/stdout main, built for the host;
    kernel objects are cached by content (only model.c changes per model)."""
    main = work / "main.c"
    main.write_text(MAIN_C)
    headers = hashlib.sha256()
    for h in sorted(src_dir.glob("*.h")):
        if h.name != "model.h":
            headers.update(h.name.encode() + h.read_bytes())
    objs = []
    for c in sorted(src_dir.glob("*.c")):
        if c.name == "model.c":
            obj = work / "model.o"
        else:
            key = hashlib.sha256(" ".join([cc, *HOST_CFLAGS]).encode() + c.read_bytes()
                                 + headers.digest()).hexdigest()[:20]
            obj = _cache_dir() / f"{c.stem}-{key}.o"
            if obj.exists():
                objs.append(str(obj))
                continue
        tmp = obj.with_suffix(f".{os.getpid()}.tmp.o")
        _cc([cc, *HOST_CFLAGS, "-I", str(src_dir), "-c", str(c), "-o", str(tmp)])
        os.replace(tmp, obj)
        objs.append(str(obj))
    exe = work / "model"
    _cc([cc, *HOST_CFLAGS, "-I", str(src_dir), str(main), *objs, "-o", str(exe)])
    return exe


def run_host(exe: Path, ir, vectors) -> list[list[np.ndarray]]:
    ins = ir.input_tensors()
    outs = ir.output_tensors()
    payload = b"".join(np.ascontiguousarray(v, dtype=t.np_dtype).tobytes()
                       for row in vectors for t, v in zip(ins, row))
    res = subprocess.run([str(exe)], input=payload, capture_output=True, timeout=120)
    if res.returncode != 0:
        raise _ProgramError(f"the generated program exited with {res.returncode}")
    per = sum(t.nbytes for t in outs)
    if len(res.stdout) != per * len(vectors):
        raise _ProgramError(f"the generated program wrote {len(res.stdout)} bytes, "
                            f"expected {per * len(vectors)}")
    results, off = [], 0
    for _ in vectors:
        row = []
        for t in outs:
            row.append(np.frombuffer(res.stdout[off:off + t.nbytes], t.np_dtype).reshape(t.shape))
            off += t.nbytes
        results.append(row)
    return results


def tinygen_outputs(tflite: bytes, board_id: str, vectors, work: Path):
    """What `tinygen build --runtime aot` decides for this model; when it
    builds, the generated C compiled for the host and run on `vectors`.
    Raises TinygenError for a refusal."""
    from ..analyze.analysis import analyze, require_fit
    from ..boards import get_board
    from ..codegen.aot import generate_aot
    from ..convert import convert
    from ..load import load_model
    work.mkdir(parents=True, exist_ok=True)
    path = work / "model.tflite"
    path.write_bytes(tflite)
    board = get_board(board_id)
    ir = convert(load_model(path), None).ir
    require_fit(analyze(ir, board), board, "aot")
    src = work / "aot"
    generate_aot(ir, src, board="host", core=board.core, copy_api_header=True)
    exe = compile_host(src, work)
    return run_host(exe, ir, vectors) if vectors is not None else None


def _one_line(text: str) -> str:
    lines = [ln for ln in str(text).splitlines() if ln.strip()]
    return lines[0] if lines else ""


def check_case(case: Case, board: str = DEFAULT_BOARD, seed: int = 0,
               timeout: float = 300.0) -> Result:
    t0 = time.monotonic()
    ref = _in_child(lambda: run_tflm(case.tflite, seed), 120.0)
    if ref[0] == "ok":
        tflm = "runs"
        vectors, expected = ref[1]
    else:
        why = {"error": lambda v: f"{v[0]}: {_one_line(v[1])}", "crash": lambda v: f"crash ({v})",
               "timeout": lambda v: "hangs"}[ref[0]](ref[1])
        tflm = f"rejects: {why}"[:160]
        vectors, expected = None, None

    def job(d: Path):
        from ..errors import TinygenError
        try:
            return "built", tinygen_outputs(case.tflite, board, vectors, d)
        except TinygenError as exc:
            return "refused", str(exc)

    with tempfile.TemporaryDirectory(prefix="tg-diff-") as d:
        got = _in_child(lambda: job(Path(d)), timeout)
    r = Result(case.name, case.note, tflm, "", seconds=0.0)
    kind, value = got
    if kind == "ok" and value[0] == "refused":
        msg = value[1]
        if "\n" in msg.strip():
            r.outcome, r.detail = "refusal is not one line", msg
        elif "the aot lowering failed (" in msg:
            # _lowering_failure's marker: a lowering tripped over the model
            r.outcome, r.detail = "aot lowering bug (refused with an internal error)", msg
        else:
            r.outcome = BOTH_REFUSE if expected is None else TINYGEN_REFUSES
            r.detail = msg
    elif kind == "ok":
        value = value[1]
        if expected is None:
            r.outcome, r.detail = "tinygen accepts what TFLM rejects", tflm
        else:
            r.outcome, r.detail = _compare(expected, value)
    elif kind == "error":
        name, msg, tb = value
        if name == "_CompileError":
            r.outcome, r.detail = "generated C does not compile", msg
        elif name in ("_ProgramError", "TimeoutExpired"):
            r.outcome, r.detail = "generated program fails", msg
        else:
            r.outcome = "tinygen traceback"
            r.detail = f"{name}: {_one_line(msg)} | {_one_line(tb.strip().splitlines()[-3])}"
    elif kind == "crash":
        r.outcome, r.detail = "tinygen crash", value
    else:
        r.outcome, r.detail = "tinygen hang", f"no answer in {timeout:.0f} s"
    r.seconds = round(time.monotonic() - t0, 2)
    return r


def _compare(expected, got) -> tuple[str, str]:
    worst = 0
    for e_row, g_row in zip(expected, got):
        if len(e_row) != len(g_row):
            return "wrong answer", f"{len(g_row)} outputs, TFLM has {len(e_row)}"
        for e, g in zip(e_row, g_row):
            if e.shape != g.shape:
                return "wrong answer", f"output shape {list(g.shape)}, TFLM {list(e.shape)}"
            if e.dtype.kind == "f":
                if not np.array_equal(e, g, equal_nan=True):
                    return "wrong answer", "float outputs differ"
                continue
            worst = max(worst, int(np.max(np.abs(e.astype(np.int64) - g.astype(np.int64))))
                        if e.size else 0)
    if worst:
        return "wrong answer", f"max |aot - TFLM| = {worst} LSB"
    return BOTH_ACCEPT, ""


# ---------------------------------------------------------------------------
# corpus, report


def make_corpus(quick: bool = False, zoo: bool = False, zoo_width: float = 0.25,
                per_base_bytes: int = 1, per_base_struct: int = 2) -> list[Case]:
    from .corpus import BUILT
    if quick:
        names = QUICK_BUILT
        bases = built_cases([n for n in BUILT if n in names])
        muts = mutations(bases, 1, 1)
    else:
        bases = built_cases()
        muts = mutations(bases, per_base_bytes, per_base_struct)
    cases = list(bases)
    if zoo:
        zcases = zoo_cases(zoo_width, cache_dir=_cache_dir())
        cases += zcases
        muts += mutations(zcases, per_base_bytes, per_base_struct)
    return cases + muts


# a few seconds of TFLM and gcc each: the default test's corpus
QUICK_BUILT = ("conv_bias_qdim3", "conv_fused_tanh", "conv_stride4x3_k2",
               "depthwise_mult3", "fc_bias_qdim3", "mean_negative_axes_keep",
               "add_broadcast_both", "reduce_max", "chain_conv_dw_pool_fc_softmax")


def reason_key(detail: str) -> str:
    """A refusal line with the model-specific parts taken out, for counting."""
    d = re.sub(r"^\S*model\.tflite:? ", "", detail)
    d = re.sub(r"cannot build for [\w-]+: ", "", d)
    d = re.sub(r"'[^']*'", "'…'", d)
    d = re.sub(r"(?<![A-Za-z_\d])-?\d+(\.\d+)?(e-?\d+)?", "N", d)
    return d[:160]


CATEGORIES = (
    ("the aot runtime has no kernel for the op", r"no aot kernel"),
    ("a fused activation TFLM's int8 kernels skip (TANH, SIGN_BIT, unknown codes)",
     r"fused_activation_function"),
    ("an operator parameter the aot lowering refuses", r"the aot runtime does not run"),
    ("the graph is inconsistent (shapes, operands)", r"inconsistent model"),
    ("constant data does not match its shape and type", r"constant tensor .* holds"),
    ("quantization parameters out of range", r"zero point|quantization scale"),
    ("not a full-int8 model (float, int16, uint8 or int32 inputs, outputs or compute)",
     r"not a full-int8 model"),
    ("the flatbuffer structure is damaged", r"corrupt or truncated|unknown .*code|absurd"),
    ("TFLM rejects the model", r"TFLM cannot|TFLM failed|TFLM refuses|TFLM interpreter crashed"),
)


def category(detail: str) -> str:
    for name, pattern in CATEGORIES:
        if re.search(pattern, detail):
            return name
    return "other: " + reason_key(detail)[:80]


def summarize(results: list[Result]) -> dict:
    counts = Counter(r.outcome for r in results)
    return {
        "models": len(results),
        "counts": dict(counts),
        "findings": [asdict(r) for r in results if r.outcome in FINDINGS],
        "tinygen_only_categories": Counter(category(r.detail) for r in results
                                           if r.outcome == TINYGEN_REFUSES).most_common(),
        "both_refuse_categories": Counter(category(r.detail) for r in results
                                          if r.outcome == BOTH_REFUSE).most_common(),
        "tinygen_only_reasons": Counter(reason_key(r.detail) for r in results
                                        if r.outcome == TINYGEN_REFUSES).most_common(),
        "both_refuse_reasons": Counter(reason_key(r.detail) for r in results
                                       if r.outcome == BOTH_REFUSE).most_common(),
    }


def markdown(results: list[Result], summary: dict, args_line: str) -> str:
    out = [f"Run: `{args_line}`, {summary['models']} models.", "",
           "| outcome | models |", "|---|---:|"]
    for k in (BOTH_ACCEPT, BOTH_REFUSE, TINYGEN_REFUSES, *FINDINGS):
        if summary["counts"].get(k) or k in (BOTH_ACCEPT, BOTH_REFUSE, TINYGEN_REFUSES):
            out.append(f"| {k} | {summary['counts'].get(k, 0)} |")
    out += ["", "Refused by tinygen only (TFLM runs them), by kind of reason:", "",
            "| reason | models |", "|---|---:|"]
    out += [f"| {k} | {n} |" for k, n in summary["tinygen_only_categories"]]
    out += ["", "Refused by both, by kind of tinygen's reason:", "",
            "| reason | models |", "|---|---:|"]
    out += [f"| {k} | {n} |" for k, n in summary["both_refuse_categories"]]
    out += ["", "Refused by tinygen only, each distinct line (numbers and names replaced):", ""]
    out += [f"- {n} × `{key}`" for key, n in summary["tinygen_only_reasons"]]
    if summary["findings"]:
        out += ["", "Findings (contract broken):", ""]
        for f in summary["findings"]:
            out.append(f"- `{f['name']}` ({f['note']}): {f['outcome']}: {f['detail']}")
    out += ["", "Built models and their outcome:", "", "| model | TFLM | tinygen |", "|---|---|---|"]
    for r in results:
        if r.name.startswith(("built/", "zoo/")) and "~" not in r.name:
            what = "0 LSB" if r.outcome == BOTH_ACCEPT else f"{r.outcome}: {r.detail}"
            out.append(f"| {r.name} | {r.tflm} | {what.replace('|', '/')} |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python3 -m tinygen.tools.differential",
        description="Feed a corpus of models (built with unusual parameters, the zoo's, and "
                    "byte- and structure-level mutations of them) to the tflite_micro "
                    "interpreter and to tinygen; every model TFLM runs must be bit-exact with "
                    "tinygen's aot runtime (compiled for the host) or refused in one line, every "
                    "model TFLM rejects must be refused in one line. Exit 1 on any finding.")
    p.add_argument("--quick", action="store_true", help="the small corpus of the default test")
    p.add_argument("--zoo", action="store_true",
                   help="add the zoo's MLPerf Tiny models (TensorFlow conversion: minutes)")
    p.add_argument("--zoo-width", type=float, default=0.25, metavar="W")
    p.add_argument("--bytes", type=int, default=1, metavar="N",
                   help="byte-level mutations per base model (default 1)")
    p.add_argument("--struct", type=int, default=2, metavar="N",
                   help="structure-level mutations per base model (default 2)")
    p.add_argument("--board", default=DEFAULT_BOARD, help=f"board analyzed for (default {DEFAULT_BOARD})")
    p.add_argument("--only", metavar="SUBSTRING", help="only cases whose name contains this")
    p.add_argument("--json", metavar="FILE", help="write every result as JSON")
    p.add_argument("--markdown", metavar="FILE", help="write the summary as Markdown")
    p.add_argument("--save", metavar="DIR", help="write each case's .tflite into DIR")
    args = p.parse_args(argv)

    cases = make_corpus(args.quick, args.zoo, args.zoo_width, args.bytes, args.struct)
    if args.only:
        cases = [c for c in cases if args.only in c.name]
    if args.save:
        Path(args.save).mkdir(parents=True, exist_ok=True)
        for c in cases:
            (Path(args.save) / (c.name.replace("/", "__") + ".tflite")).write_bytes(c.tflite)
    results = []
    for i, c in enumerate(cases, 1):
        r = check_case(c, args.board)
        results.append(r)
        flag = "!!" if r.outcome in FINDINGS else "  "
        print(f"{flag} [{i}/{len(cases)}] {c.name}: TFLM {r.tflm[:60]} | {r.outcome}"
              + (f": {r.detail[:120]}" if r.detail else ""), flush=True)
    summary = summarize(results)
    print(json.dumps(summary["counts"], indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary,
                                               "results": [asdict(r) for r in results]}, indent=1))
    if args.markdown:
        line = "python3 -m tinygen.tools.differential " + " ".join(argv if argv is not None
                                                                    else sys.argv[1:])
        Path(args.markdown).write_text(markdown(results, summary, line.strip()))
    return 1 if summary["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
