"""Static arena planning for the aot runtime.

Every activation tensor (and every kernel scratch buffer) gets an offset in
one static arena, decided at build time from tensor lifetimes:

* a tensor lives from the operator that writes it to the last operator that
  reads it (inclusive).  Model inputs live from before the first operator
  (the host writes them) to their last reader; model outputs live until after
  the run (the host reads them); variable tensors (LSTM state) live forever;
* buffers whose lifetimes overlap never overlap in memory;
* a `view` operator (RESHAPE and friends) shares its input's buffer, and an
  `in_place` operator may write its output over its first input when that
  input is read by nobody later;
* an operator with an `overlap` bound s -- a kernel that computes output
  pixels in raster order and reads no input byte after a later pixel's output
  may have been written over it -- may put its output partly over its first
  input when nobody reads that input later: the output may start at most s
  bytes after the input's start (s < 0: before it), or wholly outside it.
  This is TinyEngine's in-place idea, made exact per operator: lowerings
  compute s from the geometry (tinygen/codegen/aot_ops/conv.py,
  raster_overlap), the placer treats such a pair as allowed to share bytes
  within that bound, and check_plan verifies it;
* offsets and sizes are aligned (16 bytes by default).

Placement is the dynamic-storage-allocation problem (NP-hard); we run a few
deterministic greedy strategies (TFLM's own "largest first, first fit" among
them, so we are never worse than it) plus a bounded number of randomized
orders, and stop as soon as a plan reaches the lower bound (the largest sum of
sizes alive at one time).

Public API:
    plan_memory(model, calls=None, alignment=16) -> MemoryPlan
    plan_graph(tensor_bytes, ops, inputs, outputs, persistent=(), alignment=16) -> MemoryPlan
    check_plan(plan)                       raises PlanError when two live buffers overlap
    simulate_plan(plan)                    runs the graph on tokens; raises PlanError
    greedy_first_fit(requests, alignment)  TFLM-style baseline arena size
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Iterable, Sequence


class PlanError(AssertionError):
    """A memory plan that would let one live tensor overwrite another."""


@dataclass
class GraphOp:
    """What the planner needs to know about one operator."""
    inputs: list[int]            # activation tensors read (constants left out)
    outputs: list[int]           # tensors written
    scratch_bytes: int = 0
    in_place: bool = False       # output 0 may overwrite input 0 if input 0 dies here
    view: bool = False           # output 0 is input 0's bytes (no data movement)
    overlap: int | None = None   # output 0 may start at most this many bytes after input
                                 # 0's start (raster-order kernels), if input 0 dies here


@dataclass
class Buffer:
    """One region of the arena and everything that lives in it."""
    key: str                     # "t<index>" (first tensor of the group) or "scratch<op>"
    size: int                    # bytes, aligned up
    first: int                   # first op index at which it holds live data (-1: before run)
    last: int                    # last op index at which it is read (n_ops: after the run)
    tensors: tuple[int, ...] = ()
    scratch_op: int | None = None
    offset: int = -1

    def overlaps_in_time(self, other: "Buffer") -> bool:
        return self.first <= other.last and other.first <= self.last

    def overlaps_in_memory(self, other: "Buffer") -> bool:
        return self.offset < other.offset + other.size and other.offset < self.offset + self.size


@dataclass
class MemoryPlan:
    arena_bytes: int
    alignment: int
    offsets: dict[int, int]              # tensor index -> arena offset
    scratch_offsets: dict[int, int]      # op index -> arena offset of its scratch
    buffers: list[Buffer]
    strategy: str                        # which heuristic produced the plan
    lower_bound_bytes: int               # no plan of these buffers can be smaller
    greedy_bytes: int                    # TFLM's largest-first first-fit on the same buffers
    naive_bytes: int                     # every buffer on its own (no reuse)
    # what the plan was made from (kept so checks can replay the graph)
    graph_ops: list[GraphOp] = field(default_factory=list)
    graph_inputs: list[int] = field(default_factory=list)
    graph_outputs: list[int] = field(default_factory=list)
    tensor_bytes: dict[int, int] = field(default_factory=dict)
    views: dict[int, int] = field(default_factory=dict)       # view tensor -> its input
    in_place: dict[int, int] = field(default_factory=dict)    # output -> input it overwrote
    overlaps: dict[int, tuple[int, int]] = field(default_factory=dict)
    # output -> (input it may partly overwrite, the op's overlap bound)
    pairs: dict[tuple[str, str], int] = field(default_factory=dict)
    # (input buffer key, output buffer key) -> overlap bound (aligned down)

    def offset(self, tensor: int) -> int:
        return self.offsets[tensor]

    def summary(self) -> str:
        return (f"arena {self.arena_bytes} B ({self.strategy}); lower bound "
                f"{self.lower_bound_bytes} B, TFLM-style greedy {self.greedy_bytes} B, "
                f"no reuse {self.naive_bytes} B")


def align_up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


# ---------------------------------------------------------------------------
# building the buffers


class _Groups:
    """Union-find over tensors that share one buffer."""

    def __init__(self):
        self.parent: dict[int, int] = {}

    def find(self, t: int) -> int:
        self.parent.setdefault(t, t)
        while self.parent[t] != t:
            self.parent[t] = self.parent[self.parent[t]]
            t = self.parent[t]
        return t

    def union(self, keep: int, other: int) -> None:
        a, b = self.find(keep), self.find(other)
        if a != b:
            self.parent[b] = a


def tensor_lifetimes(n_ops: int, ops: Sequence[GraphOp], inputs: Iterable[int],
                     outputs: Iterable[int], persistent: Iterable[int] = ()
                     ) -> dict[int, tuple[int, int]]:
    """[first, last] op indices for every activation tensor."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for t in inputs:
        first[t] = -1
        last[t] = max(last.get(t, -1), -1)
    for k, op in enumerate(ops):
        for t in op.outputs:
            first.setdefault(t, k)
            last[t] = max(last.get(t, k), k)
        for t in op.inputs:
            if t not in first:          # read but never written: it must exist from the start
                first[t] = -1
            last[t] = max(last.get(t, k), k)
    for t in outputs:
        first.setdefault(t, -1)
        last[t] = n_ops
    for t in persistent:
        first[t] = -1
        last[t] = n_ops
    return {t: (first[t], last[t]) for t in first}


