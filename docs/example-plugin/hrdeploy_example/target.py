"""A target that 'compiles' by copying the ONNX file and runs it with ONNX Runtime: the
smallest thing that exercises the whole target contract."""
from __future__ import annotations

import shutil

import numpy as np

from hrdeploy.target import ConvertRequest, ConvertResult, Probe, Runner, Target


class CopycatTarget(Target):
    name = "copycat"
    description = "copies the ONNX model and runs it with ONNX Runtime (example plugin)"
    precisions = ("fp32",)
    static_batch = False

    def probe(self) -> Probe:
        return Probe(True, "always available (pure Python)", version="0.3.0")

    def convert(self, request: ConvertRequest) -> ConvertResult:
        out = request.out_dir / "copy.onnx"
        request.record(["cp", str(request.onnx_path), str(out)])
        if not request.dry_run:
            shutil.copyfile(request.onnx_path, out)
        return ConvertResult(files={"model": out.name}, toolchain={"name": "cp"})

    def open(self, artifact, device=None, options=None):
        return CopycatRunner(artifact.file("model"))


class CopycatRunner(Runner):
    """Runs the copied file with ONNX Runtime: only public hrdeploy API (Runner) is used."""

    def __init__(self, model) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.label = f"copycat (onnxruntime {ort.__version__})"

    def run(self, feeds):
        # fresh arrays every call: hrdeploy keeps outputs across batches
        return [np.array(o, dtype=np.float32, copy=True) for o in self.session.run(self.output_names, feeds)]
