"""The Ascend stand-ins are as strict as the tools: atc refuses unknown or misspelled options,
values ATC refuses and shapes that do not fit the ONNX input with ATC's message and a non-zero
exit, and accepts every command the target generates (pinned against the seeds in
test_commands.py); npu-smi answers only its documented queries."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hrdeploy.errors import UserError
from hrdeploy.model import InputSpec
from hrdeploy.testing.standins import tiny_onnx
from hrdeploy_target_ascend.commands import (KNOWN_PRECISION_MODES, LOG_LEVELS, aipp_config, aipp_normalisation,
                                             normalise_soc, plan_atc)

START = "ATC start working now, please wait for a moment."
FAILED = "ATC run failed, Please check the detail log, Try 'atc --help' for more information"
SUCCESS = "ATC run success, welcome to the next use."
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
STATIC = (1, 3, 16, 24)


def atc(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """The stand-in run by name from PATH, as the target runs the real tool."""
    return subprocess.run(["atc", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def base(**over: str) -> list[str]:
    """A valid command for the static (1,3,16,24) model ``m.onnx``, with options replaced or
    dropped (value None)."""
    opts = {"framework": "5", "model": "m.onnx", "output": "out", "input_format": "NCHW",
            "input_shape": "image:1,3,16,24", "soc_version": "Ascend310P3", **over}
    return [f"--{k}={v}" for k, v in opts.items() if v is not None]


@pytest.fixture
def work(ascend_env, tmp_path: Path) -> Path:
    """A folder with ``m.onnx`` (input image fixed to 1x3x16x24) and ``dyn.onnx`` (image
    N x 3 x H x W, all three dynamic), the stand-in atc on PATH."""
    d = tmp_path / "work"
    d.mkdir()
    tiny_onnx(d / "m.onnx", input_dims=STATIC)
    tiny_onnx(d / "dyn.onnx", input_dims=("batch", 3, "height", "width"))
    return d


def assert_refused(res: subprocess.CompletedProcess, work: Path, code: str, *fragments: str) -> None:
    """ATC's failure: the start line, the failure line, then ``code: message``; no .om."""
    assert res.returncode == 1, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == START and lines[1] == FAILED and lines[2].startswith(code + ": "), res.stdout
    for f in fragments:
        assert f in lines[2], lines[2]
    assert not list(work.glob("*.om"))


def assert_built(res: subprocess.CompletedProcess, om: Path) -> None:
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.splitlines()[0] == START and res.stdout.splitlines()[-1] == SUCCESS
    assert om.is_file()


# -------------------------------------------------------------------------------- command line
def test_a_valid_command_builds_the_om(work: Path) -> None:
    assert_built(atc(work, *base()), work / "out.om")


@pytest.mark.parametrize("meant, typed", [("input_format", "input_fromat"), ("soc_version", "soc_versoin"),
                                         ("input_shape", "input_shpae"), ("precision_mode", "precision")])
def test_a_misspelled_option_is_refused_by_the_flag_parser(work: Path, meant: str, typed: str) -> None:
    # the misspelling used to be ignored (--input_fromat silently defaulted to NCHW)
    value = {"input_format": "NCHW", "soc_version": "Ascend310P3", "input_shape": "image:1,3,16,24",
             "precision_mode": "force_fp16"}[meant]
    res = atc(work, *base(**{meant: None}), f"--{typed}={value}")
    # gflags: the error goes to stderr, atc exits 1 before any check of its own
    assert res.returncode == 1
    assert res.stdout == START + "\n"
    assert res.stderr == f"ERROR: unknown command line flag '{typed}'\n"
    assert not (work / "out.om").exists()


def test_every_unknown_flag_is_reported_in_name_order(work: Path) -> None:
    res = atc(work, *base(), "--zeta=1", "--alpha=2")
    assert res.returncode == 1
    assert res.stderr == "ERROR: unknown command line flag 'alpha'\nERROR: unknown command line flag 'zeta'\n"


def test_an_int_flag_with_a_word_is_refused(work: Path) -> None:
    res = atc(work, *base(framework="onnx"))
    assert res.returncode == 1 and res.stderr == "ERROR: illegal value 'onnx' specified for int32 flag 'framework'\n"


