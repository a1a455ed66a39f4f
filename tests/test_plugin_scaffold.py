"""`hrdeploy plugin new`: the generated skeletons install with pip and pass their own tests
(hrdeploy's contract kits) right away, in a fresh virtual environment."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from venvs import venv_seeing_this_environment


@pytest.mark.slow
def test_generated_model_and_target_plugins_install_and_pass_their_tests(run_cli, tmp_path):
    res = run_cli("plugin", "new", "model", "my_net", "-o", tmp_path / "model")
    assert res.code == 0, res
    assert "pip install -e '.[test]'" in res.out
    res = run_cli("plugin", "new", "target", "mychip", "-o", tmp_path / "target")
    assert res.code == 0, res
    assert (tmp_path / "model" / "hrdeploy_my_net" / "spec.py").is_file()
    assert (tmp_path / "target" / "hrdeploy_target_mychip" / "runner.py").is_file()
    assert 'my_net = "hrdeploy_my_net.plugin"' in (tmp_path / "model" / "pyproject.toml").read_text()

    python = venv_seeing_this_environment(tmp_path / "venv")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "-e", str(tmp_path / "model"), "-e", str(tmp_path / "target")], check=True, env=env)
    listed = subprocess.run([str(python), "-m", "hrdeploy", "list", "--json"], capture_output=True, text=True,
                            check=True).stdout
    assert '"my_net"' in listed and '"mychip"' in listed
    # the third-party target's declared option is a flag of every command that opens or builds
    for command in ("convert", "predict", "eval", "bench", "verify"):
        helptext = subprocess.run([str(python), "-m", "hrdeploy", command, "--help"], capture_output=True, text=True,
                                  env={**env, "COLUMNS": "300"}).stdout
        # grouped under the target's name (with openvino's when both declare a --hint)
        assert "--hint" in helptext and re.search(r"mychip[\w /]* target options", helptext), (command, helptext[-3000:])
    from classification_data import colour_classifier_onnx

    model = colour_classifier_onnx(tmp_path / "colour.onnx")
    conv = subprocess.run([str(python), "-m", "hrdeploy", "convert", str(model), "--target", "mychip", "--hint",
                           "throughput", "-o", str(tmp_path / "art")], capture_output=True, text=True, env=env)
    assert conv.returncode == 0, conv.stderr
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    assert manifest["target_options"] == {"hint": "throughput"} and "throughput" in manifest["parity"]["runner"]
    bad = subprocess.run([str(python), "-m", "hrdeploy", "convert", str(model), "--target", "mychip", "--hint",
                          "fast", "-o", str(tmp_path / "art2")], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "'fast' is not one of latency, throughput" in bad.stderr
    for pkg in ("model", "target"):
        proc = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=tmp_path / pkg,
                              capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
        assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]


def test_bad_names_and_occupied_folders_are_one_line_errors(run_cli, tmp_path):
    res = run_cli("plugin", "new", "model", "My-Net", "-o", tmp_path / "x")
    assert res.code == 2 and "is not a lower-case identifier" in res.err and not (tmp_path / "x").exists()
    res = run_cli("plugin", "new", "widget", "x")
    assert res.code == 2 and "unknown plugin kind 'widget'" in res.err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    res = run_cli("plugin", "new", "target", "chip", "-o", tmp_path / "busy")
    assert res.code == 2 and "already exists and is not an empty folder" in res.err
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["notes.txt"]
