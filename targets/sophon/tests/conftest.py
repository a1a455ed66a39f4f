"""Fixtures of the Sophon target's tests: a small hand-built ONNX network (the HRNet
ingredients: strided convs, a 1x1 conv, nearest upsampling, a residual add, global pooling,
a linear head) and the provisioned toolchain, skipped with the reason when absent."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest

DATA = Path(__file__).resolve().parent / "data"
SIZE = 32
CLASSES = 10


def build_tiny_onnx(path: Path, seed: int = 0) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def w(name: str, *shape: int, scale: float) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.normal(0, scale, shape).astype(np.float32), name)

    inits = [w("w1", 8, 3, 3, 3, scale=0.3), w("b1", 8, scale=0.1),
             w("w2", 16, 8, 3, 3, scale=0.2), w("b2", 16, scale=0.1),
             w("w3", 8, 16, 1, 1, scale=0.3), w("b3", 8, scale=0.1),
             w("w4", CLASSES, 8, scale=0.4), w("b4", CLASSES, scale=0.1),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]
    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"]),
        helper.make_node("Resize", ["c3", "", "scales"], ["up"], mode="nearest"),
        helper.make_node("Add", ["r1", "up"], ["sum"]),
        helper.make_node("Relu", ["sum"], ["r3"]),
        helper.make_node("GlobalAveragePool", ["r3"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w4", "b4"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by the toolchain's onnx 1.14 and by the project's onnxruntime
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_onnx(tmp_path_factory.mktemp("sophon_onnx") / "tiny.onnx")


def inputs(n: int, seed: int) -> np.ndarray:
    """Normalised-image-like tensors: smooth structure plus noise, roughly zero mean."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    base = np.stack([np.sin(6 * xx), np.cos(5 * yy), xx - yy]).astype(np.float32)
    return (base[None] * rng.uniform(0.5, 1.5, (n, 3, 1, 1)) + rng.normal(0, 0.5, (n, 3, SIZE, SIZE))
            ).astype(np.float32)


@pytest.fixture(scope="session")
def make_inputs() -> Callable[[int, int], np.ndarray]:
    return inputs


@pytest.fixture(scope="session")
def make_request() -> Callable[..., Any]:
    from hrdeploy.model import InputSpec
    from hrdeploy.target import ConvertRequest

    def make(onnx_path: Path, out_dir: Path, *, precision: str = "fp32", batch_sizes: list[int] | None = None,
             options: dict[str, Any] | None = None, calib: int = 0, dry_run: bool = False) -> ConvertRequest:
        def calibration(count: int) -> Iterator[np.ndarray]:
            yield from inputs(count, seed=100)

        return ConvertRequest(
            onnx_path=Path(onnx_path).resolve(), out_dir=Path(out_dir).resolve(), model="tiny", variant="t32",
            task="classification", input=InputSpec(height=SIZE, width=SIZE), preprocess={}, precision=precision,
            batch_sizes=batch_sizes or [1], options=dict(options or {}), dry_run=dry_run,
            calib_count=calib or 100, calibration=calibration if calib else None,
            reference_inputs=inputs(4, seed=7), log=lambda msg: None)

    return make


@pytest.fixture(scope="session")
def toolchain() -> Any:
    from hrdeploy_target_sophon.toolchain import find_toolchain

    tc = find_toolchain()
    if tc is None:
        pytest.skip("TPU-MLIR is not provisioned here: run 'hrdeploy toolchain install sophon' to run this test")
    return tc
