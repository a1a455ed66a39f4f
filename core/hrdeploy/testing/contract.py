"""Reusable contract tests for hrdeploy plugins.

A plugin's own test suite subclasses these classes and provides one fixture; pytest then
runs every contract test against the plugin::

    from hrdeploy.testing.contract import TargetContract

    class TestMyChip(TargetContract):
        @pytest.fixture
        def target(self):
            return MyChipTarget()

    from hrdeploy.testing.contract import ModelContract

    class TestMyModel(ModelContract):
        @pytest.fixture
        def model(self):
            return MyModelSpec()

Target tests that need the toolchain (convert + run) are skipped with the probe's reason when
it is not available; the rest (naming, options, probe shape, dry-run planning) always run.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ..artifact import FORMAT, MANIFEST, Artifact
from ..model import DEFAULT_TOLERANCES, TASKS, InputSpec, Item, ModelSpec, PipelineRuntime, Sample, SampleRef
from ..parity import OutputDiff, compare_output
from ..synthetic import write_images
from ..target import PRECISIONS, ConvertRequest, Probe, Runner, Target


def tiny_classifier_onnx(path: Path, classes: int = 10, size: int = 32, seed: int = 0) -> Path:
    """A small real network (conv, relu, global pooling, gemm) with a dynamic batch, input
    ``image`` and output ``logits``: enough for a target to compile and run."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3
    b1 = rng.standard_normal(8).astype(np.float32) * 0.1
    w2 = rng.standard_normal((classes, 8)).astype(np.float32) * 0.5
    b2 = rng.standard_normal(classes).astype(np.float32) * 0.1
    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("GlobalAveragePool", ["r1"], ["p1"]),
        helper.make_node("Flatten", ["p1"], ["f1"]),
        helper.make_node("Gemm", ["f1", "w2", "b2"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # onnx writes IR versions newer runtimes and vendor tools reject
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def tiny_request(tmp_path: Path, precision: str = "fp32", batch_sizes: list[int] | None = None,
                 dry_run: bool = False, options: dict[str, Any] | None = None, size: int = 32) -> ConvertRequest:
    onnx_path = tiny_classifier_onnx(tmp_path / "tiny.onnx", size=size)
    out = tmp_path / "artifact"
    out.mkdir(exist_ok=True)
    rng = np.random.default_rng(1)

    def calibration(count: int):
        for _ in range(count):
            yield rng.standard_normal((3, size, size)).astype(np.float32)

    calib_dir = None
    if precision == "int8":  # the images too, for toolchains that read them themselves (vamc)
        calib_dir = tmp_path / "calib"
        write_images(calib_dir, 8, size=(size, size), seed=2)
    return ConvertRequest(
        onnx_path=onnx_path, out_dir=out, model="tiny", variant="default", task="classification",
        input=InputSpec(height=size, width=size), preprocess={"mean": [0.0] * 3, "std": [1.0] * 3, "scale": 1 / 255},
        precision=precision, batch_sizes=batch_sizes or [1], options=dict(options or {}), dry_run=dry_run,
        calib_dir=calib_dir, calib_count=8, calibration=calibration, reference_inputs=rng.standard_normal((2, 3, size, size)).astype(np.float32),
        log=lambda _msg: None)


def source_outputs(onnx_path: Path, x: np.ndarray) -> list[np.ndarray]:
    """The source ONNX model run by onnxruntime (CPU) on ``x``: what a converted model must
    reproduce."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


def check_round_trip(runner: Runner, onnx_path: Path, inputs: np.ndarray, precision: str) -> list[OutputDiff]:
    """Run two different batches (rows 0 and 1 of ``inputs``, repeated to the runner's first
    batch size) and check what came back:

    * each call's outputs match the source ONNX model on onnxruntime for the same input within
      the precision's default tolerance (:data:`hrdeploy.model.DEFAULT_TOLERANCES`, compared
      by :func:`hrdeploy.parity.compare_output`, as ``convert`` and ``verify`` do);
    * the first call's arrays are intact after the second call: the evaluation loop keeps a
      batch's outputs while the next batch runs, so a runner must not hand out buffers it
      writes into again;
    * the two inputs give different outputs (no answer from a cache).
    """
    batch = runner.batch_sizes[0] if runner.batch_sizes else 1
    feeds = [np.repeat(inputs[i:i + 1], batch, 0) for i in (0, 1)]
    first = runner.run({runner.input_name: feeds[0]})
    kept = [np.array(o, copy=True) for o in first]
    second = runner.run({runner.input_name: feeds[1]})
    assert len(first) == len(second) == len(runner.output_names)
    for name, a, b, k in zip(runner.output_names, first, second, kept):
        assert not np.shares_memory(a, b), \
            f"output {name!r}: run() returned the same buffer twice (reused output buffer)"
        assert np.array_equal(a, k), f"output {name!r}: the second run() changed the first run's result"
    tol = DEFAULT_TOLERANCES[precision]
    diffs = []
    for x, outs in zip(feeds, (first, second)):
        for name, ref, got in zip(runner.output_names, source_outputs(onnx_path, x), outs):
            assert got.dtype == np.float32 and got.shape == ref.shape, \
                f"output {name!r}: {got.dtype} {got.shape}, the source gives float32 {ref.shape}"
            d = compare_output(name, ref, got, tol)
            assert d.passed, (f"{precision}: output {name!r} is not the source model's: max rel "
                              f"{d.max_rel:.3g}, cosine {d.cosine_min:.6f} (limits {d.limits})")
            diffs.append(d)
    assert any(not np.array_equal(a, b) for a, b in zip(first, second)), "different inputs gave the same outputs"
    return diffs


class TargetContract:
    """Contract every target must pass. Provide a ``target`` fixture; override
    ``target_options`` to pass required options (e.g. a chip name) to the convert tests and
    ``runnable_precisions`` when some declared precision cannot be built or run here."""

    @pytest.fixture
    def target_options(self) -> dict[str, Any]:
        return {}

    @pytest.fixture
    def runnable_precisions(self, target: Target) -> tuple[str, ...]:
        return tuple(target.precisions)

    def test_identity(self, target: Target) -> None:
        assert isinstance(target, Target)
        assert target.name and target.name.isidentifier(), "names are typed on the command line"
        assert target.description
        assert target.precisions and set(target.precisions) <= set(PRECISIONS)

    def test_options_are_documented(self, target: Target) -> None:
        for name, opt in target.options.items():
            assert name.isidentifier()
            assert opt.help, f"option {name} needs a help text"

    def test_probe_is_fast_and_typed(self, target: Target) -> None:
        t0 = time.perf_counter()
        probe = target.probe()
        assert time.perf_counter() - t0 < 30, "probe runs for every 'hrdeploy list'"
        assert isinstance(probe, Probe)
        assert isinstance(probe.available, bool)
        assert probe.detail and "\n" not in probe.detail, "detail is one line"
        json.dumps(probe.to_dict())

    def test_dry_run_plans_without_running(self, target: Target, tmp_path: Path,
                                           target_options: dict[str, Any]) -> None:
        req = tiny_request(tmp_path, precision=target.precisions[0], dry_run=True, options=target_options)
        result = target.convert(req)
        assert result.files, "the plan names the files the conversion will produce"
        assert req.commands, "every step of the conversion is recorded"
        for c in req.commands:
            assert c["argv"] and c["cmd"]
            assert "returncode" not in c, "a dry run runs nothing"

    def test_convert_and_run(self, target: Target, tmp_path: Path, target_options: dict[str, Any],
                             runnable_precisions: tuple[str, ...]) -> None:
        """Every runnable precision: convert the tiny network, open the artifact and check the
        outputs against the source model (:func:`check_round_trip`)."""
        probe = target.probe()
        if not probe.available:
            pytest.skip(f"{target.name} toolchain not here: {probe.detail}")
        assert runnable_precisions and set(runnable_precisions) <= set(target.precisions)
        for precision in runnable_precisions:
            (tmp_path / precision).mkdir(parents=True)
            req = tiny_request(tmp_path / precision, precision=precision, options=target_options)
            result = target.convert(req)
            for rel in result.files.values():
                assert (req.out_dir / rel).exists(), f"convert reported {rel} but did not write it"
            manifest = {"format": FORMAT, "model": "tiny", "variant": "default", "task": "classification",
                        "input": req.input.to_dict(), "outputs": ["logits"], "target": target.name,
                        "precision": req.precision, "batch_sizes": result.batch_sizes, "files": result.files,
                        "target_options": req.options}
            (req.out_dir / MANIFEST).write_text(json.dumps(manifest))
            with target.open(Artifact.load(req.out_dir), options=req.options) as runner:
                assert isinstance(runner, Runner)
                assert req.reference_inputs is not None
                diffs = check_round_trip(runner, req.onnx_path, req.reference_inputs, precision)
            print(f"\n{target.name} {precision} vs the source on onnxruntime: max rel "
                  f"{max(d.max_rel for d in diffs):.2e}, cosine {min(d.cosine_min for d in diffs):.6f}")


# -- model plugins ------------------------------------------------------------------------------

#: the class the contract's classification logits make the winner, and the runner-up
WINNER, RUNNER_UP = 7, 3


def blob_image(height: int, width: int, centre: tuple[float, float], sigma: float) -> np.ndarray:
    """A dark BGR uint8 image with one bright Gaussian blob at ``centre`` (x, y)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    g = np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * sigma ** 2))
    return np.repeat((30 + 200 * g)[..., None], 3, axis=2).astype(np.uint8)