def plan_graph(tensor_bytes: dict[int, int], ops: Sequence[GraphOp], inputs: Sequence[int],
               outputs: Sequence[int], persistent: Sequence[int] = (), alignment: int = 16,
               search_budget: int = 64, seed: int = 0, overlap: bool = True) -> MemoryPlan:
    """Plan an arena for a graph of activation tensors (sizes in bytes);
    overlap=False ignores the operators' overlap bounds."""
    n_ops = len(ops)
    life = tensor_lifetimes(n_ops, ops, inputs, outputs, persistent)
    persistent_set = set(persistent)
    groups = _Groups()
    views: dict[int, int] = {}
    in_place: dict[int, int] = {}

    def group_members(root: int) -> list[int]:
        return [t for t in life if groups.find(t) == root]

    def group_last(root: int) -> int:
        return max(life[t][1] for t in group_members(root))

    for k, op in enumerate(ops):
        if not op.inputs or not op.outputs:
            continue
        src, dst = op.inputs[0], op.outputs[0]
        if src == dst or src not in life or dst not in life:
            continue
        if dst in persistent_set or src in persistent_set:
            continue
        if op.view and tensor_bytes.get(src) == tensor_bytes.get(dst):
            groups.union(src, dst)
            views[dst] = src
        elif op.in_place and tensor_bytes.get(src) == tensor_bytes.get(dst):
            root = groups.find(src)
            if group_last(root) <= k:
                # every tensor in the input's buffer is dead after this op: overwrite it
                groups.union(src, dst)
                in_place[dst] = src
    overlaps: dict[int, tuple[int, int]] = {}
    for k, op in enumerate(ops):
        if not overlap or op.overlap is None or not op.inputs or not op.outputs:
            continue
        src, dst = op.inputs[0], op.outputs[0]
        if src == dst or src not in life or dst not in life or dst in in_place \
                or dst in views or dst in persistent_set or src in persistent_set:
            continue
        root = groups.find(src)
        if groups.find(dst) == root or group_last(root) > k:
            continue                    # the input's bytes are read after this op
        if any(groups.find(t) == root for t in op.inputs[1:]):
            continue                    # another input of the op lives in those bytes
        overlaps[dst] = (src, int(op.overlap))

    by_root: dict[int, list[int]] = {}
    for t in life:
        by_root.setdefault(groups.find(t), []).append(t)
    buffers: list[Buffer] = []
    for members in by_root.values():
        members.sort()
        size = align_up(max(max(tensor_bytes.get(t, 0) for t in members), 1), alignment)
        buffers.append(Buffer(key=f"t{members[0]}", size=size,
                              first=min(life[t][0] for t in members),
                              last=max(life[t][1] for t in members),
                              tensors=tuple(members)))
    for k, op in enumerate(ops):
        if op.scratch_bytes > 0:
            buffers.append(Buffer(key=f"scratch{k}", size=align_up(op.scratch_bytes, alignment),
                                  first=k, last=k, scratch_op=k))
    buffers.sort(key=lambda b: (b.first, b.key))
    key_of = {t: b.key for b in buffers for t in b.tensors}
    pairs = {(key_of[src], key_of[dst]): bound - bound % alignment      # floor: still allowed
             for dst, (src, bound) in overlaps.items()}

    offsets, arena, strategy = place(buffers, alignment, search_budget, seed, pairs)
    for b in buffers:
        b.offset = offsets[b.key]
    plan = MemoryPlan(
        arena_bytes=arena, alignment=alignment,
        offsets={t: b.offset for b in buffers for t in b.tensors},
        scratch_offsets={b.scratch_op: b.offset for b in buffers if b.scratch_op is not None},
        buffers=buffers, strategy=strategy,
        lower_bound_bytes=lower_bound(buffers, pairs),
        greedy_bytes=greedy_first_fit(buffers, alignment),
        naive_bytes=sum(b.size for b in buffers),
        graph_ops=list(ops), graph_inputs=list(inputs), graph_outputs=list(outputs),
        tensor_bytes=dict(tensor_bytes), views=views, in_place=in_place,
        overlaps=overlaps, pairs=pairs)
    return plan


