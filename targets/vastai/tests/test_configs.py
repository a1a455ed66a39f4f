"""Generated vamc configs, vdsp_params and vamp command lines against VastModelZOO's own
files and seed 003's commands (embedded below, with the commit they come from)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from hrdeploy.errors import UserError
from hrdeploy_target_vastai.configs import (CalibSet, model_info, output_prefix, transform_ops, vamc_build_config,
                                            vamc_compile_config, vamp_argv, vdsp_params, vdsp_params_sdk1)
from hrdeploy_target_vastai.preprocess import Preprocess, fp16_bits, fp16_value
from hrdeploy_target_vastai.yamlemit import dump

yaml = pytest.importorskip("yaml")

IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "resize": 256, "crop": 224}
PRE = Preprocess.from_params(IMAGENET, (224, 224))

# Vastai/VastModelZOO@e80760b classification/hrnet/vacc_code/build/official_hrnet.yaml: the
# `vamc build` generation seed 003 runs (paths replaced by the test's)
ZOO_BUILD_YAML = """
model:
  name: hrnet_w18
  inputs:
    input: [1, 3, 224, 224]
  checkpoint: /home/lance/workspace/weights/onnx/hrnet_w18.onnx

engine:
  type: vacc
  common:
    do_quantization: true
  add_extra_ops_to_graph:
    type: softmax
  calibration:
    quant_mode: percentile
    per_channel: true

dataset:
  path: /home/lance/workspace/data/eval/ILSVRC2012_img_calib
  sampler:
    suffix: JPEG
    get_data_num: 1000
  transform_ops:
    - type: DecodeImage
    - type: Resize
      size: [256, 256]
    - type: CenterCrop
      crop_size: [224, 224]
    - type: Normalize
      mean: [0.485, 0.456, 0.406]
      std: [0.229, 0.224, 0.225]
    - type: ToTensor

workspace:
  work_dir: /home/lance/workspace/weights/vacc
  enable_ir: false
  save_log: false
"""

# Vastai/VastModelZOO@575520a cv/classification/hrnet/build_in/build/timm_hrnet.yaml (`vamc compile`)
ZOO_COMPILE_YAML = """
name: timm_hrnet_run_stream_int8

frontend:
  shape:
    input:
    - 1
    - 3
    - 224
    - 224
  type: onnx
  checkpoint: /path/to/hrnet_w18.onnx
  dtype: fp32

backend:
  type: tvm_vacc
  dtype: int8
  compile:
    cluster_mode: 0
  quantize:
    calibrate_mode: percentile
    quantize_per_channel: true

graph:
  extra_ops:
      type: softmax

dataset:
  type: tvm
  path: /path/to/cls/ImageNet/ILSVRC2012_img_calib
  sampler:
    suffix: JPEG
    get_data_num: 50
  process_ops:
    - type: DecodeImage
    - type: Resize
      size:
      - 256
      - 256
    - type: CenterCrop
      crop_size:
      - 224
      - 224
    - type: Normalize
      mean:
      - 0.485
      - 0.456
      - 0.406
      std:
      - 0.229
      - 0.224
      - 0.225
    - type: ToTensor

workspace:
  path: ./deploy_weights/
