"""The contract classes themselves: they pass a correct target and model and fail the wrong ones
(a runner reusing its output buffers, a runner off the source model, a caching runner, a
pipeline putting keypoints in the wrong place, a classifier ranking wrongly)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from hrdeploy.artifact import MANIFEST, Artifact
from hrdeploy.model import DEFAULT_TOLERANCES, Pipeline
from hrdeploy.target import Runner
from hrdeploy.targets.onnxruntime.target import OnnxRuntimeTarget
from hrdeploy.testing.contract import ModelContract, TargetContract, check_round_trip, tiny_request


class WrappedRunner(Runner):
    """An onnxruntime runner whose results pass through ``change`` (the wrong runners)."""

    def __init__(self, inner: Runner, change: Callable[["WrappedRunner", list[np.ndarray]], list[np.ndarray]]) -> None:
        self.inner, self.change = inner, change
        self.input_name, self.output_names = inner.input_name, inner.output_names
        self.batch_sizes = inner.batch_sizes
        self.state: dict[str, Any] = {}

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.change(self, self.inner.run(feeds))

    def close(self) -> None:
        self.inner.close()


def reuse_buffers(r: WrappedRunner, outs: list[np.ndarray]) -> list[np.ndarray]:
    """Copies each result into one array per output kept across calls and returns those."""
    bufs = r.state.setdefault("bufs", [np.empty_like(o) for o in outs])
    for b, o in zip(bufs, outs):
        b[...] = o
    return bufs


def off_by_one_percent(r: WrappedRunner, outs: list[np.ndarray]) -> list[np.ndarray]:
    return [o * np.float32(1.01) for o in outs]


def first_answer_forever(r: WrappedRunner, outs: list[np.ndarray]) -> list[np.ndarray]:
    first = r.state.setdefault("first", outs)
    return [o.copy() for o in first]


class WrappingTarget(OnnxRuntimeTarget):
    def __init__(self, change: Callable[[WrappedRunner, list[np.ndarray]], list[np.ndarray]]) -> None:
        self.change = change

    def open(self, artifact: Artifact, device: str | None = None, options: dict[str, Any] | None = None) -> Runner:
        return WrappedRunner(super().open(artifact, device, options), self.change)


@pytest.fixture
def fp32_artifact(tmp_path: Path) -> tuple[Any, Artifact]:
    req = tiny_request(tmp_path)
    result = OnnxRuntimeTarget().convert(req)
    (req.out_dir / MANIFEST).write_text(json.dumps(
        {"format": "hrdeploy-artifact/1", "model": "tiny", "variant": "default", "files": result.files}))
    return req, Artifact.load(req.out_dir)


def test_a_correct_runner_passes_with_its_figures(fp32_artifact) -> None:
    req, art = fp32_artifact
    with OnnxRuntimeTarget().open(art) as runner:
        diffs = check_round_trip(runner, req.onnx_path, req.reference_inputs, "fp32")
    assert len(diffs) == 2 and all(d.passed and d.max_rel <= 1e-6 for d in diffs)
    assert diffs[0].limits["max_rel"] == DEFAULT_TOLERANCES["fp32"].max_rel


@pytest.mark.parametrize("change, message", [
    (reuse_buffers, "reused output buffer"),
    (off_by_one_percent, "is not the source model's"),
    (first_answer_forever, "is not the source model's"),
])
def test_wrong_runners_fail_the_round_trip(fp32_artifact, change, message: str) -> None:
    req, art = fp32_artifact
    with pytest.raises(AssertionError, match=message):
        with WrappingTarget(change).open(art) as runner:
            check_round_trip(runner, req.onnx_path, req.reference_inputs, "fp32")


def test_the_target_contract_fails_a_target_whose_runner_reuses_buffers(tmp_path: Path) -> None:
    contract = TargetContract()
    contract.test_convert_and_run(OnnxRuntimeTarget(), tmp_path / "good", {}, ("fp32", "fp16", "int8"))
    with pytest.raises(AssertionError, match="reused output buffer"):
        contract.test_convert_and_run(WrappingTarget(reuse_buffers), tmp_path / "bad", {}, ("fp32",))


def test_fp16_limits_apply_to_fp16_artifacts(tmp_path: Path) -> None:
    """The precision's own tolerance is used: fp32's would refuse onnxruntime's fp16 build."""
    req = tiny_request(tmp_path, precision="fp16")
    result = OnnxRuntimeTarget().convert(req)
    (req.out_dir / MANIFEST).write_text(json.dumps(
        {"format": "hrdeploy-artifact/1", "model": "tiny", "variant": "default", "files": result.files}))
    with OnnxRuntimeTarget().open(Artifact.load(req.out_dir)) as runner:
        diffs = check_round_trip(runner, req.onnx_path, req.reference_inputs, "fp16")
        assert max(d.max_rel for d in diffs) > DEFAULT_TOLERANCES["fp32"].max_rel
        with pytest.raises(AssertionError, match="is not the source model's"):
            check_round_trip(runner, req.onnx_path, req.reference_inputs, "fp32")


class MovedPipeline(Pipeline):
    """A pipeline whose predictions are edited by ``edit`` after the real one finishes."""

    def __init__(self, inner: Pipeline, edit: Callable[[dict[str, Any]], None]) -> None:
        self.inner, self.edit, self.params = inner, edit, inner.params

    def prepare(self, sample):
        return self.inner.prepare(sample)

    def finish(self, sample, items, outputs):
        pred = self.inner.finish(sample, items, outputs)
        self.edit(pred)
        return pred


def shift_keypoints(pred: dict[str, Any]) -> None:
    """Every keypoint 12 px to the right (the contract's image is 332 px high: 2 % is 6.6 px)."""
    for p in pred["people"]:
        for kp in p["keypoints"]:
            kp[0] += 12


def swap_top_two(pred: dict[str, Any]) -> None:
    pred["top_k"][0], pred["top_k"][1] = pred["top_k"][1], pred["top_k"][0]


@pytest.mark.parametrize("plugin, edit, message", [
    ("hrdeploy_hrnet_pose.spec:HRNetPoseSpec", shift_keypoints, "px from the blob"),
    ("hrdeploy_hrnet_cls.spec:HRNetClsSpec", swap_top_two, "the logits rank 7 first"),
])
def test_the_model_contract_checks_what_finish_returns(plugin: str, edit, message: str) -> None:
    import importlib

    module, name = plugin.split(":")
    base = getattr(importlib.import_module(module), name)

    class Moved(base):  # type: ignore[misc, valid-type]
        def pipeline(self, variant, options=None, runtime=None):
            return MovedPipeline(super().pipeline(variant, options, runtime), edit)

    ModelContract().test_pipeline_round_trip(base())
    with pytest.raises(AssertionError, match=message):
        ModelContract().test_pipeline_round_trip(Moved())
