"""Real conversions with TPU-MLIR and runs on its cmodel simulator, compared with
onnxruntime. Needs the provisioned toolchain (skipped with the reason otherwise); each
conversion of the small test network takes tens of seconds, so each is done once."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from hrdeploy.artifact import Artifact
from hrdeploy.errors import UserError
from hrdeploy.target import ConvertResult
from hrdeploy_target_sophon import commands as C
from hrdeploy_target_sophon.parsers import parse_calibration_table
from hrdeploy_target_sophon.target import SophonTarget

pytestmark = pytest.mark.toolchain


def artifact_of(folder: Path, res: ConvertResult) -> Artifact:
    """The manifest fields the runner reads, as the core writes them."""
    return Artifact(folder, {"format": "hrdeploy-artifact/1", "files": res.files, "batch_sizes": res.batch_sizes,
                             "sizes": [list(s) for s in res.sizes or []], "input": {"name": "image", "height": 32, "width": 32},
                             "outputs": ["logits"], "conversion": res.extra, "toolchain": res.toolchain})


def onnx_outputs(onnx_path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"image": x})[0]


def max_rel(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(a - ref).max() / np.abs(ref).max())


def cosines(a: np.ndarray, ref: np.ndarray) -> np.ndarray:
    a, ref = a.reshape(len(a), -1), ref.reshape(len(ref), -1)
    return (a * ref).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(ref, axis=1))


@pytest.fixture(scope="module")
def convert_once(toolchain: Any, tiny_onnx: Path, tmp_path_factory: pytest.TempPathFactory,
                 make_request: Callable[..., Any]) -> Callable[..., tuple[Any, ConvertResult, Path]]:
    cache: dict[str, tuple[Any, ConvertResult, Path]] = {}

    def get(key: str, **kwargs: Any) -> tuple[Any, ConvertResult, Path]:
        if key not in cache:
            out = tmp_path_factory.mktemp(key) / "artifact"
            req = make_request(tiny_onnx, out, **kwargs)
            cache[key] = (req, SophonTarget().convert(req), out)
        return cache[key]

    return get


def test_fp32_bm1684x_two_batches_combined(convert_once: Any, tiny_onnx: Path, make_inputs: Any) -> None:
    req, res, out = convert_once("fp32_bm1684x", batch_sizes=[1, 2], options={"chip": "bm1684x"})
    assert res.batch_sizes == [1, 2] and res.files["model"] == "model.bmodel"
    assert (out / "model.bmodel").is_file() and not (out / "work").exists()
    assert [c["argv"][0] for c in req.commands] == ["model_transform"] * 2 + ["model_deploy"] * 2 + ["model_tool"]
    assert all(c["returncode"] == 0 and (out / c["log"]).is_file() for c in req.commands if "log" in c)
    # each stage: top MLIR vs onnxruntime, tpu MLIR vs top MLIR, bmodel (cmodel) vs tpu MLIR
    assert [c["compare"] for c in res.checks if c["stage"] == "b2_32x32"] == [
        "top MLIR vs onnxruntime", "tpu MLIR vs top MLIR", "bmodel on the cmodel vs tpu MLIR"]
    assert len(res.checks) == 6 and all(c["passed"] for c in res.checks)
    assert all(c["min_cosine"] >= 0.99999 for c in res.checks)
    (net,) = res.extra["bmodel"]["nets"]
    assert [s["input_shapes"] for s in net["stages"]] == [[[2, 3, 32, 32]], [[1, 3, 32, 32]]]

    x = make_inputs(5, seed=21)
    ref = onnx_outputs(tiny_onnx, x)
    with SophonTarget().open(artifact_of(out, res)) as runner:
        assert runner.simulated and runner.label.startswith("simulator (cmodel)") and "bm1684x" in runner.label
        assert runner.batch_sizes == (1, 2) and runner.output_names == ["logits"]
        outs = runner.run_many([{"image": x[0:2]}, {"image": x[2:4]}, {"image": x[4:5]}])
        single = runner.run({"image": x[1:2]})[0]
    got = np.concatenate([o[0] for o in outs])
    err = max_rel(got, ref)
    print(f"\nbm1684x fp32 on the cmodel, batches 2+2+1: max rel error vs onnxruntime {err:.2e}")
    assert err <= 1e-5
    np.testing.assert_allclose(single, got[1:2], rtol=0, atol=1e-6)  # stage 1 (batch 1) == row of stage 0


def test_int8_bm1684x_with_calibration(convert_once: Any, tiny_onnx: Path, make_inputs: Any) -> None:
    req, res, out = convert_once("int8_bm1684x", precision="int8", options={"chip": "bm1684x"}, calib=16)
    assert [c["argv"][0] for c in req.commands] == ["model_transform", "run_calibration", "model_deploy", "cp", "cp"]
    # only deployable files and records stay: model_deploy's side files lived in work/
    # (debug/: the final and tpu MLIR and tensor locations `hrdeploy debug` replays, text only)
    assert sorted(p.name for p in out.iterdir()) == ["calibration_table.txt", "debug", "inputs", "logs", "model.bmodel",
                                                     "plan.json", "plan.sh", "source.onnx"]
    assert sorted(p.name for p in (out / "debug").iterdir()) == ["final.mlir", "tensor_location.json", "tpu.mlir"]
    table = parse_calibration_table((out / C.CALIB_TABLE).read_text())
    assert table["samples"] == 16 and "image" in table["ops"] and "logits_Gemm" in table["ops"]
    assert res.extra["calibration"]["tensors"] == 16 and res.files["calibration_table"] == C.CALIB_TABLE
    assert not (out / "inputs" / "calib").exists()  # 16 tensors used, then removed
    assert all(c["passed"] for c in res.checks) and len(res.checks) == 3

    x = make_inputs(8, seed=33)
    ref = onnx_outputs(tiny_onnx, x)
    with SophonTarget().open(artifact_of(out, res)) as runner:
        got = np.concatenate([o[0] for o in runner.run_many([{"image": x[i:i + 1]} for i in range(8)])])
    cos = cosines(got, ref)
    top1 = float((got.argmax(1) == ref.argmax(1)).mean())
    print(f"\nbm1684x int8 on the cmodel, 8 inputs: cosine min {cos.min():.5f} mean {cos.mean():.5f}, "
          f"top-1 agreement {top1:.2f}, max rel error {max_rel(got, ref):.3f}")
    assert cos.min() >= 0.99


def test_bm1684_plan_compiled_with_run_plan(convert_once: Any, tiny_onnx: Path, make_inputs: Any,
                                             tmp_path_factory: pytest.TempPathFactory) -> None:
    """A dry-run plan is self-contained: moved to another folder, ``run_plan`` (what
    ``convert --from-plan`` calls) compiles it there from its recorded steps."""
    req, planned, out = convert_once("fp32_bm1684_plan", options={"chip": "bm1684"}, dry_run=True)
    assert not (out / "model.bmodel").exists() and (out / "plan.json").is_file()
    with pytest.raises(UserError, match="no compiled bmodel yet.*--from-plan"):
        SophonTarget().open(artifact_of(out, planned))
    moved = tmp_path_factory.mktemp("moved") / "plan"
    shutil.copytree(out, moved)
    res = SophonTarget().run_plan(moved, log=lambda m: None)
    assert (moved / "model.bmodel").is_file() and not (moved / "work").exists()
    assert [c["argv"] for c in res.extra["commands"]] == [c["argv"] for c in req.commands]
    assert all(c["returncode"] == 0 for c in res.extra["commands"])
    assert len(res.checks) == 3 and all(c["passed"] for c in res.checks) and res.extra["planned"] is False
    assert res.extra["bmodel"]["chip"] == "bm1684"

    x = make_inputs(3, seed=5)
    ref = onnx_outputs(tiny_onnx, x)
    with SophonTarget().open(artifact_of(moved, res), device="cmodel") as runner:
        assert "bm1684" in runner.label and "bm1684x" not in runner.label
        got = np.concatenate([runner.run({"image": x[i:i + 1]})[0] for i in range(3)])
    err = max_rel(got, ref)
    print(f"\nbm1684 fp32 on the cmodel (compiled from a moved plan): max rel error vs onnxruntime {err:.2e}")
    assert err <= 1e-5
