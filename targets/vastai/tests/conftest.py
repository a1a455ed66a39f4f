"""Fixtures for the VastAI target tests: a tiny ONNX model, calibration images and the
stand-in tools (vamc, vamp, vasmi, vaststreamx) from tests/fakes."""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

FAKES = Path(__file__).resolve().parent / "fakes"


def _build_tiny_onnx(path: Path) -> Path:
    """image (N,3,H,W) -> heatmaps (N,4,H,W) = relu(conv3x3), logits (N,4) = mean of heatmaps."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.5
    b = rng.standard_normal(4).astype(np.float32) * 0.1
    nodes = [helper.make_node("Conv", ["image", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv"], ["heatmaps"]),
             helper.make_node("GlobalAveragePool", ["heatmaps"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["logits"], axis=1)]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, ["N", 4, "H", "W"]),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])],
        initializer=[helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.flatten()),
                     helper.make_tensor("b", TensorProto.FLOAT, b.shape, b)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 10
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_tiny_onnx(tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.fixture(scope="session")
def ort_run():
    def run(onnx_path: Path, x: np.ndarray) -> list[np.ndarray]:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        return ort.InferenceSession(str(onnx_path), sess_options=so,
                                    providers=["CPUExecutionProvider"]).run(None, {"image": x})
    return run


@pytest.fixture(scope="session")
def calib_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six JPEG and one PNG images (vamc samples one suffix: the PNG must be left out)."""
    import cv2

    d = tmp_path_factory.mktemp("calib")
    rng = np.random.default_rng(2)
    for i in range(6):
        cv2.imwrite(str(d / f"img{i}.JPEG"), rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))
    cv2.imwrite(str(d / "odd.png"), rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))
    return d


STAND_INS = ("vaststreamx", "vastai_fakelib", "fake_vamc", "fake_vamp", "fake_vasmi")


def _forget_stand_ins() -> None:
    """Drop the stand-in modules a test imported (nothing after it may find a fake vaststreamx)."""
    for name in [m for m in sys.modules if m.split(".")[0] in STAND_INS]:
        del sys.modules[name]


def _wrapper(bin_dir: Path, name: str, module: str) -> None:
    script = bin_dir / name
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(FAKES)!r})\n"
                      f"from {module} import main\nsys.exit(main())\n")
    script.chmod(0o755)


def install_tools(bin_dir: Path) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, module in (("vamc", "fake_vamc"), ("vamp", "fake_vamp"), ("vasmi", "fake_vasmi")):
        _wrapper(bin_dir, name, module)
    return bin_dir


@dataclass
class VastaiEnv:
    root: Path
    bin: Path
    calls_file: Path

    def calls(self, tool: str | None = None) -> list[dict]:
        if not self.calls_file.is_file():
            return []
        out = [json.loads(line) for line in self.calls_file.read_text().splitlines()]
        return [c for c in out if tool is None or c["argv"][0] == tool]


@pytest.fixture
def vastai_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fixtures_dir: Path):
    pytest.importorskip("yaml")  # the vamc stand-in reads its config with PyYAML
    bin_dir = install_tools(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.syspath_prepend(str(FAKES))
    monkeypatch.setenv("FAKE_VASMI", str(fixtures_dir / "toolchains" / "vasmi_getcardmode_getfreq_VA1-16G.txt"))
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_VASTAI_CALLS", str(calls))
    for var in ("FAKE_VAMC_MODE", "FAKE_VAMP_MODE", "FAKE_VASTAI_DIES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("hrdeploy_target_vastai.probe.device_nodes", lambda: ["/dev/vastai0"])
    yield VastaiEnv(tmp_path, bin_dir, calls)
    _forget_stand_ins()


@pytest.fixture
def device_machine(monkeypatch: pytest.MonkeyPatch):
    """Turn this test into "the machine with the card": the stand-ins on PATH and importable."""
    def setup(bin_dir: Path) -> None:
        pytest.importorskip("yaml")
        install_tools(bin_dir)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
        monkeypatch.syspath_prepend(str(FAKES))
        monkeypatch.setattr("hrdeploy_target_vastai.probe.device_nodes", lambda: ["/dev/vastai0"])
    yield setup
    _forget_stand_ins()


@pytest.fixture
def no_vastai(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr("hrdeploy_target_vastai.probe.EXTRA_BIN_DIRS", ())
