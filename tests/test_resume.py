"""``eval --resume`` is exact: an interrupted evaluation continued gives the metrics and the
predictions of an uninterrupted one, or is refused (exit 2, the partial file untouched) with
what changed; ``--restart`` starts again. Runs interrupt deterministically after N samples."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from classification_data import colour_classifier_onnx, colour_images, imagenet_label_layout

#: fields that differ between two runs of the same evaluation
VOLATILE = ("timing", "created")


@contextlib.contextmanager
def interrupted_after(n: int) -> Iterator[None]:
    """Ctrl-C after the stream has delivered ``n`` predictions."""
    import hrdeploy.stream as engine

    real = engine.Stream._finish_ready
    seen = {"n": 0}

    def finish_then_interrupt(self: Any, waiting: Any, final: Any) -> Iterator[Any]:
        for item in real(self, waiting, final):
            if seen["n"] == n:
                raise KeyboardInterrupt
            seen["n"] += 1
            yield item

    engine.Stream._finish_ready = finish_then_interrupt
    try:
        yield
    finally:
        engine.Stream._finish_ready = real


@pytest.fixture
def scored(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Every (sample id, prediction) the classification metric is given, in order."""
    from hrdeploy.tasks.classification import TopKMetric

    calls: list[tuple[str, Any]] = []
    real = TopKMetric.update

    def spy(self: TopKMetric, ref: Any, prediction: Any) -> None:
        calls.append((ref.id, json.loads(json.dumps(prediction))))
        real(self, ref, prediction)

    monkeypatch.setattr(TopKMetric, "update", spy)
    return calls


def shared_names_layout(root: Path) -> Path:
    """Synset folders of the colour classes, each holding 0.JPEG .. 5.JPEG of mixed colours:
    file names shared by every folder, a third of each folder right."""
    from hrdeploy.tasks.classification import imagenet_classes

    wnids = [w for w, _ in imagenet_classes()]
    labels = (100, 200, 300)
    for i, (path, _) in enumerate(colour_images(root / "tmp", per_colour=6)):
        folder = root / "val" / wnids[labels[i % 3]]
        folder.mkdir(parents=True, exist_ok=True)
        path.rename(folder / f"{i // 3}.JPEG")
    (root / "tmp").rmdir()
    return root


