"""pytest plugin shipped with hrdeploy (entry point ``pytest11``): fixtures for plugin authors."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pytest


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def __repr__(self) -> str:
        return f"CliResult(code={self.code}, out={self.out[-2000:]!r}, err={self.err[-2000:]!r})"


@pytest.fixture
def hrdeploy_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run ``hrdeploy ARGS...`` in-process through the real entry point (one-line errors and
    exit codes included): ``res = hrdeploy_cli("list", "--json")``; ``res.code``, ``res.out``,
    ``res.err``."""
    from hrdeploy.cli import main

    def run(*args: Any) -> CliResult:
        capsys.readouterr()
        code = 0
        try:
            main([str(a) for a in args])
        except SystemExit as e:
            code = int(e.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
