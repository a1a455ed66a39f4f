"""Issue 8's ratios, computed from a results dictionary (pure: no measuring, no I/O).

A results dictionary holds ``models``: a list of ``{"key": "hrnet_cls/w18", "points": [{"batch",
"device": {series: {"ips"}}, "e2e": {precision: {"e2e_ips", "e2e_per_image_ms"}}}],
"eval": {precision: {"batch", "images_per_second"}}, "int8_parity": {"min_cosine"}}``; see
run.py for how it is filled. Each check returns a row with the achieved value, the threshold,
``passed`` (None when the run did not measure what the check needs) and how it was computed.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

W18 = "hrnet_cls/w18"
DEKR = "dekr/w32"

NO_OVERHEAD = 0.97
E2E_OVER_DEVICE = 0.85
INT8_SPEEDUP = 2.5
INT8_COSINE = 0.99
FP32_OVER_TORCH = 1.6
DEKR_POST_SHARE = 0.10


def _model(results: dict[str, Any], key: str) -> dict[str, Any] | None:
    return next((m for m in results.get("models", []) if m.get("key") == key), None)


def _point(model: dict[str, Any] | None, batch: int) -> dict[str, Any] | None:
    if model is None:
        return None
    return next((p for p in model.get("points", []) if p.get("batch") == batch), None)


def _ips(point: dict[str, Any] | None, series: str) -> float | None:
    v = ((point or {}).get("device") or {}).get(series) or {}
    return v.get("ips")


def _row(name: str, value: float | None, threshold: float, op: str, how: str, required: bool = True,
         detail: str = "") -> dict[str, Any]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        passed = None
    else:
        passed = value >= threshold if op == ">=" else value <= threshold
    return {"check": name, "value": None if value is None else round(float(value), 4), "op": op,
            "threshold": threshold, "passed": passed, "required": required, "how": how, "detail": detail}


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def geomean(values: Iterable[float]) -> float | None:
    vals = [float(v) for v in values if v is not None and v > 0]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else None


def overhead_pairs(results: dict[str, Any]) -> list[tuple[str, float]]:
    """(label, hrdeploy / bare) for every model, batch and precision measured both ways."""
    out = []
    for m in results.get("models", []):
        for p in m.get("points", []):
            for prec in ("fp32", "int8"):
                r = _ratio(_ips(p, f"hrdeploy_{prec}"), _ips(p, f"bare_{prec}"))
                if r is not None:
                    out.append((f"{m['key']} {prec} bs{p['batch']}", r))
    return out


def compute(results: dict[str, Any], batch: int = 8) -> list[dict[str, Any]]:
    rows = []

    pairs = overhead_pairs(results)
    worst = min(pairs, key=lambda kv: kv[1]) if pairs else None
    below = [k for k, v in pairs if v < NO_OVERHEAD]
    rows.append(_row(
        "hrdeploy onnxruntime device-only / bare ONNX Runtime loop", geomean(v for _, v in pairs), NO_OVERHEAD, ">=",
        f"geometric mean over {len(pairs)} (model, precision, batch) points; each figure the best of "
        "rounds measured in alternation",
        detail=(f"worst {worst[0]}: {worst[1]:.3f}" if worst else "") +
               (f"; below {NO_OVERHEAD}: {', '.join(below)}" if below else "")))

    w18 = _model(results, W18)
    p8 = _point(w18, batch)
    ev = ((w18 or {}).get("eval") or {})
    for prec, required in (("fp32", True), ("int8", False)):
        e = ev.get(prec) or {}
        # the device-only figure measured alongside the eval runs when there is one
        device = e.get("device_ips") or _ips(p8, f"hrdeploy_{prec}")
        rows.append(_row(
            f"w18 eval throughput / device-only, {prec} bs{batch}",
            _ratio(e.get("images_per_second"), device), E2E_OVER_DEVICE, ">=",
            f"hrdeploy.evaluation.evaluate on {e.get('images', '?')} generated ImageNet images (decode+preprocess+"
            f"infer+postprocess+top-k metric, best of 2 runs) / hrdeploy device-only at batch {batch} measured "
            "alongside (best of 2)", required=required))

    rows.append(_row(f"w18 int8 / fp32 device-only, bs{batch}",
                     _ratio(_ips(p8, "hrdeploy_int8"), _ips(p8, "hrdeploy_fp32")), INT8_SPEEDUP, ">=",
                     "hrdeploy onnxruntime int8 (static QDQ) vs fp32 artifact, same thread count"))
    parity = (w18 or {}).get("int8_parity") or {}
    rows.append(_row("w18 int8 logits cosine vs fp32 (held-out images)", parity.get("min_cosine"), INT8_COSINE, ">=",
                     f"worst per-sample cosine from the int8 artifact's manifest parity ({parity.get('source', '?')})",
                     detail=parity.get("top1", "")))
    rows.append(_row(f"w18 onnxruntime fp32 / PyTorch eager, bs{batch}",
                     _ratio(_ips(p8, "hrdeploy_fp32"), _ips(p8, "pytorch")), FP32_OVER_TORCH, ">=",
                     "hrdeploy device-only fp32 vs the plugin's module under torch.inference_mode, same threads"))

    dekr = _model(results, DEKR)
    p1 = _point(dekr, 1)
    e2e = ((p1 or {}).get("e2e") or {}).get("fp32") or {}
    share = None
    if e2e.get("e2e_ips"):
        share = e2e["e2e_per_image_ms"]["postprocess"] / (1000.0 / e2e["e2e_ips"])
    rows.append(_row("DEKR post-processing share of end-to-end time per image, 512x768", share, DEKR_POST_SHARE, "<=",
                     "bench end-to-end: postprocess ms per image / wall ms per image (fp32, batch 1, "
                     "official flip test: 2 network runs per image)",
                     detail=f"postprocess {e2e['e2e_per_image_ms']['postprocess']:.1f} ms of "
                            f"{1000.0 / e2e['e2e_ips']:.0f} ms per image" if share is not None else ""))
    return rows


def summary_line(rows: list[dict[str, Any]]) -> str:
    req = [r for r in rows if r["required"]]
    passed = sum(1 for r in req if r["passed"])
    missing = sum(1 for r in req if r["passed"] is None)
    return f"{passed}/{len(req)} required checks passed" + (f" ({missing} not measured in this run)" if missing else "")
