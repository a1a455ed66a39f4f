"""The onnxruntime target: convert = an optimised ONNX model per precision, open = a session."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ...artifact import Artifact
from ...errors import UserError
from ...target import ConvertRequest, ConvertResult, Placement, Probe, Runner, Target, TargetOption
from ...ort_runner import OrtRunner, physical_cores


class OnnxRuntimeTarget(Target):
    name = "onnxruntime"
    description = "ONNX Runtime (CPU; CUDA/TensorRT providers when installed): the embedded default"
    precisions = ("fp32", "fp16", "int8")
    static_batch = False
    static_shapes = False  # any (H, W) runs: a chosen gear set is not compiled
    mixed_precision = True  # keep_float: nodes excluded from quantization
    options = {
        "threads": TargetOption("intra-op threads (default: the cores available to this process)", type=int, min=1),
        "calib_method": TargetOption("int8 calibration: minmax, entropy or percentile", "minmax",
                                     ("minmax", "entropy", "percentile")),
        "per_channel": TargetOption("int8 per-channel weight scales (true/false)", "true", ("true", "false")),
        "exclude_ops": TargetOption("int8: comma-separated op types left in float (e.g. Resize,Gemm)", ""),
        "replicas": TargetOption("eval/bench: split the CPU cores into N runners, one process each "
                                 "(--threads is then per runner)", type=int, min=1),
    }

    def probe(self) -> Probe:
        try:
            import onnxruntime as ort
        except ImportError as e:
            return Probe(False, f"onnxruntime not importable: {e}")
        providers = ort.get_available_providers()
        return Probe(True, f"onnxruntime {ort.__version__}; providers: {', '.join(providers)}",
                     version=ort.__version__, devices=[{"id": "cpu", "cores": physical_cores()}],
                     extra={"providers": providers})

    def ray_resources(self, options: dict[str, Any] | None = None) -> dict[str, float]:
        """A Ray actor reserves the CPUs its session's intra-op threads use (--threads, else one)."""
        return {"CPU": float((options or {}).get("threads") or 1)}

    # -- convert --------------------------------------------------------------------------------
    def convert(self, request: ConvertRequest) -> ConvertResult:
        import onnxruntime as ort

        if request.options.get("replicas") is not None:  # else the manifest would make every eval split
            raise UserError("--replicas splits an eval or bench over the cores; a conversion has none to split",
                            "pass it to 'hrdeploy eval' or 'hrdeploy bench'")
        out = request.out_dir / "model.onnx"
        steps = {"fp32": self._fp32, "fp16": self._fp16, "int8": self._int8}
        if request.precision not in steps:
            raise UserError(f"onnxruntime does not build {request.precision!r}",
                            "choose " + ", ".join(self.precisions))
        request.record(["hrdeploy", "convert", str(request.onnx_path), "--target", "onnxruntime",
                        "--precision", request.precision, "-o", str(request.out_dir)],
                       note=f"runs in-process with onnxruntime {ort.__version__}")
        if request.dry_run:
            return ConvertResult(files={"model": out.name}, toolchain={"name": "onnxruntime", "version": ort.__version__})
        extra = steps[request.precision](request, out)
        return ConvertResult(files={"model": out.name},
                             toolchain={"name": "onnxruntime", "version": ort.__version__},
                             batch_sizes=None, extra=extra)

    @staticmethod
    def _optimise(src: Path, dst: Path) -> None:
        """Apply ORT's portable (extended) graph optimisations offline; layout-specific ones
        (ORT_ENABLE_ALL) are applied at load time on the machine that runs the model."""
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = str(dst)
        so.log_severity_level = 3
        ort.InferenceSession(str(src), sess_options=so, providers=["CPUExecutionProvider"])

    def _fp32(self, request: ConvertRequest, out: Path) -> dict[str, Any]:
        self._optimise(request.onnx_path, out)
        return {"graph_optimisation": "ORT_ENABLE_EXTENDED offline, ORT_ENABLE_ALL at load",
                "summary": "the source graph optimised offline by onnxruntime (ORT_ENABLE_EXTENDED)"}

    def _fp16(self, request: ConvertRequest, out: Path) -> dict[str, Any]:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = onnx.load(str(request.onnx_path))
        # inputs/outputs stay float32 so the same host pipeline feeds every precision
        model16 = convert_float_to_float16(model, keep_io_types=True)
        onnx.save(model16, str(out))
        return {"note": "fp16 weights and activations, float32 I/O; on CPU fp16 is emulated and slower: "
                        "use it with the CUDA/TensorRT providers"}

    def _int8(self, request: ConvertRequest, out: Path) -> dict[str, Any]:
        from .quantize import quantize_int8

        if request.calibration is None:
            raise UserError("int8 needs calibration images", "pass --calib DIR (images run through the model's own preprocessing)")
        return quantize_int8(request, out)

    # -- debug ----------------------------------------------------------------------------------
    def layer_outputs(self, artifact: Artifact, inputs: Any, source: Path, workdir: Path,
                      log: Any = print) -> Any:
        from .layers import layer_outputs

        return layer_outputs(artifact, inputs, source, workdir, log)

    # -- run ------------------------------------------------------------------------------------
    def split_devices(self, devices: str | None, options: dict[str, Any]) -> list[Placement]:
        """onnxruntime runs on this host's CPU cores: ``--replicas N`` opens N runners (one
        process each, see :mod:`hrdeploy.devices`) with ``--threads`` or an equal share of the
        cores each, all on the provider ``--device`` chose."""
        if devices:
            raise UserError("onnxruntime has no device ids to spread over: it runs on this host's CPU cores",
                            "split them into N runners with --replicas N")
        n = int(options.get("replicas") or 1)
        threads = int(options.get("threads") or max(1, physical_cores() // n))
        return [Placement(None, {**options, "threads": threads}, f"replica:{i}") for i in range(n)]

    # -- run ------------------------------------------------------------------------------------
    def open(self, artifact: Artifact, device: str | None = None, options: dict[str, Any] | None = None) -> Runner:
        threads = (options or {}).get("threads")
        return OrtRunner(artifact.file("model"), device=device, threads=int(threads) if threads else None)

