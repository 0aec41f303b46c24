"""Operator cost rules for fvcore's jit-trace counter, one table per counting convention.

Two conventions (``protocols.md`` §7):

``macs`` -- fvcore's own rules (one fused multiply-add = 1; convolution, linear, the matmul family,
norms, interpolation, pooling, grid sampling) plus rules for what fvcore leaves at zero:

* ``torchvision::deform_conv2d``: two buckets. ``deform_conv2d`` = the dense-equivalent convolution,
  ``N * C_out * H_out * W_out * (C_in / groups) * k_h * k_w`` (what the fixtures call the true MACs of a
  DCN). ``deform_conv2d_sampling`` = the bilinear sampling that builds the deformed columns: every
  sampled value ``N * C_in * k_h * k_w * H_out * W_out`` is a weighted sum of 4 neighbours (4 MACs),
  plus 1 multiply by the modulation mask when a mask is used. The bilinear weights themselves (a few
  multiplies per sampling point, shared over channels of a group) are not counted. Keep the buckets
  apart: subtract the sampling bucket to compare with dense-equivalent tables.
* ``aten::upsample_bicubic2d``: 16 per output element (the 4 x 4 taps), in line with fvcore's
  4 per output element for bilinear.
* ``aten::linalg_vector_norm`` / ``aten::norm``: 1 per input element (square and accumulate).
* ``aten::baddbmm``: the bmm part; ``aten::avg_pool2d``: 1 per input element (as fvcore's adaptive pool).
* ``aten::im2col`` / ``aten::col2im`` (unfold / fold), elementwise arithmetic, activations, indexing,
  reductions and re-layouts: 0 MACs by definition, but handled explicitly so that they are listed with
  their node count instead of drowning the real "unsupported" list.

``masa2021`` -- the counter shipped with MASA-SR (§7.3), emulated on the same trace:

* convolution: ``N * H_out * W_out * C_out * w.shape[1] * k_h * k_w``; for a transposed convolution
  ``w.shape[1]`` is ``C_out / groups`` and the spatial size the *output* size, hence its 4x over-count of
  a stride-2 deconvolution with C_in = C_out;
* ``bmm``: T*n*k*m; ``addmm``: n*k*m; ``matmul``: batch*k*m (leading dims of the first operand times the
  second's matrix); ``einsum``: only ``abc,abd->acd`` and ``abc,adc->adb``, anything else unsupported;
* ``aten::linear`` and ``aten::mm`` never appeared as trace nodes in the PyTorch versions that counter
  was written for (``Linear`` traced as ``addmm``/``matmul``), so they get the addmm/matmul formula;
* 1 per output element: add, add_, mul, sub, div, floor_divide, relu, relu_; softmax 5; batch_norm 4
  (per input element); rsqrt 2; dropout 1. In-place variants other than add_/relu_ (mul_, div_...),
  sigmoid, leaky_relu, interpolation, norms, unfold/fold, pooling... count 0 and are reported as
  unsupported, exactly as that counter warned about them;
* operators outside ATen (``torchvision::deform_conv2d``, custom autograd functions) count 0.

Every handler has fvcore's signature ``(inputs, outputs) -> Counter | int`` on ``torch._C.Value`` lists
(a plain number is filed under the op name without ``aten::``), except that a handler may return None
for "this node is not supported by the convention" (``bench.engines.cost.macs`` reports it as unsupported).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Union

from fvcore.nn.flop_count import _DEFAULT_SUPPORTED_OPS
from fvcore.nn.jit_handles import get_shape

Handle = Callable[[list[Any], list[Any]], Union["Counter[str]", int, float, None]]

CONVENTIONS: tuple[str, ...] = ("macs", "masa2021")

# Buckets that are multiply-accumulates of a product (what FLOPS-M sums inside the matching part).
PRODUCT_BUCKETS: frozenset[str] = frozenset(
    {"conv", "bmm", "baddbmm", "addmm", "matmul", "mm", "linear", "einsum", "deform_conv2d"}
)


def _numel(shape: Iterable[int] | None) -> int:
    return math.prod(shape) if shape is not None else 0


def _out_numel(outputs: list[Any]) -> int:
    shape = get_shape(outputs[0])
    # A traced Python-number result (size arithmetic) is a 0-dim tensor: one element.
    return _numel(shape) if shape is not None else 1


def per_output_element(cost: int) -> Handle:
    """``cost`` per element of the (broadcast) output."""

    def handle(inputs: list[Any], outputs: list[Any]) -> int:
        return cost * _out_numel(outputs)

    return handle


def per_input_element(cost: int) -> Handle:
    """``cost`` per element of the first input."""

    def handle(inputs: list[Any], outputs: list[Any]) -> int:
        return cost * _numel(get_shape(inputs[0]))

    return handle


def zero_cost(inputs: list[Any], outputs: list[Any]) -> int:
    """A known operator that is not a multiply-accumulate (listed, counted as 0)."""
    return 0


# --------------------------------------------------------------------------------------------------
# convention "macs": fvcore defaults + extensions


def deform_conv2d_macs(inputs: list[Any], outputs: list[Any]) -> Counter[str]:
    """``torchvision::deform_conv2d(input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w,
    dilation_h, dilation_w, groups, offset_groups, use_mask)``: dense-equivalent MACs + sampling MACs."""
    batch, c_in = get_shape(inputs[0])[:2]
    c_out, c_in_per_group, k_h, k_w = get_shape(inputs[1])
    h_out, w_out = get_shape(outputs[0])[2:]
    use_mask = bool(inputs[13].toIValue())
    dense = batch * c_out * h_out * w_out * c_in_per_group * k_h * k_w
    samples = batch * c_in * k_h * k_w * h_out * w_out
    return Counter({"deform_conv2d": dense, "deform_conv2d_sampling": samples * (4 + int(use_mask))})


def baddbmm_macs(inputs: list[Any], outputs: list[Any]) -> int:
    """``baddbmm(self, batch1, batch2, ...)``: the batched product (T, n, k) x (T, k, m)."""
    t, n, k = get_shape(inputs[1])
    m = get_shape(inputs[2])[-1]
    return t * n * k * m


# Not multiply-accumulates: elementwise arithmetic and activations, reductions, indexing, sorting,
# re-layouts and padding (ATen names without the ``aten::`` prefix). fvcore lists most as unsupported.
ZERO_MAC_OPS: tuple[str, ...] = tuple(
    "aten::" + name
    for name in """
    add add_ sub sub_ rsub mul mul_ div div_ neg abs pow sqrt rsqrt exp log reciprocal sign round floor
    ceil fmod remainder floor_divide lerp relu relu_ leaky_relu leaky_relu_ sigmoid sigmoid_ tanh tanh_
    prelu gelu elu hardtanh hardtanh_ selu selu_ softmax log_softmax clamp clamp_ clamp_min clamp_min_
    clamp_max clamp_max_ dropout feature_dropout sum mean std var var_mean std_mean max min amax amin
    argmax argmin topk sort argsort cumsum eq ne lt le gt ge where logical_and logical_or logical_not
    masked_fill masked_fill_ gather scatter scatter_ scatter_add scatter_add_ index index_select
    index_put_ index_add index_add_ take_along_dim repeat repeat_interleave expand_as flip roll tile
    meshgrid linspace arange ones_like zeros_like empty_like fill_ zero_ clone copy_ fill unfold im2col
    col2im pixel_shuffle pixel_unshuffle pad constant_pad_nd reflection_pad2d replication_pad2d
    max_pool2d max_pool2d_with_indices embedding one_hot contiguous view_as reshape_as unflatten
    movedim bitwise_and bitwise_or __and__ __or__ type_as detach nan_to_num isfinite isnan isinf numel
    """.split()
)

MACS_HANDLES: dict[str, Handle] = {
    **_DEFAULT_SUPPORTED_OPS,
    **{name: zero_cost for name in ZERO_MAC_OPS},
    "torchvision::deform_conv2d": deform_conv2d_macs,
    "aten::upsample_bicubic2d": per_output_element(16),
    "aten::linalg_vector_norm": per_input_element(1),
    "aten::norm": per_input_element(1),
    "aten::baddbmm": baddbmm_macs,
    "aten::avg_pool2d": per_input_element(1),
}


# --------------------------------------------------------------------------------------------------
# convention "masa2021": the MASA-SR counter


def masa_conv(inputs: list[Any], outputs: list[Any]) -> Counter[str]:
    """``aten::_convolution``: batch * out spatial * C_out * w.shape[1] * kernel (multiplies only)."""
    batch = get_shape(inputs[0])[0]
    weight = get_shape(inputs[1])
    out = get_shape(outputs[0])
    macs = batch * _numel(out[2:]) * out[1] * weight[1] * _numel(weight[2:])
    return Counter({"conv": macs})


def bmm_macs(inputs: list[Any], outputs: list[Any]) -> Counter[str]:
    t, n, k = get_shape(inputs[0])
    m = get_shape(inputs[1])[-1]
    return Counter({"bmm": t * n * k * m})


def addmm_macs(inputs: list[Any], outputs: list[Any]) -> Counter[str]:
    n, k = get_shape(inputs[1])
    m = get_shape(inputs[2])[-1]
    return Counter({"addmm": n * k * m})


def masa_matmul(inputs: list[Any], outputs: list[Any]) -> Counter[str]:
    """batch * k * m with batch = all leading dims of the first operand. For the 2-D x 2-D case this is
    the counter's formula; for batched operands it is the product of the broadcast batch and n*k*m."""
    a, b = get_shape(inputs[0]), get_shape(inputs[1])
    if len(b) == 1:
        return Counter({"matmul": _numel(a)})
    out = get_shape(outputs[0])
    k, m = b[-2], b[-1]
    return Counter({"matmul": _numel(out[:-1]) * k * m if out is not None else _numel(a[:-1]) * k * m})


