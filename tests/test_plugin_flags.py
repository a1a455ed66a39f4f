"""Plugin-declared options are the command line's flags: generated from the installed plugins'
declarations, typed, grouped per plugin, clashes told apart — and nothing else."""
from __future__ import annotations

import types

import pytest

from hrdeploy.model import OptionSpec
from hrdeploy.plugin_flags import declared_flags
from hrdeploy.target import TargetOption


def _registry(models=None, targets=None):
    def objs(table):
        return {name: types.SimpleNamespace(name=name, options=opts) for name, opts in (table or {}).items()}
    return types.SimpleNamespace(models=objs(models), targets=objs(targets))


def test_shared_names_share_a_flag_and_clashes_are_told_apart():
    reg = _registry(
        models={"a": {"flip": OptionSpec("a's flip", True, bool), "images": OptionSpec("folder")},
                "b": {"flip": OptionSpec("b's flip", True, bool), "batch": OptionSpec("hides --batch", 1, int)}},
        targets={"x": {"images": TargetOption("x's images"), "threads": TargetOption("t", type=int, min=1)},
                 "y": {"threads": TargetOption("t", type=int, min=2)}})
    flags, notes = declared_flags(reg, reserved={"--batch", "--device"})
    by_flag = {f.flag: f for f in flags}
    assert set(by_flag) == {"--flip", "--images", "--target-images", "--threads"}
    assert by_flag["--flip"].owners == ["a", "b"] and by_flag["--flip"].type is bool
    assert "a: a's flip" in by_flag["--flip"].help_text() and "b: b's flip" in by_flag["--flip"].help_text()
    assert by_flag["--threads"].min == 1 and by_flag["--threads"].help_text() == "t"  # same words: said once
    assert ("model", "model 'b' option 'batch' would hide hrdeploy's own --batch: give it as --opt batch=VALUE") in notes
    assert any(kind == "target" and "--target-images" in n for kind, n in notes)


@pytest.fixture
def fresh_registry(monkeypatch):
    import hrdeploy.plugins as plugins

    def use(**env):
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        monkeypatch.setattr(plugins, "_REGISTRY", None)
    yield use
    monkeypatch.setattr(plugins, "_REGISTRY", None)


def _help(run_cli, command):
    res = run_cli(command, "--help")
    assert res.code == 0, res
    return res.out


def test_the_installed_plugins_flags_exist(run_cli, fresh_registry, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    fresh_registry()
    convert = _help(run_cli, "convert")
    for flag in ("--chip", "--soc", "--threads", "--calib-method", "--labels"):
        assert flag in convert, flag
    assert "sophon target options" in convert and "ascend target options" in convert
    evaluate = _help(run_cli, "eval")
    for flag in ("--boxes", "--gt-boxes", "--flip", "--no-flip", "--scales", "--nms-threshold", "--ann"):
        assert flag in evaluate, flag
    assert "--boxes" not in _help(run_cli, "bench")  # bench takes target options only


def test_with_autoload_off_only_the_built_in_targets_flags_exist(run_cli, fresh_registry, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    fresh_registry(HRDEPLOY_DISABLE_PLUGIN_AUTOLOAD="1")
    convert = _help(run_cli, "convert")
    assert "--threads" in convert and "onnxruntime target options" in convert
    for flag in ("--chip", "--soc", "--boxes", "--labels"):
        assert flag not in convert, flag
    res = run_cli("convert", "m.onnx", "-o", "x", "--chip", "bm1684x")
    assert res.code == 2 and "No such option: --chip" in res.err


def test_a_typed_flag_is_checked_where_it_is_parsed(run_cli, tmp_path):
    res = run_cli("bench", tmp_path / "m.onnx", "--threads", "0")
    assert res.code == 2 and "'--threads'" in res.err
    res = run_cli("eval", tmp_path / "m.onnx", "--data", "coco:x", "--nms-threshold", "abc")
    assert res.code == 2 and "'--nms-threshold'" in res.err


def test_doctor_reports_how_names_were_told_apart(run_cli, fresh_registry):
    fresh_registry()
    res = run_cli("doctor", "--json")
    import json

    notes = json.loads(res.out)["option_flags"]
    assert "--flip is declared by dekr, hrnet_pose: the value goes to the model in use (export, convert, predict, eval, debug)" in notes
    assert any("option 'device' would hide hrdeploy's own --device" in n for n in notes)
