"""The compiled ImageNet preprocessing (hrdeploy.tasks.pil_resample) gives the reference's
bytes: Pillow's whole-image resize, the centre crop and the numpy normalisation."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from hrdeploy.io import read_image
from hrdeploy.model import Sample, SampleRef
from hrdeploy.tasks import pil_resample
from hrdeploy.tasks.classification import (ClassificationPipeline, classification_variant, preprocess_image,
                                           reference_preprocess_image)

pytestmark = pytest.mark.skipif(not pil_resample.available(),
                                reason="numba is not installed (the `fast` extra): the reference path runs")

PARAMS = classification_variant("w18").preprocess

#: (h, w): ImageNet's usual sizes, both orientations, a short side of exactly 256 (one pass
#: skipped), smaller than 256 (upscaling), extreme aspect ratios, odd sizes
GEOMETRIES = [(375, 500), (500, 375), (333, 500), (500, 334), (256, 341), (341, 256), (256, 256), (300, 256),
              (224, 224), (230, 300), (200, 600), (1200, 257), (257, 1200), (2000, 1500), (257, 257), (999, 501),
              (640, 427), (427, 640), (250, 250), (384, 512)]


def _content(h: int, w: int, seed: int) -> list[np.ndarray]:
    """Noise (every rounding shows) and a smooth photo-like image through a JPEG round trip."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    smooth = cv2.resize(rng.integers(0, 256, (h // 16 + 2, w // 16 + 2, 3), dtype=np.uint8), (w, h),
                        interpolation=cv2.INTER_CUBIC)
    ok, buf = cv2.imencode(".jpg", smooth, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return [noise, cv2.imdecode(buf, cv2.IMREAD_COLOR)]


@pytest.mark.parametrize("h,w", GEOMETRIES)
def test_the_compiled_path_gives_the_reference_bytes(h, w):
    for k, image in enumerate(_content(h, w, seed=h * 7 + w)):
        want = reference_preprocess_image(image, PARAMS)
        got = pil_resample.resize_crop_normalise(image, 256, 224, PARAMS["scale"], PARAMS["mean"], PARAMS["std"],
                                                 reverse_channels=True)
        assert got is not None, (h, w)
        assert got.dtype == want.dtype == np.float32 and got.shape == want.shape == (3, 224, 224)
        assert got.flags.c_contiguous
        assert got.tobytes() == want.tobytes(), (h, w, k, float(np.abs(got - want).max()))
        assert preprocess_image(image, PARAMS).tobytes() == want.tobytes()


def test_random_geometries_and_other_parameters():
    """Sizes drawn at random, BGR kept (color bgr), another resize/crop and normalisation."""
    rng = np.random.default_rng(17)
    params = {**PARAMS, "color": "bgr", "resize_short": 288, "crop": 256, "mean": [0.5, 0.4, 0.3],
              "std": [0.2, 0.3, 0.25], "scale": 1 / 255}
    for _ in range(40):
        h, w = int(rng.integers(180, 1100)), int(rng.integers(180, 1100))
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        if min(h, w) * 288 // max(h, w) < 1:
            continue
        want = reference_preprocess_image(image, params)
        assert preprocess_image(image, params).tobytes() == want.tobytes(), (h, w)


def test_a_geometry_not_reproduced_falls_back_to_the_reference(monkeypatch):
    """When neither pass order reproduces Pillow's bytes on the probe, Pillow itself runs."""
    image = _content(411, 533, seed=5)[0]
    pil_resample._ORDER.clear()
    real = pil_resample._crop

    def off_by_one(*args, **kwargs):
        crop, transposed = real(*args, **kwargs)
        return np.minimum(crop.astype(np.int16) + 1, 255).astype(np.uint8), transposed

    monkeypatch.setattr(pil_resample, "_crop", off_by_one)
    assert pil_resample.resize_crop_normalise(image, 256, 224, PARAMS["scale"], PARAMS["mean"], PARAMS["std"],
                                              True) is None
    assert list(pil_resample._ORDER.values()) == [None]  # remembered: probed once per geometry
    assert preprocess_image(image, PARAMS).tobytes() == reference_preprocess_image(image, PARAMS).tobytes()
    pil_resample._ORDER.clear()


def test_the_pipeline_on_jpeg_files(tmp_path: Path):
    pipe = ClassificationPipeline(PARAMS, "logits")
    for n, (h, w) in enumerate(GEOMETRIES[:6]):
        path = tmp_path / f"{n}.jpg"
        cv2.imwrite(str(path), _content(h, w, seed=n)[1])
        image = read_image(path)
        (item,) = pipe.prepare(Sample(SampleRef(path.name, path), image))
        assert item.tensor.tobytes() == reference_preprocess_image(image, PARAMS).tobytes()


def test_too_small_a_resize_is_still_refused_by_the_reference():
    from hrdeploy.errors import UserError

    with pytest.raises(UserError, match="smaller than the crop"):
        preprocess_image(np.zeros((300, 300, 3), np.uint8), {**PARAMS, "resize_short": 200})
