"""What is installed and whether it works: the data behind ``hrdeploy list`` and ``doctor``."""
from __future__ import annotations

import importlib
import platform
import sys
from typing import Any

from .plugins import Registry, orphan_modules


def _target_probe(target: Any) -> dict[str, Any]:
    try:
        return target.probe().to_dict()
    except Exception as e:  # a probe must never take `list` down
        return {"available": False, "detail": f"probe failed: {type(e).__name__}: {e}"}


def inventory(reg: Registry) -> dict[str, Any]:
    models, targets = [], []
    for rec in reg.records:
        if rec.kind == "model":
            names = rec.provides or [rec.name]
            for name in names:
                spec = reg.models.get(name) if rec.status == "ok" else None
                models.append({"name": name, "task": getattr(spec, "task", None),
                               "variants": list(getattr(spec, "variants", {}) or []),
                               "distribution": rec.distribution, "version": rec.version,
                               "status": rec.status, "error": rec.error})
        else:
            names = rec.provides or [rec.name]
            for name in names:
                tgt = reg.targets.get(name) if rec.status == "ok" else None
                probe = _target_probe(tgt) if tgt is not None else {"available": False, "detail": None}
                targets.append({"name": name, "distribution": rec.distribution, "version": rec.version,
                                "status": rec.status, "error": rec.error,
                                "available": bool(probe.get("available")), "detail": probe.get("detail")})
    return {"models": models, "targets": targets}


def _version(module: str) -> str:
    try:
        mod = importlib.import_module(module)
    except Exception as e:
        return f"not importable: {type(e).__name__}: {e}"
    return str(getattr(mod, "__version__", "installed"))


def doctor_report(reg: Registry) -> dict[str, Any]:
    from . import __version__

    env: dict[str, Any] = {"hrdeploy": __version__, "python": f"{platform.python_version()} ({sys.executable})",
                           "platform": platform.platform()}
    for mod, label in (("numpy", "numpy"), ("cv2", "opencv"), ("onnx", "onnx"), ("onnxruntime", "onnxruntime"),
                       ("pycocotools", "pycocotools"), ("pluggy", "pluggy"), ("stevedore", "stevedore")):
        env[label] = _version(mod)
    try:
        import onnxruntime as ort

        env["onnxruntime providers"] = ", ".join(ort.get_available_providers())
    except Exception:
        pass
    try:
        import torch

        env["torch"] = f"{torch.__version__} (export available)"
    except ImportError:
        env["torch"] = "not installed: export unavailable (pip install torch==2.13.0)"
    targets = {name: _target_probe(t) for name, t in reg.targets.items()}
    problems = [f"{r.kind} plugin {r.name!r} ({r.distribution or 'no distribution'} {r.version or ''}) "
                f"failed to load: {r.error}" for r in reg.records if r.status == "error"]
    problems += [f"{r.kind} plugin {r.name!r} is disabled: {r.error}" for r in reg.records if r.status == "disabled"]
    for mod in orphan_modules():
        problems.append(f"module {mod!r} is importable but no installed distribution registers it as an "
                        f"hrdeploy plugin: pip install its package (pip install -e <folder>) so it shows up")
    return {"environment": env, "targets": targets, "plugins": [r.to_dict() for r in reg.records],
            "problems": problems}
