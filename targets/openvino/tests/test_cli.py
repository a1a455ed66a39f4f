"""The OpenVINO target through the command line, as a user runs it: convert a real (small)
HRNet at every precision, then predict, eval (with --compare against the source), bench
and verify; dry-run plans built with --from-plan."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from hrdeploy_target_openvino.probe import capabilities, query

_VERSION, _DEVICES, _REASON = query()
pytestmark = pytest.mark.skipif(_VERSION is None, reason=f"openvino not here: {_REASON}")
HAS_BF16 = "BF16" in capabilities(_DEVICES, "CPU")


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def cli(*args: object) -> int:
    """``hrdeploy ARGS`` for module fixtures (``hrdeploy_cli`` is per test): the exit code."""
    from hrdeploy.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as e:
        return int(e.code or 0)
    return 0


@pytest.fixture(scope="module")
def fp32(small_hrnet: Path, ov_work: Path) -> Path:
    out = ov_work / "ov-fp32"
    assert cli("convert", small_hrnet, "--target", "openvino", "-o", out) == 0
    return out


@pytest.fixture(scope="module")
def int8(small_hrnet: Path, ov_work: Path, calib_dir: Path) -> Path:
    out = ov_work / "ov-int8"
    assert cli("convert", small_hrnet, "--target", "openvino", "--precision", "int8",
               "--calib", calib_dir, "--calib-count", "8", "-o", out) == 0
    return out


def test_fp32_runs_in_f32_and_matches_the_source(fp32: Path) -> None:
    m = manifest(fp32)
    assert m["files"]["model"] == "model.xml" and (fp32 / "model.bin").is_file()
    assert m["conversion"]["execution"]["inference_precision_hint"] == "f32"
    assert m["toolchain"]["name"] == "openvino" and m["toolchain"]["version"] == _VERSION
    parity = m["parity"]
    assert parity["status"] == "passed", parity
    assert parity["outputs"][0]["max_rel"] < 1e-4 and "f32" in parity["runner"]
    assert parity["task"]["value"] == 1.0  # top-1 agreement


def test_int8_is_calibrated_by_nncf_and_close_to_fp32(int8: Path) -> None:
    m = manifest(int8)
    q = m["conversion"]["quantization"]
    assert q["calibration_images"] == 8 and q["tool"].startswith("nncf")
    assert "held-out" in m["reference"]["source"]
    assert m["parity"]["status"] == "passed" and m["parity"]["outputs"][0]["cosine_min"] >= 0.99
    # the IR holds int8 weights: well under half the bytes of fp32 ones
    assert m["conversion"]["ir"]["bin_bytes"] == (int8 / "model.bin").stat().st_size
    fp32_bytes = (int8.parent / "w18s.onnx").stat().st_size
    assert (int8 / "model.bin").stat().st_size < 0.5 * fp32_bytes


def test_fp16_compresses_the_weights(small_hrnet: Path, ov_work: Path, fp32: Path, hrdeploy_cli) -> None:
    out = ov_work / "ov-fp16"
    res = hrdeploy_cli("convert", small_hrnet, "--target", "openvino", "--precision", "fp16", "-o", out)
    assert res.code == 0, res
    m = manifest(out)
    assert m["parity"]["status"] == "passed"
    size16, size32 = (out / "model.bin").stat().st_size, (fp32 / "model.bin").stat().st_size
    assert 0.4 * size32 < size16 < 0.6 * size32


@pytest.mark.skipif(not HAS_BF16, reason="this CPU has no bf16 execution (the refusal is tested in test_target.py)")
def test_bf16_where_the_cpu_has_it(small_hrnet: Path, ov_work: Path, hrdeploy_cli) -> None:
    out = ov_work / "ov-bf16"
    res = hrdeploy_cli("convert", small_hrnet, "--target", "openvino", "--precision", "bf16", "-o", out)
    assert res.code == 0, res
    m = manifest(out)
    assert m["conversion"]["execution"]["inference_precision_hint"] == "bf16"
    assert m["parity"]["status"] == "passed" and "bf16" in m["parity"]["runner"]
    # bf16 really ran: not bit-identical to f32 (8 mantissa bits)
    assert m["parity"]["outputs"][0]["max_rel"] > 1e-6


def test_predict_eval_compare_bench_verify(fp32: Path, int8: Path, small_hrnet: Path, imagenet_dir: Path,
                                           ov_work: Path, hrdeploy_cli) -> None:
    images = imagenet_dir / "ILSVRC2012_img_val"
    res = hrdeploy_cli("predict", int8, images, "--json", "-")
    assert res.code == 0, res
    preds = json.loads(res.out)
    assert len(preds) == 6 and all(len(p["top_k"]) == 5 for p in preds)

    out = ov_work / "eval.json"
    res = hrdeploy_cli("eval", fp32, "--data", f"imagenet:{imagenet_dir}", "--compare", small_hrnet, "-o", out)
    assert res.code == 0, res
    doc = json.loads(out.read_text())
    assert doc["data"]["evaluated"] == 6 and "OpenVINO" in doc["runner"]
    assert doc["compare"] and all(r["passed"] for r in doc["compare"]), doc["compare"]
    assert all(r["outputs"][0]["max_rel"] < 1e-4 for r in doc["compare"])

    bench = ov_work / "bench.json"
    res = hrdeploy_cli("bench", fp32, "--batch", "1,2", "--seconds", "0.3", "--threads", "1", "--json", bench)
    assert res.code == 0, res
    rep = json.loads(bench.read_text())
    assert "OpenVINO" in rep["runner"] and "1 threads" in rep["runner"] and "latency hint" in rep["runner"]
    assert [r["batch"] for r in rep["results"]] == [1, 2] and all(r["device_ips"] > 0 for r in rep["results"])

    res = hrdeploy_cli("bench", fp32, "--batch", "4", "--seconds", "0.3", "--hint", "throughput", "--streams", "2",
                       "--json", bench)
    assert res.code == 0, res
    assert "throughput hint, 2 streams" in json.loads(bench.read_text())["runner"]

    res = hrdeploy_cli("verify", int8)
    assert res.code == 0, res


def test_unknown_device_and_hint_are_one_line_errors(fp32: Path, imagenet_dir: Path, hrdeploy_cli) -> None:
    images = imagenet_dir / "ILSVRC2012_img_val"
    res = hrdeploy_cli("predict", fp32, images, "--device", "NPU")
    assert res.code == 2 and "NPU is not here" in res.err and "Traceback" not in res.err
    res = hrdeploy_cli("predict", fp32, images, "--hint", "fastest")
    assert res.code == 2 and "fastest" in res.err


def test_dry_run_plan_then_from_plan(small_hrnet: Path, ov_work: Path, calib_dir: Path, imagenet_dir: Path,
                                     hrdeploy_cli) -> None:
    plan = ov_work / "plan-int8"
    res = hrdeploy_cli("convert", small_hrnet, "--target", "openvino", "--precision", "int8", "--calib", calib_dir,
                       "--calib-count", "8", "--dry-run", "-o", plan)
    assert res.code == 0, res
    m = manifest(plan)
    assert m["dry_run"] is True and not (plan / "model.xml").exists()
    assert (plan / "source.onnx").is_file() and (plan / "plan.json").is_file()
    assert json.loads((plan / "plan.json").read_text())["calibration_tensors"] == 8
    assert all("returncode" not in c for c in m["commands"])
    res = hrdeploy_cli("predict", plan, imagenet_dir / "ILSVRC2012_img_val")
    assert res.code == 2 and "dry-run plan" in res.err

    res = hrdeploy_cli("convert", "--from-plan", plan)
    assert res.code == 0, res
    # NNCF's progress bars and INFO lines are held back; hrdeploy says what it does
    assert "Statistics collection" not in res.out + res.err and "INFO:nncf" not in res.out + res.err
    assert "nncf: calibrating on 8 tensor(s)" in res.out + res.err
    m = manifest(plan)
    assert m["dry_run"] is False and (plan / "model.xml").is_file()
    assert m["conversion"]["quantization"]["calibration_images"] == 8
    assert m["parity"]["status"] == "passed" and m["parity"]["outputs"][0]["cosine_min"] >= 0.99
    assert m["commands"][0].get("returncode") == 0
    res = hrdeploy_cli("verify", plan)
    assert res.code == 0, res
