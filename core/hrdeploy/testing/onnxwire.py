"""Graph inputs of an ONNX file read straight from its protobuf wire format, for the stand-in
vendor compilers (atc, vamc): they check ``--input_shape`` / the config's shape against the
model's real input and start fast, without importing onnx. Field numbers from onnx.proto:
ModelProto.graph=7; GraphProto.initializer=5, input=11; TensorProto.name=8; ValueInfoProto
.name=1, type=2; TypeProto.tensor_type=1; Tensor.shape=2; TensorShapeProto.dim=1;
Dimension.dim_value=1 (dim_param=2 is a symbolic, i.e. dynamic, dim)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator


def _fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of one protobuf message, wire format only."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, i = _varint(buf, i)
        elif wt == 2:
            n, i = _varint(buf, i)
            val, i = buf[i:i + n], i + n
        elif wt == 1:
            val, i = buf[i:i + 8], i + 8
        elif wt == 5:
            val, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"unsupported wire type {wt}")
        yield num, wt, val


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        b = buf[i]
        i += 1
        out |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return out, i


def onnx_inputs(path: str | Path) -> dict[str, list[int | None]]:
    """Graph input name -> its dims (an int, or None where the dim is symbolic or unknown);
    initializers listed as inputs are left out. Raises ValueError when the file is not an ONNX
    model."""
    try:
        return _inputs(Path(path).read_bytes())
    except (StopIteration, ValueError, IndexError, UnicodeDecodeError, TypeError) as e:
        raise ValueError(f"{path} is not an ONNX model ({type(e).__name__})") from None


def _inputs(data: bytes) -> dict[str, list[int | None]]:
    graph = next(v for n, wt, v in _fields(data) if n == 7 and wt == 2)
    inits = {bytes(v2).decode() for n, wt, v in _fields(graph) if n == 5 and wt == 2
             for n2, wt2, v2 in _fields(v) if n2 == 8 and wt2 == 2}
    out: dict[str, list[int | None]] = {}
    for n, wt, vi in _fields(graph):
        if n != 11 or wt != 2:
            continue
        name, dims = "", []
        for n2, wt2, v2 in _fields(vi):
            if n2 == 1:
                name = bytes(v2).decode()
            elif n2 == 2:
                for n3, _, tt in _fields(v2):
                    if n3 == 1:
                        for n4, _, shape in _fields(tt):
                            if n4 == 2:
                                dims = [_dim(d) for n5, _, d in _fields(shape) if n5 == 1]
        if name not in inits:
            out[name] = dims
    return out


def _dim(buf: bytes) -> int | None:
    value = None
    for n, wt, v in _fields(buf):
        if n == 1 and wt == 0:
            value = v
    return value
