"""docs/python-api.md's example runs as written: the public API is what the documentation says."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"


@pytest.mark.slow
def test_the_documented_example_runs(tmp_path):
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "export parity: True" in out and "int8 parity: passed" in out and "verify: pass" in out, out
    assert len(re.findall(r"^sample_000\d\.jpg ", out, re.M)) == 4, out  # one table line per image
    assert (tmp_path / "api-demo" / "w18s.int8" / "manifest.json").is_file()


def test_the_verbs_are_the_package_s_attributes():
    import hrdeploy
    from hrdeploy import api

    for name in ("export", "convert", "open", "evaluate", "bench", "verify"):
        assert getattr(hrdeploy, name) is getattr(api, name), name
    # importing the machinery does not shadow a verb with a module of the same name
    import hrdeploy.cli  # noqa: F401  (imports every command's module on use)
    from hrdeploy import conversion, evaluation  # noqa: F401

    assert callable(hrdeploy.convert) and callable(hrdeploy.evaluate)


def test_a_session_passed_in_stays_open_for_the_caller(tmp_path):
    import numpy as np

    import hrdeploy
    from classification_data import colour_classifier_onnx

    model = colour_classifier_onnx(tmp_path / "colour.onnx")
    closed = []
    with hrdeploy.open(model) as session:
        session.runner.close = lambda: closed.append(True)  # a device runner would release the chip here
        first = hrdeploy.bench(session, [1], seconds=0.05, warmup=0, e2e=False)
        second = hrdeploy.bench(session, [1], seconds=0.05, warmup=0, e2e=False)  # the runner still runs
        x = np.zeros((1, 3, 224, 224), np.float32)
        assert session.runner.run({session.runner.input_name: x})[0].shape == (1, 1000)
        assert closed == []  # neither call closed what the caller opened
    assert closed == [True]  # the caller's own `with` did
    assert first.document["results"][0]["batch"] == second.document["results"][0]["batch"] == 1
