"""hrdeploy's target contract, run against the VastAI target with the stand-in tools."""
from __future__ import annotations

import pytest

from hrdeploy.testing import contract
from hrdeploy_target_vastai.target import VastaiTarget


class TestVastaiContract(contract.TargetContract):
    @pytest.fixture(autouse=True)
    def _stand_ins(self, vastai_env) -> None:
        """vamc / vamp / vasmi / vaststreamx stand-ins: the convert-and-run test runs (fp16 and
        int8, the precisions vamc builds) instead of skipping."""

    @pytest.fixture
    def target(self) -> VastaiTarget:
        return VastaiTarget()
