"""The OpenVINO target below the command line: the runner's output buffers, throughput mode's
requests in flight, the execution precision rules, the compile configuration, bf16 refusal
and mixed precision's ignored scope."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hrdeploy.artifact import FORMAT, MANIFEST, Artifact
from hrdeploy.errors import UserError
from hrdeploy.testing.contract import source_outputs, tiny_request
from hrdeploy_target_openvino import settings
from hrdeploy_target_openvino.probe import query
from hrdeploy_target_openvino.target import OpenVinoTarget

_VERSION, _DEVICES, _REASON = query()
needs_openvino = pytest.mark.skipif(_VERSION is None, reason=f"openvino not here: {_REASON}")


def converted(tmp_path: Path, precision: str = "fp32", keep_float: list[str] | None = None) -> tuple[Any, Artifact]:
    """The contract's tiny network converted at ``precision``, with the manifest convert writes."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    req = tiny_request(tmp_path, precision=precision)
    req.keep_float = list(keep_float or [])
    result = OpenVinoTarget().convert(req)
    manifest = {"format": FORMAT, "model": "tiny", "variant": "default", "task": "classification",
                "input": req.input.to_dict(), "outputs": ["logits"], "target": "openvino", "precision": precision,
                "batch_sizes": result.batch_sizes, "files": result.files, "conversion": result.extra}
    (req.out_dir / MANIFEST).write_text(json.dumps(manifest))
    return req, Artifact.load(req.out_dir)


@needs_openvino
def test_runner_copies_the_reused_output_tensors(tmp_path: Path) -> None:
    req, art = converted(tmp_path)
    x = req.reference_inputs
    with OpenVinoTarget().open(art) as runner:
        first = runner.run({"image": x[:1]})
        kept = first[0].copy()
        second = runner.run({"image": x[1:2]})
        # OpenVINO writes the next inference into the same output tensor: the runner's
        # first answer must be a copy of it, untouched by the second inference
        assert np.array_equal(first[0], kept) and not np.array_equal(first[0], second[0])
        tensor = runner._request.get_tensor(runner._outputs[0]).data
        assert not np.shares_memory(first[0], tensor) and not np.shares_memory(second[0], tensor)
        assert np.array_equal(np.asarray(tensor), second[0])
    ref = source_outputs(req.onnx_path, x[:1])[0]
    assert np.abs(first[0] - ref).max() <= 1e-5 * np.abs(ref).max()


@needs_openvino
def test_throughput_mode_keeps_several_requests_in_flight(tmp_path: Path) -> None:
    req, art = converted(tmp_path)
    x = np.random.default_rng(5).standard_normal((6, 3, 32, 32)).astype(np.float32)
    ref = source_outputs(req.onnx_path, x)[0]
    with OpenVinoTarget().open(art, options={"hint": "throughput", "streams": 2, "threads": 2}) as runner:
        assert runner.streams == 2 and runner.requests >= 2 and runner._queue is not None
        assert "throughput hint, 2 streams" in runner.label
        whole = runner.run({"image": x})[0]            # one batch split over the streams
        many = runner.run_many([{"image": x[i:i + 2]} for i in range(0, 6, 2)])  # one request per batch
    assert whole.shape == ref.shape and np.abs(whole - ref).max() <= 1e-5 * np.abs(ref).max()
    assert np.allclose(np.concatenate([m[0] for m in many]), whole, rtol=0, atol=1e-5 * np.abs(ref).max())
    # every batch's arrays are its own
    assert not any(np.shares_memory(many[i][0], many[j][0]) for i in range(3) for j in range(i + 1, 3))


def test_execution_precision_rules() -> None:
    f16 = settings.execution_record("fp16")
    assert settings.execution_precision(f16, {"FP32", "FP16"}, "GPU") == "f16"
    assert settings.execution_precision(f16, {"FP32", "BF16"}, "CPU") == "f32"  # not bf16 behind the user's back
    assert settings.execution_precision(settings.execution_record("fp32"), {"FP32", "BF16"}, "CPU") == "f32"
    assert settings.execution_precision(settings.execution_record("int8"), {"INT8"}, "CPU") == "f32"
    with pytest.raises(UserError, match="no bf16 execution"):
        settings.execution_precision(settings.execution_record("bf16"), {"FP32", "INT8"}, "CPU")


def test_compile_config_follows_the_device() -> None:
    cpu = settings.compile_config("CPU", "f32", {"hint": "throughput", "streams": 3, "threads": 2},
                                  {"PERFORMANCE_HINT", "INFERENCE_PRECISION_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS"}, 4)
    assert cpu == {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": "f32", "NUM_STREAMS": "3",
                   "INFERENCE_NUM_THREADS": 2}
    assert settings.compile_config("CPU", "f32", {}, None, 4)["INFERENCE_NUM_THREADS"] == 4
    # an NPU that does not take a precision hint gets none; threads are a CPU setting
    npu = settings.compile_config("NPU", "f32", {"threads": 2}, {"PERFORMANCE_HINT"}, 4)
    assert npu == {"PERFORMANCE_HINT": "LATENCY"}
    # AUTO passes what it does not know on to the device it picks
    assert "INFERENCE_PRECISION_HINT" in settings.compile_config("AUTO", "f32", {}, {"PERFORMANCE_HINT"}, 4)
    with pytest.raises(UserError, match="--hint"):
        settings.compile_config("CPU", "f32", {"hint": "fastest"}, None, 4)


@needs_openvino
def test_bf16_is_refused_on_a_cpu_without_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hrdeploy_target_openvino.target as target_module

    monkeypatch.setattr(target_module, "capabilities", lambda devices, device: {"FP32", "INT8"})
    req = tiny_request(tmp_path, precision="bf16")
    with pytest.raises(UserError, match="CPU has no bf16 execution") as e:
        OpenVinoTarget().convert(req)
    assert "\n" not in str(e.value)
    assert not (req.out_dir / "model.xml").exists()


@needs_openvino
def test_keep_float_leaves_those_layers_unquantized(tmp_path: Path) -> None:
    import openvino as ov

    def conv_fed_by_fake_quantize(art: Artifact) -> bool:
        model = ov.Core().read_model(str(art.file("model")))
        conv = next(op for op in model.get_ordered_ops() if op.get_type_name() == "Convolution")
        return any(i.get_source_output().get_node().get_type_name() == "FakeQuantize" for i in conv.inputs())

    _req, plain = converted(tmp_path / "plain", "int8")
    assert conv_fed_by_fake_quantize(plain), "int8 quantizes the conv"
    assert "kept_float" not in plain.manifest["conversion"]["quantization"]
    req, art = converted(tmp_path / "mixed", "int8", keep_float=["c1"])
    kept = art.manifest["conversion"]["quantization"]["kept_float"]
    # the ONNX Conv's tensor c1 is OpenVINO's bias Add; its Convolution is followed back to
    assert kept["tensors"] == ["c1"] and kept["ops"] == ["c1", "c1/WithoutBiases"]
    assert not conv_fed_by_fake_quantize(art), "the conv kept in float gets no FakeQuantize"
    with OpenVinoTarget().open(art) as runner:
        got = runner.run({"image": req.reference_inputs})[0]
    ref = source_outputs(req.onnx_path, req.reference_inputs)[0]
    cos = (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    assert cos.min() >= 0.99


@needs_openvino
def test_keep_float_of_an_unknown_tensor_is_one_line(tmp_path: Path) -> None:
    req = tiny_request(tmp_path, precision="int8")
    req.keep_float = ["no_such_tensor"]
    with pytest.raises(UserError, match="no_such_tensor"):
        OpenVinoTarget().convert(req)
