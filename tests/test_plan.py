"""hrdeploy.kit.plan: writing a dry-run plan folder, reading it back on another machine, running it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hrdeploy.artifact import Artifact
from hrdeploy.errors import UserError
from hrdeploy.model import InputSpec
from hrdeploy.kit.plan import (PLAN_FILE, PLAN_SCRIPT, SOURCE_ONNX, execute_plan, flag, from_plan_hint, link_or_copy,
                           load_plan, option_values, place_source, plan_files, plan_header, plan_request,
                           planned_note, stored_plan, write_plan, write_plan_script)
from hrdeploy.target import ConvertRequest, ConvertResult, TargetOption

FMT = "hrdeploy-test-plan/1"
GEARS = InputSpec(name="image", channels=3, height=None, width=None, gears=((16, 24), (24, 16)), stride=8, batch=1)


def make_request(tmp_path: Path, **kw) -> ConvertRequest:
    src = tmp_path / "export" / "model.onnx"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(b"onnx bytes")
    args = dict(onnx_path=src, out_dir=tmp_path / "dev" / "art", model="tiny", variant="t", task="pose",
                input=GEARS, preprocess={"mean": [0.5] * 3, "std": [0.25] * 3}, precision="fp16",
                batch_sizes=[1, 4], options={"soc": "X1"}, dry_run=True, log=lambda s: None)
    args.update(kw)
    return ConvertRequest(**args)


def write_folder(tmp_path: Path) -> tuple[ConvertRequest, Path]:
    req = make_request(tmp_path)
    place_source(req.onnx_path, req.out_dir)
    write_plan(req.out_dir, {**plan_header(FMT, "test", req, {"soc": "X1", "aipp": "off"}), "jobs": ["j"]})
    return req, req.out_dir


# -- options ------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [True, "on", "ON", " yes ", "true", "1", 1])
def test_flag_on(value) -> None:
    assert flag(value, "aipp") is True


@pytest.mark.parametrize("value", [False, "off", "Off", "no", "false", "0", 0, ""])
def test_flag_off(value) -> None:
    assert flag(value, "aipp") is False


def test_flag_names_the_option_on_nonsense() -> None:
    with pytest.raises(UserError, match=r"--softmax expects on/off, got 'maybe'"):
        flag("maybe", "softmax")


def test_option_values_fill_defaults_and_skip_none() -> None:
    declared = {"soc": TargetOption("s", "auto"), "aipp": TargetOption("a", "off", ("on", "off")),
                "log": TargetOption("l", "error")}
    assert option_values(declared, None) == {"soc": "auto", "aipp": "off", "log": "error"}
    got = option_values(declared, {"soc": "Ascend310P3", "aipp": None, "extra": 3})
    assert got == {"soc": "Ascend310P3", "aipp": "off", "log": "error", "extra": 3}


# -- writing ------------------------------------------------------------------------------------
def test_place_source_links_and_replaces(tmp_path: Path) -> None:
    req = make_request(tmp_path)
    out = req.out_dir
    (out).mkdir(parents=True)
    (out / SOURCE_ONNX).write_bytes(b"stale")
    dst = place_source(req.onnx_path, out)
    assert dst == out / SOURCE_ONNX and dst.read_bytes() == b"onnx bytes"
    assert os.stat(dst).st_ino == os.stat(req.onnx_path).st_ino  # a hard link: no second copy


def test_link_or_copy_copies_where_links_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "a.bin"
    src.write_bytes(b"12345")

    def refuse(a, b):
        raise OSError("cross-device link")

    monkeypatch.setattr(os, "link", refuse)
    dst = tmp_path / "sub" / "b.bin"
    dst.parent.mkdir()
    link_or_copy(src, dst)
    assert dst.read_bytes() == b"12345" and os.stat(dst).st_ino != os.stat(src).st_ino


def test_plan_script_runs_the_jobs_from_its_folder_with_env_and_stops_at_a_failure(tmp_path: Path) -> None:
    out = tmp_path / "art"
    out.mkdir()
    py = sys.executable
    jobs = [([py, "-c", "import os; open('first.txt', 'w').write(os.environ['GREETING']); print('one')"], "one.log"),
            ([py, "-c", "import sys; print('two'); sys.exit(3)"], "two log.log"),
            ([py, "-c", "open('third.txt', 'w').write('x')"], "three.log")]
    write_plan_script(out, "the Test SDK", jobs, env={"GREETING": "hello world"}, setup=["true # set up the SDK"])
    script = out / PLAN_SCRIPT
    text = script.read_text()
    assert text.startswith("#!/bin/sh\n# hrdeploy plan: compile this artifact on a machine with the Test SDK.\n")
    assert "true # set up the SDK" in text and os.access(script, os.X_OK)
    proc = subprocess.run(["sh", str(script)], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 3
    assert (out / "first.txt").read_text() == "hello world" and (out / "one.log").read_text() == "one\n"
    assert (out / "two log.log").read_text() == "two\n"
    assert not (out / "third.txt").exists()


def test_plan_files_and_messages() -> None:
    assert plan_files() == {"source_onnx": "source.onnx", "plan": "plan.json", "plan_script": "plan.sh"}
    assert planned_note("vamc") == "planned (--dry-run): run with 'hrdeploy convert --from-plan' on a machine with vamc"
    assert from_plan_hint("vamc").endswith("on a machine with vamc first")


# -- reading ------------------------------------------------------------------------------------
def test_a_plan_travels_and_rebuilds_the_request(tmp_path: Path) -> None:
    req, folder = write_folder(tmp_path)
    moved = tmp_path / "device" / "art"
    shutil.copytree(folder, moved)
    for where in (moved, str(moved), Artifact(moved, {})):
        got_folder, doc = load_plan(where, FMT, "a test plan", "test")
        assert got_folder == moved and doc["jobs"] == ["j"] and doc["target"] == "test"
    again = plan_request(doc, moved)
    assert again.onnx_path == moved / SOURCE_ONNX and again.out_dir == moved and not again.dry_run
    assert (again.model, again.variant, again.task, again.precision) == ("tiny", "t", "pose", "fp16")
    assert again.input == req.input and again.batch_sizes == [1, 4] and again.preprocess == req.preprocess
    assert again.options == {"soc": "X1", "aipp": "off"}
    assert stored_plan(moved) == doc and stored_plan(tmp_path) is None


def test_load_plan_says_what_is_wrong(tmp_path: Path) -> None:
    _, folder = write_folder(tmp_path)
    with pytest.raises(UserError, match="has no plan.json") as e:
        load_plan(tmp_path, FMT, "a test plan", "test")
    assert e.value.hint == "convert --dry-run --target test writes it"
    with pytest.raises(UserError, match=r"is not an Other plan \(format 'hrdeploy-test-plan/1'\)"):
        load_plan(folder, "other/1", "an Other plan", "other")
    (folder / SOURCE_ONNX).unlink()
    with pytest.raises(UserError, match="source.onnx is missing"):
        load_plan(folder, FMT, "a test plan", "test")
    (folder / PLAN_FILE).write_text("{ not json")
    with pytest.raises(UserError, match="is not valid JSON"):
        load_plan(folder, FMT, "a test plan", "test")
    with pytest.raises(UserError, match="is not valid JSON"):
        stored_plan(folder)


def test_execute_plan_runs_for_real_and_hands_back_the_commands(tmp_path: Path) -> None:
    _, folder = write_folder(tmp_path)
    _, doc = load_plan(folder, FMT, "a test plan", "test")
    logs: list[str] = []
    seen: list[ConvertRequest] = []

    def execute(d, out: Path, request: ConvertRequest) -> ConvertResult:
        seen.append(request)
        request.log(f"compiling {d['model']}")
        proc = request.run([sys.executable, "-c", "print('compiled')"], cwd=out, log=out / "c.log")
        return ConvertResult(files={"log": "c.log"}, extra={"ran": proc is not None})

    result = execute_plan(doc, folder, execute, log=logs.append)
    assert logs == ["compiling tiny"] and not seen[0].dry_run
    assert result.extra["ran"] and (folder / "c.log").read_text() == "compiled\n"
    cmds = result.extra["commands"]
    assert len(cmds) == 1 and cmds[0]["returncode"] == 0 and cmds[0]["cwd"] == str(folder)