def recoloured(src: Path, dst: Path) -> Path:
    """The colour classifier with its classes rotated (red -> 200, green -> 300, blue -> 100),
    metadata kept: another model with the same name, variant and input."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    for init in model.graph.initializer:
        if init.name == "w":
            w = numpy_helper.to_array(init)
            rotated = w.copy()
            rotated[:, [200, 300, 100]] = w[:, [100, 200, 300]]
            init.CopyFrom(numpy_helper.from_array(rotated, "w"))
    onnx.save(model, str(dst))
    return dst


def result_of(path: Path) -> dict[str, Any]:
    r = json.loads(path.read_text())
    return {k: v for k, v in r.items() if k not in VOLATILE}


def partial_of(out: Path) -> Path:
    return out.with_name(out.name + ".partial.jsonl")


def records(partial: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in partial.read_text().splitlines()[1:]]


def one_error_line(res: Any) -> str:
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert res.code == 2 and len(lines) == 1 and lines[0].startswith("error: "), res
    assert "Traceback" not in res.err
    return lines[0]


@pytest.fixture
def colour_model(tmp_path: Path) -> Path:
    return colour_classifier_onnx(tmp_path / "colour.onnx")


# -- exact ----------------------------------------------------------------------------------------

def test_class_folders_sharing_file_names_resume_exactly(colour_model, tmp_path, run_cli, scored):
    data = shared_names_layout(tmp_path / "imagenet")
    args = ("eval", colour_model, "--data", f"imagenet:{data}", "--batch", "2")
    assert run_cli(*args, "-o", tmp_path / "full.json").code == 0
    full, full_preds = result_of(tmp_path / "full.json"), list(scored)
    assert full["metric"]["images"] == 18 and full["metric"]["top1"] == pytest.approx(100 / 3, abs=1e-3)

    scored.clear()
    out = tmp_path / "resumed.json"
    with interrupted_after(7):
        assert run_cli(*args, "-o", out).code == 130
    stored = records(partial_of(out))
    assert len(stored) == 7 and stored[0]["id"].startswith("val/n") and stored[0]["id"].endswith("/0.JPEG")
    scored.clear()
    res = run_cli(*args, "-o", out, "--resume")
    assert res.code == 0, res
    assert "resuming: 7 of 18 images already done" in res.err
    resumed = result_of(out)
    assert resumed.pop("artifact") == full.pop("artifact")
    assert resumed == full                        # metrics, data, options: all of result.json
    assert scored == full_preds                   # every image scored once, with the same prediction, in order
    assert len({k for k, _ in scored}) == 18
    assert json.loads(out.read_text())["timing"]["resumed"] == 7 and not partial_of(out).exists()


def test_a_torn_last_line_then_a_second_interruption_still_resumes_exactly(colour_model, tmp_path, run_cli,
                                                                           scored):
    imagenet_label_layout(tmp_path / "d")
    args = ("eval", colour_model, "--data", f"imagenet:{tmp_path / 'd'}")
    assert run_cli(*args, "-o", tmp_path / "full.json").code == 0
    full_preds = list(scored)

    out = tmp_path / "r.json"
    partial = partial_of(out)
    with interrupted_after(5):
        assert run_cli(*args, "-o", out).code == 130
    partial.write_bytes(partial.read_bytes()[:-25])        # killed while writing the 5th record
    with interrupted_after(4):
        res = run_cli(*args, "-o", out, "--resume")
    assert res.code == 130 and "dropped the unfinished last line" in res.err
    ids = [r["id"] for r in records(partial)]              # every line whole: 4 kept + 4 new
    assert len(ids) == 8 == len(set(ids))
    scored.clear()
    res = run_cli(*args, "-o", out, "--resume")
    assert res.code == 0, res
    assert "resuming: 8 of 12" in res.err and "dropped" not in res.err
    assert scored == full_preds
    assert result_of(out)["metric"] == result_of(tmp_path / "full.json")["metric"]


def test_batch_size_of_a_dynamic_model_may_change_on_resume(colour_model, tmp_path, run_cli, scored):
    """Decided: a runner that takes any batch computes rows independently, so the batch is not
    part of the run (static-batch targets: it is, see hrdeploy.resume)."""
    imagenet_label_layout(tmp_path / "d")
    args = ("eval", colour_model, "--data", f"imagenet:{tmp_path / 'd'}", "-o", tmp_path / "r.json")
    assert run_cli(*args, "--batch", "4").code == 0
    full_preds = list(scored)
    with interrupted_after(6):
        assert run_cli(*args, "--batch", "4").code == 130
    scored.clear()
    assert run_cli(*args, "--batch", "1", "--resume").code == 0
    assert scored == full_preds


def test_coco_resume_keeps_the_results_file_and_ap_exact(tmp_path, run_cli):
    from hrdeploy_hrnet_pose.synthetic import build_constant_heatmap_onnx, build_synthetic_coco, onnx_metadata_for

    coco = build_synthetic_coco(tmp_path / "coco")
    model = build_constant_heatmap_onnx(tmp_path / "const.onnx", metadata=onnx_metadata_for())
    args = ("eval", model, "--data", f"coco:{coco['root']}", "--boxes", coco["detections"])
    assert run_cli(*args, "-o", tmp_path / "full.json").code == 0
    out = tmp_path / "r.json"
    with interrupted_after(1):
        assert run_cli(*args, "-o", out).code == 130
    assert [r["id"] for r in records(partial_of(out))] == ["1"]          # COCO samples: image ids
    res = run_cli(*args, "-o", out, "--resume")
    assert res.code == 0, res
    full, resumed = result_of(tmp_path / "full.json"), result_of(out)
    assert resumed["metric"] == full["metric"]
    assert (tmp_path / resumed["files"]["coco_results.json"]).read_text() == \
        (tmp_path / full["files"]["coco_results.json"]).read_text()


# -- refused with what changed ------------------------------------------------------------------------

def test_a_reconverted_model_at_the_same_path_is_refused_then_restarted(colour_model, tmp_path, run_cli):
    imagenet_label_layout(tmp_path / "d")
    art = tmp_path / "art"
    assert run_cli("convert", colour_model, "--target", "onnxruntime", "-o", art).code == 0
    out = tmp_path / "r.json"
    args = ("eval", art, "--data", f"imagenet:{tmp_path / 'd'}", "-o", out)
    with interrupted_after(5):
        assert run_cli(*args).code == 130
    before = partial_of(out).read_bytes()

    other = recoloured(colour_model, tmp_path / "other.onnx")
    res = run_cli("convert", other, "--target", "onnxruntime", "-o", art, "--force")
    assert res.code == 0, res
    line = one_error_line(run_cli(*args, "--resume"))
    assert "belongs to another evaluation: the model file" in line
    assert "changed since the interrupted run (sha256 " in line and "--restart" in line
    assert partial_of(out).read_bytes() == before
    line = one_error_line(run_cli(*args))                  # a plain eval does not replace it either
    assert "holds an interrupted evaluation (5 records)" in line and "--resume" in line
    assert partial_of(out).read_bytes() == before

    res = run_cli(*args, "--restart")
    assert res.code == 0, res
    r = json.loads(out.read_text())
    assert r["metric"]["top1"] == 0.0 and r["timing"]["resumed"] == 0   # the new model only


def test_a_rewritten_onnx_file_is_refused(colour_model, tmp_path, run_cli):
    imagenet_label_layout(tmp_path / "d")
    out = tmp_path / "r.json"
    args = ("eval", colour_model, "--data", f"imagenet:{tmp_path / 'd'}", "-o", out)
    with interrupted_after(3):
        assert run_cli(*args).code == 130
    recoloured(colour_model, colour_model)
    line = one_error_line(run_cli(*args, "--resume"))
    assert "the model file colour.onnx changed since the interrupted run (sha256" in line


def test_a_changed_dataset_or_option_is_refused(colour_model, tmp_path, run_cli):
    data = tmp_path / "d"
    imagenet_label_layout(data)
    out = tmp_path / "r.json"
    args = ("eval", colour_model, "--data", f"imagenet:{data}", "-o", out)
    with interrupted_after(4):
        assert run_cli(*args).code == 130
    before = partial_of(out).read_bytes()

    line = one_error_line(run_cli(*args, "--resume", "--opt", "top_k=3"))
    assert "top_k changed" in line

    labels = data / "val_label.txt"
    text = labels.read_text()
    extra = colour_images(tmp_path / "more", per_colour=1)
    for n, (p, label) in enumerate(extra, 13):
        p.rename(data / "ILSVRC2012_img_val" / f"ILSVRC2012_val_{n:08d}.JPEG")
    labels.write_text(text + "".join(f"ILSVRC2012_val_{n:08d}.JPEG {lab}\n" for n, (_, lab) in enumerate(extra, 13)))
    line = one_error_line(run_cli(*args, "--resume"))
    assert "the dataset changed: 3 images added (ILSVRC2012_img_val/ILSVRC2012_val_00000013.JPEG" in line
    assert "the label file val_label.txt changed (sha256" in line

    labels.write_text(text.replace(" 100\n", " 101\n", 1))  # the same images, one label changed
    for n in (13, 14, 15):
        (data / "ILSVRC2012_img_val" / f"ILSVRC2012_val_{n:08d}.JPEG").unlink()
    line = one_error_line(run_cli(*args, "--resume"))
    assert "the dataset changed: the label file val_label.txt changed" in line and "added" not in line
    assert partial_of(out).read_bytes() == before

    labels.write_text(text)
    assert run_cli(*args, "--resume").code == 0


# -- validated before use ------------------------------------------------------------------------------

GOOD = {"top_k": [{"index": 100, "name": "x", "score": 0.9}]}


@pytest.mark.parametrize("forged, says", [
    ('{"id": 5, "prediction": %s}' % json.dumps(GOOD), "the sample id is 5, not a string"),
    ('{"id": "ILSVRC2012_img_val/nope.JPEG", "prediction": %s}' % json.dumps(GOOD),
     "sample 'ILSVRC2012_img_val/nope.JPEG' is not one of this evaluation's images"),
    ('{"id": "ILSVRC2012_img_val/ILSVRC2012_val_00000009.JPEG", "prediction": %s, "x": 1}' % json.dumps(GOOD),
     'expected a record {"id", "prediction"}'),
    ('{"id": "ILSVRC2012_img_val/ILSVRC2012_val_00000009.JPEG", "prediction": '
     '{"top_k": [{"index": "100", "name": "x", "score": 0.9}]}}', 'top_k[0].index is "100", not a class index'),
    ('{"id": "ILSVRC2012_img_val/ILSVRC2012_val_00000009.JPEG", "prediction": {"top_k": []}}',
     "is not one this model makes"),
    ('{"id": "ILSVRC2012_img_val/ILSVRC2012_val_00000001.JPEG", "prediction": %s}' % json.dumps(GOOD),
     "is recorded twice (first on line 2)"),
    ('{"id": "ILSVRC2012_img_val/ILSVRC2012_val_0000', "not a JSON record"),
    ("[1, 2]", 'expected a record {"id", "prediction"}, found "list"'),
])
def test_a_forged_or_corrupt_record_is_one_line_naming_it(colour_model, tmp_path, run_cli, forged, says):
    imagenet_label_layout(tmp_path / "d")
    out = tmp_path / "r.json"
    args = ("eval", colour_model, "--data", f"imagenet:{tmp_path / 'd'}", "-o", out)
    with interrupted_after(4):
        assert run_cli(*args).code == 130
    partial = partial_of(out)
    lines = partial.read_text().splitlines(keepends=True)
    lines.insert(3, forged + "\n")                          # line 4, followed by good lines
    partial.write_text("".join(lines))
    before = partial.read_bytes()
    line = one_error_line(run_cli(*args, "--resume"))
    assert f"{partial}:4: " in line and says in line, line
    assert partial.read_bytes() == before


def test_a_partial_file_of_an_older_hrdeploy_is_refused(colour_model, tmp_path, run_cli):
    imagenet_label_layout(tmp_path / "d")
    out = tmp_path / "r.json"
    partial_of(out).write_text('{"run": "0123456789abcdef", "created": "2026-01-01T00:00:00+00:00"}\n'
                               '{"id": "ILSVRC2012_val_00000001.JPEG", "prediction": {"top_k": []}}\n')
    args = ("eval", colour_model, "--data", f"imagenet:{tmp_path / 'd'}", "-o", out)
    assert "older hrdeploy" in one_error_line(run_cli(*args, "--resume"))
    partial_of(out).write_text('{"format": "hrdeploy-eval-partial/2", "run": "x", "identity": {"options": '
                               '[1]}}\n{"id": "a", "prediction": {}}\n')
    assert "its run header is damaged" in one_error_line(run_cli(*args, "--resume"))
    assert "contradict" in one_error_line(run_cli(*args, "--resume", "--restart"))
    assert run_cli(*args, "--restart").code == 0 and not partial_of(out).exists()


def test_prediction_checks_of_the_core_metrics() -> None:
    from hrdeploy.tasks.classification import TopKMetric
    from hrdeploy.tasks.pose.metric import CocoKeypointMetric

    topk = TopKMetric(1000)
    assert topk.check_prediction(GOOD) is None
    assert "twice" in topk.check_prediction({"top_k": GOOD["top_k"] * 2})
    assert "score" in topk.check_prediction({"top_k": [{"index": 1, "name": "x", "score": "high"}]})
    assert "index" in topk.check_prediction({"top_k": [{"index": True, "name": "x", "score": 1.0}]})
    pose = CocoKeypointMetric({"images": [], "annotations": []})
    person = {"keypoints": np.zeros((17, 3)).tolist(), "score": 0.5, "box": [0, 0, 1, 1]}
    assert pose.check_prediction({"people": [person]}) is None
    assert pose.check_prediction({"people": []}) is None
    assert "keypoints" in pose.check_prediction({"people": [{**person, "keypoints": [[0, 0, 0]] * 16}]})
    assert "score" in pose.check_prediction({"people": [{**person, "score": None}]})
    assert "people" in pose.check_prediction({"top_k": []})


def test_the_batch_is_part_of_the_run_only_for_compiled_batch_sizes() -> None:
    from types import SimpleNamespace

    from hrdeploy.resume import RunIdentity, describe_changes, run_options

    def session(batch_sizes: Any) -> Any:
        return SimpleNamespace(spec=SimpleNamespace(name="m"), variant=SimpleNamespace(name="v"),
                               target=SimpleNamespace(name="t"), options={"threads": 2, "mode": "x"},
                               artifact=SimpleNamespace(precision="fp16", sizes=None),
                               runner=SimpleNamespace(sizes=None, batch_sizes=batch_sizes))

    dynamic = run_options(session(None), {}, {}, 8, None)
    assert dynamic["batch"] is None and dynamic == run_options(session(None), {}, {}, 1, None)
    assert dynamic["target options"] == {"mode": "x"}          # threads pick a speed, not a prediction
    static8, static1 = (run_options(session((1, 4)), {}, {}, b, None) for b in (8, 1))
    assert (static8["batch"], static1["batch"]) == (4, 1)        # the compiled size actually run
    old = RunIdentity({}, {}, static8).to_dict()
    assert describe_changes(old, RunIdentity({}, {}, static1)) == (
        "--batch changed: the interrupted run used batch 4 of this artifact's compiled sizes, this one 1")
