"""Shared test fixtures for the core and every in-repo plugin."""
from __future__ import annotations

import signal
from pathlib import Path

import pytest

# A suite started in the background of a non-interactive shell inherits SIGINT ignored, and so
# would every hrdeploy process the tests start (an ignored signal stays ignored across exec):
# the Ctrl-C tests would then test nothing. Python's own handler is not inherited, the default is.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

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
