"""Datasets are checked before any inference: every input that used to give a silently wrong
score (or a traceback after the whole run) is refused with one line and exit 2, and nothing
is written. ``--skip-missing`` evaluates the images that exist and records the others."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from classification_data import COLOURS, colour_classifier_onnx, colour_images, imagenet_label_layout
from hrdeploy.errors import UserError


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory) -> Path:
    return colour_classifier_onnx(tmp_path_factory.mktemp("model") / "colour.onnx")


@pytest.fixture(scope="module")
def pose(tmp_path_factory) -> dict:
    from hrdeploy_hrnet_pose.synthetic import build_constant_heatmap_onnx, build_synthetic_coco, onnx_metadata_for

    root = tmp_path_factory.mktemp("pose")
    return {"model": build_constant_heatmap_onnx(root / "const.onnx", metadata=onnx_metadata_for()),
            "build": build_synthetic_coco}


def refused(res, out: Path, *fragments: str) -> str:
    """Exit 2 with one line on stderr holding every fragment, no traceback, nothing written."""
    assert res.code == 2, res
    lines = [ln for ln in res.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res
    assert "Traceback" not in res.err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    assert not out.exists() and not out.with_name(out.name + ".partial.jsonl").exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(out.stem)], list(out.parent.iterdir())
    return lines[0]


def eval_imagenet(run_cli, model: Path, data: Path, out: Path, *args):
    return run_cli("eval", model, "--data", f"imagenet:{data}", "-o", out, *args)


def rewrite_labels(root: Path, edit) -> list[str]:
    path = root / "val_label.txt"
    lines = edit(path.read_text().splitlines())
    path.write_text("\n".join(lines) + "\n")
    return lines


# -- ImageNet label files ---------------------------------------------------------------------------

def test_label_entries_without_an_image_are_counted_and_named(colour_model, tmp_path, run_cli):
    data = tmp_path / "d"
    imagenet_label_layout(data)
    rewrite_labels(data, lambda ls: ls + ["ILSVRC2012_val_00000998.JPEG 100", "ILSVRC2012_val_00000999.JPEG 200"])
    out = tmp_path / "out" / "r.json"
    out.parent.mkdir()
    line = refused(eval_imagenet(run_cli, colour_model, data, out), out, "2 of 14 entries",
                   "ILSVRC2012_val_00000998.JPEG, ILSVRC2012_val_00000999.JPEG", "--skip-missing")
    assert "val_label.txt" in line


def test_skip_missing_evaluates_the_rest_and_records_the_skipped(colour_model, tmp_path, run_cli):
    data = tmp_path / "d"
    items = imagenet_label_layout(data)
    absent = ["ILSVRC2012_val_00000998.JPEG", "ILSVRC2012_val_00000999.JPEG"]
    rewrite_labels(data, lambda ls: ls + [f"{absent[0]} 100", f"{absent[1]} 200"])
    out = tmp_path / "r.json"
    res = eval_imagenet(run_cli, colour_model, data, out, "--skip-missing", "--batch", "4")
    assert res.code == 0, res
    assert "2 missing images skipped" in res.err and absent[0] in res.err and absent[1] in res.err
    r = json.loads(out.read_text())
    assert r["data"]["skipped_missing"] == {"count": 2, "names": absent}
    assert r["metric"]["images"] == len(items) and r["metric"]["top1"] == 100.0


def test_duplicate_entries_are_refused(colour_model, tmp_path, run_cli):
    data = tmp_path / "d"
    imagenet_label_layout(data)
    lines = rewrite_labels(data, lambda ls: ls + ls[:2])
    out = tmp_path / "r.json"
    name = lines[0].split()[0]
    refused(eval_imagenet(run_cli, colour_model, data, out), out, "2 duplicate entries", f"{name} (lines 1 and 13)")


def test_labels_outside_the_models_classes_are_refused(colour_model, tmp_path, run_cli):
    data = tmp_path / "d"
    imagenet_label_layout(data)

    def bad_labels(ls: list[str]) -> list[str]:
        ls[0] = ls[0].rsplit(" ", 1)[0] + " 5000"
        ls[3] = ls[3].rsplit(" ", 1)[0] + " -3"
        return ls

    lines = rewrite_labels(data, bad_labels)
    out = tmp_path / "r.json"
    refused(eval_imagenet(run_cli, colour_model, data, out), out, "2 labels outside the model's 1000 classes",
            f"line 1 {lines[0].split()[0]} 5000", f"line 4 {lines[3].split()[0]} -3")


def test_one_based_labels_get_a_hint(colour_model, tmp_path, run_cli):
    data = tmp_path / "d"
    imagenet_label_layout(data)
    rewrite_labels(data, lambda ls: [ls[0].rsplit(" ", 1)[0] + " 1000", *ls[1:]])
    out = tmp_path / "r.json"
    refused(eval_imagenet(run_cli, colour_model, data, out), out, "1 labels outside", "look 1-based")


# -- ImageNet class folders ---------------------------------------------------------------------------

def class_folders(root: Path) -> dict[str, int]:
    """One folder per colour named by the colour (not a synset id); returns folder -> class."""
    images = colour_images(root / "tmp", per_colour=2)
    out = {}
    for path, label in images:
        name = next(c for c, (_, lab) in COLOURS.items() if lab == label)
        (root / name).mkdir(exist_ok=True)
        path.rename(root / name / path.name)
        out[name] = label
    (root / "tmp").rmdir()
    return out


def test_plain_class_folders_for_a_1000_class_model_are_refused(colour_model, tmp_path, run_cli):
    data = tmp_path / "d"
    class_folders(data)
    out = tmp_path / "r.json"
    refused(eval_imagenet(run_cli, colour_model, data, out), out,
            "3 of 3 class folders are not ImageNet synset ids (blue, green, red)", "1000 classes", "--labels")


def test_class_folders_mapped_by_labels_are_scored(colour_model, tmp_path, run_cli):
    data = tmp_path / "d"
    mapping = class_folders(data)
    labels = tmp_path / "folders.txt"
    labels.write_text("".join(f"{name} {label}\n" for name, label in mapping.items()))
    out = tmp_path / "r.json"
    res = eval_imagenet(run_cli, colour_model, data, out, "--labels", labels)
    assert res.code == 0, res
    r = json.loads(out.read_text())
    assert r["data"]["layout"] == "mapped-folders" and r["metric"]["images"] == 6 and r["metric"]["top1"] == 100.0
    labels.write_text("red 100\n")   # two folders left without a label
    out2 = tmp_path / "r2.json"
    refused(eval_imagenet(run_cli, colour_model, data, out2, "--labels", labels), out2,
            "2 class folders are not in", "blue, green")


# -- another task's dataset ----------------------------------------------------------------------------

def test_imagenet_on_a_coco_folder_names_the_kind_to_use(colour_model, pose, tmp_path, run_cli):
    coco = tmp_path / "coco"
    pose["build"](coco)
    out = tmp_path / "r.json"
    refused(eval_imagenet(run_cli, colour_model, coco, out), out,
            "looks like a COCO dataset (annotations/person_keypoints_val2017.json)", f"--data coco:{coco}")


def test_imagenet_on_a_coco_annotation_file_names_the_kind_to_use(colour_model, pose, tmp_path, run_cli):
    data = pose["build"](tmp_path / "coco")
    out = tmp_path / "r.json"
    refused(eval_imagenet(run_cli, colour_model, data["ann"], out), out,
            "looks like a COCO dataset (person_keypoints_val2017.json)", "--data coco:")


def test_synset_folders_stay_imagenet_next_to_other_files(colour_model, tmp_path, run_cli):
    from classification_data import imagenet_synset_layout

    data = tmp_path / "d"
    items = imagenet_synset_layout(data)
    (data / "annotations").mkdir()
    (data / "annotations" / "boxes.json").write_text("{}")
    out = tmp_path / "r.json"
    res = eval_imagenet(run_cli, colour_model, data, out)
    assert res.code == 0, res
    assert json.loads(out.read_text())["metric"]["images"] == len(items)


def test_label_file_next_to_images_sorted_into_class_folders(colour_model, tmp_path, run_cli):
    from classification_data import imagenet_synset_layout

    data = tmp_path / "d"
    items = imagenet_synset_layout(data)
    (data / "val_label.txt").write_text("".join(f"{p.name} {label}\n" for p, label in items)
                                        + "ILSVRC2012_val_00000999.JPEG 100\n")
    out = tmp_path / "r.json"
    refused(eval_imagenet(run_cli, colour_model, data, out), out,
            f"1 of {len(items) + 1} entries", f"name images not in the class folders of {data / 'val'}")
    res = eval_imagenet(run_cli, colour_model, data, out, "--skip-missing")
    assert res.code == 0, res
    r = json.loads(out.read_text())
    assert r["data"]["layout"] == "label-file" and r["metric"]["images"] == len(items) and r["metric"]["top1"] == 100.0


def test_label_file_that_is_not_utf8_is_refused(colour_model, tmp_path, run_cli):
    data = tmp_path / "d"
    imagenet_label_layout(data, per_colour=1)
    (data / "val_label.txt").write_bytes("ILSVRC2012_val_00000001.JPEG 100 \u00e9\n".encode("latin-1"))
    out = tmp_path / "r.json"
    refused(eval_imagenet(run_cli, colour_model, data, out), out, "val_label.txt is not UTF-8 text")


def test_coco_on_an_imagenet_folder_names_the_kind_to_use(pose, tmp_path, run_cli):
    data = tmp_path / "imagenet"
    imagenet_label_layout(data, per_colour=1)
    out = tmp_path / "r.json"
    res = run_cli("eval", pose["model"], "--data", f"coco:{data}", "-o", out, "--gt-boxes")
    refused(res, out, "looks like an ImageNet dataset (val_label.txt)", f"--data imagenet:{data}")


# -- COCO annotations ---------------------------------------------------------------------------------

def edit_annotations(root: Path, edit) -> None:
    path = root / "annotations" / "person_keypoints_val2017.json"
    gt = json.loads(path.read_text())
    edit(gt)
    path.write_text(json.dumps(gt))


def eval_coco(run_cli, pose, root: Path, out: Path, *args):
    return run_cli("eval", pose["model"], "--data", f"coco:{root}", "-o", out, *args)


def test_annotation_without_keypoints_names_its_id(pose, tmp_path, run_cli):
    data = pose["build"](tmp_path / "coco")
    edit_annotations(tmp_path / "coco", lambda gt: gt["annotations"][1].pop("keypoints"))
    out = tmp_path / "r.json"
    refused(eval_coco(run_cli, pose, tmp_path / "coco", out, "--boxes", data["detections"]), out,
            "person_keypoints_val2017.json: annotation id 2", "has no 'keypoints' field")


@pytest.mark.parametrize("bbox", [[10.0, 20.0, 30.0], [10.0, "20", 30.0, 40.0], [10.0, 20.0, -1.0, 40.0], None])
def test_malformed_bbox_names_the_annotation(bbox, pose, tmp_path, run_cli):
    data = pose["build"](tmp_path / "coco")

    def spoil(gt):
        gt["annotations"][2]["bbox"] = bbox

    edit_annotations(tmp_path / "coco", spoil)
    out = tmp_path / "r.json"
    what = "has no bbox" if bbox is None else "has a malformed bbox"
    refused(eval_coco(run_cli, pose, tmp_path / "coco", out, "--boxes", data["detections"]), out,
            "person_keypoints_val2017.json: annotation id 3", what)


def test_missing_coco_images_are_refused_or_skipped(pose, tmp_path, run_cli):
    data = pose["build"](tmp_path / "coco")
    (tmp_path / "coco" / "val2017" / "000000000002.png").unlink()
    out = tmp_path / "r.json"
    refused(eval_coco(run_cli, pose, tmp_path / "coco", out, "--gt-boxes"), out,
            "1 of 3 images of person_keypoints_val2017.json are not in", "000000000002.png", "--skip-missing")
    res = eval_coco(run_cli, pose, tmp_path / "coco", out, "--gt-boxes", "--skip-missing")
    assert res.code == 0, res
    r = json.loads(out.read_text())
    assert r["data"]["skipped_missing"] == {"count": 1, "names": ["000000000002.png"]}
    # the skipped image leaves the evaluation too: its person would otherwise count as a miss
    assert r["metric"]["images"] == data["num_images"] - 1
    assert r["metric"]["AP"] == pytest.approx(1.0) and r["metric"]["AR"] == pytest.approx(1.0)


# -- limits and empty inputs ---------------------------------------------------------------------------

@pytest.mark.parametrize("limit", ["-1", "0"])
def test_limit_below_one_is_refused(limit, colour_model, tmp_path, run_cli):
    data = tmp_path / "d"
    imagenet_label_layout(data, per_colour=1)
    out = tmp_path / "r.json"
    res = eval_imagenet(run_cli, colour_model, data, out, "--limit", limit)
    assert res.code == 2 and "Traceback" not in res.err and "--limit" in res.err, res
    assert not out.exists() and not out.with_name(out.name + ".partial.jsonl").exists()


@pytest.mark.parametrize("limit", [-1, 0, 1.5])
def test_the_evaluation_itself_refuses_bad_limits(limit, colour_model, tmp_path):
    from hrdeploy.evaluation import evaluate
    from hrdeploy_target_ascend.workflow import score_outputs
    from hrdeploy.plugins import registry
    from hrdeploy.session import open_session

    data = tmp_path / "d"
    imagenet_label_layout(data, per_colour=1)
    out = tmp_path / "r.json"
    session = open_session(registry(), colour_model)
    with session.runner, pytest.raises(UserError, match="--limit must be a whole number >= 1"):
        evaluate(session, f"imagenet:{data}", out, limit=limit, log=lambda _: None)
    with pytest.raises(UserError, match="--limit must be"):
        score_outputs(session.spec, session.variant, f"imagenet:{data}", tmp_path, out, limit=limit)
    assert not out.exists() and not out.with_name(out.name + ".partial.jsonl").exists()


def test_limit_keeps_the_first_images(colour_model, tmp_path, run_cli):
    data = tmp_path / "d"
    imagenet_label_layout(data)
    out = tmp_path / "r.json"
    res = eval_imagenet(run_cli, colour_model, data, out, "--limit", "11")
    assert res.code == 0, res
    assert json.loads(out.read_text())["metric"]["images"] == 11


def test_predict_on_a_folder_without_images_is_refused(colour_model, tmp_path, run_cli):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run_cli("predict", colour_model, empty)
    assert res.code == 2 and "Traceback" not in res.err, res
    lines = [ln for ln in res.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: no images in {empty}") and ".jpg" in lines[0]
    assert res.out == ""
    (empty / "notes.txt").write_text("not an image")
    res = run_cli("predict", colour_model, empty)
    assert res.code == 2 and f"no images in {empty}" in res.err and res.out == "", res
