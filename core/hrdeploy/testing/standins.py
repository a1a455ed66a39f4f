"""Stand-ins for what a target plugin's tests cannot have on a build box: the vendor's
executables, a model exported by hrdeploy, and the manifest the core writes around a
conversion.

A target's tests keep small Python programs that answer like the vendor tools (``fake_atc.py``,
``fake_vamc.py``... with a ``main()``) in a folder of their own; :func:`install_standins` puts
executable wrappers for them into a bin folder for PATH, so the target runs them exactly as it
would run the real tools (subprocess, cwd, logs). Shared because every toolchain target tests
this way (Ascend and VastAI today); only the tool names differ.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

from ..artifact import FORMAT, Artifact
from ..target import ConvertRequest, ConvertResult

if TYPE_CHECKING:
    import pytest

#: what :func:`normalised_pixels` normalises with: ImageNet mean/std in 0..255 units
IMAGENET_MEAN255 = (123.675, 116.28, 103.53)
IMAGENET_STD255 = (58.395, 57.12, 57.375)


def write_wrapper(bin_dir: Path, name: str, module: str, fakes_dir: Path) -> Path:
    """``bin_dir/name``: an executable that runs ``module.main()`` from ``fakes_dir`` with this
    interpreter and exits with its return value."""
    script = Path(bin_dir) / name
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(fakes_dir)!r})\n"
                      f"from {module} import main\nsys.exit(main())\n")
    script.chmod(0o755)
    return script


def install_standins(bin_dir: Path, fakes_dir: Path, tools: Mapping[str, str]) -> Path:
    """Wrappers for every ``{tool name: stand-in module}`` in ``bin_dir`` (created); returns
    ``bin_dir``, to put first on PATH."""
    bin_dir = Path(bin_dir)
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, module in tools.items():
        write_wrapper(bin_dir, name, module, fakes_dir)
    return bin_dir


def activate_standins(monkeypatch: "pytest.MonkeyPatch", bin_dir: Path, fakes_dir: Path,
                      tools: Mapping[str, str]) -> Path:
    """Make this test "the machine with the toolchain": wrappers for ``tools`` in ``bin_dir``,
    first on PATH, and the stand-in modules (fake vendor runtimes) importable in this process.
    Undone with the test's ``monkeypatch``; call :func:`forget_modules` when the test ends."""
    install_standins(bin_dir, fakes_dir, tools)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.syspath_prepend(str(fakes_dir))
    return Path(bin_dir)


def hide_toolchain(monkeypatch: "pytest.MonkeyPatch", empty_dir: Path) -> None:
    """Make this test "a box without the toolchain": PATH is one empty folder, so no vendor
    tool (and nothing else) is found by name. Targets that also look in vendor folders need
    those patched away too."""
    Path(empty_dir).mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("PATH", str(empty_dir))


def forget_modules(prefixes: Iterable[str]) -> None:
    """Drop stand-in modules (and their submodules) a test imported, so that nothing after it
    (another plugin's tests, a probe) finds a fake vendor runtime through ``sys.modules``."""
    tops = set(prefixes)
    for name in [m for m in sys.modules if m.split(".")[0] in tops]:
        del sys.modules[name]


def tiny_onnx(path: Path, seed: int = 0, input_dims: Sequence[int | str] = ("N", 3, "H", "W")) -> Path:
    """A two-output model to convert: ``image`` (N,3,H,W, any size) -> ``heatmaps`` (N,4,H,W) =
    relu(conv3x3), ``logits`` (N,4) = their spatial mean; weights drawn with ``seed``.
    ``input_dims`` declares the input's dims as hrdeploy's export does: a name where the dim is
    dynamic, a number where it is fixed (the stand-in toolchains check shapes against it)."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.5
    b = rng.standard_normal(4).astype(np.float32) * 0.1
    nodes = [helper.make_node("Conv", ["image", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv"], ["heatmaps"]),
             helper.make_node("GlobalAveragePool", ["heatmaps"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["logits"], axis=1)]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, list(input_dims))],
        [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, ["N", 4, "H", "W"]),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])],
        initializer=[helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.flatten()),
                     helper.make_tensor("b", TensorProto.FLOAT, b.shape, b)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 10  # ORT 1.31 reads IR <= 13; make_model writes 14
    onnx.save(model, str(path))
    return Path(path)


def ort_outputs(onnx_path: Path, x: np.ndarray, input_name: str = "image") -> list[np.ndarray]:
    """ONNX Runtime fp32 CPU outputs (one thread): the reference a stand-in run is compared to."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), sess_options=so, providers=["CPUExecutionProvider"])
    return sess.run(None, {input_name: x})


def normalised_pixels(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """An (n,3,h,w) float32 batch made from random uint8 pixels normalised with ImageNet
    mean/std, as every resize/crop pipeline makes them: device-side normalisation (AIPP, vdsp)
    inverts it exactly."""
    px = np.random.default_rng(seed).integers(0, 256, (n, h, w, 3)).astype(np.float32)
    mean = np.array(IMAGENET_MEAN255, np.float32)
    std = np.array(IMAGENET_STD255, np.float32)
    return ((px - mean) / std).transpose(0, 3, 1, 2).copy()


def artifact_from_result(request: ConvertRequest, result: ConvertResult, target: str,
                         outputs: Sequence[str]) -> Artifact:
    """The artifact ``hrdeploy convert`` would describe after ``Target.convert``: the manifest
    fields the core fills from the request and the result (no export, reference or parity
    step), for testing ``open``/``bench_native`` on what ``convert`` returned."""
    manifest: dict[str, Any] = {
        "format": FORMAT, "model": request.model, "variant": request.variant, "task": request.task,
        "input": request.input.to_dict(), "outputs": list(outputs), "preprocess": request.preprocess,
        "target": target, "precision": request.precision, "batch_sizes": result.batch_sizes,
        "sizes": [list(s) for s in (result.sizes or [])] or None, "files": dict(result.files),
        "target_options": request.options, "commands": request.commands, "dry_run": request.dry_run,
        "conversion": result.extra}
    return Artifact(request.out_dir, manifest)
