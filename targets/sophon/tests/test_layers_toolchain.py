"""``hrdeploy debug`` and mixed precision on Sophon with the real toolchain: bmodels of the small
test network compiled by TPU-MLIR, every layer dumped on the cmodel by its bmodel debugger and
compared with the source ONNX by the core's layer-wise comparison. Needs the provisioned
toolchain (skipped with the reason otherwise); each conversion and each dump takes tens of
seconds, so each is done once and one input is dumped."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hrdeploy.artifact import Artifact
from hrdeploy.layerwise import LayerReport, compare_layers, source_tensors
from hrdeploy.target import ConvertResult
from hrdeploy.testing.layers import corrupt_conv
from hrdeploy_target_sophon import commands as C
from hrdeploy_target_sophon.target import SophonTarget

pytestmark = pytest.mark.toolchain


def artifact_of(folder: Path, res: ConvertResult) -> Artifact:
    """The manifest fields the target reads, as the core writes them."""
    return Artifact(folder, {"format": "hrdeploy-artifact/1", "files": res.files, "batch_sizes": res.batch_sizes,
                             "sizes": [list(s) for s in res.sizes or []], "input": {"name": "image", "height": 32, "width": 32},
                             "outputs": ["logits"], "conversion": res.extra, "toolchain": res.toolchain})


@pytest.fixture(scope="module")
def corrupted(tiny_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The tiny network with the weights of its third Conv (c3, the 1x1 conv the upsampling
    reads: not merged with a Relu, so its own output is observable) sign-flipped and scaled."""
    path = tmp_path_factory.mktemp("corrupt") / "tiny_bad.onnx"
    _node, tensor = corrupt_conv(tiny_onnx, path, 2, factor=-4.0)
    return path, tensor


@pytest.fixture(scope="module")
def build(toolchain: Any, tmp_path_factory: pytest.TempPathFactory,
          make_request: Callable[..., Any]) -> Callable[..., tuple[Artifact, ConvertResult, Any]]:
    cache: dict[str, tuple[Artifact, ConvertResult, Any]] = {}

    def get(key: str, onnx_path: Path, keep_float: list[str] | None = None, **kwargs: Any) -> tuple[Artifact, ConvertResult, Any]:
        if key not in cache:
            out = tmp_path_factory.mktemp(key) / "artifact"
            req = make_request(onnx_path, out, **kwargs)
            req.keep_float = list(keep_float or [])
            said: list[str] = []
            req.log = said.append
            res = SophonTarget().convert(req)
            cache[key] = (artifact_of(out, res), res, said)
        return cache[key]

    return get


@pytest.fixture(scope="module")
def x(make_inputs: Callable[[int, int], np.ndarray]) -> np.ndarray:
    return make_inputs(1, 41)


def debug(art: Artifact, clean: Path, x: np.ndarray, workdir: Path, threshold: float) -> LayerReport:
    dump = SophonTarget().layer_outputs(art, x, clean, workdir, log=lambda m: None)
    report = compare_layers(clean, source_tensors(clean, x), dump, threshold=threshold)
    print(f"\n{dump.label}: " + ", ".join(f"{r.tensor} {r.cosine:.5f}" for r in report.rows))
    return report


def test_corrupted_conv_is_the_first_diverging_layer(build: Any, corrupted: tuple[Path, str], tiny_onnx: Path,
                                                      x: np.ndarray, tmp_path: Path) -> None:
    bad, tensor = corrupted
    art, res, _ = build("int8_bad", bad, precision="int8", options={"chip": "bm1684x"}, calib=16)
    assert res.extra["layer_debug"]["stage"] == "b1_32x32" and (art.folder / "debug" / "final.mlir").is_file()
    report = debug(art, tiny_onnx, x, tmp_path / "dump", threshold=0.99)
    first = report.first_below
    assert first is not None and first.tensor == tensor == "c3" and first.op_type == "Conv"
    assert report.origin is not None and report.origin.tensor == "c3"  # where the error is added, too
    before = [r for r in report.rows if r.index < first.index]
    assert [r.tensor for r in before] == ["r1", "r2"] and all(r.cosine >= 0.99 for r in before)
    # the Convs merged with their Relu are reported, and the layer that really runs is named
    assert any("c1 (Conv) -> r1" in n for n in report.notes)
    assert any("npz_tool compare" in n and "PASSED" in n for n in report.notes)
    assert report.rows[0].converted == "r1_Relu (Conv2D:uint8)"


def test_fp32_bmodel_reports_no_false_alarm(build: Any, tiny_onnx: Path, x: np.ndarray, tmp_path: Path) -> None:
    # two stages: the debugged stage's own bmodel is kept beside the combined one
    art, res, _ = build("fp32_two_stages", tiny_onnx, batch_sizes=[1, 2], options={"chip": "bm1684x"})
    assert res.files["debug_bmodel"] == "debug/stage.bmodel" and res.extra["layer_debug"]["batch"] == 1
    report = debug(art, tiny_onnx, x, tmp_path / "dump", threshold=0.99999)
    assert len(report.rows) >= 8 and report.first_below is None
    assert report.min_cosine is not None and report.min_cosine >= 0.99999


@pytest.fixture(scope="module")
def plain_int8(build: Any, tiny_onnx: Path, x: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> LayerReport:
    art, _res, _ = build("int8_clean", tiny_onnx, precision="int8", options={"chip": "bm1684x"}, calib=16)
    return debug(art, tiny_onnx, x, tmp_path_factory.mktemp("plain"), threshold=0.99)


def test_clean_int8_bmodel_stays_above_the_int8_threshold(plain_int8: LayerReport) -> None:
    assert plain_int8.first_below is None and len(plain_int8.rows) >= 8
    assert all(r.converted for r in plain_int8.rows)  # every compared layer named with its lowered type


def test_keep_float_is_honoured_and_improves_the_layer(build: Any, plain_int8: LayerReport, tiny_onnx: Path,
                                                       x: np.ndarray, tmp_path: Path) -> None:
    # the budget search's move: keep the layer adding the most error in float
    worst = plain_int8.ranked[0]
    art2, res2, said = build("int8_keep", tiny_onnx, keep_float=[worst.tensor], precision="int8",
                             options={"chip": "bm1684x"}, calib=16)
    (entry,) = res2.extra["quantize_table"]["keep_float"]
    assert entry["tensor"] == worst.tensor and entry["compiled"] == "f32"  # read back from the tpu MLIR
    assert not any(s.startswith("warning:") for s in said)
    table = (art2.folder / C.QTABLE).read_text()
    assert f"{entry['layer']} F32" in table and res2.files["quantize_table"] == C.QTABLE
    deploy_log = next((art2.folder / "logs").glob("*_model_deploy_*.log")).read_text()
    assert "qtable=" in deploy_log and "quantize_table.txt" in deploy_log  # model_deploy was given it
    kept = debug(art2, tiny_onnx, x, tmp_path / "kept", threshold=0.99)
    row = next(r for r in kept.rows if r.tensor == worst.tensor)
    assert row.converted.endswith(":f32)")  # the dumped layer ran in float on the cmodel
    print(f"\nkeep {worst.tensor} ({entry['layer']}) in F32: SQNR {worst.sqnr_db:.1f} -> {row.sqnr_db:.1f} dB, "
          f"cosine {worst.cosine:.6f} -> {row.cosine:.6f}")
    # its own output quantization is gone; what is left is the int8 noise of its inputs
    assert row.sqnr_db is not None and worst.sqnr_db is not None and row.sqnr_db > worst.sqnr_db + 1.0
    assert row.cosine is not None and worst.cosine is not None and row.cosine > worst.cosine
