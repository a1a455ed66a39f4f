"""hrdeploy.tasks.classification: the behaviour that mutation testing (tools/mutation.py) found
unpinned, checked against independently computed values and the documented formats
(models-classification.md section 5: val_label.txt, imagenet_acc_eval.py's result JSON)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from hrdeploy.errors import UserError
from hrdeploy.model import SampleRef, Tolerance
from hrdeploy.tasks.classification import (CLASSIFICATION_TOLERANCES, ClassificationPipeline, ClassificationSpec,
                                           ImageNetDataset, TopKMetric, imagenet_classes, preprocess_image,
                                           softmax)

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
    assert [(r.id, r.info["label"]) for r in ds] == [("ILSVRC2012_val_00000001.JPEG", 999),
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
    assert [r.id for r in ds] == ["a.png", "c.png"]
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
    assert [(r.id, r.info["label"]) for r in ds] == [("1.png", 281), ("2.png", 281), ("3.png", 207)]


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
    assert [(r.id, r.info["label"]) for r in ds] == [("a.png", 0), ("b.png", 5)]
    assert [(r.id, r.info["label"]) for r in ImageNetDataset(tmp_path)] == [("a.png", 0), ("b.png", 5)]
    with pytest.raises(UserError, match="synset folders name ImageNet's 1000 classes, the model has 10"):
        ImageNetDataset(tmp_path, num_classes=10)


def test_other_class_folders_need_exactly_as_many_classes(tmp_path: Path) -> None:
    _images(tmp_path / "b_dog", ["1.png"])
    _images(tmp_path / "a_cat", ["2.png"])
    ds = ImageNetDataset(tmp_path, num_classes=2)
    assert ds.layout == "class-folders"
    assert [(r.id, r.info["label"]) for r in ds] == [("2.png", 0), ("1.png", 1)]
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

def test_topk_summary_has_top1_to_top5_in_the_ascend_eval_format() -> None:
    m = TopKMetric(num_classes=1000)
    for label, ranked in ((3, [3, 1, 2, 4, 5]), (4, [1, 2, 3, 4, 5]), (9, [1, 2, 3, 4, 5]), (1, [0, 1, 2, 3, 4])):
        m.update(SampleRef("x", None, info={"label": label}), {"top_k": [{"index": i} for i in ranked]})
    s = m.summary()
    want = [25.0, 50.0, 50.0, 75.0, 75.0]   # cumulative, by hand
    assert [k for k in s if k.startswith("top")] == ["top1", "top2", "top3", "top4", "top5"]
    assert [s[f"top{i}"] for i in range(1, 6)] == want
    assert s["ascend_format"] == {"title": "Overall statistical evaluation", "value": [
        {"key": "Number of images", "value": "4"}, {"key": "Number of classes", "value": "1000"},
        {"key": "Top1 accuracy", "value": "25.00%"}, {"key": "Top2 accuracy", "value": "50.00%"},
        {"key": "Top3 accuracy", "value": "50.00%"}, {"key": "Top4 accuracy", "value": "75.00%"},
        {"key": "Top5 accuracy", "value": "75.00%"}]}
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
