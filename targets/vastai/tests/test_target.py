"""convert / run_plan / open / bench_native / probe against stand-in tools (vamc, vamp,
vasmi on PATH; vaststreamx importable) that check their inputs and answer like the real ones."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from hrdeploy.artifact import Artifact
from hrdeploy.errors import ToolchainMissing, UserError
from hrdeploy.model import InputSpec
from hrdeploy.target import ConvertRequest
from hrdeploy.testing.standins import artifact_from_result, normalised_pixels
from hrdeploy_target_vastai.runner import tensorize_fp16
from hrdeploy_target_vastai.target import VastaiTarget

PRE = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
SMALL = InputSpec(name="image", channels=3, height=16, width=24)
GEARS = InputSpec(name="image", channels=3, height=None, width=None, gears=((16, 24), (24, 16)), stride=8, batch=1)


def request(onnx: Path, out: Path, *, spec: InputSpec = SMALL, precision="fp16", dry_run=False, calib=None,
            calib_count=100, **options) -> ConvertRequest:
    return ConvertRequest(onnx_path=onnx, out_dir=out, model="tiny", variant="t", task="classification",
                          input=spec, preprocess=dict(PRE), precision=precision, batch_sizes=[1, 4],
                          options=options, dry_run=dry_run, calib_dir=calib, calib_count=calib_count,
                          log=lambda s: None)


def artifact_from(req: ConvertRequest, result) -> Artifact:
    return artifact_from_result(req, result, "vastai", ["heatmaps", "logits"])


def inputs(n: int, h: int = 16, w: int = 24, seed: int = 0) -> np.ndarray:
    return normalised_pixels(n, h, w, seed)


def assert_close(test, ref, rel: float) -> None:
    assert len(test) == len(ref)
    for t, r in zip(test, ref):
        assert t.shape == r.shape and t.dtype == np.float32
        assert np.max(np.abs(t - r)) <= rel * np.max(np.abs(r)), np.max(np.abs(t - r)) / np.max(np.abs(r))


@pytest.fixture
def lib(vastai_env):
    import vastai_fakelib

    return vastai_fakelib


@pytest.mark.parametrize("shape", [(1, 3, 16, 24), (2, 3, 10, 13), (1, 5, 8, 8)])
def test_tensorize_round_trips_through_the_reference_formula(lib, shape) -> None:
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    t = tensorize_fp16(x)
    n, c, h, w = shape
    assert t.dtype == np.float16 and t.shape == (n, -(-w // 8), -(-h // 8), -(-c // 4), 256)
    assert np.array_equal(lib.detensorize(t, c, h, w), x.astype(np.float16).astype(np.float32))
    # the padding is zeros: the array holds exactly the input's values and nothing else
    assert np.count_nonzero(t) == np.count_nonzero(x.astype(np.float16))


# ------------------------------------------------------------------------------------------ convert
def test_convert_fp16_current_generation(vastai_env, tiny_onnx: Path, tmp_path: Path) -> None:
    import yaml

    req = request(tiny_onnx, tmp_path / "a")
    result = VastaiTarget().convert(req)
    art = tmp_path / "a"
    call = vastai_env.calls("vamc")[-1]
    assert call["argv"] == ["vamc", "compile", "vamc_tiny_t.yaml"] and Path(call["cwd"]) == art
    cfg = yaml.safe_load((art / "vamc_tiny_t.yaml").read_text())
    assert cfg["frontend"]["shape"] == {"image": [1, 3, 16, 24]} and cfg["frontend"]["checkpoint"] == "source.onnx"
    assert cfg["backend"]["dtype"] == "fp16" and "dataset" not in cfg
    assert result.files["model"] == "deploy_weights/tiny_t/mod.so" and (art / result.files["model"]).is_file()
    assert result.files["vdsp_params"] == "vdsp_params_tiny_t.json" and result.files["vamc_log"] == "vamc_tiny_t.log"
    assert "[vamc] saved" in (art / "vamc_tiny_t.log").read_text()
    assert result.batch_sizes is None and result.sizes == [(16, 24)]
    assert result.checks[0]["passed"] and result.checks[0]["files"] == ["mod.json", "mod.params", "mod.so"]
    vdsp = json.loads((art / "vdsp_params_tiny_t.json").read_text())["OpConfig"]
    assert (vdsp["OimageHeight"], vdsp["OimageWidth"], vdsp["CropX"]) == (16, 24, 0)


def test_convert_int8_old_generation_with_calibration(vastai_env, tiny_onnx: Path, tmp_path: Path,
                                                      calib_dir: Path) -> None:
    import yaml

    req = request(tiny_onnx, tmp_path / "a", precision="int8", calib=calib_dir, calib_count=4,
                  generation="build", calib_mode="kl_divergence")
    result = VastaiTarget().convert(req)
    art = tmp_path / "a"
    cfg = yaml.safe_load((art / "vamc_tiny_t.yaml").read_text())
    assert cfg["engine"]["common"]["do_quantization"] is True
    assert cfg["engine"]["calibration"] == {"quant_mode": "kl_divergence", "per_channel": True}
    assert cfg["dataset"]["path"] == "./calib" and cfg["dataset"]["sampler"] == {"suffix": "JPEG", "get_data_num": 4}
    # four of the six JPEGs, the PNG left out (vamc samples one suffix)
    assert sorted(p.suffix for p in (art / "calib").iterdir()) == [".JPEG"] * 4
    assert "calibrating with 4 images" in (art / "vamc_tiny_t.log").read_text()
    prefix = "deploy_weights/tiny_t-int8-kl_divergence-3_16_24-vacc/tiny_t"
    assert result.extra["builds"][0]["prefix"] == prefix and result.files["model"] == prefix + ".so"
    assert json.loads((art / "model_info_tiny_t.json").read_text())["model_params_path"] == prefix + ".params"
    sdk1 = json.loads((art / "vdsp_params_tiny_t_sdk1.json").read_text())["config"]
    assert {p["Property"]: p["Value"] for p in sdk1}["meanr"] == 14275
    assert result.extra["calibration"] == {"path": "./calib", "suffix": "JPEG", "count": 4}


def test_convert_refusals(vastai_env, tiny_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="int8 needs calibration images"):
        VastaiTarget().convert(request(tiny_onnx, tmp_path / "a", precision="int8"))
    with pytest.raises(UserError, match="fp16 or int8"):
        VastaiTarget().convert(request(tiny_onnx, tmp_path / "b", precision="fp32"))
    with pytest.raises(UserError, match="unknown vamc generation"):
        VastaiTarget().convert(request(tiny_onnx, tmp_path / "c", generation="make"))


def test_without_vamc_convert_names_the_tool_and_the_activate_scripts(no_vastai, tiny_onnx: Path,
                                                                       tmp_path: Path) -> None:
    with pytest.raises(ToolchainMissing) as e:
        VastaiTarget().convert(request(tiny_onnx, tmp_path / "a"))
    msg = str(e.value)
    assert "\n" not in msg and "vamc not found" in msg
    assert "source /opt/vastai/vaststreamx/vaststreamx/bin/activate.sh" in msg
    assert "source /opt/vastai/vastpipe/vastpipe/bin/activate.sh" in msg


def test_vamc_failure_and_missing_output(vastai_env, tiny_onnx: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_VAMC_MODE", "fail")
    with pytest.raises(UserError) as e:
        VastaiTarget().convert(request(tiny_onnx, tmp_path / "a"))
    assert "exit code 1" in str(e.value) and "TVMError" in str(e.value) and "vamc_tiny_t.log" in str(e.value)
    monkeypatch.setenv("FAKE_VAMC_MODE", "nofile")
    with pytest.raises(UserError, match="wrote no deploy_weights/tiny_t/mod"):
        VastaiTarget().convert(request(tiny_onnx, tmp_path / "b"))


# ------------------------------------------------------------------------------------------ run
def test_tensor_input_runs_and_matches_onnx(vastai_env, tiny_onnx: Path, tmp_path: Path, ort_run) -> None:
    req = request(tiny_onnx, tmp_path / "a")
    art = artifact_from(req, VastaiTarget().convert(req))
    with VastaiTarget().open(art) as runner:
        assert runner.output_names == ["heatmaps", "logits"] and runner.batch_sizes is None
        assert "tensor input" in runner.label and "die 0" in runner.label
        x = inputs(3)
        # fp16 inputs and outputs on the device: fp16-level agreement
        assert_close(runner.run({"image": x}), ort_run(tiny_onnx, x), rel=3e-3)
        with pytest.raises(UserError, match="takes 3x16x24"):
            runner.run({"image": inputs(1, 24, 16)})


def test_image_input_normalises_on_the_device(vastai_env, tiny_onnx: Path, tmp_path: Path, ort_run) -> None:
    req = request(tiny_onnx, tmp_path / "a", input_mode="image")
    art = artifact_from(req, VastaiTarget().convert(req))
    with VastaiTarget().open(art, options={"input_mode": "image"}) as runner:
        assert "image input" in runner.label
        x = inputs(2, seed=5)
        # the vdsp op uses the fp16-rounded Mean/Std of the JSON: still fp16-level agreement
        assert_close(runner.run({"image": x}), ort_run(tiny_onnx, x), rel=5e-3)


def test_gear_builds(vastai_env, tiny_onnx: Path, tmp_path: Path, ort_run) -> None:
    req = request(tiny_onnx, tmp_path / "a", spec=GEARS)
    result = VastaiTarget().convert(req)
    assert [c["argv"][2] for c in vastai_env.calls("vamc")] == ["vamc_tiny_t_16x24.yaml", "vamc_tiny_t_24x16.yaml"]
    assert result.sizes == [(16, 24), (24, 16)] and result.files["model_24x16"] == "deploy_weights/tiny_t_24x16/mod.so"
    with VastaiTarget().open(artifact_from(req, result)) as runner:
        assert runner.sizes == ((16, 24), (24, 16))
        for h, w in runner.sizes:
            x = inputs(1, h, w)
            assert_close(runner.run({"image": x}), ort_run(tiny_onnx, x), rel=3e-3)
        with pytest.raises(UserError, match="20x20 is not a compiled gear"):
            runner.run({"image": inputs(1, 20, 20)})


def test_open_errors(vastai_env, tiny_onnx: Path, tmp_path: Path, monkeypatch) -> None:
    import sys

    req = request(tiny_onnx, tmp_path / "a")
    art = artifact_from(req, VastaiTarget().convert(req))
    with pytest.raises(UserError, match="could not open device 3"):
        VastaiTarget().open(art, device="3")
    monkeypatch.setattr("hrdeploy_target_vastai.probe.device_nodes", lambda: [])
    with pytest.raises(ToolchainMissing, match="no VastAI device on this machine"):
        VastaiTarget().open(art)
    monkeypatch.setitem(sys.modules, "vaststreamx", None)
    with pytest.raises(ToolchainMissing, match="vaststreamx is not importable"):
        VastaiTarget().open(art)


# ------------------------------------------------------------------------------------------ plan
def test_dry_run_plan_then_run_plan(no_vastai, device_machine, tiny_onnx: Path, tmp_path: Path, calib_dir: Path,
                                    ort_run) -> None:
    req = request(tiny_onnx, tmp_path / "dev", precision="int8", calib=calib_dir, calib_count=3, dry_run=True)
    result = VastaiTarget().convert(req)
    dev = tmp_path / "dev"
    assert not (dev / "deploy_weights").exists() and (dev / "plan.json").is_file()
    assert len(list((dev / "calib").iterdir())) == 3  # the images travel with the plan
    assert req.commands[0]["cmd"] == "vamc compile vamc_tiny_t.yaml" and req.commands[0]["note"].startswith("planned")
    art = artifact_from(req, result)
    with pytest.raises(UserError, match="--from-plan"):
        VastaiTarget().open(art)
    with pytest.raises(ToolchainMissing, match="vamc not found"):
        VastaiTarget().run_plan(dev)

    # the device machine: the folder is copied, the SDK is there
    moved = tmp_path / "device" / "art"
    shutil.copytree(dev, moved)
    device_machine(tmp_path / "device-bin")
    done = VastaiTarget().run_plan(moved)
    assert (moved / "deploy_weights" / "tiny_t" / "mod.so").is_file()
    assert done.extra["commands"][0]["returncode"] == 0 and done.checks[0]["passed"]
    manifest = {**art.manifest, "files": done.files, "conversion": done.extra, "dry_run": False}
    with VastaiTarget().open(Artifact(moved, manifest)) as runner:
        x = inputs(2)
        assert_close(runner.run({"image": x}), ort_run(tiny_onnx, x), rel=3e-3)


# ------------------------------------------------------------------------------------------ bench
def test_bench_native_with_vamp(vastai_env, tiny_onnx: Path, tmp_path: Path, monkeypatch) -> None:
    req = request(tiny_onnx, tmp_path / "a", instances="2", iterations="256")
    art = artifact_from(req, VastaiTarget().convert(req))
    rows = VastaiTarget().bench_native(art, [1, 4], seconds=1.0)
    assert [r["batch"] for r in rows] == [1, 4]
    call = vastai_env.calls("vamp")[-1]
    assert call["argv"] == ["vamp", "-m", "deploy_weights/tiny_t/mod", "--vdsp_params", "vdsp_params_tiny_t.json",
                            "-i", "2", "-p", "1", "-b", "4", "-d", "0", "-s", "[3,16,24]", "--iterations", "256",
                            "--percentiles", "[50,90,95,99]"]
    assert Path(call["cwd"]) == tmp_path / "a"
    r4 = rows[1]
    # the stand-in: model latency 200 + 150 * batch us, 2 instances -> 2 * 4 / 800 us
    assert r4["device_ips"] == pytest.approx(2 * 4 * 1e6 / 800, rel=1e-5)
    assert r4["latency_ms"]["mean"] == pytest.approx(0.8) and r4["latency_ms"]["p99"] > r4["latency_ms"]["p50"]
    assert r4["tool"] == "vamp" and r4["instances"] == 2 and r4["iterations"] == 256
    monkeypatch.setenv("FAKE_VAMP_MODE", "old")
    old = VastaiTarget().bench_native(art, [2], seconds=1.0)[0]
    assert old["iterations"] == 256 and old["device_ips"] == pytest.approx(2 * 2 * 1e6 / 500, rel=1e-4)
    monkeypatch.setenv("FAKE_VAMP_MODE", "fail")
    with pytest.raises(UserError, match="vamp failed with exit code 1"):
        VastaiTarget().bench_native(art, [1], seconds=1.0)


def test_bench_native_without_vamp(vastai_env, tiny_onnx: Path, tmp_path: Path, no_vastai) -> None:
    req = request(tiny_onnx, tmp_path / "a", dry_run=True)
    (tmp_path / "a" / "deploy_weights" / "tiny_t").mkdir(parents=True)
    (tmp_path / "a" / "deploy_weights" / "tiny_t" / "mod.so").write_bytes(b"x")
    art = artifact_from(req, VastaiTarget().convert(req))
    with pytest.raises(ToolchainMissing, match="vamp not found"):
        VastaiTarget().bench_native(art, [1], seconds=1.0)


# ------------------------------------------------------------------------------------------ probe
def test_probe_with_the_sdk(vastai_env) -> None:
    p = VastaiTarget().probe()
    assert p.available and "vamc found" in p.detail and "1 die(s) (VA1-16G)" in p.detail
    assert p.extra["card_types"] == ["VA1-16G"] and p.extra["smi_version"] == "3.2.1"
    assert any(d.get("CardType") == "VA1-16G" and d["clocks_mhz"]["OCLK"] == 880 for d in p.devices)


def test_probe_on_a_bare_machine(no_vastai, monkeypatch) -> None:
    monkeypatch.setattr("hrdeploy_target_vastai.probe.importable", lambda name: False)
    monkeypatch.setattr("hrdeploy_target_vastai.probe.device_nodes", lambda: [])
    p = VastaiTarget().probe()
    assert not p.available and "vamc not found" in p.detail and "activate.sh" in p.detail


def test_plugin_entry_point() -> None:
    from importlib.metadata import entry_points

    from hrdeploy_target_vastai.plugin import hrdeploy_targets

    assert [t.name for t in hrdeploy_targets()] == ["vastai"]
    assert "vastai" in {ep.name for ep in entry_points(group="hrdeploy.targets")}
