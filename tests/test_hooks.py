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


def test_library_calls_fire_the_hooks_as_the_cli_does(tmp_path, monkeypatch):
    """``hrdeploy.api``: a Python caller gets the same notifications, with typed results."""
    import hrdeploy.plugins as plugins
    from hrdeploy import api
    from hrdeploy.results import BenchResult, EvalResult

    from classification_data import imagenet_label_layout

    seen: list[tuple[str, object]] = []
    plugin = types.SimpleNamespace(
        hrdeploy_after_convert=hookimpl(lambda artifact: seen.append(("convert", artifact.path.name))),
        hrdeploy_after_eval=hookimpl(lambda result, outcome: seen.append(("eval", (result["metric"]["top1"],
                                                                                     type(outcome))))),
        hrdeploy_after_bench=hookimpl(lambda result: seen.append(("bench", type(result)))),
    )
    reg = plugins.Registry()
    reg.pm.register(plugin, name="test-reporter")
    monkeypatch.setattr(plugins, "_REGISTRY", reg)
    src = colour_classifier_onnx(tmp_path / "c.onnx")
    art = api.convert(src, tmp_path / "art")
    assert art.manifest["parity"]["status"] == "passed"
    imagenet_label_layout(tmp_path / "data", per_colour=1)
    res = api.evaluate(tmp_path / "art", f"imagenet:{tmp_path / 'data'}", tmp_path / "r.json")
    assert isinstance(res, EvalResult) and res.to_json()["metric"]["top1"] == 100.0
    bench = api.bench(tmp_path / "art", [1], seconds=0.05, warmup=0, e2e=False)
    assert isinstance(bench, BenchResult) and bench.document["results"][0]["batch"] == 1
    assert seen == [("convert", "art"), ("eval", (100.0, EvalResult)), ("bench", BenchResult)]
    dry = api.convert(src, tmp_path / "plan", dry_run=True)
    assert dry.manifest["dry_run"] and len(seen) == 3  # a plan is not a conversion: no hook
