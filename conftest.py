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


class CliResult:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"CliResult(code={self.code}, out={self.out[-2000:]!r}, err={self.err[-2000:]!r})"


@pytest.fixture
def run_cli(capsys):
    """Run ``hrdeploy ARGS...`` in-process through the real entry point (error handling and
    exit codes included); returns a CliResult with code, out and err."""
    from hrdeploy.cli import main

    def run(*args: object) -> CliResult:
        capsys.readouterr()
        code = 0
        try:
            main([str(a) for a in args])
        except SystemExit as e:
            code = int(e.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
