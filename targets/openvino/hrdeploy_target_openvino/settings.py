"""How an OpenVINO IR is compiled: the execution precision each hrdeploy precision asks for,
and the compile configuration (performance hint, streams, threads) built from the options."""
from __future__ import annotations

from typing import Any

from hrdeploy.errors import UserError

#: INFERENCE_PRECISION_HINT per hrdeploy precision, recorded in the manifest at conversion and
#: applied at open. OpenVINO's CPU plugin runs bf16 by default on AVX512_BF16/AMX CPUs (this
#: one included), which breaks fp32 parity; int8 keeps its float layers (the ones NNCF left out,
#: ``keep_float`` among them) in f32 so mixed precision means what it says.
EXECUTION = {"fp32": "f32", "fp16": "f16", "bf16": "bf16", "int8": "f32"}
#: where a device lacks the precision an fp16 IR asks for, its compressed weights run in f32
#: (the CPU plugin would otherwise silently choose bf16)
FP16_FALLBACK = "f32"
HINTS = ("latency", "throughput")
VIRTUAL = ("AUTO", "MULTI", "HETERO")


def execution_record(precision: str) -> dict[str, Any]:
    """The manifest's ``conversion.execution``: what :func:`execution_precision` resolves."""
    rec: dict[str, Any] = {"inference_precision_hint": EXECUTION[precision]}
    if precision == "fp16":
        rec["without_fp16"] = FP16_FALLBACK
    return rec


def require_bf16(capabilities: set[str], device: str) -> None:
    if "BF16" not in capabilities:
        raise UserError(f"OpenVINO device {device} has no bf16 execution (its capabilities: "
                        f"{', '.join(sorted(capabilities)) or 'none reported'})",
                        "choose --precision fp32, fp16 or int8 (bf16 needs AVX512_BF16 or AMX)")


def execution_precision(record: dict[str, Any], capabilities: set[str], device: str) -> str:
    """The INFERENCE_PRECISION_HINT to compile with on ``device``, from the manifest's record."""
    hint = str(record.get("inference_precision_hint") or "f32")
    if hint == "bf16":
        require_bf16(capabilities, device)
    if hint == "f16" and "FP16" not in capabilities:
        return str(record.get("without_fp16") or FP16_FALLBACK)
    return hint


def compile_config(device: str, precision_hint: str, options: dict[str, Any], supported: set[str] | None,
                   default_threads: int) -> dict[str, Any]:
    """The properties given to ``Core.compile_model``. ``supported``: the device's
    SUPPORTED_PROPERTIES (None when unknown); a property the device does not take is left
    out (an NPU chooses its own precision and threads), except on virtual devices, which pass
    them on to the device they pick."""
    hint = str(options.get("hint") or "latency").lower()
    if hint not in HINTS:
        raise UserError(f"--hint {hint!r} is not one of {', '.join(HINTS)}")
    wanted: dict[str, Any] = {"PERFORMANCE_HINT": hint.upper(), "INFERENCE_PRECISION_HINT": precision_hint}
    if options.get("streams") is not None:
        wanted["NUM_STREAMS"] = str(int(options["streams"]))
    threads = int(options["threads"]) if options.get("threads") is not None else default_threads
    if device.split(":", 1)[0].split(".", 1)[0].upper() == "CPU":
        wanted["INFERENCE_NUM_THREADS"] = threads
    if supported is None or device.split(":", 1)[0].upper() in VIRTUAL:
        return wanted
    return {k: v for k, v in wanted.items() if k in supported}
