"""convert / run_plan / open / bench_native / probe against stand-in tools on PATH that check
their arguments and answer like the real ones (tests/fakes)."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from hrdeploy.artifact import Artifact
from hrdeploy.errors import ToolchainMissing, UserError
from hrdeploy.model import InputSpec
from hrdeploy.target import ConvertRequest
from hrdeploy.testing.standins import artifact_from_result, normalised_pixels
from hrdeploy_target_ascend.target import AscendTarget

IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
SMALL = InputSpec(name="image", channels=3, height=16, width=24)
GEARS = InputSpec(name="image", channels=3, height=None, width=None, gears=((16, 24), (16, 16), (24, 16)),
                  stride=8, batch=1)


def request(onnx: Path, out: Path, *, spec: InputSpec = SMALL, batches=(1,), precision="fp16",
            dry_run=False, **options) -> ConvertRequest:
    return ConvertRequest(onnx_path=onnx, out_dir=out, model="tiny", variant="t", task="classification",
                          input=spec, preprocess=dict(IMAGENET), precision=precision, batch_sizes=list(batches),
                          options=options, dry_run=dry_run, log=lambda s: None)


def artifact_from(req: ConvertRequest, result) -> Artifact:
    return artifact_from_result(req, result, "ascend", ["heatmaps", "logits"])


def inputs(n: int, h: int = 16, w: int = 24, seed: int = 0) -> np.ndarray:
    return normalised_pixels(n, h, w, seed)


def assert_close(test: list[np.ndarray], ref: list[np.ndarray], rel: float = 1e-5) -> None:
    assert len(test) == len(ref)
    for t, r in zip(test, ref):
        assert t.shape == r.shape and t.dtype == np.float32
        assert np.max(np.abs(t - r)) <= rel * max(np.max(np.abs(r)), 1e-6)


# ------------------------------------------------------------------------------------------ convert
def test_convert_runs_atc_and_keeps_its_log(ascend_env, tiny_onnx: Path, tmp_path: Path) -> None:
    req = request(tiny_onnx, tmp_path / "art", soc="Ascend310P3")
    result = AscendTarget().convert(req)
    art = tmp_path / "art"
    assert (art / "model.om").is_file() and (art / "atc.log").is_file()
    assert "ATC run success" in (art / "atc.log").read_text()
    assert result.files["model"] == "model.om" and result.files["atc_log"] == "atc.log"
    assert result.files["source_onnx"] == "source.onnx" and (art / "source.onnx").read_bytes() == tiny_onnx.read_bytes()
    assert result.batch_sizes == [1] and result.sizes == [(16, 24)]
    assert result.toolchain["version"] == "7.0.RC1" and result.toolchain["soc"] == "Ascend310P3"
    assert result.checks[0]["passed"] and result.checks[0]["warnings"] == ["W11001"]
    # the command ran in the artifact folder with relative paths: it is valid wherever the folder goes
    call = ascend_env.atc_calls()[-1]
    assert Path(call["cwd"]) == art
    assert call["argv"] == ["--framework=5", "--model=source.onnx", "--output=model", "--input_format=NCHW",
                            "--input_shape=image:1,3,16,24", "--soc_version=Ascend310P3",
                            "--precision_mode=force_fp16", "--log=error"]
    assert call["env"]["ASCEND_SLOG_PRINT_TO_STDOUT"] == "1"
    assert req.commands[0]["returncode"] == 0 and req.commands[0]["argv"][0] == "atc"
    plan = json.loads((art / "plan.json").read_text())
    assert plan["jobs"][0]["argv"] == req.commands[0]["argv"]
    assert "atc --framework=5" in (art / "plan.sh").read_text()


def test_soc_auto_reads_npu_smi(ascend_env, tiny_onnx: Path, tmp_path: Path, monkeypatch, fixtures_dir) -> None:
    AscendTarget().convert(request(tiny_onnx, tmp_path / "a"))
    assert "--soc_version=Ascend310P3" in ascend_env.atc_calls()[-1]["argv"]
    monkeypatch.setenv("FAKE_NPU_SMI", str(fixtures_dir / "toolchains" / "npu-smi_info_310_4chips_1card.txt"))
    result = AscendTarget().convert(request(tiny_onnx, tmp_path / "b", device="5"))
    assert "--soc_version=Ascend310" in ascend_env.atc_calls()[-1]["argv"]
    assert result.extra["soc_source"] == "npu-smi info: device 5 is 310"
    with pytest.raises(UserError, match="lists no device 0"):
        AscendTarget().convert(request(tiny_onnx, tmp_path / "c", device="0"))


def test_soc_auto_refuses_to_guess_without_a_device(ascend_env, tiny_onnx: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("FAKE_NPU_SMI")  # npu-smi fails like a box without the driver
    with pytest.raises(UserError, match="--soc auto needs a device") as e:
        AscendTarget().convert(request(tiny_onnx, tmp_path / "a", dry_run=True))
    assert "--soc Ascend310P3" in str(e.value)


def test_without_atc_convert_names_the_tool_and_set_env(no_ascend, tiny_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(ToolchainMissing) as e:
        AscendTarget().convert(request(tiny_onnx, tmp_path / "a", soc="310P3"))
    msg = str(e.value)
    assert "\n" not in msg and "atc not found" in msg
    assert "source /usr/local/Ascend/ascend-toolkit/set_env.sh" in msg


def test_atc_failure_reports_exit_code_error_code_and_log(ascend_env, tiny_onnx: Path, tmp_path: Path,
                                                          monkeypatch) -> None:
    monkeypatch.setenv("FAKE_ATC_MODE", "fail")
    with pytest.raises(UserError) as e:
        AscendTarget().convert(request(tiny_onnx, tmp_path / "a", soc="310P3"))
    msg = str(e.value)
    assert "exit code 1" in msg and "E19999" in msg and str(tmp_path / "a" / "atc.log") in msg
    assert "ATC run failed" in (tmp_path / "a" / "atc.log").read_text()


def test_atc_rejecting_its_arguments_is_reported(ascend_env, tiny_onnx: Path, tmp_path: Path) -> None:
    # a soc ATC does not know: the stand-in rejects it the way ATC does (E10001 + failure line)
    with pytest.raises(UserError, match=r"exit code 1\) \[E10001\].*soc_version"):
        AscendTarget().convert(request(tiny_onnx, tmp_path / "a", soc="Ascend999"))


def test_atc_success_without_the_om_file(ascend_env, tiny_onnx: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_ATC_MODE", "nofile")
    with pytest.raises(UserError, match="wrote no model.om"):
        AscendTarget().convert(request(tiny_onnx, tmp_path / "a", soc="310P3"))


def test_om_name_with_a_host_suffix_is_found(ascend_env, tiny_onnx: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_ATC_SUFFIX", "_linux_x86_64")
    result = AscendTarget().convert(request(tiny_onnx, tmp_path / "a", soc="310P3"))
    assert result.files["model"] == "model_linux_x86_64.om"


# ------------------------------------------------------------------------------------------ run
def test_dynamic_batch_om_pads_and_splits(ascend_env, tiny_onnx: Path, tmp_path: Path, ort_run) -> None:
    req = request(tiny_onnx, tmp_path / "a", batches=(1, 4, 8), soc="310P3")
    result = AscendTarget().convert(req)
    assert result.extra["dynamic"] == "batch" and result.batch_sizes == [1, 4, 8]
    assert "--dynamic_batch_size=1,4,8" in ascend_env.atc_calls()[-1]["argv"]
    with AscendTarget().open(artifact_from(req, result), device="1") as runner:
        assert runner.batch_sizes == (1, 4, 8) and runner.output_names == ["heatmaps", "logits"]
        assert "device 1" in runner.label and "dymbatch" in runner.label
        for n in (3, 8, 11):  # 3 -> padded to 4; 11 -> 8 + 3 padded to 4
            x = inputs(n, seed=n)
            assert_close(runner.run({"image": x}), ort_run(tiny_onnx, x))
        times = runner.device_times_ms()
        assert times is not None and len(times) == 1 + 1 + 2 and all(t >= 0 for t in times)


def test_static_per_batch_oms(ascend_env, tiny_onnx: Path, tmp_path: Path, ort_run) -> None:
    req = request(tiny_onnx, tmp_path / "a", batches=(1, 2), soc="310P3", batch_mode="static")
    result = AscendTarget().convert(req)
    assert result.files["model"] == "model_bs1.om" and result.files["model_bs2"] == "model_bs2.om"
    assert result.extra["om_by_batch"] == {"1": "model_bs1.om", "2": "model_bs2.om"}
    assert len(ascend_env.atc_calls()) == 2
    with AscendTarget().open(artifact_from(req, result), device="0") as runner:
        x = inputs(2)
        assert_close(runner.run({"image": x}), ort_run(tiny_onnx, x))
        x1 = inputs(1, seed=3)
        assert_close(runner.run({"image": x1}), ort_run(tiny_onnx, x1))


def test_gears_and_a_gear_mismatch(ascend_env, tiny_onnx: Path, tmp_path: Path, ort_run) -> None:
    req = request(tiny_onnx, tmp_path / "a", spec=GEARS, soc="310P3")
    result = AscendTarget().convert(req)
    argv = ascend_env.atc_calls()[-1]["argv"]
    assert "--input_format=ND" in argv and "--dynamic_dims=16,24;16,16;24,16" in argv
    assert result.sizes == [(16, 24), (16, 16), (24, 16)] and result.extra["dynamic"] == "dims"
    with AscendTarget().open(artifact_from(req, result), device="0") as runner:
        for h, w in [(16, 24), (24, 16)]:
            x = inputs(1, h, w)
            assert_close(runner.run({"image": x}), ort_run(tiny_onnx, x))
        with pytest.raises(UserError, match="20x20 is not a compiled gear"):
            runner.run({"image": inputs(1, 20, 20)})
        # without the runner's own check the runtime refuses the shape, and that is reported too
        runner.sizes = None
        with pytest.raises(UserError, match="matches no gear"):
            runner.run({"image": inputs(1, 20, 20)})


def test_aipp_om_takes_uint8_pixels_and_matches_onnx(ascend_env, tiny_onnx: Path, tmp_path: Path, ort_run) -> None:
    req = request(tiny_onnx, tmp_path / "a", batches=(1, 2), soc="310P3", aipp="on")
    result = AscendTarget().convert(req)
    assert result.files["aipp"] == "aipp.cfg" and result.extra["aipp"] is True
    assert "--insert_op_conf=aipp.cfg" in ascend_env.atc_calls()[-1]["argv"]
    with AscendTarget().open(artifact_from(req, result), device="0") as runner:
        assert "AIPP" in runner.label
        x = inputs(2, seed=7)
        # the stand-in applies the generated AIPP numbers to the uint8 pixels the runner sends
        assert_close(runner.run({"image": x}), ort_run(tiny_onnx, x), rel=1e-5)


def test_aipp_with_gears_is_refused(ascend_env, tiny_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="AIPP cannot be combined"):
        AscendTarget().convert(request(tiny_onnx, tmp_path / "a", spec=GEARS, soc="310P3", aipp="on"))


@pytest.mark.parametrize("flags", [{"FAKE_AIS_OLD": "1"}, {"FAKE_AIS_SPELLING": "dyn"}, {"FAKE_AIS_PAIRS": "1"}])
def test_runner_adapts_to_ais_bench_builds(ascend_env, tiny_onnx: Path, tmp_path: Path, monkeypatch, flags, ort_run) -> None:
    for k, v in flags.items():
        monkeypatch.setenv(k, v)
    req = request(tiny_onnx, tmp_path / "a", batches=(1, 2), soc="310P3")
    result = AscendTarget().convert(req)
    with AscendTarget().open(artifact_from(req, result), device="0") as runner:
        x = inputs(2)
        assert_close(runner.run({"image": x}), ort_run(tiny_onnx, x))
        assert ("dynbatch" in runner.label) == (flags.get("FAKE_AIS_SPELLING") == "dyn")
        times = runner.device_times_ms()
        assert times is not None and len(times) == 1 and times[0] >= 0


def test_open_reports_a_bad_device_and_a_missing_runtime(ascend_env, tiny_onnx: Path, tmp_path: Path,
                                                         monkeypatch) -> None:
    req = request(tiny_onnx, tmp_path / "a", soc="310P3")
    art = artifact_from(req, AscendTarget().convert(req))
    with pytest.raises(UserError, match="Device column"):
        AscendTarget().open(art, device="7")
    with pytest.raises(UserError, match="one runner drives one device"):
        AscendTarget().open(art, device="0,1")
    monkeypatch.setitem(sys.modules, "ais_bench.infer.interface", None)
    with pytest.raises(ToolchainMissing, match="ais_bench is not importable"):
        AscendTarget().open(art, device="0")


def test_open_without_a_device_is_a_missing_toolchain(ascend_env, tiny_onnx: Path, tmp_path: Path,
                                                      monkeypatch) -> None:
    # a build box with the toolkit and ais_bench but no NPU: the core records parity as "not run"
    req = request(tiny_onnx, tmp_path / "a", soc="310P3")
    art = artifact_from(req, AscendTarget().convert(req))
    monkeypatch.delenv("FAKE_NPU_SMI")
    with pytest.raises(ToolchainMissing, match="no Ascend device on this machine"):
        AscendTarget().open(art)


def test_close_finalizes_acl_once_after_the_last_runner(ascend_env, tiny_onnx: Path, tmp_path: Path) -> None:
    from ais_bench.infer import interface  # the stand-in

    req = request(tiny_onnx, tmp_path / "a", soc="310P3")
    art = artifact_from(req, AscendTarget().convert(req))
    before = interface.FINALIZED[0]
    r1, r2 = AscendTarget().open(art, device="0"), AscendTarget().open(art, device="1")
    r1.close()
    assert interface.FINALIZED[0] == before
    r2.close()
    r2.close()
    assert interface.FINALIZED[0] == before + 1


# ------------------------------------------------------------------------------------------ plan
def test_dry_run_plan_then_run_plan_on_the_device_machine(no_ascend, device_machine, tiny_onnx: Path,
                                                          tmp_path: Path, ort_run) -> None:
    # development box: no toolkit at all; the plan needs an explicit --soc
    req = request(tiny_onnx, tmp_path / "dev" / "art", batches=(1, 2), soc="310P3", dry_run=True, aipp="on")
    result = AscendTarget().convert(req)
    dev = tmp_path / "dev" / "art"
    assert not list(dev.glob("*.om"))
    assert {p.name for p in dev.iterdir()} == {"source.onnx", "aipp.cfg", "plan.json", "plan.sh"}
    assert result.extra["planned"] and req.commands[0]["note"].startswith("planned")
    assert req.commands[0]["cmd"].startswith("atc --framework=5 --model=source.onnx --output=model")
    art = artifact_from(req, result)
    (dev / "manifest.json").write_text(json.dumps(art.manifest))
    with pytest.raises(UserError, match="--from-plan"):
        AscendTarget().open(Artifact.load(dev), device="0")

    # device machine: the folder is copied, the toolkit is there
    target_dir = tmp_path / "device" / "art"
    shutil.copytree(dev, target_dir)
    device_machine(tmp_path / "device-bin")
    logs: list[str] = []
    done = AscendTarget().run_plan(Artifact.load(target_dir), log=logs.append)
    assert (target_dir / "model.om").is_file() and done.files["model"] == "model.om"
    assert done.checks[0]["passed"] and not done.extra["planned"]
    assert done.extra["commands"][0]["returncode"] == 0
    assert done.extra["commands"][0]["argv"] == req.commands[0]["argv"]
    assert logs == []  # the plan's soc is this machine's chip
    manifest = {**art.manifest, "files": done.files, "conversion": done.extra, "dry_run": False}
    with AscendTarget().open(Artifact(target_dir, manifest)) as runner:  # device auto: first healthy chip
        assert "device 0" in runner.label
        x = inputs(2, seed=11)
        assert_close(runner.run({"image": x}), ort_run(tiny_onnx, x))


def test_run_plan_needs_the_toolkit_and_a_plan(ascend_env, no_ascend, tiny_onnx: Path, tmp_path: Path) -> None:
    req = request(tiny_onnx, tmp_path / "art", soc="310P3", dry_run=True)
    AscendTarget().convert(req)
    with pytest.raises(ToolchainMissing, match="set_env.sh"):
        AscendTarget().run_plan(tmp_path / "art")
    with pytest.raises(UserError, match="no plan.json"):
        AscendTarget().run_plan(tmp_path)


def test_plan_script_runs_the_same_command(ascend_env, tiny_onnx: Path, tmp_path: Path) -> None:
    import subprocess

    req = request(tiny_onnx, tmp_path / "art", soc="310P3", dry_run=True)
    AscendTarget().convert(req)
    proc = subprocess.run(["sh", str(tmp_path / "art" / "plan.sh")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "art" / "model.om").is_file()
    assert ascend_env.atc_calls()[-1]["argv"] == req.commands[0]["argv"][1:]


# ------------------------------------------------------------------------------------------ bench
def test_bench_native_uses_ais_bench_and_its_summary_json(ascend_env, tiny_onnx: Path, tmp_path: Path) -> None:
    req = request(tiny_onnx, tmp_path / "a", batches=(1, 4), soc="310P3")
    art = artifact_from(req, AscendTarget().convert(req))
    rows = AscendTarget().bench_native(art, [1, 4, 2], seconds=0.0, device="1")
    assert [r["batch"] for r in rows] == [1, 4]  # 2 was not compiled
    for r in rows:
        assert r["source"] == "ais_bench summary.json" and r["tool"] == "ais_bench" and r["device"] == 1
        assert r["device_ips"] == pytest.approx(r["reported_throughput"], rel=1e-9)
        assert r["latency_ms"]["p50"] <= r["latency_ms"]["p99"] and "p90" in r["latency_ms"]
        assert r["iterations"] == r["loop"] == 20 and "h2d_ms" in r
    calls = ascend_env.bench_calls()
    assert calls[0]["argv"][:8] == ["--model", str(tmp_path / "a" / "model.om"), "--loop", "20", "--batchsize", "1",
                                    "--device", "1"]
    assert calls[1]["argv"][-2:] == ["--dymBatch", "4"]


def test_bench_native_runs_long_enough_for_the_requested_seconds(ascend_env, tiny_onnx: Path, tmp_path: Path) -> None:
    req = request(tiny_onnx, tmp_path / "a", soc="310P3")
    art = artifact_from(req, AscendTarget().convert(req))
    rows = AscendTarget().bench_native(art, [1], seconds=0.5, device="0")
    # the stand-in reports ~0.7 ms per call: 20 probing loops, then ~700 for 0.5 s
    assert 500 < rows[0]["loop"] < 1000 and rows[0]["iterations"] == rows[0]["loop"]
    assert [c["argv"][3] for c in ascend_env.bench_calls()] == ["20", str(rows[0]["loop"])]


def test_bench_native_per_gear_and_fallbacks(ascend_env, tiny_onnx: Path, tmp_path: Path, monkeypatch) -> None:
    req = request(tiny_onnx, tmp_path / "a", spec=GEARS, soc="310P3")
    art = artifact_from(req, AscendTarget().convert(req))
    rows = AscendTarget().bench_native(art, [1], seconds=0.0, device="0")
    assert [r["size"] for r in rows] == [[16, 24], [16, 16], [24, 16]]
    assert ascend_env.bench_calls()[0]["argv"][-2:] == ["--dymDims", "image:1,3,16,24"]
    monkeypatch.setenv("FAKE_AIS_CLI_MODE", "legacy")  # oldest console format, no JSON
    rows = AscendTarget().bench_native(art, [1], seconds=0.0, device="0")
    assert rows[0]["source"] == "ais_bench console summary" and rows[0]["device_ips"] > 0
    monkeypatch.setenv("FAKE_AIS_CLI_MODE", "fail")
    with pytest.raises(UserError, match="ais_bench failed with exit code 1"):
        AscendTarget().bench_native(art, [1], seconds=0.0, device="0")
    with pytest.raises(UserError, match="none of the batch sizes"):
        AscendTarget().bench_native(art, [8], seconds=0.0, device="0")


# ------------------------------------------------------------------------------------------ probe
def test_probe_with_the_stack_present(ascend_env) -> None:
    p = AscendTarget().probe()
    assert p.available and p.version == "7.0.RC1"
    assert [d["device"] for d in p.devices] == [0, 1] and {d["soc"] for d in p.devices} == {"Ascend310P3"}
    assert "atc 7.0.RC1" in p.detail and "2 chip(s): Ascend310P3" in p.detail
    assert p.extra["can_convert"] and p.extra["ais_bench"]


def test_probe_on_a_bare_machine(no_ascend, monkeypatch) -> None:
    monkeypatch.setattr("hrdeploy_target_ascend.probe.importable", lambda name: False)
    p = AscendTarget().probe()
    assert not p.available and p.devices == []
    assert "atc not found" in p.detail and "set_env.sh" in p.detail


def test_plugin_entry_point() -> None:
    from importlib.metadata import entry_points

    from hrdeploy_target_ascend.plugin import hrdeploy_targets

    assert [t.name for t in hrdeploy_targets()] == ["ascend"]
    assert "ascend" in {ep.name for ep in entry_points(group="hrdeploy.targets")}
