"""Shared fixtures of the DEKR plugin tests. The full w32 network is built, seeded, run and
exported at most once per session (``w32_export``)."""
from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for dekr_official_ref

from hrdeploy_dekr.spec import DEKRSpec  # noqa: E402


@pytest.fixture(scope="session")
def spec() -> DEKRSpec:
    return DEKRSpec()


@pytest.fixture(scope="session")
def pose_manifests(fixtures_dir: Path) -> Path:
    return fixtures_dir / "official" / "pose"


def _npz(path: Path) -> dict[str, Any]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="session")
def ref_model(fixtures_dir: Path) -> dict[str, Any]:
    return _npz(fixtures_dir / "ref" / "dekr_hrnet_w32_coco.npz")


@pytest.fixture(scope="session")
def ref_block(fixtures_dir: Path) -> dict[str, Any]:
    return _npz(fixtures_dir / "ref" / "dekr_adapt_block_w32.npz")


@pytest.fixture(scope="session")
def ref_post(fixtures_dir: Path) -> dict[str, Any]:
    return _npz(fixtures_dir / "ref" / "dekr_postprocess_public.npz")


@pytest.fixture(scope="session")
def w32_state(pose_manifests: Path) -> Any:
    from hrdeploy.testing.seeded import seeded_state_dict

    return seeded_state_dict(pose_manifests / "dekr_hrnet_w32_coco.json", seed=0)


@pytest.fixture(scope="session")
def rescore_state(pose_manifests: Path) -> Any:
    from hrdeploy.testing.seeded import seeded_state_dict

    return seeded_state_dict(pose_manifests / "dekr_rescore_coco.json", seed=0)


@dataclass
class W32Export:
    module: Any
    onnx_path: Path
    torch_out: list[np.ndarray]        # on the fixture input (512 x 768)
    ort_out: list[np.ndarray]
    export_seconds: float
    session: Any                       # the onnxruntime session (2 threads)


@pytest.fixture(scope="session")
def w32_export(spec: DEKRSpec, w32_state: Any, ref_model: dict[str, Any],
               tmp_path_factory: pytest.TempPathFactory) -> W32Export:
    """The seeded w32 network exported the way ``hrdeploy export`` does it (TorchScript
    exporter, opset 17, dynamic H/W), run by PyTorch and onnxruntime on the fixture input."""
    import time

    import onnxruntime as ort
    import torch

    torch.set_num_threads(2)
    variant = spec.variant("w32")
    module = spec.build(variant)
    module.load_state_dict(w32_state, strict=True)
    x = torch.from_numpy(ref_model["input"])
    with torch.inference_mode():
        torch_out = [t.numpy() for t in module(x)]
    path = tmp_path_factory.mktemp("dekr_export") / "dekr_w32.onnx"
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), str(path), input_names=[variant.input.name],
                          output_names=list(variant.outputs),
                          dynamic_axes=spec.dynamic_axes(variant, dynamic_batch=False),
                          opset_version=17, do_constant_folding=True, dynamo=False)
    seconds = time.perf_counter() - t0
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    ort_out = sess.run(None, {"image": ref_model["input"]})
    return W32Export(module, path, torch_out, ort_out, seconds, sess)
