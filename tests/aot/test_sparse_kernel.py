"""Unstructured pruning: the sparse int8 matrix product (tg_sparse_mm_s8) is
bit-exact with the tflite_micro interpreter, and the cost model picks it
only where it is both smaller and faster than the dense kernel."""

from __future__ import annotations

import pytest
from harness import assert_bit_exact, assert_bit_exact_m4, qemu_available
from pruned_models import sparse_mlp

from tinygen.ir import parse_tflite
from tinygen.plan.aot import plan_aot
from tinygen.plan.ops import sparse


@pytest.fixture
def policy(monkeypatch):
    def set_policy(value: str) -> None:
        monkeypatch.setattr(sparse, "POLICY", value)
    return set_policy


def _kernels(model, core="cortex-m4f"):
    calls, _ = plan_aot(model, core=core)
    return [c.kernel for c in calls]


def test_every_layer_sparse_is_bit_exact_with_tflm(policy, tmp_path):
    policy("always")
    tflite = sparse_mlp()
    model = parse_tflite(tflite)
    kernels = _kernels(model, core=None)
    assert kernels.count("tg_sparse_mm_s8") == 4, kernels
    # the 300-deep Dense needs 16-bit column indices
    calls, _ = plan_aot(model)
    deep = [c for c in calls if c.kernel == "tg_sparse_mm_s8" and c.params["depth"] == "300"]
    assert deep and deep[0].params["col8"] == "NULL"
    assert_bit_exact(tflite, tmp_path, n_inputs=30)


def test_cost_model_takes_sparse_only_where_it_pays(policy):
    from tinygen.plan.ops.sparse import dense_instructions, sparse_instructions
    policy("auto")
    model = parse_tflite(sparse_mlp())
    calls, _ = plan_aot(model, core="cortex-m4f")
    for c in calls:
        if c.kernel == "tg_sparse_mm_s8":
            # the comment carries both sides of the comparison
            assert "sparse" in c.comment and "dense" in c.comment
    # kws_cnn's 1x1 layer (125 pixels, 48x48) at the sparsities of the bench:
    # 90 % pays, 75 % and 50 % do not on a DSP core
    from tinygen.plan.lowering import KernelCall
    dense = KernelCall(kernel="tg_conv2d_dsp_s8", params_type="", params={}, inputs=[],
                       outputs=[], sources=[])
    d = dense_instructions(dense, 125, 48, 48)
    assert sparse_instructions(125, 48, int(0.1 * 2304)) < d
    assert sparse_instructions(125, 48, int(0.25 * 2304)) > d
    assert sparse_instructions(125, 48, int(0.5 * 2304)) > d


def test_a_dense_model_keeps_dense_kernels(policy):
    from keras_models import keras_cnn
    policy("auto")
    assert "tg_sparse_mm_s8" not in _kernels(parse_tflite(keras_cnn()))


@pytest.mark.slow
@pytest.mark.skipif(not qemu_available(), reason="needs qemu-system-arm and arm-none-eabi-gcc")
def test_cortex_m4_sparse_kernel_bit_exact_with_tflm(policy, tmp_path):
    policy("always")
    binary = assert_bit_exact_m4(sparse_mlp(), tmp_path, n_inputs=10)
    assert "tg_sparse_mm_s8" in (tmp_path / "aot" / "model.c").read_text()
    assert binary is not None
