"""pose_hrnet: official key names/order, strict seeded loading, parity of torch and ONNX with
the reference output of the official implementation."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

from hrdeploy_hrnet_pose.spec import HRNetPoseSpec
from hrdeploy_hrnet_pose.weights import load_checkpoint_object

SPEC = HRNetPoseSpec()


def _rel(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(a - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("name", ["w32_256x192", "w32_384x288", "w48_256x192", "w48_384x288"])
def test_keys_and_shapes_match_the_official_manifest(name: str, pose_manifests: dict[str, Any]) -> None:
    variant = SPEC.variant(name)
    with torch.device("meta"):
        model = SPEC.build(variant)
    manifest = pose_manifests[name]
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert list(shapes) == list(manifest["keys"])            # same keys, same order
    assert shapes == manifest["keys"]
    assert sum(p.numel() for p in model.parameters()) == manifest["params"]


@pytest.fixture(scope="module")
def seeded_by_width(pose_manifests: dict[str, Any], seeded_w32: Any) -> Callable[[int], Any]:
    from hrdeploy.testing.seeded import seeded_state_dict

    cache = {32: seeded_w32}

    def get(width: int) -> Any:
        if width not in cache:
            cache[width] = seeded_state_dict(pose_manifests[f"w{width}_256x192"], seed=0)
        return cache[width]

    return get


@pytest.mark.parametrize("name", ["w32_256x192", "w32_384x288",
                                  pytest.param("w48_256x192", marks=pytest.mark.slow),
                                  pytest.param("w48_384x288", marks=pytest.mark.slow)])
def test_seeded_weights_load_strictly(name: str, pose_manifests: dict[str, Any],
                                      seeded_by_width: Callable[[int], Any]) -> None:
    variant = SPEC.variant(name)
    width = variant.extra["width"]
    # one seeding per width: the input size never changes the keys
    assert pose_manifests[name]["keys"] == pose_manifests[f"w{width}_256x192"]["keys"]
    sd = seeded_by_width(width)
    model = SPEC.build(variant)
    layout = load_checkpoint_object(model, dict(sd), width)
    assert layout == "official pose_hrnet state_dict"
    got = model.state_dict()
    for key in ("conv1.weight", "stage4.2.fuse_layers.0.3.1.running_var", "final_layer.bias"):
        assert torch.equal(got[key], sd[key])
    del model


def test_torch_forward_reproduces_the_reference(w32_model: Any, fixtures_dir: Path) -> None:
    ref = np.load(fixtures_dir / "ref" / "pose_hrnet_w32_256x192.npz")
    with torch.no_grad():
        out = w32_model(torch.from_numpy(ref["input"])).numpy()
    assert out.shape == (2, 17, 64, 48)
    assert _rel(out, ref["heatmaps"]) <= 1e-5
    # not only the peaks: a spread of samples agrees too
    idx = np.random.default_rng(0).integers(0, out.size, 1000)
    np.testing.assert_allclose(out.reshape(-1)[idx], ref["heatmaps"].reshape(-1)[idx],
                               atol=1e-5 * np.abs(ref["heatmaps"]).max())


@pytest.fixture(scope="module")
def exported_w32(w32_model: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "pose_hrnet_w32_256x192.onnx"
    variant = SPEC.variant("w32_256x192")
    torch.onnx.export(w32_model, (torch.zeros(1, 3, 256, 192),), str(path), dynamo=False, opset_version=17,
                      input_names=[variant.input.name], output_names=list(variant.outputs),
                      dynamic_axes=SPEC.dynamic_axes(variant, dynamic_batch=True))
    return path


@pytest.mark.filterwarnings("ignore::DeprecationWarning")   # the TorchScript exporter is what we want here
def test_onnx_export_reproduces_the_reference_with_a_dynamic_batch(exported_w32: Path, fixtures_dir: Path) -> None:
    import onnx
    import onnxruntime as ort

    graph = onnx.load(str(exported_w32)).graph
    assert graph.input[0].name == "image" and graph.output[0].name == "heatmaps"
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    ref = np.load(fixtures_dir / "ref" / "pose_hrnet_w32_256x192.npz")
    sess = ort.InferenceSession(str(exported_w32), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"image": ref["input"]})[0]
    assert _rel(out, ref["heatmaps"]) <= 1e-5
    three = sess.run(None, {"image": ref["input"][[1, 0, 1]]})[0]
    assert three.shape == (3, 17, 64, 48)
    assert _rel(three[0], ref["heatmaps"][1]) <= 1e-5 and _rel(three[1], ref["heatmaps"][0]) <= 1e-5


def test_task_check_decodes_and_compares_keypoints(fixtures_dir: Path) -> None:
    hm = np.load(fixtures_dir / "ref" / "topdown_postprocess_public.npz")["heatmaps"]
    variant = SPEC.variant("w32_256x192")
    tol = variant.tolerance("fp32")
    same = SPEC.task_check(variant, [hm], [hm + 1e-6], tol)
    assert same.passed and same.value == 0.0
    moved = hm.copy()
    moved[0, 3] = np.roll(moved[0, 3], 5, axis=1)   # one joint 5 heatmap px (20 input px) off
    bad = SPEC.task_check(variant, [hm], [moved], tol)
    assert not bad.passed
    assert bad.value == pytest.approx(20.0 / (2 * 17), abs=0.3)
    assert "max 20" in bad.text
    # OKS against the reference: 1 when identical; one of 34 joints 20 px off on a 192x256 crop
    # (left ear, sigma 0.035) costs exp(-400 / (2 * 49152 * 0.0049)) of that joint
    assert "OKS 1.0000" in same.text
    expected = 1 - (1 - np.exp(-400 / (2 * 192 * 256 * (2 * 0.035) ** 2))) / (2 * 17)
    assert f"OKS {expected:.4f}" in bad.text
