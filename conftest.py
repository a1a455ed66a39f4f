"""Shared test fixtures for the core and every in-repo plugin."""
from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "tests" / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Recorded data copied from the project's shared fixtures: key->shape manifests
    (official/), reference outputs of the official implementations (ref/) and real vendor
    tool outputs (toolchains/)."""
    return FIXTURES



@pytest.fixture
def run_cli(hrdeploy_cli):
    """The CLI runner of hrdeploy's own pytest plugin (hrdeploy.testing.pytest_plugin)."""
    return hrdeploy_cli
