"""The core's model-plugin contract, run against the TResNet plugin."""
from __future__ import annotations

import pytest

from hrdeploy.testing.contract import ModelContract
from hrdeploy_tresnet.spec import TResNetSpec


class TestTResNetContract(ModelContract):
    @pytest.fixture
    def model(self) -> TResNetSpec:
        return TResNetSpec()
