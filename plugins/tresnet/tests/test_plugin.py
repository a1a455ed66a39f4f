"""The distribution as hrdeploy sees it: entry point, cheap import, and the preprocessing the
TResNet variants declare (RGB / 255 after short side 256 and centre crop 224)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np

from hrdeploy.model import Sample, SampleRef
from hrdeploy.plugins import Registry
from hrdeploy.tasks.classification import resize_short_crop


def test_registered_through_the_entry_point():
    registry = Registry()
    spec = registry.model("tresnet")
    assert list(spec.variants) == ["m", "l", "xl", "m_ascend"]
    assert spec.task == "classification" and "imagenet" in spec.dataset_kinds
    record = registry.owner("model", "tresnet")
    assert record is not None and record.status == "ok"


def test_plugin_import_does_not_import_torch():
    code = ("import sys; import hrdeploy_tresnet.plugin as p; specs = p.hrdeploy_models(); "
            "specs[0].pipeline(specs[0].variant('m_ascend')); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_preprocessing_is_rgb_over_255(spec, tmp_path):
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    for name in ("m", "m_ascend"):
        pipe = spec.pipeline(spec.variant(name))
        (item,) = pipe.prepare(Sample(SampleRef("x", tmp_path / "x.png"), bgr))
        assert item.tensor.shape == (3, 224, 224) and item.tensor.dtype == np.float32
        crop = resize_short_crop(bgr[:, :, ::-1], 256, 224, "pil-bilinear")
        np.testing.assert_allclose(item.tensor, crop.transpose(2, 0, 1) / 255.0, rtol=0, atol=1e-6)
        assert pipe.params["mean"] == [0.0, 0.0, 0.0] and pipe.params["std"] == [1.0, 1.0, 1.0]
