"""pytest plugin shipped with hrdeploy (entry point ``pytest11``): fixtures for plugin authors."""
from __future__ import annotations

from typing import Any, Callable

import pytest


@pytest.fixture
def hrdeploy_cli() -> Callable[..., Any]:
    """Run the hrdeploy CLI in-process: ``result = hrdeploy_cli("list", "--json")``;
    ``result.exit_code``, ``result.output`` (stdout + stderr)."""
    from typer.testing import CliRunner

    from hrdeploy.cli import app
    from hrdeploy.plugins import reset_registry

    runner = CliRunner()

    def invoke(*args: str, **kwargs: Any) -> Any:
        reset_registry()
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, **kwargs)

    return invoke
