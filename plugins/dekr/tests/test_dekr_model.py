"""The DEKR network: official keys, strict seeded loading, and the exportable adaptive block."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from hrdeploy.nn import state_dict_shapes
from hrdeploy.testing.seeded import seeded_state_dict
from hrdeploy_dekr.model import (AdaptBlock, DEKRNet, deform_conv3x3_grid_sample, interleave,
                                 set_adapt_impl)


@pytest.mark.parametrize("width", [32, 48])
def test_keys_shapes_order_and_params_match_official(width: int, pose_manifests: Path) -> None:
    manifest = json.loads((pose_manifests / f"dekr_hrnet_w{width}_coco.json").read_text())
    with torch.device("meta"):
        model = DEKRNet(width)
    shapes = state_dict_shapes(model)
    assert list(shapes) == list(manifest["keys"])
    assert shapes == manifest["keys"]
    assert sum(p.numel() for p in model.parameters()) == manifest["params"]
    assert sum(k.endswith("regular_matrix") for k in shapes) == 34


@pytest.mark.parametrize("width", [32, 48])
def test_seeded_weights_load_strictly(width: int, pose_manifests: Path, request) -> None:
    sd = (request.getfixturevalue("w32_state") if width == 32
          else seeded_state_dict(pose_manifests / f"dekr_hrnet_w{width}_coco.json", seed=0))
    with torch.device("meta"):    # no random init: the load replaces every tensor anyway
        model = DEKRNet(width)
    result = model.load_state_dict(sd, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert all(not t.is_meta for t in model.state_dict().values())
    # regular_matrix is a persistent buffer: the checkpoint's values replace the constant grid
    key = "offset_feature_layers.3.1.regular_matrix"
    assert torch.equal(model.state_dict()[key], sd[key])
    assert not torch.equal(sd[key], torch.tensor([[-1., -1, -1, 0, 0, 0, 1, 1, 1], [-1., 0, 1, -1, 0, 1, -1, 0, 1]]))


def _joint0_branch(w32_state) -> tuple[AdaptBlock, AdaptBlock, torch.nn.Conv2d]:
    blocks = (AdaptBlock(15, 15), AdaptBlock(15, 15), torch.nn.Conv2d(15, 2, 1))
    for mod, prefix in zip(blocks, ("offset_feature_layers.0.0.", "offset_feature_layers.0.1.",
                                    "offset_final_layer.0.")):
        mod.load_state_dict({k[len(prefix):]: v for k, v in w32_state.items() if k.startswith(prefix)}, strict=True)
        mod.eval()
    return blocks


def _rel(a: torch.Tensor | np.ndarray, ref: np.ndarray) -> float:
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else a
    return float(np.abs(a - ref).max() / np.abs(ref).max())


def test_adapt_block_reproduces_official_deform_conv(w32_state, ref_block) -> None:
    b0, b1, final = _joint0_branch(w32_state)
    x = torch.from_numpy(ref_block["input"])
    with torch.no_grad():
        dy, dx = b0.tap_offsets(x)
        assert _rel(b0.offset(x), ref_block["offset0"]) < 1e-5
        assert _rel(b0.adapt_conv(x, dy, dx), ref_block["adapt_conv0"]) < 1e-4
        y0 = b0(x)
        assert _rel(y0, ref_block["block0"]) < 1e-4
        assert _rel(b1.offset(y0), ref_block["offset1"]) < 1e-4
        y1 = b1(y0)
        assert _rel(y1, ref_block["block1"]) < 1e-4
        assert _rel(final(y1), ref_block["offset_out"]) < 1e-4


def _deform_conv_reference(x: np.ndarray, offset: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """torchvision's deform_conv2d (3x3, pad 1) written out point by point in float64:
    bilinear sampling, 0 outside, taps (dy, dx) interleaved per row-major kernel position."""
    n, c, h, w = x.shape
    out = np.zeros((n, weight.shape[0], h, w))
    for b in range(n):
        for i in range(h):
            for j in range(w):
                cols = np.zeros((c, 9))
                for k in range(9):
                    py = i - 1 + k // 3 + offset[b, 2 * k, i, j]
                    px = j - 1 + k % 3 + offset[b, 2 * k + 1, i, j]
                    if py <= -1 or py >= h or px <= -1 or px >= w:
                        continue
                    y0, x0 = int(np.floor(py)), int(np.floor(px))
                    ly, lx = py - y0, px - x0
                    for yy, wy in ((y0, 1 - ly), (y0 + 1, ly)):
                        for xx, wx in ((x0, 1 - lx), (x0 + 1, lx)):
                            if 0 <= yy < h and 0 <= xx < w:
                                cols[:, k] += wy * wx * x[b, :, yy, xx]
                out[b, :, i, j] = weight.reshape(weight.shape[0], -1) @ cols.reshape(-1)
    return out


def test_grid_sample_form_is_torchvision_sampling() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 5, 7, generator=g)
    # offsets up to +-3 px: many taps partly or fully outside the map
    offset = (torch.rand(2, 18, 5, 7, generator=g) - 0.5) * 6
    weight = torch.randn(4, 3, 3, 3, generator=g)
    got = deform_conv3x3_grid_sample(x, offset[:, 0::2], offset[:, 1::2], weight)
    ref = _deform_conv_reference(x.double().numpy(), offset.double().numpy(), weight.double().numpy())
    assert np.abs(got.numpy() - ref).max() < 1e-5 * max(1.0, np.abs(ref).max())


@pytest.mark.parametrize("impl,opset", [("grid_sample", 17), ("deformconv", 19)])
def test_adapt_block_exports_with_dynamic_size(impl: str, opset: int, w32_state, ref_block,
                                               tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    b0, _, _ = _joint0_branch(w32_state)
    set_adapt_impl(b0, impl)
    x = torch.from_numpy(ref_block["input"])
    path = tmp_path / f"block_{impl}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(b0, (x,), str(path), input_names=["x"], output_names=["y"], opset_version=opset,
                          dynamic_axes={"x": {2: "h", 3: "w"}, "y": {2: "h", 3: "w"}}, dynamo=False)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert ("DeformConv" in ops) == (impl == "deformconv")
    assert ("GridSample" in ops) == (impl == "grid_sample")
    assert all(n.domain in ("", "ai.onnx") for n in onnx.load(str(path)).graph.node)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"x": ref_block["input"]})[0]
    assert _rel(y, ref_block["block0"]) < 1e-4
    # another size from the same file
    x2 = torch.from_numpy(np.ascontiguousarray(ref_block["input"][:, :, 3:23, 5:41]))
    with torch.no_grad():
        want = b0(x2).numpy()
    got = sess.run(None, {"x": x2.numpy()})[0]
    assert got.shape == want.shape == (1, 15, 20, 36)
    assert _rel(got, want) < 1e-4


def test_interleave_is_official_offset_layout(w32_state, ref_block) -> None:
    b0, _, _ = _joint0_branch(w32_state)
    x = torch.from_numpy(ref_block["input"])
    with torch.no_grad():
        dy, dx = b0.tap_offsets(x)
        off = interleave(dy, dx)
    assert torch.equal(off[:, 0::2], dy) and torch.equal(off[:, 1::2], dx)
    assert _rel(off, ref_block["offset0"]) < 1e-5
