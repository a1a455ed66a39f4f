"""``hrdeploy eval`` / ``predict`` end to end with a constant-output ONNX model whose poses and
COCO AP are known in closed form (hrdeploy_dekr.synthetic)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hrdeploy.model import PipelineRuntime
from hrdeploy_dekr.synthetic import EXPECTED_AP, build_constant_dekr_onnx, build_synthetic_coco, expected_people


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("dekr_e2e")
    onnx_path = build_constant_dekr_onnx(root / "dekr_constant.onnx")
    build_synthetic_coco(root / "coco")
    return onnx_path, root / "coco"


def test_plugin_is_listed(hrdeploy_cli) -> None:
    res = hrdeploy_cli("list", "--json")
    assert res.code == 0, res
    models = {m["name"]: m for m in json.loads(res.out)["models"]}
    assert models["dekr"]["status"] == "ok" and models["dekr"]["task"] == "pose-bottomup"
    assert models["dekr"]["variants"] == ["w32", "w48"]


def test_eval_gives_the_known_ap(hrdeploy_cli, synthetic, tmp_path: Path) -> None:
    onnx_path, coco = synthetic
    out = tmp_path / "result.json"
    res = hrdeploy_cli("eval", onnx_path, "--data", f"coco:{coco}", "-o", out)
    assert res.code == 0, res
    result = json.loads(out.read_text())
    metric = result["metric"]
    assert metric["AP"] == pytest.approx(EXPECTED_AP, abs=1e-9)
    assert metric["AP.5"] == metric["AP.75"] == pytest.approx(EXPECTED_AP, abs=1e-9)
    assert metric["AR"] == pytest.approx(1.0)
    assert metric["images"] == 2 and metric["results"] == 4
    assert result["preprocess"]["flip"] is True and result["preprocess"]["oks_nms"] is False
    assert result["preprocess"]["rescore"].startswith("off")
    results = json.loads(out.with_name(result["files"]["coco_results.json"]).read_text())
    assert sorted(r["image_id"] for r in results) == [1, 1, 2, 2]


def test_predict_json_and_vis(hrdeploy_cli, synthetic, tmp_path: Path) -> None:
    onnx_path, coco = synthetic
    image = coco / "val2017" / "000000000001.jpg"
    res = hrdeploy_cli("predict", onnx_path, image, "--json", "-", "--vis", tmp_path / "vis")
    assert res.code == 0, res
    start = res.out.index("[")
    preds = json.loads(res.out[start:res.out.rindex("]") + 1])
    people = preds[0]["people"]
    want = expected_people()
    assert len(people) == len(want) == 2
    for got, exp in zip(people, want):
        np.testing.assert_allclose(np.asarray(got["keypoints"]), np.asarray(exp["keypoints"]), atol=1e-4)
        assert got["score"] == pytest.approx(exp["score"], abs=1e-6)
        np.testing.assert_allclose(got["box"], exp["box"], atol=1e-4)
    drawn = list((tmp_path / "vis").glob("*.jpg"))
    assert len(drawn) == 1


def test_rescore_file_next_to_the_onnx_is_used(synthetic, rescore_state, spec, tmp_path: Path) -> None:
    """A rescore .npz named in the ONNX metadata (as export writes it) reaches the pipeline."""
    import onnx
    from hrdeploy.artifact import Artifact, read_onnx_metadata, write_onnx_metadata
    from hrdeploy.io import read_image
    from hrdeploy.model import Sample, SampleRef
    from hrdeploy_dekr.rescore import Rescorer, rescore_features

    onnx_path, coco = synthetic
    model = onnx.load(str(onnx_path))
    meta = read_onnx_metadata(onnx_path)
    meta["extra_files"] = {"rescore.npz": "dekr_constant.rescore.npz"}
    write_onnx_metadata(model, meta)
    target = tmp_path / "dekr_constant.onnx"
    onnx.save(model, str(target))
    rescorer = Rescorer({k: v.numpy() for k, v in rescore_state.items()})
    (tmp_path / "dekr_constant.rescore.npz").write_bytes(rescorer.to_npz_bytes())
    art = Artifact.load(target)
    pipe = spec.pipeline(spec.variant(art.variant), {}, runtime=PipelineRuntime(files=art.files()))
    assert pipe.params["rescore"] == "on (dekr_constant.rescore.npz)"

    import onnxruntime as ort

    sess = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    ref = SampleRef("1", coco / "val2017" / "000000000001.jpg")
    items = pipe.prepare(Sample(ref, read_image(ref.path)))
    outs = [dict(zip(("heatmap", "offset"), sess.run(None, {"image": it.tensor[None]}))) for it in items]
    people = pipe.finish(ref, items, outs)["people"]
    want = expected_people()
    kp = np.array([p["keypoints"] for p in want], np.float32)
    scores = rescorer.predict(rescore_features(kp)) * np.array([p["score"] for p in want], np.float32)
    np.testing.assert_allclose([p["score"] for p in people], scores, rtol=0, atol=1e-5)
