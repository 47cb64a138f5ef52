"""Store an ONNX graph's weights in half precision while it computes in f32: every large f32
initializer becomes an fp16 (or bf16) initializer followed by a Cast to f32 under its old
name, so the graph's interface and the runtime's arithmetic stay f32 (ONNX Runtime folds the
casts when it loads the graph) and the file holds half the bytes.

fp16 keeps 10 bits of mantissa but overflows past 65504; bf16 keeps 7 bits with f32's range,
and holds a bf16 checkpoint exactly.

Shared by gm-tiny's export (tools/train/gm_tiny/export.py) and the ACE-Step export
(tools/export-acestep). numpy, ml_dtypes (onnx's own dependency) and onnx only; a function of
its arguments (`round_weights` takes torch modules without importing torch).
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
from onnx import helper, numpy_helper

# Initializers smaller than this stay f32 (biases, norms: no size to gain).
MIN_HALF_ELEMENTS = 256
# The half-precision formats: numpy dtype. A stored initializer is named `<name>_<format>`.
HALF = {"fp16": np.float16, "bf16": ml_dtypes.bfloat16}


def original_name(name: str) -> str:
    """The f32 initializer a stored half-precision one stands for (`up.weight_fp16` ->
    `up.weight`); other names unchanged."""
    for half in HALF:
        if name.endswith("_" + half):
            return name.removesuffix("_" + half)
    return name


def rounded(array: np.ndarray, half: str) -> np.ndarray:
    """`array` rounded to `half` and back to f32 (inf where it overflows)."""
    with np.errstate(over="ignore"):
        return array.astype(HALF[half]).astype(np.float32)


def round_weights(modules, half: str) -> int:
    """Rounds every f32 parameter and buffer of the torch `modules` to the nearest `half`
    value, in place and kept as f32, so the exported graph's weights are stored as `half`
    without a further loss (`store_half(..., exact_only=True)`) and the modules that checks
    and parity vectors run are the graphs'. A weight past the format's range raises
    ValueError naming it, and then nothing is rounded. Returns the tensors rounded.

    Written through `tensor.detach().numpy()`, a view of a CPU tensor's memory."""
    views = [(name, tensor.detach().numpy()) for module in modules
             for name, tensor in [*module.named_parameters(), *module.named_buffers()]
             if str(tensor.dtype) == "torch.float32"]
    nearest = [(name, view, rounded(view, half)) for name, view in views]
    for name, view, near in nearest:
        if not np.all(np.isfinite(near)) and np.all(np.isfinite(view)):
            raise ValueError(f"weight {name} overflows {half} (|x| up to "
                             f"{float(np.abs(view).max()):.3g})")
    for _, view, near in nearest:
        np.copyto(view, near)
    return len(nearest)


def store_half(model: onnx.ModelProto, half: str = "fp16",
               exact_only: bool = False) -> tuple[int, int]:
    """Rewrites `model` in place; returns (tensors, elements) stored as `half` ("fp16" or
    "bf16"). A weight past the format's range raises ValueError naming it (nothing is
    rewritten then). `exact_only`: convert only initializers the format holds exactly
    (weights rounded beforehand), leaving f32 what the exporter computed and folded into
    constants (rotary tables, say), which the format would round."""
    graph = model.graph
    casts, kept, count, elements = [], [], 0, 0
    for init in graph.initializer:
        array = numpy_helper.to_array(init)
        if init.data_type != onnx.TensorProto.FLOAT or array.size < MIN_HALF_ELEMENTS:
            kept.append(init)
            continue
        near = rounded(array, half)
        if exact_only and not np.array_equal(near, array):
            kept.append(init)
            continue
        if not np.all(np.isfinite(near)):
            raise ValueError(f"initializer {init.name} overflows {half} (|x| up to "
                             f"{float(np.abs(array).max()):.3g})")
        stored = numpy_helper.from_array(array.astype(HALF[half]), f"{init.name}_{half}")
        kept.append(stored)
        casts.append(helper.make_node("Cast", [stored.name], [init.name],
                                      to=onnx.TensorProto.FLOAT, name=init.name + "_cast"))
        count += 1
        elements += array.size
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    return count, elements
