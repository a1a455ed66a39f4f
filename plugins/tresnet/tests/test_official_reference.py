"""TResNet against the official implementations: the logits current timm computes for
tresnet_m/l/xl and timm v0.4.5 patched with Ascend's TResNet.patch for m_ascend, on the
seed-0 weights and the stored input (tests/fixtures/ref/tresnet_*.npz; how they were made is in
their ``meta`` and in tests/reference_outputs/make_reference_outputs.py).

PyTorch is compared for every variant; the ONNX export (``hrdeploy export``'s code path) for M
and m_ascend only: the L and XL exports take ~30 s each on 2 cores and add nothing the M export
does not cover (same modules, more of them).

Tolerances are a small multiple of what was measured (torch 2.13 CPU, 2 threads): the plugin's
PyTorch module reproduces timm bit for bit (0.0; 4e-7 max rel and 6e-5 sample-difference rel with
one thread). A LeakyReLU slope off by 0.01 in the stem moves the logits by ~1e-3 of their
maximum, 100x the tolerance.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

from hrdeploy.onnx_export import export
from hrdeploy.reference import run_onnx
from hrdeploy.testing.reference import assert_matches_reference, load_reference
from hrdeploy.testing.seeded import seeded_state_dict
from hrdeploy_tresnet.model import build_tresnet

# torch vs official, measured 0.0 (2 threads) / 4.0e-7 and 5.8e-5 (1 thread)
TORCH_MAX_REL, TORCH_DIFF_REL = 1e-5, 5e-4
# ONNX Runtime vs official, measured max rel 7.5e-7 (m), 8.8e-7 (m_ascend); sample difference
# 1.0e-4 (m), 1.2e-4 (m_ascend): the difference is ~1 % of max|logit|, so fp32 noise weighs 100x more
ORT_MAX_REL, ORT_DIFF_REL = 1e-5, 1e-3


@pytest.fixture(scope="module")
def official(fixtures_dir: Path) -> Callable[[str], dict[str, Any]]:
    cache: dict[str, dict[str, Any]] = {}

    def get(variant: str) -> dict[str, Any]:
        if variant not in cache:
            cache[variant] = load_reference(fixtures_dir / "ref" / f"tresnet_{variant}.npz")
        return cache[variant]

    return get


def _logits(module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def test_fixtures_say_how_they_were_made(official: Callable[[str], dict[str, Any]],
                                        reference_input: torch.Tensor) -> None:
    for variant in ("m", "l", "xl"):
        meta = official(variant)["meta"]
        assert meta["function"] == f"timm.create_model('tresnet_{variant}', pretrained=False)"
        assert meta["manifest"] == f"tresnet/tresnet_{variant}.timm.json"
    meta = official("m_ascend")["meta"]
    assert "5b28ef410062af2a2ab1f27bf02cf33e2ba28ca2" in meta["reference"]     # timm v0.4.5
    assert "05360171699bbe3bb1916bbafa84a445bd112e87" in meta["reference"]     # + Ascend's TResNet.patch
    # every fixture has the input the conftest's reference statistics use
    for variant in ("m", "l", "xl", "m_ascend"):
        assert np.array_equal(official(variant)["input"], reference_input.numpy())


def test_m_torch_matches_timm(model_m: torch.nn.Module, official: Callable[[str], dict[str, Any]]) -> None:
    ref = official("m")
    got = _logits(model_m, ref["input"])
    assert_matches_reference("tresnet_m torch", got, ref["logits"], TORCH_MAX_REL, TORCH_DIFF_REL)
    assert (got.argmax(1) == ref["logits"].argmax(1)).all()


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["l", "xl"])
def test_larger_sizes_torch_match_timm(variant: str, manifest: Callable[[str], dict[str, Any]],
                                       official: Callable[[str], dict[str, Any]]) -> None:
    module = build_tresnet(variant)
    module.load_state_dict(seeded_state_dict(manifest(f"{variant}.timm"), seed=0), strict=True)
    ref = official(variant)
    assert_matches_reference(f"tresnet_{variant} torch", _logits(module, ref["input"]), ref["logits"],
                             TORCH_MAX_REL, TORCH_DIFF_REL)


def test_m_ascend_torch_matches_patched_v045(ascend_model: tuple[torch.nn.Module, str],
                                             official: Callable[[str], dict[str, Any]],
                                             logits_m: np.ndarray) -> None:
    module, _ = ascend_model        # loaded through the plugin from the Ascend-style checkpoint
    ref = official("m_ascend")
    got = _logits(module, ref["input"])
    assert_matches_reference("tresnet_m_ascend torch", got, ref["logits"], TORCH_MAX_REL, TORCH_DIFF_REL)
    # the flavour matters: timm's M on the same weights is far off the patched network
    assert np.abs(logits_m - ref["logits"]).max() > 100 * TORCH_MAX_REL * np.abs(ref["logits"]).max()


@pytest.fixture(scope="module")
def exported(spec, timm_m_checkpoint: Path, ascend_checkpoint: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``hrdeploy export`` of a variant with its seeded checkpoint, once per module."""
    checkpoints = {"m": timm_m_checkpoint, "m_ascend": ascend_checkpoint}
    cache: dict[str, Path] = {}

    def get(variant: str) -> Path:
        if variant not in cache:
            out = tmp_path_factory.mktemp("official_ref") / f"tresnet_{variant}.onnx"
            export(spec, spec.variant(variant), out, weights=checkpoints[variant], random_weights=False,
                   log=lambda _line: None)
            cache[variant] = out
        return cache[variant]

    return get


@pytest.mark.parametrize("variant", ["m", "m_ascend"])
def test_onnx_export_matches_official(variant: str, exported: Callable[[str], Path],
                                      official: Callable[[str], dict[str, Any]]) -> None:
    ref = official(variant)
    (got,) = run_onnx(exported(variant), ref["input"])
    assert_matches_reference(f"tresnet_{variant} onnx", got, ref["logits"], ORT_MAX_REL, ORT_DIFF_REL)
