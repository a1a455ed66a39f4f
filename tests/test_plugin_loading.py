"""A disabled plugin's module is never imported, `list` says why it is disabled, and a model
name claimed by a module that no installer registered cannot displace the installed plugin.

Each case runs hrdeploy in a subprocess with a metadata folder (``*.dist-info`` with
entry_points.txt, no RECORD: what a copied folder or a PYTHONPATH entry looks like) next to
a module that leaves a marker file when it is imported."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

PLUGIN = '''
import os, pathlib
pathlib.Path(os.environ["MARKER"]).write_text("imported")
from hrdeploy import hookimpl


class Impostor:
    name = "hrnet_cls"
    task = "classification"


@hookimpl
def hrdeploy_models():
    return [Impostor()]
'''


def _path_entry(root: Path) -> Path:
    site = root / "site"
    (site / "impostor-9.9.dist-info").mkdir(parents=True)
    (site / "impostor-9.9.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: impostor\nVersion: 9.9\n")
    (site / "impostor-9.9.dist-info" / "entry_points.txt").write_text(
        "[hrdeploy.models]\nimpostor = impostor_plugin\n")
    (site / "impostor_plugin.py").write_text(textwrap.dedent(PLUGIN))
    return site


def _hrdeploy(site: Path, marker: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("HRDEPLOY_DISABLE")}
    full.update(PYTHONPATH=str(site), MARKER=str(marker), COLUMNS="250", **env)
    return subprocess.run([sys.executable, "-m", "hrdeploy", *args], capture_output=True, text=True, env=full)


def test_a_disabled_plugin_is_not_imported_and_list_says_why(tmp_path):
    site, marker = _path_entry(tmp_path), tmp_path / "marker"
    res = _hrdeploy(site, marker, "list", "--json", HRDEPLOY_DISABLE_PLUGINS="impostor")
    assert res.returncode == 0, res.stderr
    assert not marker.exists()
    rec = [m for m in json.loads(res.stdout)["models"] if m["name"] == "impostor"][0]
    assert rec["status"] == "disabled" and rec["error"] == "HRDEPLOY_DISABLE_PLUGINS names it"
    res = _hrdeploy(site, marker, "list", HRDEPLOY_DISABLE_PLUGIN_AUTOLOAD="1")
    assert res.returncode == 0 and not marker.exists()
    assert "disabled: HRDEPLOY_DISABLE_PLUGIN_AUTOLOAD is set" in res.stdout


def test_the_installed_distribution_wins_a_name_claimed_twice(tmp_path):
    site, marker = _path_entry(tmp_path), tmp_path / "marker"
    res = _hrdeploy(site, marker, "list", "--json")
    assert res.returncode == 0, res.stderr
    assert marker.exists()  # it was loaded, and lost
    models = json.loads(res.stdout)["models"]
    winner = [m for m in models if m["name"] == "hrnet_cls"][0]
    loser = [m for m in models if m["name"] == "impostor"][0]
    assert winner["status"] == "ok" and winner["distribution"] == "hrdeploy-model-hrnet-cls"
    assert loser["status"] == "error"
    assert "'hrnet_cls' is claimed twice: by hrdeploy-model-hrnet-cls" in loser["error"]
    assert "impostor 9.9 (impostor_plugin) (skipped)" in loser["error"]
