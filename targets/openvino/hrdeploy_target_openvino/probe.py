"""What OpenVINO finds here: its version and the devices it can compile for, each with the
capabilities that decide the execution precision (``BF16``, ``FP16``, ``INT8``...)."""
from __future__ import annotations

from typing import Any

#: devices OpenVINO offers on top of the physical ones (they choose among those)
VIRTUAL_DEVICES = ("AUTO",)


def device_info(core: Any, name: str) -> dict[str, Any]:
    """One device as ``hrdeploy list --json`` shows it; a property a plugin does not report
    (NPU drivers differ) is left out rather than failing the probe."""
    info: dict[str, Any] = {"id": name}
    for key, prop in (("name", "FULL_DEVICE_NAME"), ("capabilities", "OPTIMIZATION_CAPABILITIES"),
                      ("type", "DEVICE_TYPE")):
        try:
            value = core.get_property(name, prop)
        except Exception:  # openvino raises its own RuntimeError subclasses per plugin
            continue
        info[key] = [str(v) for v in value] if isinstance(value, (list, tuple)) else str(value)
    return info


def query() -> tuple[str | None, list[dict[str, Any]], str]:
    """(version, devices, reason): version None and the reason when openvino is not usable."""
    try:
        import openvino as ov
    except ImportError as e:
        return None, [], f"openvino not importable: {e}"
    try:
        core = ov.Core()
        names = list(core.available_devices)
    except Exception as e:  # a broken plugin configuration: say what OpenVINO said, in one line
        return ov.__version__, [], "OpenVINO cannot list its devices: " + " ".join(str(e).split())[:200]
    return short_version(ov.__version__), [device_info(core, n) for n in names], ""


def short_version(full: str) -> str:
    """``2026.4.1-22982-e213a14...`` -> ``2026.4.1``: the release a user recognises."""
    return full.split("-", 1)[0]


def capabilities(devices: list[dict[str, Any]], device: str) -> set[str]:
    """The optimisation capabilities of ``device`` ("CPU", "GPU.0"; "GPU" means the first
    GPU); for AUTO and other virtual devices the ones every physical device has, since any
    of them may run the model."""
    base = device.split(":", 1)[0].upper()
    if base in VIRTUAL_DEVICES or base in ("MULTI", "HETERO"):
        sets = [set(d.get("capabilities", [])) for d in devices]
        return set.intersection(*sets) if sets else set()
    for d in devices:
        if d["id"].upper() == base or d["id"].upper().split(".")[0] == base:
            return set(d.get("capabilities", []))
    return set()
