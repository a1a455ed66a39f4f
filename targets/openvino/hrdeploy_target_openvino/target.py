"""The OpenVINO target: ONNX -> OpenVINO IR per precision, compiled for CPU, GPU, NPU or AUTO."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from hrdeploy.artifact import Artifact
from hrdeploy.errors import ToolchainMissing, UserError
from hrdeploy.kit.plan import from_plan_hint, load_plan, option_values, plan_request
from hrdeploy.kit.toolrun import COMPILE_TIMEOUT
from hrdeploy.ort_runner import physical_cores
from hrdeploy.target import ConvertRequest, ConvertResult, LayerDump, Probe, Runner, Target, TargetOption

from . import conversion
from .probe import capabilities, query
from .settings import HINTS, compile_config, execution_precision, require_bf16

SETUP_HINT = "pip install hrdeploy-target-openvino (openvino and nncf from PyPI)"


class OpenVinoTarget(Target):
    name = "openvino"
    description = "Intel OpenVINO (CPU, GPU, NPU, AUTO): IR with fp32/fp16/bf16 execution, NNCF int8"
    precisions = ("fp32", "fp16", "bf16", "int8")
    static_batch = False
    static_shapes = False  # the IR keeps the export's dynamic axes: any (H, W) runs
    mixed_precision = True  # keep_float -> NNCF's ignored scope
    options = {
        # the same meaning as onnxruntime's threads (one shared --threads flag)
        "threads": TargetOption("intra-op threads (default: the cores available to this process)", type=int, min=1),
        "hint": TargetOption("OpenVINO performance hint: latency (one stream, every thread on one request) or "
                             "throughput (several streams, several requests in flight)", "latency", HINTS),
        "streams": TargetOption("OpenVINO streams (default: what the hint chooses)", type=int, min=1),
    }
    setup_hint = SETUP_HINT

    def probe(self) -> Probe:
        version, devices, reason = query()
        if version is None or not devices:
            return Probe(False, reason or "OpenVINO finds no device", version=version)
        names = ", ".join(f"{d['id']} ({d.get('name', '?')}: {'/'.join(d.get('capabilities', [])) or '?'})"
                          for d in devices)
        return Probe(True, f"OpenVINO {version}; devices: {names}; AUTO", version=version, devices=devices,
                     extra={"virtual_devices": ["AUTO"],
                            "bf16": "BF16" in capabilities(devices, "CPU")})

    # -- convert --------------------------------------------------------------------------------
    def convert(self, request: ConvertRequest) -> ConvertResult:
        if request.precision not in self.precisions:
            raise UserError(f"openvino does not build {request.precision!r}", "choose " + ", ".join(self.precisions))
        opts = option_values(self.options, request.options)
        if request.dry_run:
            return conversion.write_dry_run_plan(request, opts, self.name)
        probe = self.require()
        if request.precision == "bf16":  # the parity check runs here, on the CPU
            require_bf16(capabilities(probe.devices, "CPU"), "CPU")
        tensors = conversion.calibration_tensors(request) if request.precision == "int8" else None
        return conversion.build(request, request.onnx_path, tensors)

    def run_plan(self, artifact: Artifact | Path | str, log: Any = print,
                 step_timeout: float | None = COMPILE_TIMEOUT) -> ConvertResult:
        """Build a ``convert --dry-run`` folder here (``hrdeploy convert --from-plan``), with
        the calibration tensors the plan carries."""
        folder, doc = load_plan(artifact, conversion.PLAN_FORMAT, "an OpenVINO plan", self.name)
        self.require()
        request = plan_request(doc, folder, log, step_timeout)
        request.keep_float = list(doc.get("keep_float") or [])
        result = conversion.build(request, folder / conversion.SOURCE_ONNX, conversion.plan_calibration(folder, doc))
        planned = {"source_onnx": conversion.SOURCE_ONNX, "plan": "plan.json"}
        if doc.get("calibration_file"):
            planned["calibration"] = str(doc["calibration_file"])
        result.files = {**planned, **result.files}  # the plan stays in the folder: it is what was built
        result.extra["commands"] = request.commands
        return result

    # -- layer-wise debugging (hrdeploy debug) ---------------------------------------------------
    def layer_outputs(self, artifact: Artifact, inputs: Any, source: Path, workdir: Path,
                      log: Any = print) -> LayerDump:
        from .layers import layer_outputs

        version, devices, reason = query()
        if version is None:
            raise ToolchainMissing(reason, SETUP_HINT)
        execution = (artifact.manifest.get("conversion") or {}).get("execution") or {"inference_precision_hint": "f32"}
        hint = execution_precision(execution, capabilities(devices, "CPU"), "CPU")
        config = compile_config("CPU", hint, {}, _supported("CPU"), physical_cores())
        return layer_outputs(artifact, inputs, source, config, f"OpenVINO {version} CPU, {hint}", log)

    # -- run ------------------------------------------------------------------------------------
    def open(self, artifact: Artifact, device: str | None = None, options: dict[str, Any] | None = None) -> Runner:
        from .runner import OpenVinoRunner

        m = artifact.manifest
        name = (m.get("files") or {}).get("model", conversion.MODEL_XML)
        if not artifact.inside(name, "files.model").is_file() and (artifact.folder / "plan.json").is_file():
            raise UserError(f"{artifact.path} has no OpenVINO IR yet", from_plan_hint(conversion.TOOLKIT))
        version, devices, reason = query()
        if version is None:
            raise ToolchainMissing(reason, SETUP_HINT)
        dev = (device or "CPU").strip()
        dev = dev.split(":", 1)[1] if dev.lower().startswith("openvino:") else dev
        dev = dev.upper() if ":" not in dev else dev.split(":", 1)[0].upper() + ":" + dev.split(":", 1)[1]
        base = dev.split(":", 1)[0]
        present = [d["id"] for d in devices]
        if base not in ("AUTO", "MULTI", "HETERO") and not any(p == base or p.split(".")[0] == base for p in present):
            raise ToolchainMissing(f"OpenVINO device {dev} is not here (devices: {', '.join(present) or 'none'})",
                                   "use --device CPU or AUTO, or install the device's driver")
        execution = (m.get("conversion") or {}).get("execution") or {"inference_precision_hint": "f32"}
        hint = execution_precision(execution, capabilities(devices, dev), dev)
        supported = _supported(base)
        config = compile_config(dev, hint, options or {}, supported, physical_cores())
        xml = artifact.file("model")
        assert xml is not None
        return OpenVinoRunner(xml, dev, config, version=version, output_names=m.get("outputs"))


def _supported(device: str) -> set[str] | None:
    """The SUPPORTED_PROPERTIES of ``device``, None when it does not say."""
    try:
        import openvino as ov

        return set(ov.Core().get_property(device, "SUPPORTED_PROPERTIES"))
    except Exception:  # a virtual device or a plugin without the property
        return None
