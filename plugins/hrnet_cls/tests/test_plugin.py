"""The plugin as hrdeploy discovers it: entry point, hook, contract, cheap import."""
from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from hrdeploy.nn.hrnet import HRNET_CLS_VARIANTS
from hrdeploy.testing.contract import ModelContract
from hrdeploy_hrnet_cls.spec import HRNetClsSpec



class TestHRNetClsContract(ModelContract):
    @pytest.fixture
    def model(self) -> HRNetClsSpec:
        return HRNetClsSpec()


def test_entry_point_and_hook():
    eps = [ep for ep in entry_points(group="hrdeploy.models") if ep.name == "hrnet_cls"]
    assert [ep.value for ep in eps] == ["hrdeploy_hrnet_cls.plugin"]
    (spec,) = eps[0].load().hrdeploy_models()
    assert spec.name == "hrnet_cls" and spec.task == "classification"
    assert list(spec.variants) == ["w18", *[v for v in HRNET_CLS_VARIANTS if v != "w18"]]
    assert spec.variant().name == "w18"


def test_variants_describe_the_official_preprocessing(spec):
    for v in spec.variants.values():
        assert (v.input.name, v.input.fixed_size, v.input.batch, v.outputs) == ("image", (224, 224), "dynamic", ("logits",))
        assert v.preprocess["resize_short"] == 256 and v.preprocess["crop"] == 224
        assert v.preprocess["color"] == "rgb" and v.preprocess["mean"] == [0.485, 0.456, 0.406]
        assert v.preprocess["std"] == [0.229, 0.224, 0.225]
        assert v.tolerance("fp32").max_rel == 1e-4


def test_discovery_does_not_import_torch():
    code = ("import sys, hrdeploy_hrnet_cls.plugin as p; s = p.hrdeploy_models()[0]; "
            "s.pipeline(s.variant()); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
