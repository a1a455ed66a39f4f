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
from ..model import TASKS, InputSpec, ModelSpec, Sample, SampleRef
from ..samples import make_image
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

    return ConvertRequest(
        onnx_path=onnx_path, out_dir=out, model="tiny", variant="default", task="classification",
        input=InputSpec(height=size, width=size), preprocess={"mean": [0.0] * 3, "std": [1.0] * 3, "scale": 1 / 255},
        precision=precision, batch_sizes=batch_sizes or [1], options=dict(options or {}), dry_run=dry_run,
        calib_count=8, calibration=calibration, reference_inputs=rng.standard_normal((2, 3, size, size)).astype(np.float32),
        log=lambda _msg: None)


class TargetContract:
    """Contract every target must pass. Provide a ``target`` fixture; override
    ``target_options`` to pass required options (e.g. a chip name) to the convert tests."""

    @pytest.fixture
    def target_options(self) -> dict[str, Any]:
        return {}

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

    def test_convert_and_run(self, target: Target, tmp_path: Path, target_options: dict[str, Any]) -> None:
        probe = target.probe()
        if not probe.available:
            pytest.skip(f"{target.name} toolchain not here: {probe.detail}")
        req = tiny_request(tmp_path, precision=target.precisions[0], options=target_options)
        result = target.convert(req)
        for rel in result.files.values():
            assert (req.out_dir / rel).exists(), f"convert reported {rel} but did not write it"
        manifest = {"format": FORMAT, "model": "tiny", "variant": "default", "task": "classification",
                    "input": req.input.to_dict(), "target": target.name, "precision": req.precision,
                    "batch_sizes": result.batch_sizes, "files": result.files, "target_options": req.options}
        (req.out_dir / MANIFEST).write_text(json.dumps(manifest))
        with target.open(Artifact.load(req.out_dir), options=req.options) as runner:
            assert isinstance(runner, Runner)
            x = req.reference_inputs[:1] if req.reference_inputs is not None else None
            assert x is not None
            if runner.batch_sizes:
                x = np.repeat(x, runner.batch_sizes[0], 0)
            outs = runner.run({runner.input_name: x})
            assert len(outs) == len(runner.output_names)
            assert outs[0].shape[0] == len(x) and outs[0].dtype == np.float32
            assert np.isfinite(outs[0]).all()


class ModelContract:
    """Contract every model plugin must pass. Provide a ``model`` fixture."""

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
        """prepare() gives CHW float32 items of the variant's size; finish() on outputs of the
        right shape gives a JSON-serialisable prediction that draw() can render."""
        variant = model.variant()
        pipeline = model.pipeline(variant, {}, runtime={"sizes": list(variant.input.sizes) or None})
        json.dumps(pipeline.params, default=str)
        size = variant.input.fixed_size or variant.input.gears[0]
        image = make_image(int(size[0] * 1.3), int(size[1] * 1.3), seed=3)
        ref = SampleRef("contract", Path("contract.jpg"))
        items = pipeline.prepare(Sample(ref, image))
        assert items
        for it in items:
            assert it.tensor.dtype == np.float32 and it.tensor.ndim == 3
            assert it.tensor.shape[0] == variant.input.channels
        outputs = [self._fake_outputs(model, variant, it.tensor.shape) for it in items]
        pred = pipeline.finish(ref, items, outputs)
        json.dumps(pred)
        drawn = model.draw(image, pred)
        assert drawn.shape == image.shape and drawn.dtype == np.uint8

    def _fake_outputs(self, model: ModelSpec, variant: Any, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        """Outputs of the right shape: plugins override when shapes cannot be inferred."""
        raise pytest.skip("override _fake_outputs to exercise finish()")

    def test_build_is_lazy_about_torch(self, model: ModelSpec) -> None:
        import importlib
        import sys

        mod = sys.modules[type(model).__module__]
        src = Path(mod.__file__ or "").read_text(encoding="utf-8")
        assert "\nimport torch" not in src and "\nfrom torch" not in src, \
            "import torch inside build()/load_weights() only: deployment boxes have no torch"
        importlib.reload(mod)
