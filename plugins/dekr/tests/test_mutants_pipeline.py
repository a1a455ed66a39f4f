"""DEKR pre-processing and the hand-over to the decoder: the behaviour mutation testing
(tools/mutation.py) found unpinned, checked against the official functions (dekr_official_ref),
torchvision's formulas and the Ascend gear rule of models-pose.md 4."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hrdeploy.errors import UserError
from hrdeploy.model import Item, Sample, SampleRef
from hrdeploy_dekr.pipeline import DEKRPipeline, flip_shift, normalise, resize_params
from hrdeploy_dekr.rescore import Rescorer

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])
GEARS = [(512, 768), (512, 512), (768, 512), (512, 1024), (1024, 512)]   # seed 001's (H, W)


def test_normalise_is_totensor_then_normalize() -> None:
    rgb = np.random.default_rng(10).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    np.testing.assert_allclose(normalise(rgb), ((rgb / 255.0 - MEAN) / STD).transpose(2, 0, 1), atol=2e-6)


def test_flip_shift_by_other_amounts() -> None:
    x = np.arange(2 * 3 * 7, dtype=np.float32).reshape(2, 3, 7)
    f = x[:, :, ::-1]
    want = f.copy()
    want[:, :, :-2] = f[:, :, 2:]
    np.testing.assert_array_equal(flip_shift(x, 2), want)


def test_portrait_gears_snap_the_height_and_a_missing_width_is_refused() -> None:
    # 480 x 640 portrait: official 512 x 704, the gear rule snaps the height up to 768
    size, center, win = resize_params(640, 480, 512, gears=GEARS)
    assert size == (512, 768) and tuple(center) == (240, 320)
    # uniform zoom 512 / 480: the window is the image width, 480 px (its second value is never read:
    # the output aspect ratio decides the height)
    assert win[0] == 480 / 200
    with pytest.raises(UserError, match="no compiled size gear has width 512 for this portrait image"):
        resize_params(640, 480, 512, gears=[(512, 768)])


def test_scales_must_include_1_be_positive_and_fit_the_runtime() -> None:
    with pytest.raises(UserError, match="must include 1"):
        DEKRPipeline(input_size=512, output_size=128, scales=(0.5, 2.0))
    for bad in (-0.5, 0.0):
        with pytest.raises(UserError, match="test scales must be positive"):
            DEKRPipeline(input_size=512, output_size=128, scales=(1.0, bad))
    with pytest.raises(UserError, match="multi-scale testing needs a runtime that takes any input size"):
        DEKRPipeline(input_size=512, output_size=128, scales=(1.0, 2.0), gears=GEARS)
    assert DEKRPipeline(input_size=512, output_size=128, scales=(1.0,), gears=GEARS).scales == [1.0]


def test_recorded_parameters(rescore_state) -> None:
    p = DEKRPipeline(input_size=640, output_size=160, scales=(2, 1.0, 0.5))
    assert p.scales == [2.0, 1.0, 0.5]
    assert p.params["resize"] == "official: long side rounded up to a multiple of 64"
    assert (p.params["flip"], p.params["flip_shift_px"], p.params["oks_nms"]) == (True, 3, False)
    assert (p.params["decode.input_size"], p.params["decode.output_size"]) == (640, 160)
    assert p.params["rescore"] == "off"
    g = DEKRPipeline(input_size=512, output_size=128, flip=False, gears=GEARS, rescore_note="on (x.npz)")
    assert g.params["resize"].startswith("size gears") and g.params["flip_shift_px"] is None
    assert g.params["gears"] == GEARS and g.params["rescore"] == "on (x.npz)"
    rescorer = Rescorer({k: v.numpy() for k, v in rescore_state.items()})
    assert DEKRPipeline(input_size=512, output_size=128, rescorer=rescorer).params["rescore"] == "on"


def _outputs(items: list[Item], batch_axis: bool) -> list[dict[str, np.ndarray]]:
    """A person centre at the middle of every map, offsets pointing 2 px up-left."""
    outs = []
    for it in items:
        w, h = (v // 4 for v in it.meta["input_size"])
        hm = np.zeros((18, h, w), np.float32)
        hm[:, h // 2, w // 2] = 0.8
        off = np.full((34, h, w), 2.0, np.float32)
        outs.append({"heatmap": hm[None] if batch_axis else hm, "offset": off[None] if batch_axis else off})
    return outs


def test_outputs_with_a_batch_axis_decode_like_without_and_keypoints_map_back_to_the_image() -> None:
    image = np.zeros((240, 320, 3), np.uint8)
    ref = SampleRef("x", Path("x.jpg"))
    for scales in ((1.0,), (1.0, 0.5)):
        pipe = DEKRPipeline(input_size=512, output_size=128, scales=scales)
        items = pipe.prepare(Sample(ref, image))
        assert [(it.meta["scale"], it.meta["flip"]) for it in items] == [(s, f) for s in pipe.scales
                                                                          for f in (False, True)]
        plain = pipe.finish(ref, items, _outputs(items, False))
        assert pipe.finish(ref, items, _outputs(items, True)) == plain
        assert plain["people"]
    # the middle pixel of the scale-1 map, minus the 2 px offset, times the stride 4, mapped back
    # with models-pose.md 5.1 step 4: x_img = (x - W/2) * scale[0] * 200 / W + cx (y likewise)
    single = DEKRPipeline(input_size=512, output_size=128, flip=False)
    items = single.prepare(Sample(ref, image))
    kp = np.array(single.finish(ref, items, _outputs(items, False))["people"][0]["keypoints"])
    (w_in, h_in), (cx, cy), win = items[0].meta["input_size"], items[0].meta["center"], items[0].meta["window_scale"]
    assert (w_in, h_in) == (704, 512)
    x = ((w_in // 4) // 2 - 2) * 4.0
    y = ((h_in // 4) // 2 - 2) * 4.0
    np.testing.assert_allclose(kp[:, 0], (x - w_in / 2) * win[0] * 200 / w_in + cx, atol=1e-3)
    np.testing.assert_allclose(kp[:, 1], (y - h_in / 2) * win[0] * 200 / w_in + cy, atol=1e-3)


def test_odd_sizes_portrait_scales_and_square_images_follow_get_multi_scale_size() -> None:
    # official: center = (int(w / 2 + 0.5), int(h / 2 + 0.5)); portrait: the width is the short side
    assert tuple(resize_params(427, 641, 512)[1]) == (321, 214)
    assert resize_params(640, 480, 512, 2.0)[0] == (1024, 1408)
    assert resize_params(640, 480, 512, 0.5)[0] == (256, 352)
    # a square image takes the official `else` (landscape) branch: with gears its width is snapped
    assert resize_params(512, 512, 512, gears=[(512, 768), (768, 512)])[0] == (768, 512)
