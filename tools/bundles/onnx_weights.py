"""Store an ONNX graph's weights as fp16 while it computes in f32: every large f32
initializer becomes an fp16 initializer followed by a Cast to f32 under its old name, so the
graph's interface and the runtime's arithmetic stay f32 (ONNX Runtime folds the casts when
it loads the graph) and the file holds half the bytes.

Shared by gm-tiny's export (tools/train/gm_tiny/export.py) and the ACE-Step export
(tools/export-acestep). numpy and onnx only; a function of its arguments.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

# Initializers smaller than this stay f32 (biases, norms: no size to gain).
MIN_FP16_ELEMENTS = 256
# The largest finite fp16 magnitude.
FP16_MAX = 65504.0


def store_fp16(model: onnx.ModelProto, exact_only: bool = False) -> tuple[int, int]:
    """Rewrites `model` in place; returns (tensors, elements) stored as fp16. A weight past
    fp16's range raises ValueError naming it (nothing is rewritten then). `exact_only`:
    convert only initializers fp16 holds exactly (weights rounded beforehand), leaving f32
    what the exporter computed and folded into constants (rotary tables, say), which fp16
    would round."""
    graph = model.graph
    casts, kept, count, elements = [], [], 0, 0
    for init in graph.initializer:
        array = numpy_helper.to_array(init)
        if init.data_type != onnx.TensorProto.FLOAT or array.size < MIN_FP16_ELEMENTS:
            kept.append(init)
            continue
        if exact_only and not np.array_equal(array.astype(np.float16).astype(np.float32), array):
            kept.append(init)
            continue
        if not np.all(np.abs(array) < FP16_MAX):
            raise ValueError(f"initializer {init.name} overflows fp16 (|x| up to "
                             f"{float(np.abs(array).max()):.3g})")
        half = numpy_helper.from_array(array.astype(np.float16), init.name + "_fp16")
        kept.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT,
                                      name=init.name + "_cast"))
        count += 1
        elements += array.size
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    return count, elements
