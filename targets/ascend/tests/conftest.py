"""Fixtures for the Ascend target tests: a tiny two-output ONNX model and the stand-in tools
(atc, npu-smi, ais_bench) from tests/fakes put on PATH / PYTHONPATH."""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

FAKES = Path(__file__).resolve().parent / "fakes"


def build_tiny_onnx(path: Path) -> Path:
    """image (N,3,H,W) -> heatmaps (N,4,H,W) = relu(conv3x3), logits (N,4) = mean of heatmaps."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.5
    b = rng.standard_normal(4).astype(np.float32) * 0.1
    nodes = [
        helper.make_node("Conv", ["image", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["heatmaps"]),
        helper.make_node("GlobalAveragePool", ["heatmaps"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["logits"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])],
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
    return build_tiny_onnx(tmp_path_factory.mktemp("onnx") / "tiny.onnx")


def _ort_run(onnx_path: Path, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), sess_options=so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"image": x})


@pytest.fixture(scope="session")
def ort_run():
    """ONNX Runtime fp32 outputs of a model file: the reference every stand-in run is compared to."""
    return _ort_run


def _forget_stand_ins(prefixes: tuple[str, ...]) -> None:
    """Drop the stand-in modules imported by a test, so that nothing after it (another
    plugin's tests, a probe) finds a fake ais_bench through sys.modules."""
    for name in [m for m in sys.modules if m.split(".")[0] in prefixes]:
        del sys.modules[name]


STAND_INS = ("ais_bench", "ascend_fakeom", "fake_atc", "fake_npu_smi")


def _wrapper(bin_dir: Path, name: str, module: str) -> None:
    script = bin_dir / name
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(FAKES)!r})\n"
                      f"from {module} import main\nsys.exit(main())\n")
    script.chmod(0o755)


def install_tools(bin_dir: Path) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    _wrapper(bin_dir, "atc", "fake_atc")
    _wrapper(bin_dir, "npu-smi", "fake_npu_smi")
    return bin_dir


@dataclass
class AscendEnv:
    root: Path
    bin: Path
    calls: Path
    ais_calls: Path

    def atc_calls(self) -> list[dict]:
        if not self.calls.is_file():
            return []
        return [json.loads(line) for line in self.calls.read_text().splitlines()]

    def bench_calls(self) -> list[dict]:
        if not self.ais_calls.is_file():
            return []
        return [json.loads(line) for line in self.ais_calls.read_text().splitlines()]


@pytest.fixture
def ascend_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fixtures_dir: Path):
    """atc and npu-smi stand-ins on PATH (npu-smi shows two 310P3 cards), the ais_bench
    stand-in importable here and in subprocesses, a toolkit version.info under
    ASCEND_HOME_PATH."""
    bin_dir = install_tools(tmp_path / "bin")
    home = tmp_path / "ascend-toolkit" / "latest"
    home.mkdir(parents=True)
    (home / "version.info").write_text("Version=7.0.RC1\nversion_dir=7.0.RC1\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("PYTHONPATH", f"{FAKES}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.syspath_prepend(str(FAKES))
    monkeypatch.setenv("ASCEND_HOME_PATH", str(home))
    tc = fixtures_dir / "toolchains"
    monkeypatch.setenv("FAKE_NPU_SMI", str(tc / "npu-smi_info_310P3_2cards_noheader.txt"))
    monkeypatch.setenv("FAKE_NPU_SMI_M", str(tc / "npu-smi_info_-m_910A_8npu.txt"))
    calls, ais_calls = tmp_path / "atc_calls.jsonl", tmp_path / "ais_calls.jsonl"
    monkeypatch.setenv("FAKE_ATC_CALLS", str(calls))
    monkeypatch.setenv("FAKE_AIS_CALLS", str(ais_calls))
    for var in ("FAKE_ATC_MODE", "FAKE_ATC_SUFFIX", "FAKE_AIS_OLD", "FAKE_AIS_SPELLING", "FAKE_AIS_PAIRS",
                "FAKE_AIS_CLI_MODE", "FAKE_NPU_DEVICES"):
        monkeypatch.delenv(var, raising=False)
    yield AscendEnv(tmp_path, bin_dir, calls, ais_calls)
    _forget_stand_ins(STAND_INS)


@pytest.fixture
def device_machine(monkeypatch: pytest.MonkeyPatch, fixtures_dir: Path):
    """Turn this test into "the machine with the device": put the stand-ins on PATH."""
    def setup(bin_dir: Path) -> None:
        install_tools(bin_dir)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
        monkeypatch.setenv("PYTHONPATH", str(FAKES))
        monkeypatch.syspath_prepend(str(FAKES))
        monkeypatch.setenv("FAKE_NPU_SMI", str(fixtures_dir / "toolchains" / "npu-smi_info_310P3_1card.txt"))
    yield setup
    _forget_stand_ins(STAND_INS)


@pytest.fixture
def no_ascend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without any Ascend software: empty PATH for the tools, no npu-smi."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("ASCEND_HOME_PATH", raising=False)
    monkeypatch.delenv("ASCEND_TOOLKIT_HOME", raising=False)
    monkeypatch.setattr("hrdeploy_target_ascend.probe.NPU_SMI_DIRS", ())
