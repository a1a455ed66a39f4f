"""The VastAI stand-ins are as strict as the tools: vamc refuses a config key or value its
generation does not have and a shape that does not fit the ONNX input; vamp and vasmi check
every argument they get; and every config and command line the target generates is accepted."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from hrdeploy.testing.standins import tiny_onnx
from hrdeploy_target_vastai.configs import (CalibSet, output_prefix, vamc_build_config, vamc_compile_config,
                                            vamp_argv, vdsp_params)
from hrdeploy_target_vastai.preprocess import Preprocess
from hrdeploy_target_vastai.yamlemit import dump

yaml = pytest.importorskip("yaml")

IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "resize": 24, "crop": [16, 24]}
PRE = Preprocess.from_params(IMAGENET, (16, 24))
SHAPE = [1, 3, 16, 24]


def run(cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    """A stand-in run by name from PATH, as the target runs the real tool."""
    return subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.fixture
def work(vastai_env, tmp_path: Path, calib_dir: Path) -> Path:
    """``m.onnx`` (input ``image`` fixed to 1x3x16x24), ``dyn.onnx`` (N x 3 x H x W), the
    calibration images in ``calib/``; the stand-ins on PATH."""
    d = tmp_path / "work"
    d.mkdir()
    tiny_onnx(d / "m.onnx", input_dims=SHAPE)
    tiny_onnx(d / "dyn.onnx", input_dims=("batch", 3, "height", "width"))
    shutil.copytree(calib_dir, d / "calib")
    return d


def config(generation: str, dtype: str = "fp16", onnx: str = "m.onnx", shape=SHAPE, **kw) -> dict:
    calib = CalibSet("calib", "JPEG", 4) if dtype == "int8" else None
    make = vamc_compile_config if generation == "compile" else vamc_build_config
    return make("tiny", "image", shape, onnx, dtype, PRE, calib, **kw)


def vamc(work: Path, generation: str, cfg: dict) -> subprocess.CompletedProcess:
    (work / "cfg.yaml").write_text(dump(cfg))
    return run(work, "vamc", generation, "cfg.yaml")


def assert_vamc_refused(res: subprocess.CompletedProcess, generation: str, *fragments: str) -> None:
    assert res.returncode == 1, res.stdout
    line = res.stdout.strip()
    assert line.startswith(f"ERROR vamc {generation}: ") and "\n" not in line, line
    for f in fragments:
        assert f in line, line


# ------------------------------------------------------------------------------------------- vamc
@pytest.mark.parametrize("generation", ["compile", "build"])
@pytest.mark.parametrize("dtype", ["fp16", "int8"])
@pytest.mark.parametrize("softmax", [False, True])
def test_every_generated_config_is_accepted(work: Path, generation: str, dtype: str, softmax: bool) -> None:
    cfg = config(generation, dtype, softmax=softmax)
    res = vamc(work, generation, cfg)
    assert res.returncode == 0, res.stdout
    prefix = work / output_prefix(generation, "tiny", dtype, "percentile", SHAPE)
    assert Path(str(prefix) + ".so").is_file()
    assert ("calibrating with 4 images" in res.stdout) == (dtype == "int8")


def test_a_dynamic_model_takes_any_positive_size(work: Path) -> None:
    res = vamc(work, "compile", config("compile", onnx="dyn.onnx", shape=[1, 3, 32, 48]))
    assert res.returncode == 0, res.stdout


def _set(cfg: dict, path: str, value) -> dict:
    *parents, last = path.split(".")
    node = cfg
    for p in parents:
        node = node[p]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return cfg


DELETE = object()


@pytest.mark.parametrize("generation, path, value, fragments", [
    # misspelled or invented keys, at every level
    ("compile", "backend.quantize.calibrate_mod", "percentile", ("unknown key 'backend.quantize.calibrate_mod'",)),
    ("compile", "backend.dtyp", "fp16", ("unknown key 'backend.dtyp'",)),
    ("compile", "workspace.work_dir", "x", ("unknown key 'workspace.work_dir'",)),  # the other generation's key
    ("compile", "frontned", {}, ("unknown key 'frontned'",)),
    ("build", "engine.calibration.quantmode", "max", ("unknown key 'engine.calibration.quantmode'",)),
    ("build", "model.input", {"image": SHAPE}, ("unknown key 'model.input'",)),
    # values of the wrong kind or outside the choices
    ("compile", "backend.dtype", "int4", ("'backend.dtype'",)),
    ("compile", "backend.quantize.calibrate_mode", "entropy", ("'backend.quantize.calibrate_mode'",)),
    ("compile", "dataset.sampler.get_data_num", "4", ("'dataset.sampler.get_data_num'",)),
    ("compile", "frontend.type", "pytorch", ("'frontend.type'",)),
    ("build", "engine.common.do_quantization", "yes", ("'engine.common.do_quantization'",)),
    ("build", "workspace.enable_ir", 0, ("'workspace.enable_ir'",)),
    # a required key left out
    ("compile", "frontend.checkpoint", DELETE, ("missing 'frontend.checkpoint'",)),
    ("build", "engine.calibration", DELETE, ("missing 'engine.calibration'",)),
])
def test_a_config_key_or_value_vamc_does_not_know_is_refused(work: Path, generation: str, path: str, value,
                                                             fragments: tuple) -> None:
    cfg = _set(config(generation, "int8"), path, value)
    assert_vamc_refused(vamc(work, generation, cfg), generation, *fragments)


def test_an_unknown_or_incomplete_preprocessing_op_is_refused(work: Path) -> None:
    cfg = config("compile", "int8")
    cfg["dataset"]["process_ops"][-2]["type"] = "Normalise"
    assert_vamc_refused(vamc(work, "compile", cfg), "compile", "unknown op 'Normalise'")
    cfg = config("build", "int8")
    del cfg["dataset"]["transform_ops"][1]["size"]
    assert_vamc_refused(vamc(work, "build", cfg), "build", "(Resize) needs size")


@pytest.mark.parametrize("generation", ["compile", "build"])
@pytest.mark.parametrize("name, shape, fragments", [
    ("images", SHAPE, ("'images'", "not an input")),
    ("image", [1, 3, 16], ("[1, C, H, W]",)),
    ("image", [2, 3, 16, 24], ("[1, C, H, W]",)),
    ("image", [1, 3, 16, 32], ("dim 3 is 32, the model fixes it to 24",)),
])
def test_a_shape_that_does_not_fit_the_onnx_input_is_refused(work: Path, generation: str, name: str, shape,
                                                             fragments: tuple) -> None:
    cfg = config(generation)
    block = cfg["frontend"] if generation == "compile" else cfg["model"]
    block["shape" if generation == "compile" else "inputs"] = {name: shape}
    assert_vamc_refused(vamc(work, generation, cfg), generation, *fragments)


# ------------------------------------------------------------------------------------------- vamp
@pytest.fixture
def built(work: Path) -> Path:
    """A compiled tiny model and its vdsp_params in ``work``."""
    assert vamc(work, "compile", config("compile")).returncode == 0
    (work / "vdsp.json").write_text(json.dumps(vdsp_params(PRE)))
    return work


PREFIX = output_prefix("compile", "tiny", "fp16", "percentile", SHAPE)


@pytest.mark.parametrize("kw", [
    {"batch": 1},
    {"batch": 4, "instances": 2, "processes": 2},
    {"batch": 2, "device": 0, "shape_chw": [3, 16, 24], "iterations": 256},
    {"batch": 8, "device": "0:1", "percentiles": None},
    {"batch": 1, "device": "[0,1]", "shape_chw": [3, 16, 24], "iterations": 10, "percentiles": (50, 99)},
])
def test_every_generated_vamp_command_is_accepted(built: Path, kw: dict) -> None:
    res = run(built, *vamp_argv(PREFIX, "vdsp.json", **kw))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"batch size: {kw['batch']}" in res.stdout and "throughput (qps):" in res.stdout


def test_the_documented_long_forms_and_the_zoo_typo_are_accepted(built: Path) -> None:
    # VastModelZOO's NLP guides use the long names; its CV guides write "p 1" without the dash,
    # a word vamp ignores
    res = run(built, "vamp", "--model_prefix", PREFIX, "--vdsp_params=vdsp.json", "--batch_size", "2",
              "--instance", "1", "--processes", "1", "--iterations", "8", "p", "2")
    assert res.returncode == 0, res.stderr
    assert "batch size: 2" in res.stdout


@pytest.mark.parametrize("args, message", [
    (["--iteration", "10"], "undefined option: --iteration"),
    (["--vdsp-params", "vdsp.json"], "undefined option: --vdsp-params"),
    (["-x", "1"], "undefined short option: -x"),
    (["-b", "four"], "option value is invalid: --batch_size=four"),
    (["--percentiles"], "option needs value: --percentiles"),
    (["--iterations=ten"], "option value is invalid: --iterations=ten"),
])
def test_an_argument_vamp_does_not_have_is_refused(built: Path, args: list, message: str) -> None:
    res = run(built, "vamp", "-m", PREFIX, "--vdsp_params", "vdsp.json", *args)
    assert res.returncode == 1 and res.stdout == ""
    lines = res.stderr.splitlines()
    assert lines[0] == message and lines[1].startswith("usage: vamp --model_prefix=string")


def test_vamp_without_a_model_or_arguments(built: Path) -> None:
    res = run(built, "vamp", "--vdsp_params", "vdsp.json")
    assert res.returncode == 1 and res.stderr.splitlines()[0] == "need option: --model_prefix"
    res = run(built, "vamp")
    assert res.returncode == 0 and res.stderr.startswith("usage: vamp")


@pytest.mark.parametrize("args, fragment", [
    (["-s", "[3,16,32]"], "does not match the model input [3,16,24]"),
    (["-d", "zero"], "bad device ids"),
    (["--percentiles", "[50,100]"], "bad percentiles"),
    (["-b", "0"], "must be positive"),
    (["--datalist", "list.txt"], "--datalist and --path_output go together"),
])
def test_values_that_do_not_fit_the_model_are_refused(built: Path, args: list, fragment: str) -> None:
    res = run(built, "vamp", "-m", PREFIX, "--vdsp_params", "vdsp.json", *args)
    assert res.returncode == 1 and fragment in res.stdout


def test_a_missing_model_is_refused(built: Path) -> None:
    res = run(built, "vamp", "-m", "deploy_weights/none/mod", "--vdsp_params", "vdsp.json")
    assert res.returncode == 1 and "load model deploy_weights/none/mod failed" in res.stdout


# ------------------------------------------------------------------------------------------ vasmi
def test_the_probe_queries_print_their_recorded_blocks(vastai_env, tmp_path: Path) -> None:
    card = run(tmp_path, "vasmi", "getcardmode", "-d", "0", "-i", "0")
    freq = run(tmp_path, "vasmi", "getfreq", "-d", "0", "-i", "0")
    assert card.returncode == 0 and freq.returncode == 0
    assert card.stdout.startswith("Smi version:3.2.1") and "CardType" in card.stdout and "CLK" not in card.stdout
    assert "OCLK:       880 MHz" in freq.stdout and "CardType" not in freq.stdout


@pytest.mark.parametrize("args, fragment", [
    (["getcardmod"], "unknown command 'getcardmod'"),
    ([], "no command given"),
    (["getfreq", "--device", "0"], "unknown option '--device'"),
    (["getfreq", "-d"], "option -d needs a list of ids"),
    (["getfreq", "-i", "zero"], "option -i needs a list of ids"),
    (["getmem", "--display-format=xml"], "unknown display format 'xml'"),
    (["getfreq", "-d", "1"], "device 1 not found"),
    (["setcardmode", "-d", "0"], "refusing 'setcardmode'"),
])
def test_an_argument_vasmi_does_not_have_is_refused(vastai_env, tmp_path: Path, args: list, fragment: str) -> None:
    res = run(tmp_path, "vasmi", *args)
    assert res.returncode == 1 and fragment in res.stdout and not res.stderr
