"""hrdeploy.tasks.classification: the behaviour that mutation testing (tools/mutation.py) found
unpinned, checked against independently computed values and the documented formats
(models-classification.md section 5: val_label.txt, imagenet_acc_eval.py's result JSON)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from hrdeploy.errors import UserError
from hrdeploy.model import Sample, SampleRef, Tolerance
from hrdeploy.tasks.classification import (CLASSIFICATION_TOLERANCES, ClassificationPipeline, ClassificationSpec,
                                           ImageNetDataset, TopKMetric, classification_variant, imagenet_classes,
                                           preprocess_image, resize_short_crop, softmax)

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def _images(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for n in names:
        cv2.imwrite(str(folder / n), np.full((4, 4, 3), 90, np.uint8))
        out.append(folder / n)
    return out


def _label_layout(root: Path, rows: list[tuple[str, int]], images: list[str] | None = None) -> Path:
    _images(root / "ILSVRC2012_img_val", images if images is not None else [n for n, _ in rows])
    (root / "val_label.txt").write_text("".join(f"{n} {lab}\n" for n, lab in rows))
    return root


# -- preprocessing and top-k -------------------------------------------------------------------------

def test_preprocess_scales_by_1_over_255_by_default() -> None:
    rng = np.random.default_rng(3)
    bgr = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    params = {"resize_short": 256, "crop": 224, "mean": list(MEAN), "std": list(STD)}   # no "scale", no "color"
    got = preprocess_image(bgr, params)
    # the 256 x 256 image needs no resize: torchvision's CenterCrop offset is round(32 / 2) = 16
    rgb = bgr[16:240, 16:240, ::-1].astype(np.float64)
    want = ((rgb / 255.0 - MEAN) / STD).transpose(2, 0, 1)
    np.testing.assert_allclose(got, want, atol=2e-6)


def test_softmax_of_large_logits_is_finite_and_exact() -> None:
    p = softmax(np.array([[1000.0, 999.0, 0.0]], np.float32))
    e = np.exp(-1.0)
    np.testing.assert_allclose(p[0], [1 / (1 + e), e / (1 + e), 0.0], rtol=1e-6, atol=1e-30)


def test_top_k_names_class_0_and_numbers_unknown_indices() -> None:
    pipe = ClassificationPipeline({}, "logits", top_k=2, class_names=["zero", "one"])
    logits = np.array([5.0, 1.0, 3.0], np.float32)      # index 2 has no name
    top = pipe.finish_batch([SampleRef("a", None)], [[]], [[{"logits": logits}]])[0]["top_k"]
    assert [(t["index"], t["name"]) for t in top] == [(0, "zero"), (2, "2")]


# -- label files ------------------------------------------------------------------------------------------

def test_label_file_layout_reads_0_based_labels(tmp_path: Path) -> None:
    root = _label_layout(tmp_path, [("ILSVRC2012_val_00000002.JPEG", 0), ("ILSVRC2012_val_00000001.JPEG", 999)])
    ds = ImageNetDataset(root)
    assert ds.layout == "label-file"
    assert [(r.path.name, r.info["label"]) for r in ds] == [("ILSVRC2012_val_00000001.JPEG", 999),
                                                     ("ILSVRC2012_val_00000002.JPEG", 0)]
    assert "skipped_missing" not in ds.info()


def test_an_explicit_label_file_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    _images(tmp_path / "val", ["a.png"])
    with pytest.raises(UserError, match="label file not found"):
        ImageNetDataset(tmp_path, tmp_path / "nope.txt")


def test_a_label_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    _images(tmp_path / "val", ["a.png"])
    (tmp_path / "val_label.txt").write_bytes(b"a.png 1\n\xff\xfe 2\n")
    with pytest.raises(UserError, match="is not UTF-8 text"):
        ImageNetDataset(tmp_path)


@pytest.mark.parametrize("text, line", [("a.png 1\nb.png\n", 2), ("a.png 1\n\nb.png x\n", 3), ("a.png 1 \n3\n", 2)])
def test_malformed_lines_are_refused_with_their_1_based_number(tmp_path: Path, text: str, line: int) -> None:
    _images(tmp_path / "val", ["a.png", "b.png"])
    (tmp_path / "val_label.txt").write_text(text)
    with pytest.raises(UserError, match=rf"val_label.txt:{line}: expected 'IMAGE_NAME LABEL'"):
        ImageNetDataset(tmp_path)


def test_duplicate_entries_name_both_lines(tmp_path: Path) -> None:
    _label_layout(tmp_path, [("a.png", 1), ("b.png", 2), ("a.JPEG", 3)], images=["a.png", "b.png"])
    with pytest.raises(UserError, match=r"1 duplicate entries: a.JPEG \(lines 1 and 3\)"):
        ImageNetDataset(tmp_path)


def test_labels_outside_the_classes_say_whether_they_look_1_based(tmp_path: Path) -> None:
    names = ["a.png", "b.png", "c.png"]
    _label_layout(tmp_path, list(zip(names, [1, 2, 3])))
    with pytest.raises(UserError, match=r"1 labels outside the model's 3 classes \(0..2\): line 3 c.png 3") as e:
        ImageNetDataset(tmp_path, num_classes=3)
    assert "look 1-based" in e.value.hint
    for labels in ([0, 2, 3], [1, 2, 4]):
        (tmp_path / "val_label.txt").write_text("".join(f"{n} {lab}\n" for n, lab in zip(names, labels)))
        with pytest.raises(UserError) as e:
            ImageNetDataset(tmp_path, num_classes=3)
        assert e.value.hint == "labels are 0-based class indices of the model", labels


def test_missing_images_are_refused_or_skipped_and_listed(tmp_path: Path) -> None:
    _label_layout(tmp_path, [("a.png", 1), ("b.png", 2), ("c.png", 3)], images=["a.png", "c.png"])
    with pytest.raises(UserError, match=r"1 of 3 entries of .*val_label.txt name images not in .*: b.png"):
        ImageNetDataset(tmp_path)
    ds = ImageNetDataset(tmp_path, skip_missing=True)
    assert [r.path.name for r in ds] == ["a.png", "c.png"]
    assert ds.info()["skipped_missing"] == {"count": 1, "names": ["b.png"]}


def test_images_folder_beside_the_label_file(tmp_path: Path) -> None:
    _images(tmp_path / "images", ["x.png"])
    (tmp_path / "val_label.txt").write_text("x.png 7\n")
    assert [(r.path, r.info["label"]) for r in ImageNetDataset(tmp_path)] == [(tmp_path / "images" / "x.png", 7)]


# -- class folders ------------------------------------------------------------------------------------------

def test_mapped_folders_take_their_labels_from_the_file(tmp_path: Path) -> None:
    _images(tmp_path / "cat", ["1.png", "2.png"])
    _images(tmp_path / "dog", ["3.png"])
    (tmp_path / "val_label.txt").write_text("cat 281\ndog 207\n")
    ds = ImageNetDataset(tmp_path)
    assert ds.layout == "mapped-folders"
    assert [(r.path.name, r.info["label"]) for r in ds] == [("1.png", 281), ("2.png", 281), ("3.png", 207)]


def test_mapped_folders_unmapped_or_missing_are_refused(tmp_path: Path) -> None:
    _images(tmp_path / "cat", ["1.png"])
    _images(tmp_path / "dog", ["3.png"])
    (tmp_path / "val_label.txt").write_text("cat 281\n")
    with pytest.raises(UserError, match="1 class folders are not in .*val_label.txt: dog"):
        ImageNetDataset(tmp_path)
    (tmp_path / "val_label.txt").write_text("cat 281\ndog 207\nfox 277\n")
    with pytest.raises(UserError, match="1 of 3 entries .* name folders not in .*: fox"):
        ImageNetDataset(tmp_path)
    ds = ImageNetDataset(tmp_path, skip_missing=True)
    assert [r.info["label"] for r in ds] == [281, 207] and ds.skipped == ["fox"]


def test_synset_folders_under_val_take_the_standard_order(tmp_path: Path) -> None:
    wnids = [w for w, _ in imagenet_classes()]
    _images(tmp_path / "val" / wnids[0], ["a.png"])
    _images(tmp_path / "val" / wnids[5], ["b.png"])
    spec = ClassificationSpec()
    ds = spec.dataset("imagenet", tmp_path)
    assert ds.layout == "synset-folders" and ds.num_classes == 1000
    assert [(r.path.name, r.info["label"]) for r in ds] == [("a.png", 0), ("b.png", 5)]
    assert [(r.path.name, r.info["label"]) for r in ImageNetDataset(tmp_path)] == [("a.png", 0), ("b.png", 5)]
    with pytest.raises(UserError, match="synset folders name ImageNet's 1000 classes, the model has 10"):
        ImageNetDataset(tmp_path, num_classes=10)


def test_other_class_folders_need_exactly_as_many_classes(tmp_path: Path) -> None:
    _images(tmp_path / "b_dog", ["1.png"])
    _images(tmp_path / "a_cat", ["2.png"])
    ds = ImageNetDataset(tmp_path, num_classes=2)
    assert ds.layout == "class-folders"
    assert [(r.path.name, r.info["label"]) for r in ds] == [("2.png", 0), ("1.png", 1)]
    with pytest.raises(UserError, match="2 of 2 class folders are not ImageNet synset ids"):
        ImageNetDataset(tmp_path, num_classes=3)


def test_spec_dataset_passes_the_labels_option(tmp_path: Path) -> None:
    _images(tmp_path / "val", ["a.png"])
    (tmp_path / "mine.txt").write_text("a.png 12\n")
    ds = ClassificationSpec().dataset("imagenet", tmp_path, {"labels": str(tmp_path / "mine.txt")})
    assert [r.info["label"] for r in ds] == [12]


def test_a_coco_folder_or_a_file_is_not_an_imagenet_dataset(tmp_path: Path) -> None:
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "person_keypoints_val2017.json").write_text("{}")
    with pytest.raises(UserError, match="coco"):
        ImageNetDataset(tmp_path)
    f = tmp_path / "x.txt"
    f.write_text("")
    with pytest.raises(UserError, match="is a file, not a dataset folder"):
        ImageNetDataset(f)


# -- metric and task check -------------------------------------------------------------------------------

def test_topk_summary_has_cumulative_top1_to_top5() -> None:
    m = TopKMetric(num_classes=1000)
    for label, ranked in ((3, [3, 1, 2, 4, 5]), (4, [1, 2, 3, 4, 5]), (9, [1, 2, 3, 4, 5]), (1, [0, 1, 2, 3, 4])):
        m.update(SampleRef("x", None, info={"label": label}), {"top_k": [{"index": i} for i in ranked]})
    s = m.summary()
    want = [25.0, 50.0, 50.0, 75.0, 75.0]   # cumulative, by hand
    assert [k for k in s if k.startswith("top")] == ["top1", "top2", "top3", "top4", "top5"]
    assert [s[f"top{i}"] for i in range(1, 6)] == want
    assert "ascend_format" not in s  # the Ascend layout belongs to the ascend target's `ascend score`
    assert m.rows(s) == [("top-1", "25.00 %"), ("top-2", "50.00 %"), ("top-3", "50.00 %"), ("top-4", "75.00 %"),
                         ("top-5", "75.00 %"), ("images", "4")]


def test_fp32_task_check_passes_identical_outputs_and_reports_the_overlap() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(2, 1, 1000)).astype(np.float32)     # (N, 1, C): flattened per sample
    spec = ClassificationSpec()
    same = spec.task_check(None, [ref], [ref.copy()], CLASSIFICATION_TOLERANCES["fp32"])
    assert same.passed and same.value == 1.0
    assert same.text == "top-1 agreement 100.0% (top-5 overlap 100.0%) on 2 inputs"
    # sample 0: top-1 moved elsewhere and 2 of its top-5 replaced; sample 1 unchanged
    got = ref.copy()
    order = np.argsort(-ref[0, 0])
    got[0, 0, order[0]] = ref[0, 0, order[-1]] - 1
    got[0, 0, order[1]] = ref[0, 0, order[-1]] - 2
    check = spec.task_check(None, [ref], [got], Tolerance(task=1.0))
    assert not check.passed and check.value == 0.5
    assert check.text == "top-1 agreement 50.0% (top-5 overlap 80.0%) on 2 inputs"
    assert spec.task_check(None, [ref], [got], Tolerance()).passed


# -- more of the preprocessing contract ---------------------------------------------------------------

def test_the_variant_records_the_documented_imagenet_preprocessing() -> None:
    """models-classification.md 5: short side 256, centre crop 224, /255, ImageNet mean/std, RGB, CHW."""
    pre = classification_variant("x").preprocess
    assert pre == {"resize_short": 256, "crop": 224, "interpolation": "pil-bilinear", "color": "rgb",
                   "scale": 1 / 255, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "layout": "NCHW"}


def test_resize_refuses_a_short_side_below_the_crop_and_unknown_filters() -> None:
    image = np.zeros((300, 400, 3), np.uint8)
    with pytest.raises(UserError, match="resize_short 200 is smaller than the crop 224"):
        resize_short_crop(image, 200, 224, "pil-bilinear")
    with pytest.raises(UserError, match="unknown interpolation 'nearest'"):
        resize_short_crop(image, 256, 224, "nearest")


def test_an_image_already_at_the_short_side_is_only_cropped() -> None:
    rng = np.random.default_rng(8)
    for h, w in ((256, 300), (300, 256)):
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        top, left = round((h - 224) / 2), round((w - 224) / 2)
        for interp in ("pil-bilinear", "cv2-linear"):
            out = resize_short_crop(image, 256, 224, interp)
            np.testing.assert_array_equal(out, image[top:top + 224, left:left + 224])


def test_bgr_models_keep_the_channel_order() -> None:
    bgr = np.random.default_rng(9).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    params = {"resize_short": 256, "crop": 224, "mean": [0.0] * 3, "std": [1.0] * 3, "scale": 1.0, "color": "bgr"}
    np.testing.assert_array_equal(preprocess_image(bgr, params), bgr[16:240, 16:240].transpose(2, 0, 1))


def test_pipeline_options_and_recorded_parameters() -> None:
    v = classification_variant("x")
    pipe = ClassificationSpec().pipeline(v, {"interpolation": "cv2-linear", "top_k": 3})
    assert pipe.pre["interpolation"] == "cv2-linear" and pipe.top_k == 3
    assert pipe.params == {**v.preprocess, "interpolation": "cv2-linear", "top_k": 3, "postprocess": "softmax"}
    assert ClassificationSpec().pipeline(v).top_k == 5 and ClassificationSpec().pipeline(v).pre == v.preprocess
    image = np.zeros((300, 400, 3), np.uint8)
    items = pipe.prepare(Sample(SampleRef("a", None), image))
    assert len(items) == 1 and items[0].tensor.shape == (3, 224, 224)


def test_missing_or_empty_dataset_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="dataset folder not found"):
        ImageNetDataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no labelled images found under"):
        ImageNetDataset(tmp_path / "empty")
    (tmp_path / "lonely").mkdir()
    (tmp_path / "lonely" / "val_label.txt").write_text("a.png 1\n")
    with pytest.raises(UserError, match="no image folder next to"):
        ImageNetDataset(tmp_path / "lonely")


def test_negative_labels_are_out_of_range_and_the_info_names_the_layout(tmp_path: Path) -> None:
    _label_layout(tmp_path, [("a.png", -1)])
    with pytest.raises(UserError, match="line 1 a.png -1"):
        ImageNetDataset(tmp_path)
    (tmp_path / "val_label.txt").write_text("a.png 4\n")
    info = ImageNetDataset(tmp_path, num_classes=5).info()
    assert (info["layout"], info["classes"]) == ("label-file", 5)
    assert isinstance(ImageNetDataset(tmp_path).metric(), TopKMetric)


def test_draw_writes_the_top_3_in_white_outlined_in_black_without_touching_the_input() -> None:
    image = np.full((600, 800, 3), 128, np.uint8)     # 600 px: scale 1, a 4 px outline
    top = [{"index": i, "name": f"class {i}, other", "score": s} for i, s in ((1, 0.5), (2, 0.3), (3, 0.1), (4, 0.05))]
    out = ClassificationSpec().draw(image, {"top_k": top})
    assert (image == 128).all()
    colours = {tuple(c) for c in out.reshape(-1, 3)}
    assert (255, 255, 255) in colours and min(colours) < (64, 64, 64)     # white text, dark outline
    rows = np.nonzero((out != 128).any(axis=(1, 2)))[0]
    assert rows.min() > 0 and rows.max() < 120       # three lines of text at the top


@pytest.mark.parametrize("hw, top, left", [((256, 259), 16, 18), ((259, 256), 18, 16), ((256, 291), 16, 34)])
def test_centre_crop_offsets_round_as_torchvision(hw: tuple[int, int], top: int, left: int) -> None:
    """torchvision CenterCrop: int(round((size - crop) / 2.0)), Python's round (17.5 -> 18)."""
    image = np.random.default_rng(12).integers(0, 256, (*hw, 3), dtype=np.uint8)
    np.testing.assert_array_equal(resize_short_crop(image, 256, 224, "cv2-linear"),
                                  image[top:top + 224, left:left + 224])


