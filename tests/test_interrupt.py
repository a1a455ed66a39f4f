"""Ctrl-C and SIGTERM to hrdeploy, and a hung vendor tool, as a user meets them on the command
line: an interrupted eval says so in one line, exits 130 and keeps its partial file, which
``--resume`` continues; an interrupted convert stops the vendor tool it was running (nothing
is left running) and exits 130; a tool step that outlives ``--step-timeout`` fails with one
line naming the step and its log."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import hung_tool
from classification_data import colour_classifier_onnx, imagenet_label_layout
from hung_tool import gone, signals, tool_pids

INTERRUPTED = "interrupted"


def slow_colour_classifier(path: Path) -> Path:
    """The colour classifier (right on every colour image) plus a costly branch that adds zero
    to its logits: a large convolution, so an evaluation of a few dozen images takes seconds."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(colour_classifier_onnx(path)))
    g = model.graph
    logits = g.output[0].name
    for node in g.node:
        if node.output[0] == logits:
            node.output[0] = "fast_logits"
    w = np.random.default_rng(0).normal(size=(128, 3, 9, 9)).astype(np.float32)
    g.initializer.extend([numpy_helper.from_array(w, "slow_w"), numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
                          numpy_helper.from_array(np.array([1], np.int64), "axis1")])
    g.node.extend([helper.make_node("Conv", ["image", "slow_w"], ["slow"], pads=[4, 4, 4, 4]),
                   helper.make_node("ReduceMean", ["slow"], ["slow_mean"], keepdims=0),
                   helper.make_node("Mul", ["slow_mean", "zero"], ["nothing"]),
                   helper.make_node("Unsqueeze", ["nothing", "axis1"], ["nothing_col"]),
                   helper.make_node("Add", ["fast_logits", "nothing_col"], [logits])])
    onnx.save(model, str(path))
    return path


def hrdeploy(*args: object, cwd: Path) -> subprocess.Popen[str]:
    """``python -m hrdeploy ARGS`` in a process of its own (so it can be signalled)."""
    return subprocess.Popen([sys.executable, "-m", "hrdeploy", *map(str, args)], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_an_interrupted_eval_says_so_exits_130_and_resumes(tmp_path):
    model = slow_colour_classifier(tmp_path / "slow.onnx")
    imagenet_label_layout(tmp_path / "data", per_colour=20)  # 60 images
    result = tmp_path / "r.json"
    partial = tmp_path / "r.json.partial.jsonl"
    args = ("eval", model, "--data", f"imagenet:{tmp_path / 'data'}", "-o", result, "--threads", "1", "--workers", "2")
    proc = hrdeploy(*args, cwd=tmp_path)
    # predictions are flushed every 16 images: interrupt once the first 16 are on disk
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if partial.exists() and len(partial.read_text().splitlines()) > 16:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = finish(proc)
    assert proc.returncode == 130, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(INTERRUPTED) and "--resume" in lines[0], err
    assert not result.exists() and partial.exists()
    done = len(partial.read_text().splitlines()) - 1  # the first line names the run
    assert 16 <= done < 60

    proc = hrdeploy(*args, "--resume", cwd=tmp_path)
    out, err = finish(proc)
    assert proc.returncode == 0, (out, err)
    assert f"resuming: {done} of 60 images already done" in err
    res = json.loads(result.read_text())
    assert res["data"]["evaluated"] == 60 and res["timing"]["resumed"] == done
    # every image counted once: the colour classifier is right on all 60
    assert res["metric"]["images"] == 60 and res["metric"]["top1"] == 100.0
    assert not partial.exists()


@pytest.fixture
def hanging_atc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ``atc`` on PATH that hangs (the stand-in records the signals it gets in
    ``tmp_path/atc.record``); returns the record's path."""
    pytest.importorskip("hrdeploy_target_ascend")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "atc.record"
    atc = bin_dir / "atc"
    atc.write_text(f"#!{sys.executable}\nimport runpy, sys\n"
                   f"sys.argv = [{hung_tool.__file__!r}, 'polite', {str(record)!r}]\n"
                   f"runpy.run_path({hung_tool.__file__!r}, run_name='__main__')\n")
    atc.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return record


def test_a_hung_vendor_tool_fails_at_the_step_timeout_with_one_line(tmp_path, hanging_atc, run_cli):
    model = colour_classifier_onnx(tmp_path / "m.onnx")
    out = tmp_path / "art"
    res = run_cli("convert", model, "--target", "ascend", "--soc", "Ascend310P3", "-o", out, "--step-timeout", "1")
    assert res.code == 2, res
    lines = res.err.strip().splitlines()
    assert len(lines) == 1, res
    assert lines[0].startswith("error: atc did not finish within 1 s and was stopped; log: ")
    assert str(out / "atc.log") in lines[0] and "--step-timeout" in lines[0]
    # the log is what the user reads next: kept, with what the tool printed; nothing else is left
    assert "compiling" in (out / "atc.log").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["atc.log"]
    assert gone(*tool_pids(hanging_atc), timeout=1.0)


def test_step_timeout_is_validated(tmp_path, run_cli):
    model = colour_classifier_onnx(tmp_path / "m.onnx")
    res = run_cli("convert", model, "-o", tmp_path / "art", "--step-timeout", "-5")
    assert res.code == 2 and res.err.strip().splitlines() == [
        "error: --step-timeout takes a number of seconds (0: no limit), got -5.0"], res
    assert not (tmp_path / "art").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_convert_stops_its_vendor_tool(tmp_path, hanging_atc, sig):
    model = colour_classifier_onnx(tmp_path / "m.onnx")
    proc = hrdeploy("convert", model, "--target", "ascend", "--soc", "Ascend310P3", "-o", tmp_path / "art",
                    cwd=tmp_path)
    try:
        tool_pid, helper_pid = tool_pids(hanging_atc, timeout=120)
    finally:
        proc.send_signal(sig)  # to hrdeploy alone: the tool runs in a process group of its own
    out, err = finish(proc)
    assert proc.returncode == 130, (out, err)
    lines = err.strip().splitlines()
    assert lines[-1].startswith(INTERRUPTED), err
    assert signals(hanging_atc) == ["SIGINT"]  # what Ctrl-C in a terminal would have sent it
    assert gone(tool_pid, helper_pid, timeout=1.0), "the vendor tool outlived hrdeploy"
    assert sorted(p.name for p in (tmp_path / "art").iterdir()) == ["atc.log"]
