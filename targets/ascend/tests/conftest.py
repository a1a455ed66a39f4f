"""Fixtures for the Ascend target tests: a tiny two-output ONNX model and the stand-in tools
(atc, npu-smi, ais_bench) from tests/fakes put on PATH / PYTHONPATH."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from hrdeploy.testing.standins import activate_standins, forget_modules, hide_toolchain, ort_outputs
from hrdeploy.testing.standins import tiny_onnx as build_tiny_onnx

FAKES = Path(__file__).resolve().parent / "fakes"
TOOLS = {"atc": "fake_atc", "npu-smi": "fake_npu_smi", "msit": "fake_msit"}
STAND_INS = ("ais_bench", "ascend_fakeom", "fake_atc", "fake_msit", "fake_npu_smi")


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_onnx(tmp_path_factory.mktemp("onnx") / "tiny.onnx", seed=0)


@pytest.fixture(scope="session")
def ort_run():
    """ONNX Runtime fp32 outputs of a model file: the reference every stand-in run is compared to."""
    return ort_outputs


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
    bin_dir = activate_standins(monkeypatch, tmp_path / "bin", FAKES, TOOLS)
    home = tmp_path / "ascend-toolkit" / "latest"
    home.mkdir(parents=True)
    (home / "version.info").write_text("Version=7.0.RC1\nversion_dir=7.0.RC1\n")
    # ais_bench runs as `python -m ais_bench` in a subprocess: the stand-in must import there too
    monkeypatch.setenv("PYTHONPATH", f"{FAKES}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
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
    forget_modules(STAND_INS)


@pytest.fixture
def device_machine(monkeypatch: pytest.MonkeyPatch, fixtures_dir: Path):
    """Turn this test into "the machine with the device": put the stand-ins on PATH."""
    def setup(bin_dir: Path) -> None:
        activate_standins(monkeypatch, bin_dir, FAKES, TOOLS)
        monkeypatch.setenv("PYTHONPATH", str(FAKES))
        monkeypatch.setenv("FAKE_NPU_SMI", str(fixtures_dir / "toolchains" / "npu-smi_info_310P3_1card.txt"))
    yield setup
    forget_modules(STAND_INS)


@pytest.fixture
def no_ascend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without any Ascend software: empty PATH for the tools, no npu-smi."""
    hide_toolchain(monkeypatch, tmp_path / "empty-bin")
    monkeypatch.delenv("ASCEND_HOME_PATH", raising=False)
    monkeypatch.delenv("ASCEND_TOOLKIT_HOME", raising=False)
    monkeypatch.setattr("hrdeploy_target_ascend.probe.NPU_SMI_DIRS", ())
