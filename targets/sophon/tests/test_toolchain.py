"""Locating and provisioning the TPU-MLIR environment (the parts that need no download)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from hrdeploy.errors import UserError
from hrdeploy_target_sophon import toolchain as TC

BANNER = b"\x00GNU C Library (Ubuntu GLIBC 2.35-0ubuntu3.9) stable release version 2.35.\nCopyright\x00"


def test_glibc_versions() -> None:
    assert TC.glibc_version(BANNER) == (2, 35)
    assert TC.glibc_version("glibc 2.36") == (2, 36)
    assert TC.glibc_version(b"not a libc") is None


def _fake_package(tmp_path: Path) -> Path:
    third = tmp_path / "tpu_mlir" / "lib" / "third_party"
    third.mkdir(parents=True)
    (third / "libc.so.6").write_bytes(BANNER)
    for name in ("libm.so.6", "libpthread.so.0", "libexpat.so.1"):
        (third / name).write_bytes(b"\x7fELF")
    return tmp_path / "tpu_mlir"


def test_bundled_glibc_moved_aside_on_a_newer_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = _fake_package(tmp_path)
    monkeypatch.setattr(os, "confstr", lambda name: "glibc 2.36")
    lines: list[str] = []
    assert TC.fix_bundled_glibc(pkg, lines.append) == ["libc.so.6", "libm.so.6", "libpthread.so.0"]
    third = pkg / "lib" / "third_party"
    assert sorted(p.name for p in (third / TC.GLIBC_ASIDE).iterdir()) == ["libc.so.6", "libm.so.6", "libpthread.so.0"]
    assert (third / "libexpat.so.1").exists() and not (third / "libc.so.6").exists()
    assert "2.35" in lines[0] and "2.36" in lines[0]
    assert TC.fix_bundled_glibc(pkg, lines.append) == []  # idempotent


def test_bundled_glibc_kept_on_the_same_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = _fake_package(tmp_path)
    monkeypatch.setattr(os, "confstr", lambda name: "glibc 2.35")
    assert TC.fix_bundled_glibc(pkg, lambda m: None) == []
    assert (pkg / "lib" / "third_party" / "libc.so.6").exists()


def test_find_toolchain_reads_the_state_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HRDEPLOY_TOOLCHAINS", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert TC.sophon_home() == tmp_path / "sophon"
    assert TC.find_toolchain() is None
    venv_bin = tmp_path / "sophon" / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to(sys.executable)
    (venv_bin / "model_deploy").write_text("#!/bin/sh\n")
    (tmp_path / "sophon" / TC.STATE_FILE).write_text(json.dumps(
        {"python": str(venv_bin / "python"), "bin": str(venv_bin), "tpu_mlir": "1.30.2", "torch": "1.12.1",
         "python_version": "3.10.13"}))
    tc = TC.find_toolchain()
    assert tc is not None and tc.origin == "provisioned" and tc.version == "1.30.2"
    assert tc.env()["PATH"].split(os.pathsep)[0] == str(venv_bin)
    assert tc.to_dict()["torch"] == "1.12.1" and "provisioned" in tc.describe()
    (venv_bin / "model_deploy").unlink()  # a half-removed environment is not a toolchain
    assert TC.find_toolchain() is None


def test_install_refuses_another_python(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"needs Python 3\.10; .* is 3\.11"):
        TC.install_toolchain(sys.executable, lambda m: None, home=tmp_path / "sophon")
    assert not (tmp_path / "sophon" / "venv").exists()


def test_toolchains_root_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HRDEPLOY_TOOLCHAINS", raising=False)
    assert TC.sophon_home() == Path.home() / ".cache" / "hrdeploy" / "toolchains" / "sophon"