def plan_memory(model, calls=None, alignment: int = 16, search_budget: int = 64,
                overlap: bool = True) -> MemoryPlan:
    """Plan the arena of an IR model; `calls` (one KernelCall per operator, in
    order) adds scratch buffers and the view / in-place / overlap permissions
    (overlap: a call's `overlap` field, set by raster-order lowerings)."""
    tensors = model.tensors

    def activation(t: int) -> bool:
        return t >= 0 and not tensors[t].is_constant

    ops: list[GraphOp] = []
    for k, op in enumerate(model.operators):
        call = calls[k] if calls is not None else None
        reads = [t for t in op.inputs if activation(t)]
        if call is not None and call.absorbed_by is not None:
            ops.append(GraphOp(inputs=[], outputs=[]))     # done by a later, fused call
            continue
        if call is not None and call.fused:
            reads = [t for t in call.inputs if activation(t)]
        elif call is not None:
            reads = [t for t in call.inputs if activation(t)] + \
                    [t for t in reads if t not in call.inputs]
        ops.append(GraphOp(
            inputs=reads, outputs=[t for t in op.outputs if t >= 0],
            scratch_bytes=call.scratch_bytes if call else 0,
            in_place=bool(call and call.in_place),
            view=bool(call and call.view and call.inputs and activation(call.inputs[0])),
            overlap=call.overlap if call else None))
    used = {t for op in ops for t in op.inputs + op.outputs} | set(model.inputs) | set(model.outputs)
    sizes = {t: tensors[t].nbytes for t in used if activation(t)}
    persistent = [t for t in sizes if tensors[t].is_variable]
    return plan_graph(sizes, ops, [t for t in model.inputs if activation(t)],
                      [t for t in model.outputs if activation(t)], persistent,
                      alignment=alignment, search_budget=search_budget, overlap=overlap)


# ---------------------------------------------------------------------------
# placement


def pair_shared_bytes(src: Buffer, dst: Buffer, bound: int) -> int:
    """Most bytes an overlap pair can share: dst placed at src + bound or
    lower, whichever overlaps most."""
    best = 0
    for shift in {bound, min(bound, max(0, src.size - dst.size))}:
        lo, hi = max(0, shift), min(src.size, shift + dst.size)
        best = max(best, hi - lo)
    return best


def lower_bound(buffers: Sequence[Buffer], pairs: dict | None = None) -> int:
    """Largest total size of buffers alive at one time (less what overlap
    pairs alive then can share)."""
    if not buffers:
        return 0
    by_key = {b.key: b for b in buffers}
    times = sorted({b.first for b in buffers})
    best = 0
    for t in times:
        total = sum(b.size for b in buffers if b.first <= t <= b.last)
        for (a, d), bound in (pairs or {}).items():
            sa, sd = by_key[a], by_key[d]
            if sa.first <= t <= sa.last and sd.first <= t <= sd.last:
                total -= pair_shared_bytes(sa, sd, bound)
        best = max(best, total)
    return best


