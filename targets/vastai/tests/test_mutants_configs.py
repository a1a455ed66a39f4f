"""vamc configs and command lines: the behaviour mutation testing (tools/mutation.py) found
unpinned: the dataset block belongs to int8 builds only (VastModelZOO's fp16 configs have none),
and the two vamc generations (toolchains.md section 3)."""
from __future__ import annotations

import pytest

from hrdeploy.errors import UserError
from hrdeploy_target_vastai.configs import CalibSet, vamc_argv, vamc_build_config, vamc_compile_config
from hrdeploy_target_vastai.preprocess import Preprocess

PRE = Preprocess.from_params({"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "resize": 256,
                              "crop": 224}, (224, 224))
CALIB = CalibSet("calib", "JPEG", 10)


def test_fp16_builds_ignore_calibration_images() -> None:
    for make in (vamc_compile_config, vamc_build_config):
        fp16 = make("m", "input", [1, 3, 224, 224], "m.onnx", "fp16", PRE, CALIB)
        int8 = make("m", "input", [1, 3, 224, 224], "m.onnx", "int8", PRE, CALIB)
        assert "dataset" not in fp16 and int8["dataset"]["path"] == "calib"


def test_vamc_generations() -> None:
    assert vamc_argv("compile", "cfg.yaml") == ["vamc", "compile", "cfg.yaml"]
    assert vamc_argv("build", "cfg.yaml") == ["vamc", "build", "cfg.yaml"]
    with pytest.raises(UserError, match="unknown vamc generation 'run'"):
        vamc_argv("run", "cfg.yaml")
