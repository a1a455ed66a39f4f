"""hrdeploy's target contract against the OpenVINO target, every precision it builds here
(bf16 only on a CPU with bf16 execution, as the probe reports)."""
from __future__ import annotations

import pytest

from hrdeploy.testing.contract import TargetContract
from hrdeploy_target_openvino.probe import capabilities, query
from hrdeploy_target_openvino.target import OpenVinoTarget


class TestOpenVinoContract(TargetContract):
    @pytest.fixture
    def target(self) -> OpenVinoTarget:
        return OpenVinoTarget()

    @pytest.fixture
    def runnable_precisions(self, target: OpenVinoTarget) -> tuple[str, ...]:
        _version, devices, _reason = query()
        bf16 = "BF16" in capabilities(devices, "CPU")
        return tuple(p for p in target.precisions if p != "bf16" or bf16)
