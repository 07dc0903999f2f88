"""Model FLOPs of a training step, counted from its loss's jaxpr, and accelerator peaks.

Why not XLA's ``cost_analysis()``: on GPU it does not see the convolutions and matrix
products that run as library calls (cuDNN, cuBLAS custom calls), so its FLOP count (and an
MFU from it) is far too low for a ResNet. Here the count is analytical:

* trace the loss, ``jax.make_jaxpr(loss_fn)(params, ...)``, and walk every equation,
  into nested jaxprs (``jit``, ``custom_jvp``/``custom_vjp`` calls, remat, ``cond``
  (the costliest branch), ``scan`` (times its length); a ``while`` body counts once);
* a ``dot_general`` costs ``2 * prod(output shape) * prod(contracted sizes)``, a
  ``conv_general_dilated`` ``2 * prod(output shape) * prod(kernel shape) / out_features``
  (multiply-adds counted as two FLOPs; element-wise work, norms, softmax and the optimiser
  are not counted, as in the usual model-FLOPs convention);
* each product is *trainable* when one of its inputs depends on the differentiated
  argument (``params``; ``stop_gradient`` cuts the dependence), else *frozen* (the EMA
  teacher's forward pass, anything on stop-gradient inputs);
* a step costs ``3 x trainable + frozen``: the backward pass of a product is two products
  of the same size (gradients for both operands), the forward pass of the frozen ones is
  all they cost. The first layer needs no input gradient, so its true backward cost is one
  product, not two; the convention counts two (as PaLM's 6 N per token does).

``peak_flops(device_kind, dtype)`` gives the dense (no sparsity) peak of one chip from the
vendors' data sheets; float32 matrix products run at the TF32 tensor-core rate on these
GPUs (XLA's default precision) and as bfloat16 passes on TPUs (default precision). CPUs
and unknown devices give ``None``, and so does MFU.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np
from jax.extend.core import Literal

# Dense peak TFLOP/s per chip: (device_kind substring, bfloat16, float32).
# float32 = TF32 tensor cores (GPU) or the bf16 MXU passes of default precision (TPU).
PEAK_TFLOPS = (
    ("H100 PCIe", 756.0, 378.0),
    ("H100", 989.4, 494.7),          # SXM; 1979 / 989 with 2:4 sparsity
    ("H200", 989.4, 494.7),
    ("A100", 312.0, 156.0),
    ("TPU v4", 275.0, 275.0),
    ("TPU v5 lite", 197.0, 197.0),   # v5e
    ("TPU v5e", 197.0, 197.0),
    ("TPU v5p", 459.0, 459.0),
    ("TPU v5", 459.0, 459.0),        # v5p reports "TPU v5"
    ("TPU v6 lite", 918.0, 918.0),   # v6e (Trillium)
    ("TPU v6e", 918.0, 918.0),
)


def peak_flops(device_kind: str, dtype) -> Optional[float]:
  """Peak FLOP/s of one chip of ``device_kind`` for matrix products in ``dtype``
  (bfloat16 / float16 or float32), or ``None`` when unknown (CPUs)."""
  half = np.dtype(dtype) in (np.dtype(jax.numpy.bfloat16), np.dtype(np.float16))
  for name, bf16, fp32 in PEAK_TFLOPS:
    if name.lower() in device_kind.lower():
      return (bf16 if half else fp32) * 1e12
  return None


@dataclasses.dataclass
class FlopCount:
  trainable: int = 0   # forward FLOPs of products that depend on the differentiated input
  frozen: int = 0      # forward FLOPs of the others (EMA teacher, stop-gradient inputs)

  @property
  def step(self) -> int:
    """FLOPs of one training step: forward and backward of the trainable products."""
    return 3 * self.trainable + self.frozen

  def __add__(self, other: "FlopCount") -> "FlopCount":
    return FlopCount(self.trainable + other.trainable, self.frozen + other.frozen)

  def scaled(self, factor: int) -> "FlopCount":
    return FlopCount(self.trainable * factor, self.frozen * factor)


def product_flops(eqn) -> int:
  """FLOPs of one ``dot_general`` or ``conv_general_dilated`` equation, else 0."""
  name = eqn.primitive.name
  if name == "dot_general":
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    lhs_shape = eqn.invars[0].aval.shape
    contracted = math.prod(lhs_shape[d] for d in lhs_contract)
    return 2 * math.prod(eqn.outvars[0].aval.shape) * contracted
  if name == "conv_general_dilated":
    rhs_shape = eqn.invars[1].aval.shape
    out_features = rhs_shape[eqn.params["dimension_numbers"].rhs_spec[0]]
    return 2 * math.prod(eqn.outvars[0].aval.shape) * math.prod(rhs_shape) // out_features
  return 0


def _sub_jaxprs(eqn):
  """``(jaxpr, consts-free invar offset into eqn.invars, repeat)`` of nested jaxprs."""
  params = eqn.params
  name = eqn.primitive.name
  if name == "cond":
    return [(_open(b), 1, 1) for b in params["branches"]]
  if name == "while":
    return [(_open(params["body_jaxpr"]), params["cond_nconsts"], 1)]
  if name == "scan":
    return [(_open(params["jaxpr"]), 0, int(params["length"]))]
  found = []
  for value in params.values():
    if hasattr(value, "eqns") or (hasattr(value, "jaxpr") and hasattr(value.jaxpr, "eqns")):
      found.append((_open(value), 0, 1))
  return found


def _open(jaxpr):
  return jaxpr.jaxpr if hasattr(jaxpr, "jaxpr") else jaxpr


def count_jaxpr(jaxpr, tainted: Sequence[bool]) -> tuple[FlopCount, list[bool]]:
  """Walks ``jaxpr`` with ``tainted[i]`` marking invars that depend on the differentiated
  argument; returns the count and which outvars depend on it."""
  marks: dict[Any, bool] = {v: bool(t) for v, t in zip(jaxpr.invars, tainted)}
  is_tainted = lambda v: False if isinstance(v, Literal) else marks.get(v, False)
  total = FlopCount()
  for eqn in jaxpr.eqns:
    inputs = [is_tainted(v) for v in eqn.invars]
    subs = _sub_jaxprs(eqn)
    if subs:
      counts, outs = [], None
      for sub, offset, repeat in subs:
        sub_in = inputs[offset:offset + len(sub.invars)]
        if len(sub_in) != len(sub.invars):  # unknown calling convention: be conservative
          sub_in = [any(inputs)] * len(sub.invars)
        count, sub_out = count_jaxpr(sub, sub_in)
        counts.append(count.scaled(repeat))
        outs = sub_out if outs is None else [a or b for a, b in zip(outs, sub_out)]
      if eqn.primitive.name == "cond":  # one branch runs: the costliest
        total = total + max(counts, key=lambda c: c.step)
      else:
        total = total + sum(counts, FlopCount())
      if outs is None or len(outs) != len(eqn.outvars) or eqn.primitive.name == "while":
        outs = [any(inputs)] * len(eqn.outvars)
    else:
      flops = product_flops(eqn)
      if any(inputs):
        total = total + FlopCount(trainable=flops)
      else:
        total = total + FlopCount(frozen=flops)
      cut = eqn.primitive.name == "stop_gradient"
      outs = [any(inputs) and not cut] * len(eqn.outvars)
    for var, mark in zip(eqn.outvars, outs):
      marks[var] = mark
  return total, [is_tainted(v) for v in jaxpr.outvars]


def count_loss(loss_fn: Callable, *args, wrt: int = 0) -> FlopCount:
  """FLOPs of ``loss_fn(*args)``, products depending on ``args[wrt]`` counted trainable."""
  closed = jax.make_jaxpr(loss_fn)(*args)
  leaves = [jax.tree_util.tree_leaves(a) for a in args]
  tainted = [i == wrt for i, arg_leaves in enumerate(leaves) for _ in arg_leaves]
  return count_jaxpr(closed.jaxpr, tainted)[0]
