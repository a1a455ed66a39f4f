"""hrdeploy's target contract, run against the VastAI target with the stand-in tools."""
from __future__ import annotations

import functools

import pytest

from hrdeploy.testing import contract
from hrdeploy_target_vastai.target import VastaiTarget


class TestVastaiContract(contract.TargetContract):
    @pytest.fixture(autouse=True)
    def _stand_ins(self, vastai_env, monkeypatch: pytest.MonkeyPatch) -> None:
        """vamc / vamp / vasmi / vaststreamx stand-ins; the contract's request asks for fp32,
        which VastAI has no build for (vamc: fp16 or int8), so it asks for fp16 here."""
        monkeypatch.setattr(contract, "tiny_request", functools.partial(contract.tiny_request, precision="fp16"))

    @pytest.fixture
    def target(self) -> VastaiTarget:
        return VastaiTarget()
