"""An ONNX Runtime session behind the Runner interface, tuned for throughput: the runner of the
built-in onnxruntime target and the reference runtime every parity check compares against."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import UserError
from .target import Runner

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}


def physical_cores() -> int:
    """ORT's default of one thread per logical core oversubscribes SMT machines; cores
    available to this process are what matters on a shared box."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def session_options(threads: int | None = None) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads or physical_cores()
    so.inter_op_num_threads = 1
    so.enable_mem_pattern = True
    so.enable_cpu_mem_arena = True
    so.log_severity_level = 3
    return so


def resolve_providers(device: str | None) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if not device or device == "cpu":
        return ["CPUExecutionProvider"]
    wanted = [PROVIDER_ALIASES.get(d.strip().split(":")[0], d.strip()) for d in device.split(",")]
    missing = [w for w in wanted if w not in available]
    if missing:
        raise UserError(f"onnxruntime provider(s) not available: {', '.join(missing)}",
                        f"available: {', '.join(available)}; install onnxruntime-gpu for CUDA/TensorRT")
    return wanted + (["CPUExecutionProvider"] if "CPUExecutionProvider" not in wanted else [])


class OrtRunner(Runner):
    def __init__(self, model_path: Path, device: str | None = None, threads: int | None = None) -> None:
        import onnxruntime as ort

        providers = resolve_providers(device)
        try:
            self.session = ort.InferenceSession(str(model_path), sess_options=session_options(threads),
                                                providers=providers)
        except Exception as e:  # ORT raises its own exception types for a bad file
            raise UserError(f"onnxruntime cannot load {model_path}: {' '.join(str(e).split())[:200]}") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise UserError(f"{model_path} has {len(inputs)} inputs; hrdeploy models take one image tensor")
        self.input_name = inputs[0].name
        self.input_type = inputs[0].type
        self.output_names = [o.name for o in self.session.get_outputs()]
        shape = inputs[0].shape
        self.batch_sizes = None if not isinstance(shape[0], int) else (int(shape[0]),)
        hw = shape[2:4]
        self.sizes = (tuple(int(v) for v in hw),) if all(isinstance(v, int) for v in hw) else None
        self.threads = threads or physical_cores()
        self.label = f"onnxruntime {ort.__version__} {providers[0]}, {self.threads} threads"
        self._fp16_input = "float16" in self.input_type

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self._fp16_input:
            feeds = {k: v.astype(np.float16) for k, v in feeds.items()}
        outs = self.session.run(self.output_names, feeds)
        return [o if o.dtype == np.float32 else o.astype(np.float32) for o in outs]

    def run_many(self, batches: Sequence[dict[str, np.ndarray]]) -> list[list[np.ndarray]]:
        return [self.run(b) for b in batches]
