"""Half-precision on the CPU (csrc/runtime/cpu_half_compute.h): under mode "float32" every heavy op of a
float16/bfloat16 CPU model computes in float32 and rounds its output once to the model's dtype; under
"native" it is PyTorch's own kernel in that dtype; "auto" picks float32 exactly where the CPU has no
native arithmetic for the dtype. Each op is checked for taking the path its mode names (bit-exact
against the definition) and for staying within one rounding of the float32 result."""

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from native_diffusers import _C
from tolerances import KERNEL_REL_L2, relative_l2

HALF_DTYPES = [pytest.param(torch.float16, id="float16"), pytest.param(torch.bfloat16, id="bfloat16")]


@pytest.fixture
def mode():
    """Sets the process-wide mode for one test and restores it after."""
    before = _C.cpu_half_compute_mode()
    yield _C.set_cpu_half_compute_mode
    _C.set_cpu_half_compute_mode(before)


def randn(*shape, dtype, seed=0, scale=1.0):
    return (torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale).to(dtype)


def _cases(dtype):
    """(name, engine op, PyTorch op, inputs): each engine op beside the PyTorch op it runs."""
    x4 = randn(2, 64, 9, 11, dtype=dtype)
    conv_w, conv_b = randn(32, 64, 3, 3, dtype=dtype, seed=1, scale=0.05), randn(32, dtype=dtype, seed=2)
    x3 = randn(2, 77, 96, dtype=dtype, seed=3)
    lin_w, lin_b = randn(40, 96, dtype=dtype, seed=4, scale=0.1), randn(40, dtype=dtype, seed=5)
    q, k, v = (randn(2, 4, 50, 40, dtype=dtype, seed=s) for s in (6, 7, 8))
    gamma, beta = randn(64, dtype=dtype, seed=9), randn(64, dtype=dtype, seed=10)
    add = randn(2, 64, dtype=dtype, seed=11)
    causal = torch.ones(50, 50, dtype=torch.bool).tril()
    return [
        ("conv2d", lambda: _C.ops.conv2d(x4, conv_w, conv_b, 1, 1),
         lambda *t: F.conv2d(t[0], t[1], t[2], padding=1), (x4, conv_w, conv_b)),
        ("linear", lambda: _C.ops.linear(x3, lin_w, lin_b), F.linear, (x3, lin_w, lin_b)),
        ("linear_no_bias", lambda: _C.ops.linear(x3, lin_w), F.linear, (x3, lin_w)),
        ("attention", lambda: _C.ops.attention(q, k, v), F.scaled_dot_product_attention, (q, k, v)),
        ("masked_attention", lambda: _C.ops.masked_attention(q, k, v, causal),
         lambda *t: F.scaled_dot_product_attention(t[0], t[1], t[2], attn_mask=causal), (q, k, v)),
        ("causal_attention", lambda: _C.ops.masked_attention(q, k, v, is_causal=True),
         lambda *t: F.scaled_dot_product_attention(*t, is_causal=True), (q, k, v)),
        ("group_norm", lambda: _C.ops.group_norm(x4, 8, gamma, beta, 1e-6),
         lambda *t: F.group_norm(t[0], 8, t[1], t[2], 1e-6), (x4, gamma, beta)),
        ("layer_norm", lambda: _C.ops.layer_norm(x3, randn(96, dtype=dtype), None, 1e-5),
         lambda *t: F.layer_norm(t[0], (96,), t[1], None, 1e-5), (x3, randn(96, dtype=dtype))),
        # The ResNet block's fused add + norm + SiLU: the add and the SiLU stay elementwise ops in the
        # model's dtype (rounded there, as diffusers rounds them), only the norm is upcast.
        ("group_norm_add_silu", lambda: _C.ops.group_norm(x4, 8, gamma, beta, 1e-6, add, True),
         lambda h, g, b: F.silu(F.group_norm(h, 8, g, b, 1e-6).to(dtype)),
         (x4 + add[:, :, None, None], gamma, beta)),
    ]


def _in_float32(reference, inputs, dtype):
    return reference(*(t.float() for t in inputs)).to(dtype)


@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_float32_mode_computes_in_float32_and_rounds_once(mode, dtype):
    mode("float32")
    for name, ours, reference, inputs in _cases(dtype):
        got = ours()
        assert got.dtype == dtype, name
        if name == "group_norm_add_silu":
            h, g, b = inputs
            expected = F.silu(F.group_norm(h.float(), 8, g.float(), b.float(), 1e-6).to(dtype))
        else:
            expected = _in_float32(reference, inputs, dtype)
        torch.testing.assert_close(got, expected, rtol=0, atol=0, msg=name)
        exact = reference(*(t.float() for t in inputs))
        assert relative_l2(got, exact) <= KERNEL_REL_L2[dtype], name


@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_native_mode_is_pytorchs_own_kernel(mode, dtype):
    mode("native")
    for name, ours, reference, inputs in _cases(dtype):
        torch.testing.assert_close(ours(), reference(*inputs), rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_auto_mode_follows_the_cpus_native_arithmetic(mode, dtype):
    mode("auto")
    name, ours, reference, inputs = _cases(dtype)[0]
    expected = reference(*inputs) if _C.cpu_has_native_arithmetic(dtype) else _in_float32(reference, inputs, dtype)
    torch.testing.assert_close(ours(), expected, rtol=0, atol=0)


def test_float32_models_are_untouched(mode):
    mode("float32")
    x, w = randn(2, 8, 5, 5, dtype=torch.float32), randn(4, 8, 3, 3, dtype=torch.float32, seed=1)
    torch.testing.assert_close(_C.ops.conv2d(x, w, None, 1, 1), F.conv2d(x, w, padding=1), rtol=0, atol=0)
    assert _C.cpu_has_native_arithmetic(torch.float32)


def test_mode_switch_round_trips_and_refuses_unknown_modes(mode):
    for value in ("float32", "native", "auto"):
        mode(value)
        assert _C.cpu_half_compute_mode() == value
    with pytest.raises(ValueError, match="must be 'auto', 'float32' or 'native', got 'fast'"):
        _C.set_cpu_half_compute_mode("fast")


@pytest.mark.parametrize("setting, expected", [("float32", "float32"), ("native", "native"), ("sideways", "auto")])
def test_environment_sets_the_starting_mode(setting, expected):
    env = dict(os.environ, ND_CPU_HALF_COMPUTE=setting)
    code = "from native_diffusers import _C; print(_C.cpu_half_compute_mode())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected
