"""Plugins are found through entry points of installed distributions, loaded one by one, and
checked against the hook specs: proven with packages built outside the repo and installed with
pip into a fresh virtual environment."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from venvs import venv_seeing_this_environment

REPO = Path(__file__).resolve().parents[1]


def _write_package(root: Path, dist: str, module: str, entry_points: str, plugin_src: str) -> Path:
    pkg = root / dist
    (pkg / module).mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools>=64"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{dist}"
        version = "1.2.3"
        dependencies = ["hrdeploy"]
        {entry_points}
        [tool.setuptools.packages.find]
        include = ["{module}*"]
        """))
    (pkg / module / "__init__.py").write_text("")
    (pkg / module / "plugin.py").write_text(textwrap.dedent(plugin_src))
    return pkg


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh virtual environment that sees the environment running the tests (where hrdeploy
    is installed) and gets three third-party plugin packages installed with pip."""
    root = tmp_path_factory.mktemp("plugins")
    env_dir = root / "venv"
    venv_seeing_this_environment(env_dir)
    example = root / "example"
    shutil.copytree(REPO / "docs" / "example-plugin", example)
    broken = _write_package(root, "hrdeploy-broken", "hrdeploy_broken",
                            '[project.entry-points."hrdeploy.targets"]\nbroken = "hrdeploy_broken.plugin"',
                            'raise ImportError("libbroken.so.1: cannot open shared object file")\n')
    typo = _write_package(root, "hrdeploy-typo", "hrdeploy_typo",
                          '[project.entry-points."hrdeploy.models"]\ntypo = "hrdeploy_typo.plugin"',
                          """
                          from hrdeploy import hookimpl

                          @hookimpl
                          def hrdeploy_modles():
                              return []
                          """)
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, str(example), str(broken), str(typo)], check=True, cwd=root,
                   env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    return env_dir


def hrdeploy(env_dir: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(env_dir / "bin" / "python"), "-m", "hrdeploy", *args], capture_output=True,
                          text=True, cwd=cwd, env={**os.environ, "COLUMNS": "200"})


@pytest.mark.slow
def test_third_party_plugins_show_up_and_broken_ones_are_isolated(venv):
    res = hrdeploy(venv, "list", "--json")
    assert res.returncode == 0, res.stderr
    inv = json.loads(res.stdout)
    assert set(inv) == {"models", "targets"}
    models = {m["name"]: m for m in inv["models"]}
    targets = {t["name"]: t for t in inv["targets"]}
    for m in inv["models"]:
        assert set(m) == {"name", "task", "variants", "distribution", "version", "status", "error"}
    for t in inv["targets"]:
        assert set(t) == {"name", "distribution", "version", "status", "error", "available", "detail"}
    assert models["tinynet"] == {"name": "tinynet", "task": "classification", "variants": ["s"],
                                 "distribution": "hrdeploy-example", "version": "0.3.0", "status": "ok", "error": None}
    assert targets["copycat"]["status"] == "ok" and targets["copycat"]["available"]
    assert targets["broken"]["status"] == "error"
    assert targets["broken"]["distribution"] == "hrdeploy-broken" and targets["broken"]["version"] == "1.2.3"
    assert "libbroken.so.1" in targets["broken"]["error"]
    assert models["typo"]["status"] == "error" and "hrdeploy_modles" in models["typo"]["error"]
    # everything else is untouched by the two broken plugins
    assert targets["onnxruntime"]["status"] == "ok" and targets["onnxruntime"]["available"]
    doc = hrdeploy(venv, "doctor", "--json")
    problems = "\n".join(json.loads(doc.stdout)["problems"])
    assert "broken" in problems and "typo" in problems


@pytest.mark.slow
def test_third_party_plugins_work_end_to_end(venv, tmp_path):
    from hrdeploy.synthetic import write_images

    write_images(tmp_path / "img", 2, size=(90, 120))
    assert hrdeploy(venv, "export", "tinynet", "--random-weights", "-o", "t.onnx", cwd=tmp_path).returncode == 0
    conv = hrdeploy(venv, "convert", "t.onnx", "--target", "copycat", "-o", "art", cwd=tmp_path)
    assert conv.returncode == 0, conv.stderr
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    assert manifest["target"] == "copycat" and manifest["parity"]["status"] == "passed"
    assert manifest["commands"][0]["argv"][0] == "cp"
    pred = hrdeploy(venv, "predict", "art", "img", "--json", "-", cwd=tmp_path)
    assert pred.returncode == 0, pred.stderr
    out = json.loads(pred.stdout)
    assert len(out) == 2 and len(out[0]["top_k"]) == 5


def test_disabled_plugins_are_listed_as_disabled(monkeypatch):
    from hrdeploy.plugins import Registry

    monkeypatch.setenv("HRDEPLOY_DISABLE_PLUGINS", "onnxruntime")
    reg = Registry()
    rec = [r for r in reg.records if r.name == "onnxruntime"][0]
    assert rec.status == "disabled" and "onnxruntime" not in reg.targets


def test_unknown_names_are_one_line_user_errors():
    from hrdeploy.errors import UserError
    from hrdeploy.plugins import Registry

    reg = Registry()
    with pytest.raises(UserError, match="unknown model 'nope'"):
        reg.model("nope")
    with pytest.raises(UserError, match="unknown target 'nope'.*onnxruntime"):
        reg.target("nope")