def mm_macs(inputs: list[Any], outputs: list[Any]) -> Counter[str]:
    n, k = get_shape(inputs[0])
    m = get_shape(inputs[1])[-1]
    return Counter({"mm": n * k * m})


def linear_macs(inputs: list[Any], outputs: list[Any]) -> Counter[str]:
    x, w = get_shape(inputs[0]), get_shape(inputs[1])
    return Counter({"linear": _numel(x) * w[0]})


def masa_einsum(inputs: list[Any], outputs: list[Any]) -> Counter[str] | None:
    """Only the two patterns the MASA counter knew; anything else is reported as unsupported."""
    equation = inputs[0].toIValue().replace(" ", "")
    letters = list(dict.fromkeys(c for c in equation if c.isalpha()))
    canonical = equation.translate({ord(c): ord("a") + i for i, c in enumerate(letters)})
    shapes = [get_shape(v) for v in inputs[1].node().inputs()]
    if canonical == "abc,abd->acd":
        n, c, t = shapes[0]
        return Counter({"einsum": n * c * t * shapes[1][-1]})
    if canonical == "abc,adc->adb":
        n, t, g = shapes[0]
        return Counter({"einsum": n * t * g * shapes[1][1]})
    return None


MASA2021_ELEMENTWISE_COST: dict[str, int] = {
    "aten::add": 1,
    "aten::add_": 1,
    "aten::mul": 1,
    "aten::sub": 1,
    "aten::div": 1,
    "aten::floor_divide": 1,
    "aten::relu": 1,
    "aten::relu_": 1,
    "aten::softmax": 5,
    "aten::rsqrt": 2,
    "aten::dropout": 1,
}

MASA2021_HANDLES: dict[str, Handle] = {
    "aten::_convolution": masa_conv,
    "aten::bmm": bmm_macs,
    "aten::addmm": addmm_macs,
    "aten::matmul": masa_matmul,
    "aten::mm": mm_macs,
    "aten::linear": linear_macs,
    "aten::einsum": masa_einsum,
    "aten::batch_norm": per_input_element(4),
    **{name: per_output_element(cost) for name, cost in MASA2021_ELEMENTWISE_COST.items()},
}

HANDLES_BY_CONVENTION: dict[str, dict[str, Handle]] = {"macs": MACS_HANDLES, "masa2021": MASA2021_HANDLES}
