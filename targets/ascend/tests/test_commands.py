"""The generated ATC commands against the commands written in the seed guides, and the
generated AIPP / ais_bench command lines against the vendor's documented forms."""
from __future__ import annotations

import shlex

import pytest

from hrdeploy.errors import UserError
from hrdeploy.model import InputSpec
from hrdeploy.kit.normalise import Normalisation
from hrdeploy_target_ascend.commands import (ais_bench_argv, aipp_config, aipp_normalisation, normalise_soc,
                                             parse_aipp_config, plan_atc, precision_mode_for)

# The commands as the seeds print them (shell variables left in, substituted below).
# seed 000 (HRNet-W18-C), step "执行ATC命令", chip_name = Ascend310P3 (the guide's own example)
SEED_000 = ('atc --framework=5 --model=${onnx_model_path} --input_format=NCHW '
            '--input_shape="image:${batch_size},3,224,224" --output=hrnet_bs${batch_size} --log=debug '
            '--soc_version=${chip_name}')
# seed 001 (DEKR), chip_name = 310P3
SEED_001 = ('atc --framework=5 --model=models/dekr_bs1.onnx --output=models/dekr_bs1 --input_format=ND '
            '--input_shape="image:1,3,-1,-1" --dynamic_dims="512,768;512,512;768,512;512,1024;1024,512" '
            '--soc_version=Ascend${chip_name} --log=error')
# seed 004 (TResNet-M); the guide converts bs1 and says "pass another batchsize for other .om files"
SEED_004 = ('atc --framework=5 --model=tresnet_m.onnx --output=tresnet_patch16_224_bs1 --input_format=NCHW '
            '--input_shape="image:1,3,224,224" --log=error --soc_version=Ascend${chip_name}')

HRNET = InputSpec(name="image", channels=3, height=224, width=224)
DEKR_GEARS = ((512, 768), (512, 512), (768, 512), (512, 1024), (1024, 512))
DEKR = InputSpec(name="image", channels=3, height=None, width=None, gears=DEKR_GEARS, stride=64, batch=1)


def options(cmd: str, **subst: str) -> tuple[str, dict[str, str]]:
    for k, v in subst.items():
        cmd = cmd.replace("${" + k + "}", v)
    argv = shlex.split(cmd)
    return argv[0], dict(a[2:].split("=", 1) for a in argv[1:])


def job_options(job) -> tuple[str, dict[str, str]]:
    return job.argv[0], dict(a[2:].split("=", 1) for a in job.argv[1:])


@pytest.mark.parametrize("bs", [1, 4, 8, 16, 32, 64])
def test_seed_000_hrnet_static_per_batch(bs: int) -> None:
    plan = plan_atc(HRNET, [1, 4, 8, 16, 32, 64], "fp16", "Ascend310P3", onnx="hrnet_w18.onnx",
                    prefix="hrnet", log_level="debug", batch_mode="static")
    assert [j.batch for j in plan.jobs] == [1, 4, 8, 16, 32, 64]
    job = next(j for j in plan.jobs if j.batch == bs)
    exe, seed = options(SEED_000, onnx_model_path="hrnet_w18.onnx", batch_size=str(bs), chip_name="Ascend310P3")
    exe2, ours = job_options(job)
    assert exe2 == exe == "atc"
    # the only addition: the precision ATC uses by default, written out
    assert ours == {**seed, "precision_mode": "force_fp16"}
    assert job.output == f"hrnet_bs{bs}"


def test_seed_000_one_om_with_dynamic_batch() -> None:
    plan = plan_atc(HRNET, [64, 1, 4, 8, 16, 32, 4], "fp16", "310P3", onnx="hrnet_w18.onnx", log_level="debug")
    assert len(plan.jobs) == 1 and plan.dynamic == "batch"
    _, ours = job_options(plan.jobs[0])
    _, seed = options(SEED_000, onnx_model_path="hrnet_w18.onnx", batch_size="-1", chip_name="Ascend310P3")
    seed.update({"output": "model", "dynamic_batch_size": "1,4,8,16,32,64", "precision_mode": "force_fp16"})
    assert ours == seed
    assert plan.batch_sizes == [1, 4, 8, 16, 32, 64]


