"""Fixtures for the VastAI target tests: a tiny ONNX model, calibration images and the
stand-in tools (vamc, vamp, vasmi, vaststreamx) from tests/fakes."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from hrdeploy.testing.standins import activate_standins, forget_modules, hide_toolchain, ort_outputs
from hrdeploy.testing.standins import tiny_onnx as build_tiny_onnx

FAKES = Path(__file__).resolve().parent / "fakes"
TOOLS = {"vamc": "fake_vamc", "vamp": "fake_vamp", "vasmi": "fake_vasmi"}
STAND_INS = ("vaststreamx", "vastai_fakelib", "fake_vamc", "fake_vamp", "fake_vasmi")


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_onnx(tmp_path_factory.mktemp("onnx") / "tiny.onnx", seed=1)


@pytest.fixture(scope="session")
def ort_run():
    return ort_outputs


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
    bin_dir = activate_standins(monkeypatch, tmp_path / "bin", FAKES, TOOLS)
    monkeypatch.setenv("FAKE_VASMI", str(fixtures_dir / "toolchains" / "vasmi_getcardmode_getfreq_VA1-16G.txt"))
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_VASTAI_CALLS", str(calls))
    for var in ("FAKE_VAMC_MODE", "FAKE_VAMP_MODE", "FAKE_VASTAI_DIES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("hrdeploy_target_vastai.probe.device_nodes", lambda: ["/dev/vastai0"])
    yield VastaiEnv(tmp_path, bin_dir, calls)
    forget_modules(STAND_INS)


@pytest.fixture
def device_machine(monkeypatch: pytest.MonkeyPatch):
    """Turn this test into "the machine with the card": the stand-ins on PATH and importable."""
    def setup(bin_dir: Path) -> None:
        pytest.importorskip("yaml")
        activate_standins(monkeypatch, bin_dir, FAKES, TOOLS)
        monkeypatch.setattr("hrdeploy_target_vastai.probe.device_nodes", lambda: ["/dev/vastai0"])
    yield setup
    forget_modules(STAND_INS)


@pytest.fixture
def no_vastai(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hide_toolchain(monkeypatch, tmp_path / "empty-bin")
    monkeypatch.setattr("hrdeploy_target_vastai.probe.EXTRA_BIN_DIRS", ())
