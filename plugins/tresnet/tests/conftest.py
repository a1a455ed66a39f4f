"""Shared fixtures of the tresnet plugin tests. Full-size networks are built once per session:
the seeded TResNet-M (timm layout) and its logits on the reference input."""
from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

from hrdeploy.testing.seeded import load_manifest, seeded_state_dict
from hrdeploy_tresnet.model import build_tresnet
from hrdeploy_tresnet.spec import TResNetSpec

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tresnet_manifests(fixtures_dir: Path) -> Path:
    return fixtures_dir / "official" / "tresnet"


@pytest.fixture(scope="session")
def manifest(tresnet_manifests: Path) -> Callable[[str], dict[str, Any]]:
    """``manifest("m.timm")`` -> the key/shape manifest of tresnet_m in timm 1.0's layout."""
    cache: dict[str, dict[str, Any]] = {}

    def get(name: str) -> dict[str, Any]:
        if name not in cache:
            cache[name] = load_manifest(tresnet_manifests / f"tresnet_{name}.json")
        return cache[name]

    return get


@pytest.fixture(scope="session")
def ascend_manifest(manifest: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """The layout of Ascend's patched checkpoint, derived from the v0.4.5 manifest: the same
    names with plain BatchNorm, i.e. a ``num_batches_tracked`` after every ``running_var``."""
    keys: dict[str, list[int]] = {}
    for key, shape in manifest("m.timm045")["keys"].items():
        keys[key] = shape
        if key.endswith(".running_var"):
            keys[key[: -len("running_var")] + "num_batches_tracked"] = []
    return {"source": "v0.4.5 + Ascend TResNet.patch (derived)", "keys": keys}


@pytest.fixture(scope="session")
def spec() -> TResNetSpec:
    return TResNetSpec()


@pytest.fixture(scope="session")
def built() -> Callable[[str], torch.nn.Module]:
    """One network per variant for the session, for tests that need its keys and shapes
    (or load weights they do not share with others)."""
    cache: dict[str, torch.nn.Module] = {}

    def get(variant: str) -> torch.nn.Module:
        if variant not in cache:
            cache[variant] = build_tresnet(variant)
        return cache[variant]

    return get


@pytest.fixture(scope="session")
def expected_state(built: Callable[[str], torch.nn.Module]) -> Callable[[str], "OrderedDict[str, torch.Tensor]"]:
    """What a checkpoint must become for a variant: the module's state_dict."""
    return lambda variant: built(variant).state_dict()


@pytest.fixture(scope="session")
def seeded_m(manifest: Callable[[str], dict[str, Any]]) -> "OrderedDict[str, torch.Tensor]":
    return seeded_state_dict(manifest("m.timm"), seed=0)


@pytest.fixture(scope="session")
def reference_input() -> torch.Tensor:
    """The input the timm reference statistics were recorded on (test_architecture.py)."""
    gen = torch.Generator().manual_seed(1234)
    return torch.randn(2, 3, 224, 224, generator=gen)


@pytest.fixture(scope="session")
def model_m(seeded_m: "OrderedDict[str, torch.Tensor]") -> torch.nn.Module:
    module = build_tresnet("m")
    module.load_state_dict(seeded_m, strict=True)
    return module


@pytest.fixture(scope="session")
def logits_m(model_m: torch.nn.Module, reference_input: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model_m(reference_input).numpy()


def to_v045_names(current: "OrderedDict[str, torch.Tensor]", v045_keys: set[str]) -> "OrderedDict[str, torch.Tensor]":
    """Test-side inverse of the v0.4.5 -> timm renaming, written independently of
    hrdeploy_tresnet.weights: a conv that carries a blur is nested one level deeper in
    v0.4.5, which the v0.4.5 manifest itself tells. Counters are dropped (IABN has none)."""
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in current.items():
        if key.endswith("num_batches_tracked"):
            continue
        m = re.match(r"(.*\.(?:conv\d+|downsample\.\d+))\.(conv|bn)\.(.*)$", key)
        if m is None:  # SE and head keep their names
            out[key] = value
            continue
        head, part, tail = m.groups()
        index = "0" if part == "conv" else "1"
        nested = f"{head}.0.{index}.{tail}"
        out[nested if nested in v045_keys else f"{head}.{index}.{tail}"] = value
    return out


@pytest.fixture(scope="session")
def v045_names() -> Callable[..., "OrderedDict[str, torch.Tensor]"]:
    return to_v045_names


@pytest.fixture(scope="session")
def timm_m_checkpoint(seeded_m: "OrderedDict[str, torch.Tensor]", tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("timm") / "tresnet_m_seeded.pth"
    torch.save(seeded_m, path)
    return path


@pytest.fixture(scope="session")
def seeded_v045(manifest: Callable[[str], dict[str, Any]]) -> "OrderedDict[str, torch.Tensor]":
    return seeded_state_dict(manifest("m.timm045"), seed=0)


@pytest.fixture(scope="session")
def seeded_ascend(seeded_v045: "OrderedDict[str, torch.Tensor]", ascend_manifest: dict[str, Any]
                  ) -> "OrderedDict[str, torch.Tensor]":
    """Seed-0 weights of the Ascend layout. The generator seeds every tensor from its own key,
    so this is the v0.4.5 seeded dict plus zero counters (spot-checked against the generator)."""
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key in ascend_manifest["keys"]:
        out[key] = seeded_v045[key] if key in seeded_v045 else torch.zeros((), dtype=torch.int64)
    probe = {"keys": {k: ascend_manifest["keys"][k] for k in list(out)[:12]}}
    for key, value in seeded_state_dict(probe, seed=0).items():
        assert torch.equal(value, out[key]), key
    return out


@pytest.fixture(scope="session")
def ascend_checkpoint(seeded_ascend: "OrderedDict[str, torch.Tensor]", tmp_path_factory: pytest.TempPathFactory) -> Path:
    """As timm's training script writes it from a DataParallel model: a ``state_dict`` entry
    with ``module.`` prefixes next to the epoch and the argparse Namespace."""
    import argparse

    path = tmp_path_factory.mktemp("ascend") / "model_best.pth.tar"
    torch.save({"epoch": 299, "arch": "tresnet_m", "args": argparse.Namespace(model="tresnet_m", lr=0.1),
                "state_dict": OrderedDict(("module." + k, v) for k, v in seeded_ascend.items())}, path)
    return path


@pytest.fixture(scope="session")
def ascend_model(spec: TResNetSpec, ascend_checkpoint: Path) -> tuple[torch.nn.Module, str]:
    variant = spec.variant("m_ascend")
    module = spec.build(variant)
    text = spec.load_weights(module, ascend_checkpoint, variant)
    return module, text