def test_seed_001_dekr_five_gears() -> None:
    plan = plan_atc(DEKR, [1], "fp16", "310P3", onnx="models/dekr_bs1.onnx", prefix="models/dekr_bs1")
    assert len(plan.jobs) == 1 and plan.dynamic == "dims"
    _, seed = options(SEED_001, chip_name="310P3")
    _, ours = job_options(plan.jobs[0])
    assert ours == {**seed, "precision_mode": "force_fp16"}
    # the gears are written in the model's order, as in the seed
    assert ours["dynamic_dims"] == "512,768;512,512;768,512;512,1024;1024,512"
    assert plan.sizes == list(DEKR_GEARS)
    # the shell line quotes the ';' list exactly once
    assert "'--dynamic_dims=512,768;512,512;768,512;512,1024;1024,512'" in plan.jobs[0].cmd


@pytest.mark.parametrize("bs", [1, 4, 8, 16, 32])
def test_seed_004_tresnet(bs: int) -> None:
    plan = plan_atc(HRNET, [1, 4, 8, 16, 32], "fp16", "310P3", onnx="tresnet_m.onnx",
                    prefix="tresnet_patch16_224", batch_mode="static")
    job = next(j for j in plan.jobs if j.batch == bs)
    cmd = SEED_004.replace("_bs1", f"_bs{bs}").replace("image:1,", f"image:{bs},")
    _, seed = options(cmd, chip_name="310P3")
    assert job_options(job)[1] == {**seed, "precision_mode": "force_fp16"}


def test_seed_004_single_batch_keeps_the_static_shape() -> None:
    plan = plan_atc(HRNET, [1], "fp16", "Ascend310P3", onnx="tresnet_m.onnx", prefix="tresnet_patch16_224_bs1")
    _, seed = options(SEED_004, chip_name="310P3")
    assert job_options(plan.jobs[0])[1] == {**seed, "precision_mode": "force_fp16"}
    assert plan.dynamic is None


def test_gears_and_several_batches_put_the_batch_into_the_dims() -> None:
    spec = InputSpec(height=None, width=None, gears=((32, 48), (48, 32)))
    plan = plan_atc(spec, [1, 2], "fp32", "Ascend910B3")
    _, opts = job_options(plan.jobs[0])
    assert opts["input_shape"] == "image:-1,3,-1,-1"
    assert opts["dynamic_dims"] == "1,32,48;1,48,32;2,32,48;2,48,32"
    assert opts["input_format"] == "ND" and opts["precision_mode"] == "force_fp32"


@pytest.mark.parametrize("name,expected", [
    ("310P3", "Ascend310P3"), ("Ascend310P3", "Ascend310P3"), ("ascend310p3", "Ascend310P3"),
    ("Ascend 910A", "Ascend910A"), ("910b3", "Ascend910B3"), ("310", "Ascend310"), ("MiniD", "Ascend310"),
])
def test_normalise_soc(name: str, expected: str) -> None:
    assert normalise_soc(name) == expected


@pytest.mark.parametrize("bad", ["xxx", "", "Mcu", "Ascend"])
def test_normalise_soc_refuses(bad: str) -> None:
    with pytest.raises(UserError, match="--soc"):
        normalise_soc(bad)


def test_precision_mapping() -> None:
    assert precision_mode_for("fp16") == "force_fp16"
    assert precision_mode_for("fp32") == "force_fp32"
    assert precision_mode_for("fp32", "must_keep_origin_dtype") == "must_keep_origin_dtype"
    with pytest.raises(UserError, match="AMCT"):
        precision_mode_for("int8")
    with pytest.raises(UserError, match="precision_mode"):
        precision_mode_for("fp16", "fastest")


