"""End to end on a generated COCO set: Dataset -> Pipeline -> onnxruntime (a constant-output
ONNX model whose keypoints are known in closed form) -> Metric, with exact expected AP.

The builders live in :mod:`hrdeploy_hrnet_pose.synthetic` so the CLI tests can reuse them:
``build_synthetic_coco(dir)`` and ``build_constant_heatmap_onnx(path, metadata=onnx_metadata_for())``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hrdeploy.errors import UserError
from hrdeploy.io import read_image
from hrdeploy.model import Sample, SampleRef
from hrdeploy.tasks.pose import RESULTS_FILE, STAT_NAMES
from hrdeploy_hrnet_pose.pipeline import decode_heatmaps, flip_average
from hrdeploy_hrnet_pose.spec import HRNetPoseSpec
from hrdeploy_hrnet_pose.synthetic import (build_constant_heatmap_onnx, build_synthetic_coco, constant_heatmaps,
                                           expected_heatmap_coords, expected_keypoints, onnx_metadata_for)

SPEC = HRNetPoseSpec()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("synthetic")
    info = build_synthetic_coco(root / "coco")
    info["onnx"] = build_constant_heatmap_onnx(root / "constant_w32_256x192.onnx", metadata=onnx_metadata_for())
    return info


@pytest.fixture(scope="module")
def session(synthetic: dict[str, Any]) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(synthetic["onnx"]), providers=["CPUExecutionProvider"])


def run(session: Any, refs: list[SampleRef], options: dict[str, Any], batch: int = 3) -> list[dict[str, Any]]:
    """What the core does: prepare every image, run items in batches, finish per image."""
    pipe = SPEC.pipeline(SPEC.variant("w32_256x192"), options)
    prepared = [(ref, pipe.prepare(Sample(ref, read_image(ref.path)))) for ref in refs]
    flat = [it for _, items in prepared for it in items]
    outputs: list[np.ndarray] = []
    for i in range(0, len(flat), batch):
        outputs.extend(session.run(None, {"image": np.stack([it.tensor for it in flat[i:i + batch]])})[0])
    preds, k = [], 0
    for ref, items in prepared:
        outs = [{"heatmaps": o} for o in outputs[k:k + len(items)]]
        k += len(items)
        preds.append(pipe.finish(ref, items, outs))
    return preds


def test_constant_heatmaps_survive_the_flip_test_and_decode_as_designed() -> None:
    hm = constant_heatmaps()[None]
    assert np.abs(flip_average(hm, hm) - hm).max() < 1e-6
    coords, maxvals = decode_heatmaps(flip_average(hm, hm))
    np.testing.assert_array_equal(coords[0], expected_heatmap_coords())
    assert sorted(set(np.round(maxvals.ravel(), 6))) == [0.1, 0.5, 0.9]


def test_constant_onnx_model_runs_with_any_batch(session: Any) -> None:
    for n in (1, 4):
        out = session.run(None, {"image": np.zeros((n, 3, 256, 192), np.float32)})[0]
        assert out.shape == (n, 17, 64, 48)
        np.testing.assert_array_equal(out[-1], constant_heatmaps())


@pytest.mark.parametrize("mode", ["detections", "gt"])
def test_eval_gives_the_known_keypoints_and_ap(synthetic: dict[str, Any], session: Any, mode: str) -> None:
    options = {"gt_boxes": True} if mode == "gt" else {}    # detections: found under the dataset root
    dataset = SPEC.dataset("coco", synthetic["root"], options)
    expected = synthetic["expected_gt" if mode == "gt" else "expected_detections"]
    refs = list(dataset)
    assert [int(r.info["image_id"]) for r in refs] == sorted(expected)
    metric = dataset.metric()
    for ref, pred in zip(refs, run(session, refs, options)):
        want = expected[int(ref.info["image_id"])]
        assert len(pred["people"]) == len(want)
        for got, exp in zip(pred["people"], want):
            assert got["box"] == exp["box"]
            np.testing.assert_allclose(got["keypoints"], exp["keypoints"], atol=1e-3)
            assert got["score"] == pytest.approx(exp["score"], rel=1e-6)
        metric.update(ref, pred)
    summary = metric.summary()
    stats = synthetic["stats_gt" if mode == "gt" else "stats_detections"]
    for name in STAT_NAMES:
        assert summary[name] == pytest.approx(stats[name], abs=1e-9), name
    assert summary["images"] == synthetic["num_images"]      # every annotated image is evaluated
    results = metric.extra_files()[RESULTS_FILE]
    assert len(results) == summary["results"] == sum(len(v) for v in expected.values())
    assert set(results[0]) == {"image_id", "category_id", "keypoints", "score"}
    json.dumps(results)
    info = dataset.info()
    assert info["box_source"] == ("gt" if mode == "gt" else "detections")
    if mode == "detections":
        assert info["detections_read"] == 6 and info["boxes"] == 5   # the category-2 box is dropped


def test_partial_run_scores_only_the_images_seen(synthetic: dict[str, Any], session: Any) -> None:
    dataset = SPEC.dataset("coco", synthetic["root"], {})
    refs = list(dataset)[:1]
    metric = dataset.metric()
    for ref, pred in zip(refs, run(session, refs, {})):
        metric.update(ref, pred)
    summary = metric.summary()
    assert summary["images"] == 1 and summary["AP"] == pytest.approx(1.0)
    assert "partial" in summary["evaluation"]


def test_no_flip_and_box_threshold(synthetic: dict[str, Any], session: Any) -> None:
    options = {"flip": False, "box_thr": 0.75}
    dataset = SPEC.dataset("coco", synthetic["root"], options)
    refs = list(dataset)
    assert [r.id for r in refs] == ["1"]                    # image 2's boxes score 0.7 and 0.3
    pipe = SPEC.pipeline(SPEC.variant("w32_256x192"), options)
    assert len(pipe.prepare(Sample(refs[0], read_image(refs[0].path)))) == 2   # no mirrored items
    pred = run(session, refs, options)[0]
    np.testing.assert_allclose(pred["people"][0]["keypoints"],
                               synthetic["expected_detections"][1][0]["keypoints"], atol=1e-3)


def test_predict_finds_boxes_by_the_image_id_in_the_file_name(synthetic: dict[str, Any], session: Any) -> None:
    path = synthetic["images"] / "000000000002.png"
    bare = SampleRef(path.name, path, {})
    with_dets = run(session, [bare], {"boxes": str(synthetic["detections"])})[0]
    assert [p["box"] for p in with_dets["people"]] == [p["box"] for p in synthetic["expected_detections"][2]]
    with_gt = run(session, [bare], {"gt_boxes": True, "ann": str(synthetic["ann"])})[0]
    assert [p["box"] for p in with_gt["people"]] == [p["box"] for p in synthetic["expected_gt"][2]]
    whole = run(session, [bare], {})[0]
    assert [p["box"] for p in whole["people"]] == [[0.0, 0.0, 640.0, 480.0]]
    np.testing.assert_allclose(whole["people"][0]["keypoints"], expected_keypoints([0, 0, 640, 480]), atol=1e-3)
    with pytest.raises(UserError, match="needs the annotation file"):
        run(session, [bare], {"gt_boxes": True})


def test_dataset_errors_are_one_line(synthetic: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(UserError, match="choose one box source"):
        SPEC.dataset("coco", synthetic["root"], {"gt_boxes": True, "boxes": str(synthetic["detections"])})
    bare = tmp_path / "coco"
    (bare / "annotations").mkdir(parents=True)
    (bare / "val2017").mkdir()
    (bare / "annotations" / "person_keypoints_val2017.json").write_text(synthetic["ann"].read_text())
    with pytest.raises(UserError, match="needs person boxes"):
        SPEC.dataset("coco", bare, {})
    with pytest.raises(UserError, match="no dataset reader for 'imagenet'"):
        SPEC.dataset("imagenet", bare, {})
    # explicit --ann / --images paths
    ds = SPEC.dataset("coco", tmp_path, {"ann": str(synthetic["ann"]), "images": str(synthetic["images"]),
                                          "boxes": str(synthetic["detections"])})
    assert len(ds) == 2 and all(r.path.is_file() for r in ds)


def test_draw_marks_every_kept_person(synthetic: dict[str, Any], session: Any) -> None:
    from hrdeploy.tasks.pose import LEFT_COLOR, RIGHT_COLOR

    path = synthetic["images"] / "000000000001.png"
    ref = SampleRef(path.name, path, {})
    pred = run(session, [ref], {"boxes": str(synthetic["detections"])})[0]
    image = np.zeros_like(read_image(path))
    drawn = SPEC.draw(image, pred)
    assert drawn.any() and not image.any()                   # drawn on a copy; the input is untouched
    for person in pred["people"]:
        for j, color in ((9, LEFT_COLOR), (10, RIGHT_COLOR)):         # the wrists
            x, y = (int(round(v)) for v in person["keypoints"][j][:2])
            assert (drawn[y, x] == color).all()
