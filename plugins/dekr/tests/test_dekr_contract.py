"""The core's model-plugin contract, run against the DEKR plugin."""
from __future__ import annotations

import pytest

from hrdeploy.testing.contract import ModelContract
from hrdeploy_dekr.spec import DEKRSpec


class TestDEKRContract(ModelContract):
    @pytest.fixture
    def model(self) -> DEKRSpec:
        return DEKRSpec()