def test_refusals() -> None:
    with pytest.raises(UserError, match="AIPP cannot be combined"):
        plan_atc(DEKR, [1], "fp16", "310P3", aipp="aipp_op {}")
    with pytest.raises(UserError, match="only runs at batch 1"):
        plan_atc(DEKR, [1, 4], "fp16", "310P3")
    with pytest.raises(UserError, match="declares no size gears"):
        plan_atc(InputSpec(height=None, width=None), [1], "fp16", "310P3")
    with pytest.raises(UserError, match="at most 100"):
        plan_atc(InputSpec(height=None, width=None, gears=tuple((32, 32 + i) for i in range(101))), [1], "fp16", "310P3")
    with pytest.raises(UserError, match="log level"):
        plan_atc(HRNET, [1], "fp16", "310P3", log_level="verbose")


def test_aipp_config_matches_the_vendor_imagenet_values() -> None:
    norm = Normalisation.from_preprocess({"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]})
    kv = parse_aipp_config(aipp_config(norm, 224, 224))
    # the values of the Ascend ResNet AIPP samples (aipp_resnet50.aippconfig, ais_bench docs)
    assert kv["min_chn_0"] == "123.675" and kv["min_chn_1"] == "116.28" and kv["min_chn_2"] == "103.53"
    assert kv["var_reci_chn_0"] == "0.0171247538316637"
    assert kv["var_reci_chn_1"] == "0.0175070028011204"
    assert kv["var_reci_chn_2"] == "0.0174291938997821"
    assert kv["input_format"] == "RGB888_U8" and kv["aipp_mode"] == "static"
    assert (kv["src_image_size_w"], kv["src_image_size_h"]) == ("224", "224")
    # the same numbers from mmcv-style 0..255 parameters
    mm = Normalisation.from_preprocess({"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]})
    assert parse_aipp_config(aipp_config(mm, 224, 224)) == kv


def test_aipp_from_the_classification_plugins_preprocessing() -> None:
    # what hrdeploy.tasks.classification records (explicit scale 1/255, resize/crop keys ignored here)
    cls = {"resize_short": 256, "crop": 224, "interpolation": "pil-bilinear", "color": "rgb", "scale": 1 / 255,
           "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "layout": "NCHW"}
    kv = parse_aipp_config(aipp_config(Normalisation.from_preprocess(cls), 224, 224))
    assert (kv["min_chn_0"], kv["var_reci_chn_0"]) == ("123.675", "0.0171247538316637")
    tres = {**cls, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}
    kv = parse_aipp_config(aipp_config(Normalisation.from_preprocess(tres), 224, 224))
    assert float(kv["min_chn_1"]) == 0.0 and float(kv["var_reci_chn_1"]) == pytest.approx(1 / 255, rel=1e-14)


def test_aipp_for_divide_by_255_only() -> None:
    # TResNet (seed 004): /255, no mean/std
    kv = parse_aipp_config(aipp_config(Normalisation.from_preprocess({"mean": [0, 0, 0], "std": [1, 1, 1]}), 224, 224))
    assert float(kv["min_chn_0"]) == 0.0
    assert float(kv["var_reci_chn_2"]) == pytest.approx(1 / 255, rel=1e-14)


def test_normalisation_round_trip() -> None:
    import numpy as np

    norm = Normalisation.from_preprocess({"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]})
    pixels = np.random.default_rng(1).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    x = norm.apply(pixels)
    assert np.array_equal(norm.to_uint8_nhwc(x), pixels)
    with pytest.raises(UserError, match="no normalisation"):
        aipp_normalisation({"resize": 256})
    assert aipp_normalisation({"std": [0.229, 0.224, 0.225]}) == Normalisation.from_preprocess(
        {"mean": [0, 0, 0], "std": [0.229, 0.224, 0.225]})


def test_ais_bench_pure_inference_command() -> None:
    argv = ais_bench_argv("python3", "m.om", loop=20, batch=8, device=1, output="/tmp/o", dirname="bs8",
                          dym_batch=8)
    assert argv == ["python3", "-m", "ais_bench", "--model", "m.om", "--loop", "20", "--batchsize", "8",
                    "--device", "1", "--warmup_count", "1", "--display_all_summary", "1", "--output", "/tmp/o",
                    "--output_dirname", "bs8", "--dymBatch", "8"]