def test_the_spellings_gflags_accepts_are_accepted(work: Path) -> None:
    # "--name value", a single dash, dashes for underscores (the ATC guide documents all three)
    args = ["--framework", "5", "-model=m.onnx", "--output=out", "--input-format=NCHW",
            "--input_shape=image:1,3,16,24", "--soc-version=Ascend310P3"]
    assert_built(atc(work, *args), work / "out.om")


def test_help_shows_the_usage_and_exits_1_as_gflags_does(work: Path) -> None:
    for flag in ("--help", "-h", "--h=true"):
        res = atc(work, *base(), flag)
        assert res.returncode == 1 and res.stdout.splitlines()[1] == "usage: ./atc <args>"
        assert not (work / "out.om").exists()


def test_hex_and_decimal_ints_are_accepted(work: Path) -> None:
    assert_built(atc(work, *base(framework="0x5")), work / "out.om")


def test_a_flag_without_its_value_is_refused(work: Path) -> None:
    res = atc(work, *base(), "--soc_version")
    assert res.returncode == 1 and res.stderr == "ERROR: flag '--soc_version' is missing its argument\n"


# ------------------------------------------------------------------------------------- values
@pytest.mark.parametrize("over, code, fragments", [
    ({"framework": None}, "E10007", ("[--framework] is required",)),
    ({"framework": "3"}, "E10001", ("[--framework]",)),
    ({"input_format": "NHWC"}, "E10001", ("[NHWC]", "[--input_format]", "only support NCHW, ND, NCDHW in ONNX model")),
    ({"model": None}, "E10004", ("[--model]",)),
    ({"model": "missing.onnx"}, "E10001", ("[--model]",)),
    ({"output": None}, "E10004", ("[--output]",)),
    ({"soc_version": "Ascend310P9"}, "E10001", ("[Ascend310P9]", "[--soc_version]")),
    ({"soc_version": "310P3"}, "E10001", ("[--soc_version]",)),
    ({"precision_mode": "fp16"}, "E10001", ("[--precision_mode]",)),
    ({"precision_mode": "force_fp16", "precision_mode_v2": "fp16"}, "E10047", ("mutually exclusive",)),
    ({"op_select_implmode": "fast"}, "E10001", ("[--op_select_implmode]",)),
    ({"enable_small_channel": "2"}, "E10006", ("[--enable_small_channel]",)),
])
def test_values_atc_refuses_are_refused(work: Path, over: dict, code: str, fragments: tuple) -> None:
    assert_refused(atc(work, *base(**over)), work, code, *fragments)


def test_an_unknown_log_level_fails_at_init(work: Path) -> None:
    res = atc(work, *base(log="verbose"))
    # ATC's init() prints this line itself and returns -1
    assert res.returncode == 255
    assert res.stdout.splitlines() == [START, "E10010: invalid value for --log:verbose, only support debug, info, "
                                              "warning, error, null", FAILED]


# ------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("model, over, code, fragments", [
    # a name that is not an input of the model
    ("m.onnx", {"input_shape": "images:1,3,16,24"}, "E10016", ("Opname [images]", "[--input_shape]")),
    # the right rank is required
    ("m.onnx", {"input_shape": "image:1,3,16"}, "E10049", ("[3]", "[4]")),
    # a static dim given another value, and a -1 on a dim the model fixes
    ("m.onnx", {"input_shape": "image:1,3,16,32"}, "E10001", ("dim 3 of [image] is fixed to 24",)),
    ("m.onnx", {"input_shape": "image:-1,3,16,24", "dynamic_batch_size": "1,2"}, "E10001", ("dim 0",)),
    # malformed values
    ("m.onnx", {"input_shape": "image:1,3,x,24"}, "E10002", ("[--input_shape]",)),
    ("m.onnx", {"input_shape": "image:1,0,16,24"}, "E10011", ("[0]",)),
    # a dynamic input left without a shape: ATC's recorded message
    ("dyn.onnx", {"input_shape": None}, "E10001", ("Value [-1] for parameter [image] is invalid. Reason: maybe you "
                                                    "should set input_shape to specify its shape",)),
    # -1 needs a gear option
    ("dyn.onnx", {"input_shape": "image:-1,3,16,24"}, "E10011", ("[image:-1]",)),
])
def test_shapes_that_do_not_fit_the_onnx_input_are_refused(work: Path, model: str, over: dict, code: str,
                                                           fragments: tuple) -> None:
    assert_refused(atc(work, *base(model=model, **over)), work, code, *fragments)


