"""hrdeploy.kit.normalise: preprocessing parameters -> (pixel - mean255) / std255 and back."""
from __future__ import annotations

import json

import numpy as np
import pytest

from hrdeploy.errors import UserError
from hrdeploy.kit.normalise import Normalisation, records_normalisation, vector

TORCHVISION = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
MMCV = {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]}


def test_units_are_inferred_from_the_values() -> None:
    tv = Normalisation.from_preprocess(TORCHVISION)
    mm = Normalisation.from_preprocess(MMCV)
    assert tv.mean255 == pytest.approx(MMCV["mean"], rel=1e-12)
    assert tv.std255 == pytest.approx(MMCV["std"], rel=1e-12)
    assert mm == Normalisation(tuple(MMCV["mean"]), tuple(MMCV["std"]))
    assert tv.mean01 == pytest.approx(TORCHVISION["mean"], rel=1e-12)
    assert mm.std01 == pytest.approx(TORCHVISION["std"], rel=1e-12)


def test_explicit_scale_wins_over_inference() -> None:
    # 0..1 values with scale 1 are 0..255 units: no division by 1/255
    n = Normalisation.from_preprocess({"mean": [0.5] * 3, "std": [0.25] * 3, "scale": 1.0})
    assert n.mean255 == (0.5,) * 3 and n.std255 == (0.25,) * 3
    # the classification task records scale 1/255 explicitly next to torchvision values
    cls = Normalisation.from_preprocess({**TORCHVISION, "scale": 1 / 255, "resize_short": 256, "crop": 224})
    assert cls.mean255 == pytest.approx(MMCV["mean"], rel=1e-12)


def test_divide_by_255_only_and_defaults() -> None:
    tres = Normalisation.from_preprocess({"mean": [0, 0, 0], "std": [1, 1, 1]})
    assert tres.mean255 == (0.0,) * 3 and tres.std255 == pytest.approx((255.0,) * 3)
    # nothing recorded: the same "/255 only", which is why callers that need a real
    # normalisation ask records_normalisation() first
    assert Normalisation.from_preprocess(None) == tres
    assert not records_normalisation(None) and not records_normalisation({"resize": 256})
    assert records_normalisation({"std": [1, 1, 1]}) and records_normalisation({"scale": 1.0})


def test_scalars_broadcast_and_channel_count_is_checked() -> None:
    assert vector(0.5, "mean", 3) == (0.5, 0.5, 0.5)
    gray = Normalisation.from_preprocess({"mean": 0.5, "std": [0.25]}, channels=1)
    assert gray.mean255 == pytest.approx((127.5,)) and gray.std255 == pytest.approx((63.75,))
    with pytest.raises(UserError, match="mean has 2 values, the input has 3 channels"):
        Normalisation.from_preprocess({"mean": [0.4, 0.5], "std": [0.2] * 3})
    with pytest.raises(UserError, match="std is not a list of numbers"):
        Normalisation.from_preprocess({"mean": [0.4] * 3, "std": ["a", "b", "c"]})
    with pytest.raises(UserError, match="std has a zero"):
        Normalisation.from_preprocess({"mean": [0.4] * 3, "std": [0.2, 0.0, 0.2]})


@pytest.mark.parametrize("pre", [TORCHVISION, MMCV, {"mean": [0, 0, 0], "std": [1, 1, 1]}])
def test_forward_matches_the_formula_and_inverts_exactly(pre) -> None:
    norm = Normalisation.from_preprocess(pre)
    pixels = np.random.default_rng(3).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    x = norm.apply(pixels)
    assert x.dtype == np.float32 and x.shape == (2, 3, 5, 7)
    mean = np.array(norm.mean255).reshape(1, 3, 1, 1)
    std = np.array(norm.std255).reshape(1, 3, 1, 1)
    ref = (pixels.transpose(0, 3, 1, 2).astype(np.float64) - mean) / std
    assert np.max(np.abs(x - ref)) <= 1e-6 * np.max(np.abs(ref))
    nchw = norm.to_uint8_nchw(x)
    assert nchw.dtype == np.uint8 and np.array_equal(nchw, pixels.transpose(0, 3, 1, 2))
    nhwc = norm.to_uint8_nhwc(x)
    assert nhwc.flags["C_CONTIGUOUS"] and np.array_equal(nhwc, pixels)


def test_inverse_clips_values_outside_the_pixel_range() -> None:
    norm = Normalisation.from_preprocess(MMCV)
    x = np.full((1, 3, 1, 2), 0.0, np.float32)
    x[:, :, 0, 0] = -100.0
    x[:, :, 0, 1] = 100.0
    px = norm.to_uint8_nchw(x)
    assert px[0, :, 0, 0].tolist() == [0, 0, 0] and px[0, :, 0, 1].tolist() == [255, 255, 255]


def test_dict_round_trip_through_json() -> None:
    norm = Normalisation.from_preprocess(TORCHVISION)
    back = Normalisation.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert back == norm
    assert Normalisation.from_dict({"mean255": [0, 1, 2], "std255": [1, 1, 1]}).mean255 == (0.0, 1.0, 2.0)
