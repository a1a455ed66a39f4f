"""A target that 'compiles' by copying the ONNX file and runs it with ONNX Runtime: the
smallest thing that exercises the whole target contract."""
from __future__ import annotations

import shutil

from hrdeploy.target import ConvertRequest, ConvertResult, Probe, Target


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
        from hrdeploy.targets.onnxruntime.runner import OrtRunner

        runner = OrtRunner(artifact.file("model"))
        runner.label = "copycat " + runner.label
        return runner