"""

# Vastai/VastModelZOO@575520a cv/classification/vgg/build_in/vdsp_params/timm-vgg13-vdsp_params.json
ZOO_VDSP = {
    "OpType": "FUSION_OP_RGB_RESIZE_CVTCOLOR_CROP_NORM_TENSOR",
    "OpConfig": {"IimageFormat": "RGB_PLANAR", "IimageWidth": 256, "IimageHeight": 256, "OimageWidth": 224,
                 "OimageHeight": 224, "CropX": 16, "CropY": 16, "ResizeWidth": 256, "ResizeHeight": 256,
                 "IimageWidthPitch": 256, "IimageHeightPitch": 256,
                 "Mean": [0.485107421875, 0.4560546875, 0.406005859375],
                 "Std": [0.22900390625, 0.2239990234375, 0.2249755859375],
                 "NormaType": "DIV255_MINUSMEAN_DIVSTD", "ColorCvtCode": "NO_CHANGE", "ResizeType": "BILINEAR_CV"}}


def _p(name, dtype, value):
    return {"Property": name, "DType": dtype, "ParamType": "ELEMENT", "Value": value}


# Vastai/VastModelZOO@ff51b7a classification/hrnet/vacc_code/vdsp_params/timm-hrnet_w18-vdsp_params.json (sdk1.0)
ZOO_VDSP_SDK1 = {"vdsp_op_type": "RGB_RESIZE_CVTCOLOR_CROP_NORMALIZATION_TENSORIZATION_U8", "config": [
    _p("iimage_format", "UINT_32", "RGB_PLANAR"), _p("iimage_width", "INT", 256), _p("iimage_height", "INT", 256),
    _p("iimage_width_pitch", "UINT_32", 256), _p("iimage_height_pitch", "UINT_32", 256),
    _p("short_edge_threshold", "INT", 256), _p("crop_size", "UINT_32", 224),
    _p("meanr", "UINT_16", 14275), _p("meang", "UINT_16", 14156), _p("meanb", "UINT_16", 13951),
    _p("stdr", "UINT_16", 13140), _p("stdg", "UINT_16", 13099), _p("stdb", "UINT_16", 13107),
    _p("norma_type", "INT", "DIV255_MINUSMEAN_DIVSTD"), _p("resize_type", "INT", "BILINEAR_CV"),
    _p("color_cvt_code", "UINT_16", "COLOR_NO_CHANGE"), _p("color_space", "UINT_16", "COLOR_SPACE_BT709")]}


def test_old_build_config_equals_the_zoo_config_of_seed_003() -> None:
    calib = CalibSet("/home/lance/workspace/data/eval/ILSVRC2012_img_calib", "JPEG", 1000)
    cfg = vamc_build_config("hrnet_w18", "input", [1, 3, 224, 224],
                            "/home/lance/workspace/weights/onnx/hrnet_w18.onnx", "int8", PRE, calib,
                            softmax=True, quant_mode="percentile", work_dir="/home/lance/workspace/weights/vacc")
    assert yaml.safe_load(dump(cfg)) == yaml.safe_load(ZOO_BUILD_YAML)


def test_current_compile_config_equals_the_zoo_config() -> None:
    calib = CalibSet("/path/to/cls/ImageNet/ILSVRC2012_img_calib", "JPEG", 50)
    cfg = vamc_compile_config("timm_hrnet_run_stream_int8", "input", [1, 3, 224, 224], "/path/to/hrnet_w18.onnx",
                              "int8", PRE, calib, softmax=True, calib_mode="percentile")
    assert yaml.safe_load(dump(cfg)) == yaml.safe_load(ZOO_COMPILE_YAML)
    # key order follows the ZOO file too
    assert list(cfg) == ["name", "frontend", "backend", "graph", "dataset", "workspace"]


def test_fp16_configs_have_no_calibration_and_no_softmax_by_default() -> None:
    cur = vamc_compile_config("m", "image", [1, 3, 224, 224], "source.onnx", "fp16", PRE)
    assert cur["backend"] == {"type": "tvm_vacc", "dtype": "fp16", "compile": {"cluster_mode": 0}}
    assert "dataset" not in cur and "graph" not in cur
    old = vamc_build_config("m", "image", [1, 3, 224, 224], "source.onnx", "fp16", PRE)
    assert old["engine"] == {"type": "vacc", "common": {"do_quantization": False}}
    assert "dataset" not in old
    with pytest.raises(UserError, match="calibration images"):
        vamc_compile_config("m", "image", [1, 3, 224, 224], "source.onnx", "int8", PRE)
    with pytest.raises(UserError, match="fp16 or int8"):
        vamc_build_config("m", "image", [1, 3, 224, 224], "source.onnx", "fp32", PRE)


def test_vdsp_params_equal_the_zoo_files() -> None:
    assert vdsp_params(PRE) == ZOO_VDSP
    assert list(vdsp_params(PRE)["OpConfig"]) == list(ZOO_VDSP["OpConfig"])
    assert vdsp_params_sdk1(PRE) == ZOO_VDSP_SDK1
    # mmcv-style 0..255 parameters describe the same normalisation
    mm = Preprocess.from_params({"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375],
                                 "resize": [256, 256], "crop_size": [224, 224]}, (224, 224))
    assert vdsp_params(mm) == ZOO_VDSP and vdsp_params_sdk1(mm) == ZOO_VDSP_SDK1


def test_the_classification_plugins_preprocessing_keys() -> None:
    # what hrdeploy.tasks.classification records for HRNet-W18-C (core/hrdeploy/tasks/classification.py)
    cls = {"resize_short": 256, "crop": 224, "interpolation": "pil-bilinear", "color": "rgb", "scale": 1 / 255,
           "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "layout": "NCHW"}
    pre = Preprocess.from_params(cls, (224, 224))
    assert vdsp_params(pre) == ZOO_VDSP and vdsp_params_sdk1(pre) == ZOO_VDSP_SDK1


def test_fp16_bit_patterns() -> None:
    assert fp16_bits(0.485) == 14275 and fp16_bits(0.229) == 13140
    assert fp16_bits(0.485) == int(np.float16(0.485).view(np.uint16))
    assert fp16_value(0.485) == 0.485107421875


def test_divide_by_255_only_and_bgr_models() -> None:
    tres = Preprocess.from_params({"mean": [0, 0, 0], "std": [1, 1, 1], "resize": 256, "crop": 224}, (224, 224))
    cfg = vdsp_params(tres)["OpConfig"]
    assert cfg["Mean"] == [0.0, 0.0, 0.0] and cfg["Std"] == [1.0, 1.0, 1.0]
    assert cfg["NormaType"] == "DIV255_MINUSMEAN_DIVSTD"
    bgr = Preprocess.from_params({**IMAGENET, "color": "bgr"}, (224, 224))
    assert vdsp_params(bgr)["OpConfig"]["ColorCvtCode"] == "RGB2BGR"
    with pytest.raises(UserError, match="crops"):
        Preprocess.from_params(IMAGENET, (256, 192))


def test_no_resize_for_gear_models() -> None:
    # DEKR: normalisation only; the host warps the image to the gear size (its "resize" is a description)
    pre = Preprocess.from_params({"resize": "short side 512, long side rounded up to a multiple of 64",
                                  "scale": 1 / 255, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
                                 (512, 768))
    cfg = vdsp_params(pre)["OpConfig"]
    assert (cfg["IimageHeight"], cfg["IimageWidth"], cfg["OimageHeight"], cfg["OimageWidth"]) == (512, 768, 512, 768)
    assert (cfg["CropX"], cfg["CropY"]) == (0, 0)
    assert [op["type"] for op in transform_ops(pre)] == ["DecodeImage", "Resize", "Normalize", "ToTensor"]


def test_output_prefixes_and_model_info() -> None:
    assert output_prefix("compile", "timm_hrnet_run_stream_fp16", "fp16", "percentile", [1, 3, 224, 224]) == \
        "deploy_weights/timm_hrnet_run_stream_fp16/mod"
    # seed 003's vamp -m prefix (its 256 is the vdsp input size the guide wrote; the naming rule is the same)
    assert output_prefix("build", "hrnet_w18", "int8", "percentile", [1, 3, 256, 256], workspace="") == \
        "./hrnet_w18-int8-percentile-3_256_256-vacc/hrnet_w18"
    assert output_prefix("build", "hrnet_w18", "fp16", "percentile", [1, 3, 224, 224]) == \
        "deploy_weights/hrnet_w18-fp16-none-3_224_224-vacc/hrnet_w18"
    # Vastai/VastModelZOO@85fcb39 classification/hrnet/vacc_code/model_info/model_info_hrnet.json
    prefix = "deploy_weights/hrnet_w18-int8-kl_divergence-3_224_224-vacc/hrnet_w18"
    assert model_info("hrnet_w18", prefix, "classification/common/hw_config/hw_conf.bin") == {
        "model_name": "hrnet_w18",
        "model_lib_path": "deploy_weights/hrnet_w18-int8-kl_divergence-3_224_224-vacc/hrnet_w18.so",
        "model_graph_path": "deploy_weights/hrnet_w18-int8-kl_divergence-3_224_224-vacc/hrnet_w18.json",
        "model_params_path": "deploy_weights/hrnet_w18-int8-kl_divergence-3_224_224-vacc/hrnet_w18.params",
        "hw_config_file": "classification/common/hw_config/hw_conf.bin"}


def test_vamp_command_lines() -> None:
    # seed 003, step.5 benchmark
    seed = ("./vamp -m hrnet_w18-int8-percentile-3_256_256-vacc/hrnet_w18 --vdsp_params "
            "./vacc_code/vdsp_params/vamp/timm-hrnet_w18-vdsp_params.json  -i 1 -p 1 -b 1").split()
    ours = vamp_argv("hrnet_w18-int8-percentile-3_256_256-vacc/hrnet_w18",
                     "./vacc_code/vdsp_params/vamp/timm-hrnet_w18-vdsp_params.json", batch=1, percentiles=None)
    assert ours[1:] == seed[1:] and ours[0] == "vamp"
    # VastModelZOO@575520a timm_hrnet.md step.5
    zoo = ("vamp -m deploy_weights/timm_hrnet_run_stream_fp16/mod --vdsp_params "
           "../build_in/vdsp_params/timm-hrnet_w18-vdsp_params.json  -i 8 -p 1 -b 2 -s [3,224,224]").split()
    assert vamp_argv("deploy_weights/timm_hrnet_run_stream_fp16/mod",
                     "../build_in/vdsp_params/timm-hrnet_w18-vdsp_params.json", batch=2, instances=8,
                     shape_chw=[3, 224, 224], percentiles=None) == zoo
    full = vamp_argv("p/mod", "v.json", batch=4, device=1, iterations=512)
    assert full[-6:] == ["-d", "1", "--iterations", "512", "--percentiles", "[50,90,95,99]"]


def test_yaml_emitter_round_trips_awkward_values() -> None:
    doc = {"name": "yes", "n": 3, "f": 0.1, "neg": -2.5, "flag": False, "none": None, "num_str": "1.5",
           "colon": "a: b", "path": "./deploy_weights/", "empty": {}, "list": ["on", 1, 2.0],
           "ops": [{"type": "Resize", "size": [256, 256]}, {"type": "ToTensor"}],
           "nested": {"deep": {"x": [1, 2]}}}
    text = dump(doc, header="generated\nby a test")
    assert text.startswith("# generated\n# by a test\n")
    assert yaml.safe_load(text) == doc
    assert "size: [256, 256]" in text and "- type: Resize" in text
    with pytest.raises(ValueError):
        dump({"x": float("nan")})


def test_json_of_vdsp_params_is_plain_json() -> None:
    assert json.loads(json.dumps(vdsp_params_sdk1(PRE))) == ZOO_VDSP_SDK1