def _forbidden(p_off: int, p: Buffer, b: Buffer, pairs: dict) -> tuple[int, int]:
    """Open interval of offsets at which b would clash with p placed at p_off."""
    bound = pairs.get((p.key, b.key))
    if bound is not None:               # p is b's input: b may start up to p + bound
        return p_off + bound, p_off + p.size
    bound = pairs.get((b.key, p.key))
    if bound is not None:               # b is p's input: p may start up to b + bound
        return p_off - b.size, p_off - bound
    return p_off - b.size, p_off + p.size


def _place_order(order: Sequence[Buffer], alignment: int, best_fit: bool,
                 pairs: dict | None = None) -> tuple[dict, int]:
    placed: list[tuple[int, Buffer]] = []     # (offset, buffer)
    offsets: dict[str, int] = {}
    pairs = pairs or {}
    top = 0
    for b in order:
        bad = sorted(iv for iv in (_forbidden(o, p, b, pairs) for o, p in placed
                                   if p.overlaps_in_time(b)) if iv[1] - iv[0] > 1)
        # allowed offsets: [cursor, lo] between forbidden open intervals (lo, hi)
        best = None
        cursor = 0
        for lo, hi in bad:
            if lo >= cursor:
                start = align_up(cursor, alignment)
                if start <= lo:
                    if not best_fit:
                        best = (0, start)
                        break
                    gap = lo - start
                    if best is None or gap < best[0]:
                        best = (gap, start)
            cursor = max(cursor, hi)
        offset = best[1] if best is not None else align_up(cursor, alignment)
        offsets[b.key] = offset
        placed.append((offset, b))
        top = max(top, offset + b.size)
    return offsets, top


def greedy_first_fit(buffers: Sequence[Buffer], alignment: int = 16) -> int:
    """Arena size of TFLM's GreedyMemoryPlanner: largest first, lowest gap that fits."""
    order = sorted(buffers, key=lambda b: (-b.size, b.first, b.key))
    return _place_order(order, alignment, best_fit=False)[1]


