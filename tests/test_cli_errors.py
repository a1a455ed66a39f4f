"""Every way a command can fail ends in one line on stderr and a documented exit code:
0 ok, 1 breach, 2 usage/input/environment, 3 internal, 130 interrupted. Driven through the
real entry point, in-process (``run_cli``) and as a subprocess where the exit itself matters."""
from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from classification_data import colour_classifier_onnx


def one_error_line(res) -> str:
    """The run failed with exactly one non-empty stderr line and no traceback."""
    lines = [ln for ln in res.err.splitlines() if ln.strip()]
    assert "Traceback" not in res.err and "Traceback" not in res.out, res
    assert len(lines) == 1, res
    return lines[0]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return colour_classifier_onnx(tmp_path_factory.mktemp("errs") / "colour.onnx")


# -- usage errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("args, words", [
    (["frobnicate"], "No such command 'frobnicate'"),
    (["list", "--bogus"], "No such option: --bogus"),
    (["eval"], "Missing argument"),
    (["eval", "m.onnx", "--data", "imagenet:x", "--limit", "abc"], "'--limit'"),
    (["eval", "m.onnx", "--data", "imagenet:x", "--limit", "0"], "'--limit'"),
    (["eval", "m.onnx", "--data", "imagenet:x", "--limit", "-1"], "'--limit'"),
    (["eval", "m.onnx", "--data", "imagenet:x", "--workers", "0"], "'--workers'"),
    (["predict", "m.onnx", "x.jpg", "--batch", "0"], "'--batch'"),
    (["bench", "m.onnx", "--threads", "0"], "'--threads'"),
    (["bench", "m.onnx", "--seconds", "0"], "'--seconds'"),
    (["bench", "m.onnx", "--batch", "0"], "batch size 0 is out of range"),
    (["bench", "m.onnx", "--batch", "1,x"], "comma-separated whole numbers"),
    (["convert", "m.onnx", "-o", "a", "--calib-count", "0"], "'--calib-count'"),
    (["convert", "m.onnx", "-o", "a", "--batch", "1,-4"], "batch size -4 is out of range"),
    (["samples", "out", "--count", "0"], "'--count'"),
    (["export", "hrnet_cls", "-o", "x.onnx", "--batch", "0"], "'--batch'"),
])
def test_usage_errors_are_one_line_exit_2(run_cli, tmp_path, monkeypatch, args, words):
    monkeypatch.chdir(tmp_path)
    res = run_cli(*args)
    assert res.code == 2, res
    line = one_error_line(res)
    assert line.startswith("error: ") and words in line, line
    assert "--help" in line or "out of range" in line or "whole numbers" in line
    assert list(tmp_path.iterdir()) == []  # nothing was written


def test_bare_command_shows_help_and_exits_2(run_cli):
    res = run_cli()
    assert res.code == 2 and "Usage" in res.out + res.err and "Traceback" not in res.err


def test_help_documents_the_exit_codes(run_cli):
    res = run_cli("--help")
    assert res.code == 0
    text = " ".join(res.out.split())
    for words in ("0 success", "1 parity or accuracy breach", "2 usage, input or environment error",
                  "3 internal error", "130 interrupted"):
        assert words in text, text


def test_version_names_hrdeploy_and_every_plugin_distribution(run_cli):
    import importlib.metadata as md

    res = run_cli("--version")
    assert res.code == 0, res
    lines = res.out.splitlines()
    assert lines[0] == f"hrdeploy {md.version('hrdeploy')}"
    for ep in md.entry_points(group="hrdeploy.models"):
        dist = ep.dist.metadata["Name"]
        assert any(ln.startswith(f"{dist} {ep.dist.version} (") and f"model:{ep.name}" in ln for ln in lines), res.out


def test_usage_errors_as_a_subprocess_have_no_traceback(tmp_path):
    """The console script, not only the in-process call: typer's own exceptions reach our
    boundary whether typer vendors click or not."""
    for args in (["frobnicate"], ["eval", "--limit", "abc"]):
        proc = subprocess.run([sys.executable, "-m", "hrdeploy", *args], capture_output=True, text=True,
                              cwd=tmp_path)
        assert proc.returncode == 2, proc
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# -- operating-system errors -------------------------------------------------------------------------

