"""Session fixtures of the HRNet-C tests: each network is built and seeded at most once."""
from __future__ import annotations

import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from hrdeploy.testing.seeded import seeded_state_dict
from hrdeploy_hrnet_cls.spec import HRNetClsSpec

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for hrnet_cls_helpers


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    # on a shared 2-core machine OpenMP threads spin against other processes: one thread ran
    # the w18 forward 25x faster than two under load
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def spec() -> HRNetClsSpec:
    return HRNetClsSpec()


@pytest.fixture(scope="session")
def meta_model(spec):
    """``meta_model(variant)``: the network on the meta device (shapes, no weights), built
    once per variant for the whole session."""
    cache: dict[str, torch.nn.Module] = {}

    def get(variant: str) -> torch.nn.Module:
        if variant not in cache:
            with torch.device("meta"):
                cache[variant] = spec.build(spec.variant(variant))
        return cache[variant]

    return get


@pytest.fixture(scope="session")
def w18_ref(fixtures_dir: Path) -> dict[str, np.ndarray]:
    with np.load(fixtures_dir / "ref" / "hrnet_cls_w18.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="session")
def w18_weights(fixtures_dir: Path) -> "OrderedDict[str, torch.Tensor]":
    return seeded_state_dict(fixtures_dir / "official" / "hrnet_cls" / "w18.official.json", seed=0)


@pytest.fixture(scope="session")
def w18_checkpoint(w18_weights, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("w18") / "hrnetv2_w18_seeded.pth"
    torch.save(w18_weights, path)
    return path


@pytest.fixture(scope="session")
def w18_model(spec, w18_checkpoint):
    variant = spec.variant("w18")
    model = spec.build(variant)
    layout = spec.load_weights(model, w18_checkpoint, variant)
    assert layout == "official/timm layout"
    return model


@pytest.fixture(scope="session")
def w18_logits(w18_model, w18_ref) -> np.ndarray:
    with torch.inference_mode():
        return w18_model(torch.from_numpy(w18_ref["input"])).numpy()


@pytest.fixture(scope="session")
def small_model(spec, fixtures_dir, tmp_path_factory):
    """w18_small_v1 with seed-0 weights, loaded through the plugin from a file."""
    variant = spec.variant("w18_small_v1")
    sd = seeded_state_dict(fixtures_dir / "official" / "hrnet_cls" / "w18_small_v1.official.json", seed=0)
    path = tmp_path_factory.mktemp("small") / "w18_small_v1.pth"
    torch.save(sd, path)
    model = spec.build(variant)
    spec.load_weights(model, path, variant)
    return model