def test_a_short_side_equal_to_the_crop_is_allowed() -> None:
    image = np.random.default_rng(13).integers(0, 256, (224, 300, 3), dtype=np.uint8)
    assert resize_short_crop(image, 224, 224, "pil-bilinear").shape == (224, 224, 3)


def test_a_label_file_wins_over_a_stray_annotations_folder(tmp_path: Path) -> None:
    _label_layout(tmp_path / "a", [("x.png", 3)])
    (tmp_path / "a" / "annotations").mkdir()
    (tmp_path / "a" / "annotations" / "person_keypoints_val2017.json").write_text("{}")
    assert [r.info["label"] for r in ImageNetDataset(tmp_path / "a")] == [3]


def test_accuracies_keep_4_decimals() -> None:
    m = TopKMetric()
    for label in (1, 2, 3):
        m.update(SampleRef("x", None, info={"label": label}), {"top_k": [{"index": 1}]})
    assert m.summary()["top1"] == 33.3333


def test_prediction_check_of_each_top_k_entry() -> None:
    m = TopKMetric()
    assert m.check_prediction({"top_k": [{"index": 0, "name": "tench", "score": 0.5}]}) is None
    assert m.check_prediction({"top_k": [{"index": 3, "score": 1}]}) is None            # name optional
    for bad, says in (([], "expected"), ({"top_k": []}, "expected"), ({"top_k": {"index": 1}}, "expected"),
                      ({"top_k": [[1, 0.5]]}, "top_k[0] is not an"), ({"top_k": [{"index": 1}]}, "is not an"),
                      ({"top_k": [{"index": -1, "score": 0.1}]}, "index is -1, not a class index"),
                      ({"top_k": [{"index": 1, "score": 0.1, "name": 5}]}, "name is 5, not a string")):
        assert says in (m.check_prediction(bad) or ""), bad


def test_the_top5_overlap_counts_the_first_five_only() -> None:
    ref = np.random.default_rng(14).normal(size=(1, 1000)).astype(np.float32)
    order = np.argsort(-ref[0])
    got = ref.copy()
    got[0, order[4]] = (ref[0, order[5]] + ref[0, order[6]]) / 2     # 5th place drops to 6th
    check = ClassificationSpec().task_check(None, [ref], [got], Tolerance(task=1.0))
    assert check.passed and check.text == "top-1 agreement 100.0% (top-5 overlap 80.0%) on 1 inputs"
