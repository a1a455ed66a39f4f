"""hrdeploy.kit.probe: finding vendor tools, modules, device nodes; running management tools."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from hrdeploy.kit.probe import device_nodes, find_tool, importable, is_root, run_tool


def _exe(path: Path, body: str = "exit 0", mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(mode)
    return path


def test_find_tool_prefers_path_then_the_vendor_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    on_path = _exe(tmp_path / "bin" / "vendortool")
    extra = _exe(tmp_path / "opt" / "vendortool")
    _exe(tmp_path / "noexec" / "vendortool", mode=0o644)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert find_tool("vendortool", [tmp_path / "opt"]) == str(on_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    # a file that is not executable is not the tool; the next folder's is
    assert find_tool("vendortool", [tmp_path / "noexec", str(tmp_path / "opt")]) == str(extra)
    assert find_tool("vendortool", [tmp_path / "noexec"]) is None
    assert find_tool("vendortool") is None


def test_importable_never_imports_or_raises() -> None:
    assert importable("json") and importable("json.decoder")
    assert not importable("hrdeploy_no_such_vendor_runtime")
    # a dotted name under a module that is not a package raises inside find_spec
    assert not importable("os.path.nope")
    assert "hrdeploy_no_such_vendor_runtime" not in sys.modules


def test_device_nodes_keeps_the_numbered_nodes_only(tmp_path: Path) -> None:
    for name in ("davinci0", "davinci1", "davinci10", "davinci_manager", "vastai0", "vastai0_version",
                 "vastai_ctl", "vastai3"):
        (tmp_path / name).touch()
    assert device_nodes("davinci", tmp_path) == [str(tmp_path / n) for n in ("davinci0", "davinci1", "davinci10")]
    assert device_nodes("vastai", tmp_path) == [str(tmp_path / "vastai0"), str(tmp_path / "vastai3")]
    assert device_nodes("bm-sophon", tmp_path) == []


def test_run_tool_returns_output_only_on_success(tmp_path: Path) -> None:
    ok = _exe(tmp_path / "ok", 'echo "chip 0: OK"; echo "warn" >&2')
    assert run_tool([ok]) == "chip 0: OK\nwarn\n"
    assert run_tool([_exe(tmp_path / "bad", "echo denied; exit 4")]) is None
    assert run_tool([tmp_path / "missing"]) is None
    assert run_tool([_exe(tmp_path / "slow", "sleep 5")], timeout=0.3) is None
    assert run_tool([sys.executable, "-c", "import sys; print(sys.argv[1:])", "a b", "c"]) == "['a b', 'c']\n"


def test_is_root_matches_the_effective_uid() -> None:
    assert is_root() == (os.geteuid() == 0)
