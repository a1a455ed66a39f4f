"""Stand-in for the vaststreamx wheel (tests only): the Model / ModelOperator / Graph / Stream
API of VastModelZOO's samples on the stand-in three-piece. A tensor input must be fp16 in the
device activation layout (decoded with the reference formula); an image input goes through the
vdsp fusion op of the loaded JSON. Outputs are fp16, like the device's.

FAKE_VASTAI_DIES (default 1) is the number of dies.
"""
from __future__ import annotations

import json
import os
from types import SimpleNamespace
from typing import Any

import numpy as np

import vastai_fakelib as lib

StreamBalanceMode = SimpleNamespace(ONCE=0, RUN=1)
GraphOutputType = SimpleNamespace(GRAPH_OUTPUT_TYPE_NCHW_DEVICE=0, GRAPH_OUTPUT_TYPE_NCHW_HOST=1)
ImageFormat = SimpleNamespace(YUV_NV12=0, RGB_PLANAR=5000, BGR_PLANAR=5001, RGB_INTERLEAVE=5002,
                              BGR_INTERLEAVE=5003, GRAY=5004)
TypeFlag = SimpleNamespace(FLOAT16=1, UINT8=2)
_current = {"device": None}


def set_device(device_id: int) -> int:
    if not 0 <= int(device_id) < int(os.environ.get("FAKE_VASTAI_DIES", "1")):
        return -1
    _current["device"] = int(device_id)
    return 0


class Tensor:
    def __init__(self, array: np.ndarray, device_id: int) -> None:
        self.array, self.device_id = array, device_id

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape


class Image:
    def __init__(self, data: np.ndarray, fmt: int, width: int, height: int, device_id: int) -> None:
        self.data, self.format, self.width, self.height, self.device_id = data, fmt, width, height, device_id


def from_numpy(array: np.ndarray, device_id: int) -> Tensor:
    return Tensor(np.array(array), device_id)


def as_numpy(t: Tensor) -> np.ndarray:
    return t.array


def create_image(data: np.ndarray, fmt: int, width: int, height: int, device_id: int) -> Image:
    if data.dtype != np.uint8:
        raise RuntimeError("create_image needs uint8 data")
    if fmt in (ImageFormat.RGB_PLANAR, ImageFormat.BGR_PLANAR) and data.shape != (3, height, width):
        raise RuntimeError(f"planar image must be (3, {height}, {width}), got {data.shape}")
    if width % 2 or height % 2:
        raise RuntimeError("image width and height must be even")
    return Image(data, fmt, width, height, device_id)


class Model:
    def __init__(self, prefix: str, batch_size: int = 1, hw_config: str = "") -> None:
        if _current["device"] is None:
            raise RuntimeError("call set_device first")
        self.header, onnx_bytes = lib.read_model(prefix)
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        self.session = ort.InferenceSession(onnx_bytes, sess_options=so, providers=["CPUExecutionProvider"])
        self.batch_size = int(batch_size)
        self.max_batch_size = max(self.batch_size, 1)
        self.input_count, self.output_count = 1, len(self.session.get_outputs())
        self.input_shape = [(self.batch_size, *self.header["shape"][1:])]


class ModelOperator:
    def __init__(self, model: Model) -> None:
        self.model = model


class _VdspOp:
    op_type = 100

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config


class Operator:
    @staticmethod
    def load_ops_from_json_file(path: str) -> list[_VdspOp]:
        doc = json.loads(open(path).read())
        if doc.get("OpType") != "FUSION_OP_RGB_RESIZE_CVTCOLOR_CROP_NORM_TENSOR":
            return []
        return [_VdspOp(doc["OpConfig"])]


class Graph:
    def __init__(self, output_type: int | None = None) -> None:
        self.output_type = output_type
        self.ops: list[Any] = []

    def add_operators(self, *ops: Any) -> None:
        self.ops.extend(ops)


class Stream:
    def __init__(self, graph: Graph, mode: int) -> None:
        self.graph, self.mode = graph, mode
        self.outputs: list[Any] = []
        self.built = False
        self.closed = False

    def register_operator_output(self, op: Any) -> None:
        self.outputs.append(op)

    def build(self) -> None:
        if not any(isinstance(op, ModelOperator) for op in self.graph.ops) or not self.outputs:
            raise RuntimeError("graph needs a model operator with a registered output")
        self.built = True

    def _model(self) -> Model:
        return next(op for op in self.graph.ops if isinstance(op, ModelOperator)).model

    def run_sync(self, inputs: list[Any]) -> list[list[Tensor]]:
        if not self.built:
            raise RuntimeError("stream not built")
        model = self._model()
        c, h, w = model.header["shape"][1:]
        vdsp = next((op for op in self.graph.ops if isinstance(op, _VdspOp)), None)
        results = []
        for item in inputs:
            if isinstance(item, Image):
                if vdsp is None:
                    raise RuntimeError("an image input needs a vdsp op in the graph")
                if item.format != ImageFormat.RGB_PLANAR:
                    raise RuntimeError("the vdsp op's IimageFormat is RGB_PLANAR")
                x = lib.vdsp_apply(item.data, vdsp.config)
            else:
                if vdsp is not None:
                    raise RuntimeError("a tensor input cannot go through the vdsp op")
                (t,) = item
                a = t.array
                expect = (1, -(-w // 8), -(-h // 8), -(-c // 4), 256)
                if a.dtype != np.float16 or a.shape != expect:
                    raise RuntimeError(f"tensor input must be fp16 {expect} (device layout), got {a.dtype} {a.shape}")
                x = lib.detensorize(a, c, h, w)
            if x.shape != (1, c, h, w):
                raise RuntimeError(f"model input is {(1, c, h, w)}, got {x.shape}")
            name = model.session.get_inputs()[0].name
            outs = model.session.run(None, {name: x.astype(np.float32)})
            if model.header.get("softmax"):
                e = np.exp(outs[-1] - outs[-1].max(axis=1, keepdims=True))
                outs[-1] = e / e.sum(axis=1, keepdims=True)
            results.append([Tensor(o.astype(np.float16), _current["device"]) for o in outs])
        return results

    def close_input(self) -> None:
        self.closed = True

    def wait_until_done(self) -> None:
        pass
