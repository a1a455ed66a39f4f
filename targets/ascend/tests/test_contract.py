"""hrdeploy's target contract, run against the Ascend target with the stand-in tools."""
from __future__ import annotations

from typing import Any

import pytest

from hrdeploy.testing.contract import TargetContract
from hrdeploy_target_ascend.target import AscendTarget


class TestAscendContract(TargetContract):
    @pytest.fixture(autouse=True)
    def _stand_ins(self, ascend_env) -> None:
        """atc / npu-smi / ais_bench stand-ins: the convert-and-run test runs instead of skipping."""

    @pytest.fixture
    def target(self) -> AscendTarget:
        return AscendTarget()

    @pytest.fixture
    def target_options(self) -> dict[str, Any]:
        return {"soc": "Ascend310P3"}