def blob_map(tensor: np.ndarray, stride: int) -> np.ndarray:
    """A stand-in pose network: the item's brightness pooled over ``stride`` x ``stride``
    cells and scaled to [0, 1], so every output map peaks where the blob is in that item
    (mirrored items included)."""
    c, h, w = tensor.shape
    bright = tensor.mean(axis=0)[: h // stride * stride, : w // stride * stride]
    pooled = bright.reshape(h // stride, stride, w // stride, stride).mean(axis=(1, 3))
    span = float(pooled.max() - pooled.min()) or 1.0
    return ((pooled - pooled.min()) / span).astype(np.float32) ** 4


class ModelContract:
    """Contract every model plugin must pass. Provide a ``model`` fixture.

    The round trip feeds ``finish`` outputs made by :meth:`task_outputs` following the task's
    output conventions; a plugin whose outputs follow other conventions overrides it."""

    def test_identity(self, model: ModelSpec) -> None:
        assert isinstance(model, ModelSpec)
        assert model.name and model.name.isidentifier()
        assert model.task in TASKS
        assert model.variants, "at least one variant"
        for name, v in model.variants.items():
            assert name == v.name
            assert v.outputs and v.input.name
            assert v.input.fixed_size or v.input.gears, "a fixed input size or size gears"
            json.dumps(v.preprocess)
            json.dumps(v.input.to_dict())

    def test_dataset_kinds_and_options(self, model: ModelSpec) -> None:
        for kind in model.dataset_kinds:
            assert kind.isidentifier()
        for name, opt in model.options.items():
            assert name.isidentifier() and opt.help

    def test_pipeline_round_trip(self, model: ModelSpec) -> None:
        """prepare() gives CHW float32 items of the variant's size; finish() on the task's
        outputs gives the prediction they encode (the winning class; people on the image's
        bright blob), JSON-serialisable, that draw() can render."""
        variant = model.variant()
        pipeline = model.pipeline(variant, {}, runtime=PipelineRuntime.for_variant(variant))
        json.dumps(pipeline.params, default=str)
        size = variant.input.fixed_size or variant.input.gears[0]
        height, width = int(size[0] * 1.3), int(size[1] * 1.3)
        blob = (0.41 * width, 0.37 * height)     # off-centre: mirroring must be undone
        image = blob_image(height, width, blob, sigma=0.02 * max(height, width))
        ref = SampleRef("contract", Path("contract.jpg"))
        items = pipeline.prepare(Sample(ref, image))
        assert items
        for it in items:
            assert it.tensor.dtype == np.float32 and it.tensor.ndim == 3
            assert it.tensor.shape[0] == variant.input.channels
        pred = pipeline.finish(ref, items, self.task_outputs(model, variant, items))
        json.dumps(pred)
        if model.task == "classification":
            top = pred["top_k"]
            assert [t["index"] for t in top[:2]] == [WINNER, RUNNER_UP], \
                f"top classes {[t['index'] for t in top]}: the logits rank {WINNER} first, {RUNNER_UP} second"
            assert [t["score"] for t in top] == sorted((t["score"] for t in top), reverse=True)
        else:
            assert pred["people"], "a person on the blob"
            best = max(pred["people"], key=lambda p: p["score"])
            kp = np.asarray(best["keypoints"], np.float64)
            assert kp.shape == (17, 3) and (kp[:, 2] > 0).all()
            error = float(np.hypot(kp[:, 0] - blob[0], kp[:, 1] - blob[1]).max())
            assert error <= 0.02 * max(height, width), f"keypoints {error:.1f} px from the blob"
        drawn = model.draw(image, pred)
        assert drawn.shape == image.shape and drawn.dtype == np.uint8

    def task_outputs(self, model: ModelSpec, variant: Any, items: list[Item]) -> list[dict[str, np.ndarray]]:
        """Network outputs (no batch axis) per item, by the task's conventions:

        * classification: one ``(num_classes,)`` logit vector where :data:`WINNER` wins and
          :data:`RUNNER_UP` comes second;
        * pose-topdown: ``(17, H/4, W/4)`` heatmaps (HRNet's stride 4, or the variant's
          ``heatmap_size_wh``) peaking on the blob;
        * pose-bottomup (DEKR's layout): ``(18, h, w)`` heatmaps with the person centre last
          and ``(34, h, w)`` offsets, at the variant's ``output_stride``; zero offsets put
          every joint on the centre peak, the blob.
        """
        outs = []
        for it in items:
            if model.task == "classification":
                logits = np.full(int(getattr(model, "num_classes", 1000)), -1.0, np.float32)
                logits[WINNER], logits[RUNNER_UP] = 8.0, 4.0
                outs.append({variant.outputs[0]: logits})
            elif model.task == "pose-topdown":
                hw = variant.preprocess.get("heatmap_size_wh")
                stride = it.tensor.shape[2] // int(hw[0]) if hw else 4
                outs.append({variant.outputs[0]: np.repeat(blob_map(it.tensor, stride)[None], 17, 0)})
            elif model.task == "pose-bottomup":
                m = blob_map(it.tensor, int(variant.preprocess.get("output_stride", 4)))
                heatmap, offset = variant.outputs[:2]
                outs.append({heatmap: np.repeat(m[None], 18, 0), offset: np.zeros((34, *m.shape), np.float32)})
            else:
                raise NotImplementedError(f"no output conventions for task {model.task!r}: override task_outputs")
        return outs

    def test_build_is_lazy_about_torch(self, model: ModelSpec) -> None:
        import importlib
        import sys

        mod = sys.modules[type(model).__module__]
        src = Path(mod.__file__ or "").read_text(encoding="utf-8")
        assert "\nimport torch" not in src and "\nfrom torch" not in src, \
            "import torch inside build()/load_weights() only: deployment boxes have no torch"
        importlib.reload(mod)