def place(buffers: Sequence[Buffer], alignment: int = 16, search_budget: int = 64,
          seed: int = 0, pairs: dict | None = None) -> tuple[dict[str, int], int, str]:
    """Offsets for buffers; returns (offsets by key, arena bytes, strategy name).
    pairs: (input key, output key) -> overlap bound (see plan_graph)."""
    if not buffers:
        return {}, 0, "empty"
    bound = lower_bound(buffers, pairs)
    orders = {
        "size": lambda b: (-b.size, b.first, b.key),
        "area": lambda b: (-b.size * (b.last - b.first + 1), -b.size, b.key),
        "lifetime": lambda b: (-(b.last - b.first), -b.size, b.key),
        "start": lambda b: (b.first, -b.size, b.key),
        # last layer first: chains of overlap pairs (each output below its
        # input) then stack up from offset 0; scratch buffers fill gaps after
        "reverse": lambda b: (b.scratch_op is not None, -b.last, -b.first, -b.size, b.key),
        "conflicts": None,
    }
    conflicts = {b.key: sum(b.size for o in buffers if o is not b and o.overlaps_in_time(b))
                 for b in buffers}
    orders["conflicts"] = lambda b: (-(conflicts[b.key] + b.size), -b.size, b.key)
    best: tuple[int, dict, str] | None = None
    for name, key in orders.items():
        for best_fit in (False, True):
            offsets, top = _place_order(sorted(buffers, key=key), alignment, best_fit, pairs)
            if best is None or top < best[0]:
                best = (top, offsets, f"{name}/{'best' if best_fit else 'first'}-fit")
            if best[0] <= bound:
                return best[1], best[0], best[2]
    # randomized search: perturb the best deterministic order
    rng = random.Random(seed)
    budget = search_budget if len(buffers) <= 400 else search_budget // 4
    base = sorted(buffers, key=orders["size"])
    for i in range(budget):
        order = list(base)
        for _ in range(max(1, len(order) // 4)):
            a, b = rng.randrange(len(order)), rng.randrange(len(order))
            order[a], order[b] = order[b], order[a]
        offsets, top = _place_order(order, alignment, bool(i & 1), pairs)
        if top < best[0]:
            best = (top, offsets, f"search#{i}")
            base = order
            if top <= bound:
                break
    return best[1], best[0], best[2]


# ---------------------------------------------------------------------------
# checks (used by the tests and by generate_aot before it writes anything)


def check_plan(plan: MemoryPlan) -> None:
    """Raise PlanError if two buffers that are alive together share bytes, an
    offset is misaligned, or a buffer leaves the arena."""
    bufs = plan.buffers
    for b in bufs:
        if b.offset < 0 or b.offset % plan.alignment:
            raise PlanError(f"{b.key}: offset {b.offset} not aligned to {plan.alignment}")
        if b.offset + b.size > plan.arena_bytes:
            raise PlanError(f"{b.key}: [{b.offset}, {b.offset + b.size}) leaves the "
                            f"{plan.arena_bytes}-byte arena")
        for t in b.tensors:
            if plan.tensor_bytes.get(t, 0) > b.size:
                raise PlanError(f"tensor {t} ({plan.tensor_bytes[t]} B) does not fit {b.key}")
            if plan.offsets.get(t) != b.offset:
                raise PlanError(f"tensor {t} is not at its buffer's offset")
    for i, a in enumerate(bufs):
        for b in bufs[i + 1:]:
            if a.overlaps_in_time(b) and a.overlaps_in_memory(b):
                src, dst = (a, b) if (a.key, b.key) in plan.pairs else (b, a)
                bound = plan.pairs.get((src.key, dst.key))
                if bound is not None and dst.offset - src.offset <= bound:
                    continue            # an overlap pair within its kernel's bound
                raise PlanError(
                    f"{a.key} [{a.offset}, {a.offset + a.size}) ops {a.first}..{a.last} and "
                    f"{b.key} [{b.offset}, {b.offset + b.size}) ops {b.first}..{b.last} "
                    "are alive together in the same bytes")


def simulate_plan(plan: MemoryPlan) -> None:
    """Execute the graph on an arena of tokens, independently of how the plan
    was made: every write stamps the tensor's token over its bytes, every read
    checks the bytes still hold the token of the value it expects.  A view
    carries its input's value; in-place outputs are written after the inputs
    are read.  Raises PlanError at the first clobbered read."""
    import numpy as np

    arena = np.full(max(plan.arena_bytes, 1), -1, np.int64)
    value: dict[int, int] = {}          # tensor -> token of the value it must hold
    next_token = [0]

    def new_token() -> int:
        next_token[0] += 1
        return next_token[0]

    def region(t: int) -> slice:
        if t not in plan.offsets:
            raise PlanError(f"tensor {t} has no offset")
        o = plan.offsets[t]
        n = plan.tensor_bytes.get(t, 0)
        if o < 0 or o + n > plan.arena_bytes:
            raise PlanError(f"tensor {t} leaves the arena")
        return slice(o, o + n)

    def write(t: int, token: int) -> None:
        arena[region(t)] = token
        value[t] = token

    def read(t: int, when: str) -> None:
        if t not in value:
            raise PlanError(f"tensor {t} is read ({when}) before anything wrote it")
        r = arena[region(t)]
        if r.size and not (r == value[t]).all():
            raise PlanError(f"tensor {t} was overwritten before it was read ({when})")

    for t in plan.graph_inputs:
        write(t, new_token())
    for t in plan.graph_inputs:         # the host fills every input buffer independently
        read(t, "after the host wrote all inputs")
    # variable tensors and tensors read before being written hold their value from the start
    for k, op in enumerate(plan.graph_ops):
        for t in op.inputs:
            if t not in value and not any(t in o.outputs for o in plan.graph_ops[:k]):
                write(t, new_token())
    for k, op in enumerate(plan.graph_ops):
        for t in op.inputs:
            read(t, f"by op {k}")
        if op.scratch_bytes > 0:
            o = plan.scratch_offsets.get(k)
            if o is None:
                raise PlanError(f"op {k} has no scratch buffer")
            arena[o:o + op.scratch_bytes] = new_token()
            for t in op.inputs:
                read(t, f"by op {k} after its scratch was used")
        for j, t in enumerate(op.outputs):
            if j == 0 and op.view and op.inputs and plan.views.get(t) == op.inputs[0]:
                value[t] = value[op.inputs[0]]          # same bytes, same value
                read(t, f"view made by op {k}")
            else:
                write(t, new_token())
        in_place_regions = [region(t) for t in op.outputs
                            if t in plan.in_place or t in plan.overlaps]
        for t in op.inputs:
            r = region(t)
            dies_here = (not any(t in o.inputs for o in plan.graph_ops[k + 1:])
                         and t not in plan.graph_outputs)
            if dies_here and any(r.start < w.stop and w.start < r.stop for w in in_place_regions):
                continue                        # legitimately overwritten in place
            read(t, f"by op {k} after it wrote its outputs")
        if op.scratch_bytes > 0:
            o = plan.scratch_offsets[k]
            for t in op.outputs:
                r = region(t)
                if r.start < o + op.scratch_bytes and o < r.stop:
                    raise PlanError(f"op {k}: output {t} overlaps its scratch buffer")
    for t in plan.graph_outputs:
        read(t, "after the run")
