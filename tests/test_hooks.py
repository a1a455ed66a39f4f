"""The notification hooks reach third-party code, and a failing one does not break the command."""
from __future__ import annotations

import types

from classification_data import colour_classifier_onnx
from hrdeploy import hookimpl
from hrdeploy.plugins import registry


def test_after_convert_and_after_eval_hooks_are_called(tmp_path, run_cli, monkeypatch):
    seen: dict[str, object] = {}
    plugin = types.SimpleNamespace(
        hrdeploy_after_convert=hookimpl(lambda artifact: seen.setdefault("convert", artifact.target)),
        hrdeploy_after_bench=hookimpl(lambda report: (_ for _ in ()).throw(RuntimeError("reporting is down"))),
    )
    import hrdeploy.plugins as plugins

    reg = plugins.Registry()
    reg.pm.register(plugin, name="test-reporter")
    monkeypatch.setattr(plugins, "_REGISTRY", reg)
    monkeypatch.setattr(plugins, "registry", lambda: reg)
    src = colour_classifier_onnx(tmp_path / "c.onnx")
    res = run_cli("convert", src, "-o", tmp_path / "art")
    assert res.code == 0, res
    assert seen["convert"] == "onnxruntime"
    res = run_cli("bench", tmp_path / "art", "--batch", "1", "--seconds", "0.1", "--no-e2e")
    assert res.code == 0, res                      # the hook failed, the command did not
    assert "test-reporter failed in hrdeploy_after_bench" in res.err
    assert registry() is reg
