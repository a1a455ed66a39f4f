"""The core's model-plugin contract, plus the plugin's registration and option handling."""
from __future__ import annotations

import pytest

from hrdeploy.model import ModelSpec
from hrdeploy.testing.contract import ModelContract
from hrdeploy_hrnet_pose.spec import HRNetPoseSpec, typed_options


class TestHRNetPoseContract(ModelContract):
    @pytest.fixture
    def model(self) -> ModelSpec:
        return HRNetPoseSpec()


def test_plugin_registers_the_model_without_torch() -> None:
    import subprocess
    import sys

    code = ("import sys; from hrdeploy_hrnet_pose.plugin import hrdeploy_models; m = hrdeploy_models(); "
            "print(m[0].name, m[0].task, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["hrnet_pose", "pose-topdown", "False"]


def test_command_line_strings_are_typed() -> None:
    opts = typed_options({"flip": "false", "gt_boxes": "yes", "box_thr": "0.3", "boxes": "d.json", "ann": None})
    assert opts == {"flip": False, "gt_boxes": True, "box_thr": 0.3, "boxes": "d.json"}
    spec = HRNetPoseSpec()
    assert spec.pipeline(spec.variant(), {"flip": "false"}).flip is False
    assert spec.pipeline(spec.variant(), {}).params["flip_test"] is True