def test_dynamic_dims_of_a_dynamic_model_may_be_fixed(work: Path) -> None:
    assert_built(atc(work, *base(model="dyn.onnx", input_shape="image:2,3,32,48")), work / "out.om")


@pytest.mark.parametrize("over, code, fragments", [
    ({"input_shape": "image:-1,3,-1,24", "dynamic_batch_size": "1,2"}, "E10018", ("only batch size N can be -1",)),
    ({"input_shape": "image:1,3,16,24", "dynamic_batch_size": "1,2"}, "E10031", ("[--dynamic_batch_size]",)),
    ({"input_shape": "image:-1,3,16,24", "dynamic_batch_size": "4"}, "E10035", ("[1] profiles",)),
    ({"input_shape": "image:-1,3,16,24", "dynamic_batch_size": "1,2,2"}, "E10039", ("duplicate",)),
    ({"input_shape": "image:-1,3,16,24", "dynamic_batch_size": "1,0"}, "E10038", ("[0]",)),
    ({"input_shape": "image:-1,3,16,24", "dynamic_batch_size": ",".join(map(str, range(1, 102)))}, "E10036",
     ("[101] profiles",)),
    ({"input_shape": "image:1,3,-1,-1", "dynamic_dims": "16,24;16,16"}, "E10001",
     ("[NCHW]", "input_format must be ND when set dynamic_dims")),
    ({"input_shape": "image:1,3,-1,-1", "input_format": "ND", "dynamic_dims": "16;24"}, "E10045", ()),
    ({"input_shape": "image:1,3,16,-1", "input_format": "ND", "dynamic_dims": "16,24;16,16"}, "E10001",
     ("one value per -1",)),
    ({"input_shape": "image:1,3,-1,-1", "input_format": "ND", "dynamic_dims": "16,24;16"}, "E10037", ()),
    ({"input_shape": "image:-1,3,-1,-1", "input_format": "ND", "dynamic_dims": "1,16,24;1,16,16",
      "dynamic_batch_size": "1,2"}, "E10009", ("mutually exclusive",)),
    ({"input_shape": "image:1,3,-1,-1", "input_format": "ND", "dynamic_dims": "16,24;16,16",
      "insert_op_conf": "aipp.cfg"}, "E10001", ("dynamic dims function does not support aipp",)),
    ({"input_shape": "image:1,3,16,24", "input_format": "ND", "dynamic_dims": "16,24;16,16"}, "E10040", ()),
])
def test_gear_options_must_agree_with_the_minus_ones(work: Path, over: dict, code: str, fragments: tuple) -> None:
    assert_refused(atc(work, *base(model="dyn.onnx", **over)), work, code, *fragments)


# ------------------------------------------------------------------- what the target generates
HRNET = InputSpec(name="image", channels=3, height=224, width=224)
DEKR = InputSpec(name="image", channels=3, height=None, width=None, stride=64, batch=1,
                 gears=((512, 768), (512, 512), (768, 512), (512, 1024), (1024, 512)))
GEARS_ANY_BATCH = InputSpec(name="image", channels=3, height=None, width=None, stride=8, gears=((16, 24), (24, 16)))

PLANS = {
    # seed 000: one .om per batch size (static) and one dynamic-batch .om
    "hrnet-static-per-batch": (HRNET, [1, 4, 8, 16, 32, 64], {"log_level": "debug", "batch_mode": "static"}),
    "hrnet-dynamic-batch": (HRNET, [1, 4, 8, 16, 32, 64], {"log_level": "debug"}),
    # seed 004: TResNet bs1
    "tresnet-bs1": (HRNET, [1], {}),
    # seed 001: DEKR's five size gears (ND + --dynamic_dims)
    "dekr-gears": (DEKR, [1], {}),
    # size gears with several batch sizes: the batch goes into the dims
    "gears-and-batches": (GEARS_ANY_BATCH, [1, 2], {}),
    "fp32": (HRNET, [1], {"precision": "fp32"}),
    "aipp": (HRNET, [1, 2], {"aipp": True}),
    # an NHWC input: ATC takes NCHW, ND or NCDHW for ONNX, so it is described as ND
    "nhwc": (InputSpec(name="image", channels=3, height=16, width=24, layout="NHWC"), [1, 2], {}),
    **{f"log-{lv}": (HRNET, [1], {"log_level": lv}) for lv in LOG_LEVELS},
    **{f"precision-{pm}": (HRNET, [1], {"precision_mode": pm}) for pm in KNOWN_PRECISION_MODES},
    **{f"soc-{name}": (HRNET, [1], {"soc": name}) for name in ("310", "310P3", "Ascend 910A", "910B3", "310B1",
                                                                "MiniD", "910ProB", "Ascend910PremiumA",
                                                                "Ascend910_9391")},
}