def test_a_file_where_a_folder_is_needed(run_cli, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("mine")
    res = run_cli("samples", blocker, "--count", "1")
    assert res.code == 2
    assert one_error_line(res) == f"error: {blocker} is a file, but a folder is needed here (choose another location)"
    res = run_cli("samples", blocker / "sub", "--count", "1")
    assert res.code == 2
    assert f"{blocker} is a file, but {blocker / 'sub'} needs it to be a folder" in one_error_line(res)
    assert blocker.read_text() == "mine"


def test_a_folder_where_a_file_is_needed(run_cli, model, tmp_path):
    out = tmp_path / "report.json"
    out.mkdir()
    res = run_cli("bench", model, "--batch", "1", "--seconds", "0.05", "--warmup", "0", "--no-e2e", "--json", out)
    assert res.code == 2, res
    assert one_error_line(res) == f"error: --json {out} is a folder, but a file is needed here (name a file, not a folder)"
    assert list(out.iterdir()) == [] and "measuring" not in res.err  # refused before any work


def test_vis_into_a_file_is_refused(run_cli, model, tmp_path):
    from hrdeploy.synthetic import write_images

    write_images(tmp_path / "imgs", 1, size=(64, 80))
    blocker = tmp_path / "vis"
    blocker.write_text("mine")
    res = run_cli("predict", model, tmp_path / "imgs", "--vis", blocker)
    assert res.code == 2, res
    assert f"{blocker}" in one_error_line(res) and blocker.read_text() == "mine"


def test_json_dash_is_standard_output_for_predict_and_bench(run_cli, model, tmp_path):
    import json

    from hrdeploy.synthetic import write_images

    write_images(tmp_path / "imgs", 2, size=(64, 80))
    res = run_cli("predict", model, tmp_path / "imgs", "--json", "-")
    assert res.code == 0, res
    assert [Path(r["image"]).name for r in json.loads(res.out)] == ["sample_0000.jpg", "sample_0001.jpg"]
    res = run_cli("bench", model, "--batch", "1", "--seconds", "0.05", "--warmup", "0", "--no-e2e", "--json", "-")
    assert res.code == 0, res
    assert json.loads(res.out)["results"][0]["batch"] == 1  # the table went to stderr
    res = run_cli("predict", model, tmp_path / "imgs", "--json", tmp_path / "p.json")
    assert res.code == 0 and len(json.loads((tmp_path / "p.json").read_text())) == 2
    assert f"wrote {tmp_path / 'p.json'}" in res.out


@pytest.mark.parametrize("code, words", [
    (errno.EACCES, "permission denied"),
    (errno.EROFS, "read-only file system"),
    (errno.ENOSPC, "no space left on the device"),
])
def test_write_failures_name_the_path_and_what_to_do(run_cli, model, tmp_path, monkeypatch, code, words):
    """Root ignores permission bits and no test may fill a disk, so the failure is injected
    where every output file is written: the atomic writer."""
    import hrdeploy.io as io
    from hrdeploy.synthetic import write_images

    write_images(tmp_path / "imgs", 1, size=(64, 80))

    def refuse(path, data):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(io, "atomic_write_bytes", refuse)
    res = run_cli("predict", model, tmp_path / "imgs", "--json", tmp_path / "out" / "p.json")
    assert res.code == 2, res
    line = one_error_line(res)
    assert words in line and str(tmp_path / "out" / "p.json") in line, line


# -- internal errors, interrupts, --debug -----------------------------------------------------------------

def test_a_bug_is_an_internal_error_exit_3(run_cli, tmp_path, monkeypatch):
    import hrdeploy.synthetic as samples

    def buggy(*a, **k):
        return {}["missing"]

    monkeypatch.setattr(samples, "write_images", buggy)
    res = run_cli("samples", tmp_path / "x")
    assert res.code == 3, res
    line = one_error_line(res)
    assert line.startswith("internal error: KeyError: 'missing'") and "--debug" in line
    res = run_cli("--debug", "samples", tmp_path / "x")
    assert res.code == 3 and "Traceback" in res.err and "buggy" in res.err


def test_an_interrupt_exits_130_with_one_line(run_cli, tmp_path, monkeypatch):
    import hrdeploy.synthetic as samples

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(samples, "write_images", interrupted)
    res = run_cli("samples", tmp_path / "x")
    assert res.code == 130
    assert one_error_line(res).startswith("interrupted: what was written so far is kept")


def test_outputs_of_the_wrong_kind_are_refused_before_any_work(run_cli, model, tmp_path):
    from hrdeploy.synthetic import write_images

    write_images(tmp_path / "imgs", 1, size=(64, 80))
    folder = tmp_path / "d.onnx"
    folder.mkdir()
    blocker = tmp_path / "afile"
    blocker.write_text("mine")
    cases = [
        (("export", "hrnet_cls", "--variant", "w18_small_v1", "--random-weights", "-o", folder),
         f"error: -o {folder} is a folder, but a file is needed here (name a file, not a folder)"),
        (("convert", model, "-o", blocker), f"error: {blocker} is a file, but a folder is needed here"),
        (("ascend", "preprocess", model, tmp_path / "imgs", "-o", blocker), f"error: {blocker} is a file, but a folder is needed here"),
    ]
    for args, line in cases:
        res = run_cli(*args)
        assert res.code == 2, res
        assert one_error_line(res).startswith(line), res
    assert list(folder.iterdir()) == [] and blocker.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "d.onnx", "imgs"]
