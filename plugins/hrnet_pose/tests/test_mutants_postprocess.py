"""Top-down pose pre/post-processing: the behaviour mutation testing (tools/mutation.py) found
unpinned, checked against torchvision's formulas, the official rules (models-pose.md 5.1) and
values computed by hand."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hrdeploy.errors import UserError
from hrdeploy.model import Sample, SampleRef
from hrdeploy_hrnet_pose.pipeline import TopDownPosePipeline, normalise_crops, rescore

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def test_crops_are_normalised_as_totensor_then_normalize() -> None:
    rng = np.random.default_rng(4)
    crops = rng.integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    want = ((crops / 255.0 - MEAN) / STD).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(normalise_crops(crops), want, atol=2e-6)


def test_rescoring_with_a_single_joint_above_the_threshold() -> None:
    maxvals = np.full((2, 17, 1), 0.1, np.float32)
    maxvals[0, 3] = 0.8                       # person 0: one joint above 0.2 -> its mean is 0.8
    np.testing.assert_allclose(rescore(maxvals, np.array([0.5, 0.9])), [0.5 * np.float32(0.8), 0.0])


def test_recorded_parameters() -> None:
    assert TopDownPosePipeline((192, 256)).params["scale"] == 1 / 255
    assert TopDownPosePipeline((192, 256)).params["post_process"] == "argmax + quarter-pixel"
    assert TopDownPosePipeline((192, 256), post_process=False).params["post_process"] == "argmax"


def _heatmaps(peak_xy: tuple[int, int]) -> np.ndarray:
    hm = np.zeros((17, 64, 48), np.float32)      # one item's output: no batch axis
    hm[:, peak_xy[1], peak_xy[0]] = 0.9
    return hm


def _run(pipe: TopDownPosePipeline, refs: list[SampleRef], names: tuple[str, ...] = ("heatmaps",)
         ) -> list[dict]:
    items = [pipe.prepare(Sample(r, np.zeros((120, 160, 3), np.uint8))) for r in refs]
    outs = [[{n: _heatmaps((10 + 5 * k, 20)) for n in names} for _ in its] for k, its in enumerate(items)]
    return pipe.finish_batch(refs, items, outs)


def test_a_batch_of_images_decodes_like_each_image_alone() -> None:
    pipe = TopDownPosePipeline((192, 256))
    refs = [SampleRef(str(i), Path(f"{i}.jpg"), {"image_id": i, "boxes": [[10.0 * i, 5.0, 60.0, 90.0, 0.8]]})
            for i in (1, 2)]
    together = _run(pipe, refs)
    alone = [_run(pipe, [r])[0] for r in refs]
    assert [len(r["people"]) for r in together] == [1, 1]
    assert together[0] == alone[0]
    # the second image's heatmap peak is 5 columns further right: its joints are elsewhere
    assert together[1]["people"][0]["keypoints"] != alone[0]["people"][0]["keypoints"]


def test_a_single_output_of_another_name_is_the_heatmap_and_two_are_ambiguous() -> None:
    pipe = TopDownPosePipeline((192, 256), flip=False)
    ref = SampleRef("1", Path("1.jpg"), {"image_id": 1, "boxes": [[10.0, 5.0, 60.0, 90.0, 0.8]]})
    assert _run(pipe, [ref], ("output",)) == _run(pipe, [ref])
    with pytest.raises(UserError, match=r"no output 'heatmaps' \(outputs: a, b\)"):
        _run(pipe, [ref], ("a", "b"))


def test_an_image_without_people_does_not_end_the_batch() -> None:
    pipe = TopDownPosePipeline((192, 256))
    refs = [SampleRef("1", Path("1.jpg"), {"image_id": 1, "boxes": []}),
            SampleRef("2", Path("2.jpg"), {"image_id": 2, "boxes": [[10.0, 5.0, 60.0, 90.0, 0.8]]})]
    assert [len(r["people"]) for r in _run(pipe, refs)] == [0, 1]


def test_the_box_source_is_recorded(tmp_path: Path) -> None:
    dets = tmp_path / "dets.json"
    dets.write_text("[]")
    assert TopDownPosePipeline((192, 256), boxes=dets).params["box_source"] == f"detections {dets}"
    assert TopDownPosePipeline((192, 256)).params["box_source"] == "dataset boxes, else the whole image"