def exported_dims(spec: InputSpec) -> tuple:
    """The input dims hrdeploy's export writes (in the input's layout): a name where it asks
    for a dynamic axis."""
    h, w = spec.fixed_size or ("height", "width")
    dims = {"N": spec.batch if isinstance(spec.batch, int) else "batch", "C": spec.channels, "H": h, "W": w}
    return tuple(dims[c] for c in spec.layout.upper())


@pytest.mark.parametrize("case", sorted(PLANS))
def test_every_generated_command_is_accepted(ascend_env, tmp_path: Path, case: str) -> None:
    import ascend_fakeom as fom

    spec, batches, kw = PLANS[case]
    kw = dict(kw)
    precision, soc = kw.pop("precision", "fp16"), kw.pop("soc", "Ascend310P3")
    aipp = aipp_config(aipp_normalisation(IMAGENET), *spec.fixed_size) if kw.pop("aipp", False) else None
    plan = plan_atc(spec, batches, precision, soc, onnx="source.onnx", aipp=aipp, **kw)
    tiny_onnx(tmp_path / "source.onnx", input_dims=exported_dims(spec))
    if aipp is not None:
        (tmp_path / "aipp.cfg").write_text(aipp)
    for job in plan.jobs:
        res = subprocess.run(job.argv, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert_built(res, tmp_path / f"{job.output}.om")
        header, _ = fom.read_om(tmp_path / f"{job.output}.om")
        assert header["input_shape"] == next(a.split("=", 1)[1] for a in job.argv if a.startswith("--input_shape="))
        assert header["dynamic_batch_size"] == (plan.batch_sizes if plan.dynamic == "batch" else None)
        assert header["dynamic_dims"] == (plan.gears if plan.dynamic == "dims" else None)
        assert header["soc"] == normalise_soc(soc) and (header["aipp"] is not None) == (aipp is not None)


# ---------------------------------------------------------------- bugs the strict stand-in found
def test_mixed_case_soc_names_keep_their_spelling(work: Path) -> None:
    # npu-smi's Name column says 910ProB; ATC knows Ascend910ProB only, not Ascend910PROB
    assert normalise_soc("910ProB") == "Ascend910ProB" and normalise_soc("ascend910premiuma") == "Ascend910PremiumA"
    assert normalise_soc("Ascend910_9391") == "Ascend910_9391"
    assert_refused(atc(work, *base(soc_version="Ascend910PROB")), work, "E10001", "[--soc_version]")


def test_an_nhwc_input_is_described_as_nd_and_refused_with_aipp() -> None:
    spec = InputSpec(name="image", channels=3, height=16, width=24, layout="NHWC")
    argv = plan_atc(spec, [1], "fp16", "Ascend310P3").jobs[0].argv
    # --input_format=NHWC is refused for ONNX models ("only support NCHW, ND, NCDHW in ONNX model")
    assert "--input_format=ND" in argv and "--input_shape=image:1,16,24,3" in argv
    aipp = aipp_config(aipp_normalisation(IMAGENET), 16, 24)
    with pytest.raises(UserError, match="AIPP needs an NCHW input"):
        plan_atc(spec, [1], "fp16", "Ascend310P3", aipp=aipp)


# ---------------------------------------------------------------------------------------- npu-smi
def test_npu_smi_answers_the_recorded_queries_and_refuses_the_rest(ascend_env, tmp_path: Path) -> None:
    def smi(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["npu-smi", *args], cwd=tmp_path, capture_output=True, text=True, timeout=60)

    assert smi("info").returncode == 0 and "310P3" in smi("info").stdout
    assert smi("info", "-m").returncode == 0 and "Chip Name" in smi("info", "-m").stdout
    for args in (["inf"], ["info", "--m"], ["info", "-t", "board"], []):
        res = smi(*args)
        assert res.returncode == 1 and res.stdout.startswith("npu-smi: invalid command or parameter")
    # documented, but nothing recorded to answer with
    res = smi("info", "-t", "board", "-i", "0")
    assert res.returncode == 1 and "no recorded output" in res.stdout
