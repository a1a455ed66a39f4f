"""Pre-processing (official resize and the Ascend gear policy, flip input) and the cost of the
post-processing at the seed's main gear."""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import dekr_official_ref as official
import numpy as np
import pytest
import torch
from dekr_maps import random_people, scale_outputs
from hrdeploy.errors import UserError
from hrdeploy.model import PipelineRuntime, Sample, SampleRef
from hrdeploy_dekr.pipeline import flip_shift, resize_params, snap_to_gear
from hrdeploy_dekr.variants import GEARS

W32_GEARS = GEARS[32]


@pytest.mark.parametrize("image_wh,official_wh,gear_wh", [
    ((640, 427), (768, 512), (768, 512)),
    ((640, 480), (704, 512), (768, 512)),
    ((640, 360), (960, 512), (1024, 512)),
    ((640, 240), (1408, 512), (1024, 512)),     # beyond the largest gear: cropped
    ((480, 640), (512, 704), (512, 768)),
    ((640, 640), (512, 512), (512, 512)),
    ((500, 333), (768, 512), (768, 512)),
])
def test_input_sizes_official_and_gears(image_wh, official_wh, gear_wh) -> None:
    w, h = image_wh
    size, center, scale = resize_params(h, w, 512)
    assert size == official_wh
    assert tuple(center) == (int(w / 2 + 0.5), int(h / 2 + 0.5))
    gsize, gcenter, gscale = resize_params(h, w, 512, gears=W32_GEARS)
    assert gsize == gear_wh
    assert (gsize[1], gsize[0]) in W32_GEARS
    # uniform zoom: the short side always maps to 512 (pad or crop the long side only)
    zoom = gsize[0] / (gscale[0] * 200)
    assert zoom == pytest.approx(512 / min(w, h))


def test_gear_snapping_rounds_up_and_clamps() -> None:
    assert [snap_to_gear(v, (512, 768, 1024)) for v in (512, 576, 704, 768, 832, 960, 1024, 1088, 1408)] == \
        [512, 768, 768, 768, 1024, 1024, 1024, 1024, 1024]


def test_multi_scale_sizes_follow_official() -> None:
    assert resize_params(480, 640, 512, 0.5)[0] == (352, 256)
    assert resize_params(480, 640, 512, 2.0)[0] == (1408, 1024)


def test_flip_shift_is_the_official_tensor_operation() -> None:
    x = torch.randn(1, 3, 8, 11)
    want = torch.flip(x, [3])
    want[:, :, :, :-3] = want[:, :, :, 3:].clone()
    np.testing.assert_array_equal(flip_shift(x[0].numpy()), want[0].numpy())


def test_prepare_matches_official_preprocessing(spec) -> None:
    image = np.random.default_rng(0).integers(0, 256, (300, 451, 3), dtype=np.uint8)
    pipe = spec.pipeline(spec.variant("w32"), {}, runtime=PipelineRuntime())
    items = pipe.prepare(Sample(SampleRef("x", Path("x.jpg")), image))
    assert [it.meta["flip"] for it in items] == [False, True]
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    size, center, scale = resize_params(300, 451, 512)
    trans = official.get_affine_transform(center, scale, size)
    warped = cv2.warpAffine(rgb, trans, size)
    t = torch.from_numpy(warped).permute(2, 0, 1).float().div(255)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    want = ((t - mean) / std).numpy()
    assert items[0].tensor.shape == want.shape == (3, 512, 832)
    np.testing.assert_allclose(items[0].tensor, want, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(items[1].tensor, flip_shift(items[0].tensor))
    assert items[0].meta["base_size"] == [832, 512]


def test_gears_come_from_the_runtime(spec) -> None:
    image = np.zeros((480, 640, 3), np.uint8)
    pipe = spec.pipeline(spec.variant("w32"), {"flip": "false"}, runtime=PipelineRuntime(sizes=tuple(W32_GEARS)))
    items = pipe.prepare(Sample(SampleRef("x", Path("x.jpg")), image))
    assert len(items) == 1 and items[0].tensor.shape == (3, 512, 768)
    assert items[0].meta["base_size"] == [768, 512]
    assert pipe.params["gears"] == [tuple(g) for g in W32_GEARS]
    with pytest.raises(UserError, match="multi-scale"):
        spec.pipeline(spec.variant("w32"), {"scales": "0.5,1,2"}, runtime=PipelineRuntime(sizes=tuple(W32_GEARS)))
    with pytest.raises(UserError, match="must include 1"):
        spec.pipeline(spec.variant("w32"), {"scales": "0.5,2"}, runtime=PipelineRuntime())
    with pytest.raises(UserError, match="no compiled size gear"):
        spec.pipeline(spec.variant("w32"), {}, runtime=PipelineRuntime(sizes=((640, 960),))).prepare(
            Sample(SampleRef("x", Path("x.jpg")), image))


def test_postprocess_cost_at_512x768(spec, rescore_state, tmp_path: Path) -> None:
    """finish() on realistic 128 x 192 outputs (original + flipped run, 12 people): the
    post-processing budget is 10 % of the per-image time (a 310P3 runs the w32 pair of
    inferences in ~130 ms, onnxruntime on 2 CPU cores in seconds)."""
    from hrdeploy_dekr.rescore import Rescorer

    npz = tmp_path / "r.rescore.npz"
    npz.write_bytes(Rescorer({k: v.numpy() for k, v in rescore_state.items()}).to_npz_bytes())
    pipe = spec.pipeline(spec.variant("w32"), {}, runtime=PipelineRuntime(files={"rescore.npz": npz}))
    assert pipe.params["rescore"].startswith("on")
    image = np.zeros((512, 768, 3), np.uint8)
    ref = SampleRef("x", Path("x.jpg"))
    items = pipe.prepare(Sample(ref, image))
    rng = np.random.default_rng(0)
    hm, off, hm_f, off_f = scale_outputs(random_people(12, 768, 512, rng), 768, 512, 1.0, rng)
    outputs = [{"heatmap": hm[None], "offset": off[None]}, {"heatmap": hm_f[None], "offset": off_f[None]}]
    pred = pipe.finish(ref, items, outputs)
    assert 8 <= len(pred["people"]) <= 12
    times = []
    for _ in range(15):
        t0 = time.perf_counter()
        pipe.finish(ref, items, outputs)
        times.append(time.perf_counter() - t0)
    t_pre = []
    for _ in range(5):
        t0 = time.perf_counter()
        pipe.prepare(Sample(ref, image))
        t_pre.append(time.perf_counter() - t0)
    ms, pre_ms = 1e3 * float(np.min(times)), 1e3 * float(np.min(t_pre))
    print(f"\npost-processing at 512x768 (flip, 12 people, rescoring): best of 15 {ms:.2f} ms; "
          f"pre-processing {pre_ms:.2f} ms")
    assert ms < 50
