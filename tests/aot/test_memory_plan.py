"""The arena planner: no two live tensors share bytes, on random graphs too.

Plans are checked two ways: check_plan (pairwise: buffers alive together are
disjoint) and simulate_plan (executes the graph on an arena of tokens and
checks every read sees the value that was written for it), which does not
trust the planner's own lifetime bookkeeping.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinygen.plan.memory import GraphOp, PlanError, check_plan, greedy_first_fit, plan_graph, plan_memory, simulate_plan

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def graphs(draw):
    n_in = draw(st.integers(1, 3))
    sizes = {t: draw(st.integers(1, 3000)) for t in range(n_in)}
    ops: list[GraphOp] = []
    n_ops = draw(st.integers(1, 25))
    for _ in range(n_ops):
        avail = sorted(sizes)
        k = draw(st.integers(1, min(3, len(avail))))
        # bias toward recent tensors, like real networks
        reads = draw(st.lists(st.sampled_from(avail[-6:]), min_size=1, max_size=k, unique=True))
        kind = draw(st.sampled_from(["plain", "plain", "view", "in_place", "multi",
                                     "overlap"]))
        t = len(sizes)
        if kind == "view":
            sizes[t] = sizes[reads[0]]
            ops.append(GraphOp(inputs=reads[:1], outputs=[t], view=True))
        elif kind == "in_place":
            sizes[t] = sizes[reads[0]]
            ops.append(GraphOp(inputs=reads, outputs=[t], in_place=True,
                               scratch_bytes=draw(st.sampled_from([0, 0, 100]))))
        elif kind == "overlap":
            sizes[t] = draw(st.integers(1, 3000))
            bound = draw(st.integers(-sizes[t], sizes[reads[0]]))
            ops.append(GraphOp(inputs=reads, outputs=[t], overlap=bound,
                               scratch_bytes=draw(st.sampled_from([0, 0, 64]))))
        elif kind == "multi":
            sizes[t] = draw(st.integers(1, 3000))
            sizes[t + 1] = draw(st.integers(1, 3000))
            ops.append(GraphOp(inputs=reads, outputs=[t, t + 1]))
        else:
            sizes[t] = draw(st.integers(1, 3000))
            ops.append(GraphOp(inputs=reads, outputs=[t],
                               scratch_bytes=draw(st.sampled_from([0, 0, 0, 64, 1000]))))
    produced = [t for op in ops for t in op.outputs]
    consumed = {t for op in ops for t in op.inputs}
    outputs = sorted({produced[-1]} | set(draw(st.lists(st.sampled_from(produced), max_size=2)))
                     | ({t for t in produced if t not in consumed} if draw(st.booleans())
                        else set()))
    if draw(st.booleans()):          # a graph input that is also an output
        outputs = sorted(set(outputs) | {0})
    return sizes, ops, list(range(n_in)), outputs


@SETTINGS
@given(graphs())
def test_random_graph_plans_are_valid(g):
    sizes, ops, inputs, outputs = g
    plan = plan_graph(sizes, ops, inputs, outputs)
    check_plan(plan)
    simulate_plan(plan)
    assert plan.arena_bytes % 16 == 0
    assert all(o % 16 == 0 for o in plan.offsets.values())
    assert plan.lower_bound_bytes <= plan.arena_bytes <= plan.greedy_bytes <= plan.naive_bytes \
        or plan.arena_bytes <= plan.greedy_bytes
    assert plan.arena_bytes <= plan.naive_bytes
    # every activation tensor has a place
    assert set(plan.offsets) >= set(sizes) - set()


@SETTINGS
@given(graphs(), st.data())
def test_corrupted_plans_are_caught(g, data):
    """Moving one buffer onto another that is alive at the same time must be
    reported by both checks (for buffers whose values someone reads, so the
    token simulation can see it; overlap pairs may legitimately share bytes)."""
    sizes, ops, inputs, outputs = g
    plan = plan_graph(sizes, ops, inputs, outputs)
    read = {t for op in ops for t in op.inputs} | set(outputs)

    def observable(b):
        return any(t in read for t in b.tensors)

    pairs = [(a, b) for i, a in enumerate(plan.buffers) for b in plan.buffers[i + 1:]
             if a.overlaps_in_time(b) and a.tensors and b.tensors
             and observable(a) and observable(b)
             and (a.key, b.key) not in plan.pairs and (b.key, a.key) not in plan.pairs]
    if not pairs:
        return
    a, b = data.draw(st.sampled_from(pairs))
    bad = copy.deepcopy(plan)
    ba = next(x for x in bad.buffers if x.key == a.key)
    bb = next(x for x in bad.buffers if x.key == b.key)
    bb.offset = ba.offset
    for t in bb.tensors:
        bad.offsets[t] = ba.offset
    bad.arena_bytes = max(bad.arena_bytes, ba.offset + max(ba.size, bb.size))
    with pytest.raises(PlanError):
        check_plan(bad)
    with pytest.raises(PlanError):
        simulate_plan(bad)


def test_overlap_chain_stacks_up():
    """A chain of raster-order ops (each output may start 448 / 64 bytes below
    its input, like DS-CNN's depthwise / pointwise layers): every output goes
    a little below its input instead of into a second buffer."""
    sizes = {0: 496}
    ops = []
    for k in range(8):
        sizes[k + 1] = 8000
        ops.append(GraphOp([k], [k + 1], overlap=-448 if k % 2 else -64))
    plan = plan_graph(sizes, ops, [0], [8])
    check_plan(plan)
    simulate_plan(plan)
    assert len(plan.overlaps) == 8
    assert plan.arena_bytes < 8000 + 4 * (448 + 64) + 512
    for dst, (src, bound) in plan.overlaps.items():
        d, o = plan.offsets[dst], plan.offsets[src]
        assert d - o <= bound or d >= o + sizes[src] or d + sizes[dst] <= o
    plain = plan_graph(sizes, ops, [0], [8], overlap=False)
    assert plain.arena_bytes == 16000 and not plain.overlaps


def test_overlap_refused_when_input_lives_on():
    sizes = {0: 256, 1: 256, 2: 256}
    ops = [GraphOp([0], [1], overlap=-16), GraphOp([0, 1], [2], overlap=-16)]
    plan = plan_graph(sizes, ops, [0], [2])
    assert 1 not in plan.overlaps            # 0 is read again by op 1
    assert plan.overlaps == {2: (0, -16)} or 2 not in plan.overlaps
    check_plan(plan)
    simulate_plan(plan)


def test_overlap_beyond_bound_is_caught():
    sizes = {0: 512, 1: 512, 2: 64}
    ops = [GraphOp([0], [1], overlap=-32), GraphOp([1], [2])]
    plan = plan_graph(sizes, ops, [0], [2])
    check_plan(plan)
    assert plan.offsets[1] - plan.offsets[0] <= -32
    bad = copy.deepcopy(plan)
    b1 = next(b for b in bad.buffers if 1 in b.tensors)
    b0 = next(b for b in bad.buffers if 0 in b.tensors)
    b1.offset = b0.offset - 16                  # 16 bytes above what the kernel allows
    bad.offsets[1] = b1.offset
    if b1.offset >= 0:
        with pytest.raises(PlanError):
            check_plan(bad)


def test_chain_reaches_lower_bound_and_reuses():
    # a plain CNN-like chain: ping-pong between two buffers
    sizes = {0: 3072, 1: 8192, 2: 8192, 3: 2048, 4: 2048, 5: 512, 6: 40}
    ops = [GraphOp([0], [1]), GraphOp([1], [2]), GraphOp([2], [3]), GraphOp([3], [4]),
           GraphOp([4], [5]), GraphOp([5], [6])]
    plan = plan_graph(sizes, ops, [0], [6])
    check_plan(plan)
    simulate_plan(plan)
    assert plan.arena_bytes == plan.lower_bound_bytes == 16384
    assert plan.naive_bytes > plan.arena_bytes


def test_view_shares_buffer_and_in_place_overwrites():
    sizes = {0: 100, 1: 100, 2: 100, 3: 100}
    ops = [GraphOp([0], [1]), GraphOp([1], [2], view=True), GraphOp([2], [3], in_place=True)]
    plan = plan_graph(sizes, ops, [0], [3])
    simulate_plan(plan)
    assert plan.offsets[1] == plan.offsets[2] == plan.offsets[3]
    assert plan.arena_bytes == 224           # input + one shared buffer


def test_in_place_refused_when_input_is_read_later():
    sizes = {0: 64, 1: 64, 2: 64}
    ops = [GraphOp([0], [1], in_place=True), GraphOp([0, 1], [2])]
    plan = plan_graph(sizes, ops, [0], [2])
    simulate_plan(plan)
    assert plan.offsets[0] != plan.offsets[1]


def test_model_inputs_and_outputs_survive():
    """The host writes inputs before run and reads outputs after it: an input
    may be reused only after its last reader, outputs never during the run."""
    sizes = {0: 256, 1: 256, 2: 256, 3: 256}
    ops = [GraphOp([0], [1]), GraphOp([1], [2]), GraphOp([2], [3])]
    plan = plan_graph(sizes, ops, [0], [1, 3])
    simulate_plan(plan)
    b1 = next(b for b in plan.buffers if 1 in b.tensors)
    assert b1.last == len(ops)            # output 1 lives past the end
    assert plan.offsets[1] not in (plan.offsets[2], plan.offsets[3])


def test_beats_or_matches_tflm_greedy_on_branchy_graph():
    # inception-like: one input feeds three branches that are concatenated
    sizes = {0: 4096, 1: 2048, 2: 1024, 3: 6144, 4: 1024, 5: 512, 6: 1024, 7: 4096}
    ops = [GraphOp([0], [1]), GraphOp([1], [2]), GraphOp([0], [3]), GraphOp([3], [4]),
           GraphOp([0], [5]), GraphOp([5], [6]), GraphOp([2, 4, 6], [7])]
    plan = plan_graph(sizes, ops, [0], [7])
    check_plan(plan)
    simulate_plan(plan)
    assert plan.arena_bytes <= greedy_first_fit(plan.buffers)
    assert plan.arena_bytes >= plan.lower_bound_bytes


def test_plan_memory_on_ir_model():
    from tflite_builder import conv2d_model

    from tinygen.ir import parse_tflite
    from tinygen.plan.aot import lower_model
    model = parse_tflite(conv2d_model(np.random.default_rng(0), h=6, w=6))
    calls = lower_model(model)
    plan = plan_memory(model, calls, overlap=False)
    check_plan(plan)
    simulate_plan(plan)
    x, y = model.inputs[0], model.outputs[0]
    assert plan.offsets[x] != plan.offsets[y]
    assert plan.arena_bytes >= model.tensors[x].nbytes + model.tensors[y].nbytes
    # the convolution writes pixels in raster order: its output may start up to
    # `overlap` bytes after its input (here: before it) and share the rest
    bound = calls[0].overlap
    assert bound < 0
    plan = plan_memory(model, calls)
    check_plan(plan)
    simulate_plan(plan)
    assert plan.overlaps == {y: (x, bound)}
    assert plan.offsets[y] - plan.offsets[x] <= bound
    assert plan.arena_bytes < model.tensors[x].nbytes + model.tensors[y].nbytes
