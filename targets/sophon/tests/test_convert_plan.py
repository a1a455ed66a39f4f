"""Command building and the conversion's decisions, without the toolchain: dry runs record
every command and write the inputs the tools would read; no TPU-MLIR process is started."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hrdeploy.artifact import Artifact
from hrdeploy.errors import ToolchainMissing, UserError
from hrdeploy_target_sophon import commands as C
from hrdeploy_target_sophon import conversion as CV
from hrdeploy_target_sophon import target as T
from hrdeploy_target_sophon.parsers import parse_bm_smi

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def no_sophon(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with neither TPU-MLIR nor a device."""
    monkeypatch.setattr(T, "find_toolchain", lambda: None)
    monkeypatch.setattr(T, "query_devices", lambda: ([], "no Sophon device"))


def argv_of(commands: list[dict[str, Any]], tool: str) -> list[list[str]]:
    return [c["argv"] for c in commands if c["argv"][0] == tool]


def opt(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_fp32_bm1684x_plan(no_sophon: None, tiny_onnx: Path, tmp_path: Path, make_request: Any) -> None:
    req = make_request(tiny_onnx, tmp_path / "a", options={"chip": "bm1684x"}, dry_run=True)
    res = T.SophonTarget().convert(req)
    tools = [c["argv"][0] for c in req.commands]
    assert tools == ["model_transform", "model_deploy", "cp"]
    (tr,) = argv_of(req.commands, "model_transform")
    assert opt(tr, "--model_name") == "tiny_t32" and opt(tr, "--model_def") == "../../source.onnx"
    assert (tmp_path / "a" / "source.onnx").read_bytes() == tiny_onnx.read_bytes()
    assert opt(tr, "--input_shapes") == "[[1,3,32,32]]"
    assert opt(tr, "--mean") == "0.0,0.0,0.0" and opt(tr, "--scale") == "1.0,1.0,1.0"
    assert opt(tr, "--test_input") == "../../inputs/test_b1_32x32.npz"
    (dep,) = argv_of(req.commands, "model_deploy")
    assert opt(dep, "--quantize") == "F32" and opt(dep, "--chip") == "bm1684x"
    assert opt(dep, "--model") == "tiny_t32_b1_32x32.bmodel" and "--calibration_table" not in dep
    assert req.commands[-1]["argv"] == ["cp", "work/b1_32x32/tiny_t32_b1_32x32.bmodel", "model.bmodel"]
    assert req.commands[-1]["cwd"] == "." and "log" not in req.commands[-1]
    assert opt(dep, "--test_input") == "tiny_t32_in_f32.npz" and opt(dep, "--test_reference") == "tiny_t32_top_outputs.npz"
    # recorded relative to the artifact folder, with the toolchain's bin/ rather than this PATH
    entry = req.commands[0]
    assert entry["cwd"] == "work/b1_32x32" and entry["log"] == "logs/01_model_transform_b1_32x32.log"
    assert entry["env"]["PATH"].endswith("sophon/venv/bin:$PATH") and "seconds" not in entry
    # the test input the tools compare on is written even for a plan, keyed by the ONNX input
    with np.load(tmp_path / "a" / "inputs" / "test_b1_32x32.npz") as z:
        np.testing.assert_array_equal(z["image"], req.reference_inputs[:1])
    assert res.files == {"model": "model.bmodel", "source_onnx": "source.onnx", "plan": "plan.json",
                         "plan_script": "plan.sh"}
    assert res.batch_sizes == [1] and res.sizes == [(32, 32)] and res.extra["planned"] is True
    assert "--from-plan" in entry["note"]
    assert res.toolchain["chip"] == "bm1684x" and res.extra["quantize"] == "F32" and res.checks == []
    assert res.extra["stages"] == [{"index": 0, "batch": 1, "size": [32, 32]}]


def test_int8_plan_with_calibration(no_sophon: None, tiny_onnx: Path, tmp_path: Path, make_request: Any) -> None:
    req = make_request(tiny_onnx, tmp_path / "q", precision="int8", options={"chip": "bm1684x", "calib_method": "mse"},
                       calib=12, dry_run=True)
    res = T.SophonTarget().convert(req)
    assert [c["argv"][0] for c in req.commands] == ["model_transform", "run_calibration", "model_deploy", "cp", "cp"]
    (cal,) = argv_of(req.commands, "run_calibration")
    assert cal[1] == "tiny_t32.mlir" and opt(cal, "--dataset") == "../../inputs/calib"
    assert opt(cal, "--input_num") == "12" and opt(cal, "--cali_method") == "mse"
    assert opt(cal, "--chip") == "bm1684x" and opt(cal, "-o") == "tiny_t32_cali_table"
    (dep,) = argv_of(req.commands, "model_deploy")
    assert opt(dep, "--quantize") == "INT8"
    assert opt(dep, "--calibration_table") == "../../work/b1_32x32/tiny_t32_cali_table"
    assert req.commands[-1]["argv"] == ["cp", "work/b1_32x32/tiny_t32_cali_table", "calibration_table.txt"]
    files = sorted((tmp_path / "q" / "inputs" / "calib").glob("*.npz"))
    assert len(files) == 12
    with np.load(files[3]) as z:
        assert z["image"].shape == (1, 3, 32, 32) and z["image"].dtype == np.float32
    assert res.files["calibration_table"] == "calibration_table.txt"
    assert res.extra["calibration"] == {"tensors": 12, "method": "mse"}


def test_bm1684_fp32_plan(no_sophon: None, tiny_onnx: Path, tmp_path: Path, make_request: Any) -> None:
    req = make_request(tiny_onnx, tmp_path / "b", options={"chip": "BM1684"}, dry_run=True)
    res = T.SophonTarget().convert(req)
    (dep,) = argv_of(req.commands, "model_deploy")
    assert opt(dep, "--chip") == "bm1684" and opt(dep, "--quantize") == "F32"
    assert res.toolchain["chip"] == "bm1684"


def test_fp16_bm1684x_plan(no_sophon: None, tiny_onnx: Path, tmp_path: Path, make_request: Any) -> None:
    req = make_request(tiny_onnx, tmp_path / "h", precision="fp16", options={"chip": "bm1684x"}, dry_run=True)
    T.SophonTarget().convert(req)
    (dep,) = argv_of(req.commands, "model_deploy")
    assert opt(dep, "--quantize") == "F16"


def test_multi_batch_combined_largest_first(no_sophon: None, tiny_onnx: Path, tmp_path: Path, make_request: Any) -> None:
    req = make_request(tiny_onnx, tmp_path / "m", batch_sizes=[1, 4], options={"chip": "bm1684x"}, dry_run=True)
    res = T.SophonTarget().convert(req)
    assert [c["argv"][0] for c in req.commands] == ["model_transform"] * 2 + ["model_deploy"] * 2 + ["model_tool"]
    shapes = [opt(a, "--input_shapes") for a in argv_of(req.commands, "model_transform")]
    assert shapes == ["[[4,3,32,32]]", "[[1,3,32,32]]"]
    outs = [opt(a, "--model") for a in argv_of(req.commands, "model_deploy")]
    assert outs == ["tiny_t32_b4_32x32.bmodel", "tiny_t32_b1_32x32.bmodel"]
    (comb,) = argv_of(req.commands, "model_tool")
    assert comb == ["model_tool", "--combine", "work/b4_32x32/tiny_t32_b4_32x32.bmodel",
                    "work/b1_32x32/tiny_t32_b1_32x32.bmodel", "-o", "model.bmodel"]
    assert req.commands[-1]["cwd"] == "."
    assert res.batch_sizes == [1, 4]
    assert [s["batch"] for s in res.extra["stages"]] == [4, 1]
    with np.load(tmp_path / "m" / "inputs" / "test_b4_32x32.npz") as z:
        np.testing.assert_array_equal(z["image"], req.reference_inputs)  # 4 reference rows, 4 slots


def test_plan_files_describe_every_step(no_sophon: None, tiny_onnx: Path, tmp_path: Path, make_request: Any) -> None:
    import json

    req = make_request(tiny_onnx, tmp_path / "p", batch_sizes=[1, 2], precision="int8", calib=3,
                       options={"chip": "bm1684x"}, dry_run=True)
    T.SophonTarget().convert(req)
    doc = json.loads((tmp_path / "p" / "plan.json").read_text())
    assert doc["format"] == CV.PLAN_FORMAT and doc["chip"] == "bm1684x" and doc["quantize"] == "INT8"
    assert [s["argv"] for s in doc["steps"]] == [c["argv"] for c in req.commands]
    assert C.Step.from_dict(doc["steps"][0]).stage == C.Stage(2, 32, 32)
    script = (tmp_path / "p" / "plan.sh").read_text().splitlines()
    assert script[0] == "#!/bin/sh" and "sophon/venv/bin:$PATH" in script[5]
    assert script[7].startswith("mkdir -p work/b2_32x32 && (cd work/b2_32x32 && model_transform ")
    assert script[7].endswith("> logs/01_model_transform_b2_32x32.log 2>&1")
    assert script[-2].startswith("model_tool --combine ") and script[-2].endswith("> logs/06_model_tool_combine.log 2>&1")
    assert script[-1] == "cp work/b1_32x32/tiny_t32_cali_table calibration_table.txt"


def test_fp16_on_bm1684_refused(no_sophon: None, tiny_onnx: Path, tmp_path: Path, make_request: Any) -> None:
    req = make_request(tiny_onnx, tmp_path / "x", precision="fp16", options={"chip": "bm1684"}, dry_run=True)
    with pytest.raises(UserError, match="BM1684 cannot run fp16") as e:
        T.SophonTarget().convert(req)
    assert "--chip bm1684x" in str(e.value) and req.commands == []
    assert not (tmp_path / "x" / "inputs").exists()


def test_missing_chip_without_device(no_sophon: None, tiny_onnx: Path, tmp_path: Path, make_request: Any) -> None:
    req = make_request(tiny_onnx, tmp_path / "c", dry_run=True)
    with pytest.raises(UserError, match="--chip is required: no Sophon device") as e:
        T.SophonTarget().convert(req)
    assert "\n" not in str(e.value)


def test_chip_detected_from_bm_smi(monkeypatch: pytest.MonkeyPatch, fixtures_dir: Path, tiny_onnx: Path,
                                   tmp_path: Path, make_request: Any) -> None:
    devices = parse_bm_smi((fixtures_dir / "toolchains" / "bm-smi_text_format_SC5plus_3chips.txt").read_text())
    monkeypatch.setattr(T, "find_toolchain", lambda: None)
    monkeypatch.setattr(T, "query_devices", lambda: (devices, "bm-smi"))
    req = make_request(tiny_onnx, tmp_path / "d", dry_run=True)
    T.SophonTarget().convert(req)
    (dep,) = argv_of(req.commands, "model_deploy")
    assert opt(dep, "--chip") == "bm1684"


def test_unknown_board_needs_chip(monkeypatch: pytest.MonkeyPatch, fixtures_dir: Path) -> None:
    devices = parse_bm_smi((fixtures_dir / "toolchains" / "bm-smi_display_noloop_MARS3-SOC.txt").read_text())
    with pytest.raises(UserError, match=r"chip family of the Sophon board\(s\) here \(MARS3-SOC\)"):
        T.resolve_chip(None, devices)


def test_int8_without_calibration(no_sophon: None, tiny_onnx: Path, tmp_path: Path, make_request: Any) -> None:
    req = make_request(tiny_onnx, tmp_path / "n", precision="int8", options={"chip": "bm1684x"}, dry_run=True)
    with pytest.raises(UserError, match="int8 needs calibration images"):
        T.SophonTarget().convert(req)


def test_calibration_of_the_wrong_size(no_sophon: None, tiny_onnx: Path, tmp_path: Path, make_request: Any) -> None:
    req = make_request(tiny_onnx, tmp_path / "w", precision="int8", options={"chip": "bm1684x"}, calib=4, dry_run=True)
    req.calibration = lambda n: iter([np.zeros((3, 16, 16), np.float32)] * n)
    with pytest.raises(UserError, match=r"no calibration tensor of shape \[3, 32, 32\].*4 of another size"):
        T.SophonTarget().convert(req)


def test_real_run_without_toolchain(no_sophon: None, tiny_onnx: Path, tmp_path: Path, make_request: Any) -> None:
    req = make_request(tiny_onnx, tmp_path / "r", options={"chip": "bm1684x"})
    with pytest.raises(ToolchainMissing, match="hrdeploy toolchain install sophon"):
        T.SophonTarget().convert(req)


def test_gear_stages_and_calibration_stage() -> None:
    stages = C.plan_stages([1, 2], ((512, 768), (512, 512)))
    assert [s.key for s in stages] == ["b2_512x768", "b2_512x512", "b1_512x768", "b1_512x512"]
    assert C.calibration_stage(stages).key == "b1_512x768"
    with pytest.raises(UserError, match="neither a fixed input size nor size gears"):
        C.plan_stages([1], ())


def test_net_name_is_a_file_prefix() -> None:
    assert C.net_name("hrnet_cls", "w18-small.v2") == "hrnet_cls_w18_small_v2"


def _step(tool: str = "model_deploy") -> C.Step:
    return C.Step(tool, [tool], "work/b1_32x32", "logs/03_model_deploy_b1_32x32.log", C.Stage(1, 32, 32),
                  parses_compare=True)


def test_failed_compare_is_one_line_with_tensor_figures_and_log(tmp_path: Path) -> None:
    text = (DATA / "tpu_mlir_1.30.2_model_deploy_npz_compare_failed.txt").read_text()
    checks: list[dict[str, Any]] = []
    with pytest.raises(UserError) as e:
        CV.verdicts(_step(), subprocess.CompletedProcess([], 1, text, ""), tmp_path, checks)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("model_deploy b1_32x32: similarity check failed")
    assert "logits_Gemm not similar (cosine 0.999983, euclidean 0.991461)" in msg
    assert msg.endswith(f"log: {tmp_path / 'logs/03_model_deploy_b1_32x32.log'}")
    assert checks[0]["passed"] is False and checks[0]["failed"] == ["logits_Gemm"]
    assert checks[0]["compare"] == "tpu MLIR vs tiny_top.npz"
    assert checks[0]["min_cosine"] == pytest.approx(0.99998277)


def test_passing_compares_become_checks(fixtures_dir: Path, tmp_path: Path) -> None:
    text = (fixtures_dir / "toolchains" / "tpu_mlir_1.30.2_model_transform_tiny.log").read_text()
    checks: list[dict[str, Any]] = []
    CV.verdicts(_step("model_transform"), subprocess.CompletedProcess([], 0, text, ""), tmp_path, checks)
    (c,) = checks
    assert c["passed"] is True and c["compare"] == "top MLIR vs onnxruntime" and c["tensors"] == 6
    assert c["min_cosine"] == pytest.approx(0.99999988) and "PASSED" in c["text"]


def test_tool_failure_without_compare(tmp_path: Path) -> None:
    text = "2026/11/22 - INFO : TPU-MLIR v1.30.2\nTraceback (most recent call last):\n  File \"x.py\"\n" \
           "RuntimeError: unsupported op Einsum\nBMLIB Send Quit Message\n"
    with pytest.raises(UserError, match=r"model_deploy b1_32x32 failed \(exit 1\): RuntimeError: unsupported op Einsum; log: "):
        CV.verdicts(_step(), subprocess.CompletedProcess([], 1, text, ""), tmp_path, [])


def _artifact(tmp_path: Path, chip: str = "bm1684x") -> Artifact:
    (tmp_path / "model.bmodel").write_bytes(b"\0")
    return Artifact(tmp_path, {"format": "hrdeploy-artifact/1", "files": {"model": "model.bmodel"}, "batch_sizes": [1],
                               "sizes": [[32, 32]], "input": {"name": "image"}, "outputs": ["logits"],
                               "conversion": {"chip": chip}})


def test_open_without_device_or_toolchain(no_sophon: None, tmp_path: Path) -> None:
    with pytest.raises(ToolchainMissing, match="cmodel simulator needs TPU-MLIR"):
        T.SophonTarget().open(_artifact(tmp_path))
    with pytest.raises(ToolchainMissing, match="no Sophon device here"):
        T.SophonTarget().open(_artifact(tmp_path), device="0")


def test_open_refuses_a_bmodel_for_another_chip(monkeypatch: pytest.MonkeyPatch, fixtures_dir: Path,
                                                tmp_path: Path) -> None:
    devices = parse_bm_smi((fixtures_dir / "toolchains" / "bm-smi_text_format_SC5plus_3chips.txt").read_text())
    monkeypatch.setattr(T, "query_devices", lambda: (devices, "bm-smi"))
    with pytest.raises(UserError, match="compiled for bm1684x but device 1 is a 1684-SC5\\+ \\(bm1684\\)"):
        T.SophonTarget().open(_artifact(tmp_path), device="1")


def test_probe_on_a_bare_machine(no_sophon: None) -> None:
    p = T.SophonTarget().probe()
    assert p.available is False and "hrdeploy toolchain install sophon" in p.detail
    assert p.devices == [] and p.extra["runner"] is None and p.extra["can_convert"] is False


def test_bench_native_without_device_is_none(no_sophon: None, tmp_path: Path) -> None:
    assert T.SophonTarget().bench_native(_artifact(tmp_path), [1], 1.0) is None


def _record_only(text: str, reference: str) -> str:
    """The same compare as model_deploy prints it when given RECORD_ONLY_FLOOR: every tensor
    passes the tool's own floor, the figures are unchanged."""
    text = re.sub(r"--tolerance \S+", f"--tolerance {C.RECORD_ONLY_FLOOR}", text)
    text = text.replace("NOT_SIMLIAR [FAILED]", "SIMILAR [PASSED]").replace("npz compare FAILED", "npz compare PASSED")
    return text.replace("tiny_top.npz", reference)


def test_deploy_figures_are_judged_against_tpu_mlirs_floors_and_recorded_not_raised(tmp_path: Path) -> None:
    failed = (DATA / "tpu_mlir_1.30.2_model_deploy_npz_compare_failed.txt").read_text()
    text = _record_only(failed, "tiny_top_outputs.npz")  # cosine 0.999983, euclidean 0.991461
    checks: list[dict[str, Any]] = []
    CV.verdicts(_step(), subprocess.CompletedProcess([], 0, text, ""), tmp_path, checks,
                C.similarity_floors("F32", qtable=False))  # 0.99,0.99 against the top MLIR: met
    assert checks[0]["passed"] is True and checks[0]["tolerance"] == "0.99,0.99"
    checks = []
    CV.verdicts(_step(), subprocess.CompletedProcess([], 0, text, ""), tmp_path, checks,
                C.similarity_floors("INT8", qtable=False, tolerance="0.9999,0.995"))
    (c,) = checks
    assert c["passed"] is False and c["failed"] == ["logits_Gemm"] and c["tolerance"] == "0.9999,0.995"
    assert "FAILED (floor cosine,euclidean 0.9999,0.995; min cosine 0.999983, euclidean 0.991461)" in c["text"]


def test_deploy_steps_let_model_deploy_finish_and_name_the_floors_they_judge_by() -> None:
    step = C.deploy_step("net", C.Stage(1, 32, 32), "bm1684x", "INT8", 3, calibration="cal", qtable=True)
    assert opt(step.argv, "--tolerance") == C.RECORD_ONLY_FLOOR == opt(step.argv, "--correctness")
    assert "tolerance 0.90,0.80, correctness 0.98,0.80" in step.note
    assert C.similarity_floors("F32", False) == {"top": "0.99,0.99", "tpu": "0.99,0.90"}
