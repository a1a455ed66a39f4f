"""hrdeploy's target contract, run against the Sophon target: the planning tests always, the
convert-and-run test (every precision, compiled by TPU-MLIR for BM1684X and run on its cmodel
simulator, compared with onnxruntime on the source model) where the toolchain is provisioned;
skipped with the probe's reason otherwise. The contract's network is tiny (one 3x3 conv on a
32 x 32 input), so each of the three conversions takes seconds of TPU-MLIR time."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hrdeploy.testing.contract import TargetContract
from hrdeploy_target_sophon.target import SophonTarget


class TestSophonContract(TargetContract):
    @pytest.fixture
    def target(self) -> SophonTarget:
        return SophonTarget()

    @pytest.fixture
    def target_options(self) -> dict[str, Any]:
        """No device here to detect the chip from; BM1684X builds all three precisions."""
        return {"chip": "bm1684x"}

    @pytest.mark.toolchain
    def test_convert_and_run(self, target: SophonTarget, tmp_path: Path, target_options: dict[str, Any],
                             runnable_precisions: tuple[str, ...]) -> None:
        super().test_convert_and_run(target, tmp_path, target_options, runnable_precisions)
