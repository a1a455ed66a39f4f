"""Multiply-accumulates of an ONNX graph at a given input size, from its shapes.

Only the operators that do the arithmetic of these networks are counted (convolutions and
matrix products, float or quantised); element-wise ops, pooling, resizing and normalisation
are memory-bound and left out, as is usual for the GFLOPs figures papers quote. GFLOPs are
2 x MACs (one multiply and one add).
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

# op type -> (input index of the weight / second operand, how to count)
_CONV = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3, "DeformConv": 1}
_MATMUL = {"MatMul": 1, "MatMulInteger": 1, "QLinearMatMul": 3}


def _dims(shape_proto: Any) -> list[int] | None:
    dims = []
    for d in shape_proto.dim:
        if not d.HasField("dim_value"):
            return None
        dims.append(int(d.dim_value))
    return dims


def _prod(values: Sequence[int]) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


def with_input_shape(model: Any, shape: Sequence[int], symbolic: bool = False) -> Any:
    """A copy of ``model`` whose (single) graph input has the concrete ``shape``, with shapes
    inferred through the graph (by onnx, or by onnxruntime's symbolic shape inference, which
    also follows shapes computed in the graph: Shape -> Gather -> Reshape)."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    inp = m.graph.input[0]
    dims = inp.type.tensor_type.shape.dim
    if len(dims) != len(shape):
        raise ValueError(f"input {inp.name} has rank {len(dims)}, got shape {list(shape)}")
    for d, v in zip(dims, shape):
        d.Clear()
        d.dim_value = int(v)
    # intermediate value_info from the exporter may hold the symbolic shapes: infer afresh
    del m.graph.value_info[:]
    if symbolic:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        return SymbolicShapeInference.infer_shapes(m, auto_merge=True)
    return onnx.shape_inference.infer_shapes(m, strict_mode=False, data_prop=True)


def count_macs(model: Any, input_shape: Sequence[int] | None = None) -> dict[str, Any]:
    """MACs of Conv/ConvTranspose/Gemm/MatMul (and their quantised forms) in ``model``.

    Returns ``{"macs": total, "gflops": 2 * total / 1e9, "by_op": {op: macs},
    "nodes": counted, "unknown": [names of matching nodes whose shapes are not known]}``.
    """
    if input_shape is None:
        return _count(model)
    res = _count(with_input_shape(model, input_shape))
    if res["unknown"]:  # e.g. TResNet's space-to-depth stem: shapes computed in the graph
        res = _count(with_input_shape(model, input_shape, symbolic=True))
    return res


def _count(m: Any) -> dict[str, Any]:
    g = m.graph
    shapes: dict[str, list[int] | None] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        shapes[vi.name] = _dims(vi.type.tensor_type.shape)
    for init in g.initializer:
        shapes[init.name] = [int(d) for d in init.dims]

    by_op: Counter[str] = Counter()
    unknown: list[str] = []
    counted = 0
    for node in g.node:
        op = node.op_type
        macs: int | None = None
        if op in _CONV:
            w = shapes.get(node.input[_CONV[op]])
            y = shapes.get(node.output[0])
            if w and y:
                # every output element: Cin/group x kernel MACs (w = [Cout, Cin/group, *k])
                macs = _prod(y) * _prod(w[1:])
        elif op == "ConvTranspose":
            x = shapes.get(node.input[0])
            w = shapes.get(node.input[1])  # [Cin, Cout/group, *k]
            if x and w:
                macs = _prod(x) * _prod(w[1:])
        elif op == "Gemm":
            a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
            if a and b:
                attrs = {at.name: at.i for at in node.attribute}
                m_, k = (a[1], a[0]) if attrs.get("transA") else (a[0], a[1])
                n = b[0] if attrs.get("transB") else b[1]
                macs = m_ * k * n
        elif op in _MATMUL:
            a = shapes.get(node.input[0])
            y = shapes.get(node.output[0])
            if a and y:
                # numpy semantics: out = [..., M, N]; each element sums over K = a[-1]
                macs = _prod(y) * a[-1]
        else:
            continue
        if macs is None:
            unknown.append(node.name or op)
            continue
        by_op[op] += macs
        counted += 1
    total = sum(by_op.values())
    return {"macs": int(total), "gflops": round(2 * total / 1e9, 4), "by_op": dict(by_op),
            "nodes": counted, "unknown": unknown}
