#!/usr/bin/env python3
"""OpenVINO beside ONNX Runtime, in one run, for the four benchmark models (issue 18).

    python benchmarks/openvino_vs_onnxruntime.py                     # 4 models, batch 1 and 8
    python benchmarks/openvino_vs_onnxruntime.py --models hrnet_cls --seconds 2

Every model is exported once with seeded random weights (the benchmark cache of
benchmarks/run.py, benchmarks/.cache/, with its onnxruntime fp32 and int8 artifacts) and
converted for the openvino target at fp32 and int8 (NNCF, calibrated on the same generated
images through the model's own preprocessing; convert's parity runs on the 8 held-out ones).
Then, per batch size, six device-only series fed the same array run in alternating rounds
(``hrbench.timing.paired``: a figure is its best round), all at the same thread count:

* ``bare_ov_fp32`` / ``bare_ov_int8``: a plain OpenVINO loop (``compile_model`` with the same
  properties the hrdeploy runner uses, ``InferRequest.infer``): what a user would write;
* ``hrdeploy_ov_fp32`` / ``hrdeploy_ov_int8``: hrdeploy's openvino runner through
  ``hrdeploy.benchmark.device_only`` (what ``hrdeploy bench`` measures);
* ``hrdeploy_ort_fp32`` / ``hrdeploy_ort_int8``: the same for the onnxruntime target.

Checks (issue 18): hrdeploy's openvino runner >= 0.97x the bare OpenVINO loop; hrnet_cls w18
at batch 8: openvino fp32 >= 1.1x onnxruntime fp32 and openvino int8 >= 1.15x onnxruntime int8,
with the openvino int8 cosine >= 0.99 against fp32 on held-out images.
Writes benchmarks/results/openvino-<date>.{json,md}.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
DEFAULT_MODELS = "hrnet_cls/w18,tresnet/m,hrnet_pose/w32_256x192,dekr/w32"
GOALS = {"runner_vs_bare": 0.97, "fp32_vs_ort": 1.1, "int8_vs_ort": 1.15, "int8_cosine": 0.99}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=DEFAULT_MODELS, help=f"model names or model/variant keys (default {DEFAULT_MODELS})")
    p.add_argument("--batch", default="1,8", help="batch sizes of the dynamic-batch models (default 1,8; DEKR runs 1)")
    p.add_argument("--seconds", type=float, default=3.0, help="measuring time per point and series (default 3)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds; a figure is the best round (default 3)")
    p.add_argument("--threads", type=int, default=2, help="threads of both runtimes (default 2)")
    p.add_argument("--cache", type=Path, default=HERE / ".cache", help="model cache (default benchmarks/.cache)")
    p.add_argument("--out-dir", type=Path, default=HERE / "results", help="results folder (default benchmarks/results)")
    p.add_argument("--rebuild", action="store_true", help="re-export and re-convert the cached models")
    return p.parse_args(argv)


def openvino_artifacts(registry: Any, built: Any, folder: Path, calib: int, rebuild: bool,
                       log: Callable[[str], None]) -> dict[str, Path]:
    """The openvino fp32 and int8 artifacts of the cached export (rebuilt with the export)."""
    from hrdeploy.conversion import convert
    from hrdeploy.target import sha256_file

    quiet = lambda _msg: None  # noqa: E731 - the library's tables are noise in the benchmark log
    out = {"fp32": folder / "ov-fp32", "int8": folder / "ov-int8"}
    for precision, path in out.items():
        manifest = path / "manifest.json"
        # converted from this very export (the cache rebuilds exports when its stamp changes)
        if manifest.is_file() and not rebuild and json.loads(manifest.read_text()).get(
                "source_onnx", {}).get("sha256") == sha256_file(built.onnx):
            continue
        log(f"  convert openvino {precision}" + (f" ({calib} calibration images, 8 held out)" if precision == "int8" else ""))
        t0 = time.perf_counter()
        convert(registry, built.onnx, "openvino", path, precision=precision, force=True, log=quiet,
                **({"calib_dir": folder / "calib", "calib_count": calib} if precision == "int8" else {}))
        log(f"    {time.perf_counter() - t0:.0f} s")
    return out


def parity_of(artifact: Path) -> dict[str, Any]:
    m = json.loads((artifact / "manifest.json").read_text())
    parity = m.get("parity") or {}
    outs = parity.get("outputs") or []
    return {"status": parity.get("status"), "runner": parity.get("runner"),
            "source": (m.get("reference") or {}).get("source"),
            "min_cosine": min((o["cosine_min"] for o in outs if o.get("cosine_min") is not None), default=None),
            "max_rel": max((o["max_rel"] for o in outs if o.get("max_rel") is not None), default=None),
            "task": (parity.get("task") or {}).get("text"),
            "bin_mb": round((artifact / "model.bin").stat().st_size / 1e6, 2) if (artifact / "model.bin").is_file() else None}


class BareOpenVino:
    """A plain OpenVINO loop at the runner's own compile properties."""

    def __init__(self, xml: Path, config: dict[str, Any]) -> None:
        import openvino as ov

        self.compiled = ov.Core().compile_model(str(xml), "CPU", config)
        self.request = self.compiled.create_infer_request()

    def runner(self, x: Any) -> Callable[[], Any]:
        return lambda: self.request.infer({0: x})


def measure_model(key: str, s: argparse.Namespace, registry: Any, log: Callable[[str], None]) -> dict[str, Any]:
    import numpy as np

    sys.path.insert(0, str(HERE))
    from hrbench.artifacts import build
    from hrbench.suite import PLANS
    from hrbench.timing import loop_measure, paired

    from hrdeploy.benchmark import device_only
    from hrdeploy.reference import reference_inputs
    from hrdeploy.session import open_session

    plan = next(p for p in PLANS if key in (p.model, p.key))
    log(f"{plan.key}")
    built = build(registry, s.cache, plan.model, plan.variant, seed=0, calib_count=plan.calib,
                  calib_size=plan.image_size, rebuild=s.rebuild, log=log,
                  options=dict(plan.export_options), opset=plan.opset)
    folder = built.onnx.parent
    ov_art = openvino_artifacts(registry, built, folder, plan.calib, s.rebuild, log)
    spec = registry.model(plan.model)
    var = spec.variant(plan.variant)
    opts = {"threads": s.threads}
    sessions = {"ov_fp32": open_session(registry, ov_art["fp32"], target_options=opts),
                "ov_int8": open_session(registry, ov_art["int8"], target_options=opts),
                "ort_fp32": open_session(registry, built.fp32, target_options=opts),
                "ort_int8": open_session(registry, built.int8, target_options=opts)}
    bare = {p: BareOpenVino(sessions[f"ov_{p}"].artifact.file("model"), sessions[f"ov_{p}"].runner.config)
            for p in ("fp32", "int8")}
    x1 = reference_inputs(spec, var, None, count=1)
    batches = [1] if plan.model == "dekr" else [int(b) for b in s.batch.split(",")]

    def hrdeploy_measure(session: Any, b: int) -> Callable[[float, int], tuple[float, int]]:
        def measure(seconds: float, warmup: int) -> tuple[float, int]:
            d = device_only(session, b, seconds, warmup)
            return float(d["latency_ms"]["mean"]), int(d["iterations"])
        return measure

    points = []
    for b in batches:
        t0 = time.perf_counter()
        xb = np.ascontiguousarray(np.repeat(x1, b, axis=0))
        series = {"bare_ov_fp32": loop_measure(bare["fp32"].runner(xb)),
                  "hrdeploy_ov_fp32": hrdeploy_measure(sessions["ov_fp32"], b),
                  "hrdeploy_ort_fp32": hrdeploy_measure(sessions["ort_fp32"], b),
                  "bare_ov_int8": loop_measure(bare["int8"].runner(xb)),
                  "hrdeploy_ov_int8": hrdeploy_measure(sessions["ov_int8"], b),
                  "hrdeploy_ort_int8": hrdeploy_measure(sessions["ort_int8"], b)}
        dev = paired(series, b, s.seconds, 1, s.rounds)
        ips = {k: v["ips"] for k, v in dev.items()}
        ratios = {"ov_runner_vs_bare_fp32": round(ips["hrdeploy_ov_fp32"] / ips["bare_ov_fp32"], 3),
                  "ov_runner_vs_bare_int8": round(ips["hrdeploy_ov_int8"] / ips["bare_ov_int8"], 3),
                  "ov_vs_ort_fp32": round(ips["hrdeploy_ov_fp32"] / ips["hrdeploy_ort_fp32"], 3),
                  "ov_vs_ort_int8": round(ips["hrdeploy_ov_int8"] / ips["hrdeploy_ort_int8"], 3)}
        points.append({"batch": b, "device": dev, "ratios": ratios})
        log(f"  batch {b:>2}: " + ", ".join(f"{k} {v:.2f}" for k, v in ips.items()) + " img/s; "
            + ", ".join(f"{k} {v:.3f}x" for k, v in ratios.items()) + f" ({time.perf_counter() - t0:.0f} s)")
    result = {"key": plan.key, "input_shape": list(x1.shape[1:]), "export_options": dict(plan.export_options),
              "opset": plan.opset, "calibration_images": plan.calib,
              "runners": {k: v.runner.label for k, v in sessions.items()},
              "parity": {k: parity_of(p) for k, p in (("ov_fp32", ov_art["fp32"]), ("ov_int8", ov_art["int8"]),
                                                     ("ort_fp32", built.fp32), ("ort_int8", built.int8))},
              "points": points}
    for sess in sessions.values():
        sess.close()
    return result


def checks(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for m in models:
        for p in m["points"]:
            for prec in ("fp32", "int8"):
                r = p["ratios"][f"ov_runner_vs_bare_{prec}"]
                out.append({"name": f"{m['key']} bs{p['batch']} hrdeploy openvino {prec} vs bare OpenVINO loop",
                            "value": r, "goal": f">= {GOALS['runner_vs_bare']}", "passed": r >= GOALS["runner_vs_bare"],
                            "required": True})
    w18 = next((m for m in models if m["key"] == "hrnet_cls/w18"), None)
    if w18 is not None:
        p8 = next((p for p in w18["points"] if p["batch"] == 8), None)
        if p8 is not None:
            for prec, goal in (("fp32", GOALS["fp32_vs_ort"]), ("int8", GOALS["int8_vs_ort"])):
                r = p8["ratios"][f"ov_vs_ort_{prec}"]
                out.append({"name": f"hrnet_cls/w18 bs8 openvino {prec} vs onnxruntime {prec}", "value": r,
                            "goal": f">= {goal}", "passed": r >= goal, "required": True})
        cos = w18["parity"]["ov_int8"]["min_cosine"]
        out.append({"name": "hrnet_cls/w18 openvino int8 cosine vs fp32 (held-out images)", "value": cos,
                    "goal": f">= {GOALS['int8_cosine']}", "passed": cos is not None and cos >= GOALS["int8_cosine"],
                    "required": True})
    return out


def markdown(doc: dict[str, Any]) -> str:
    lines = [f"# OpenVINO vs ONNX Runtime, {doc['created']}", "",
             f"`{doc['command']}` on {doc['machine']['cpu']} ({doc['machine']['cores']} cores available), "
             f"{doc['settings']['threads']} threads, {doc['settings']['rounds']} alternating rounds of "
             f"{doc['settings']['seconds']} s per series and point (best round); load average "
             f"{doc['machine']['load_at_start']} at the start, {doc['machine']['load_at_end']} at the end. "
             "Seeded random weights; device-only images/s.", "",
             "| model | batch | bare OV fp32 | hrdeploy OV fp32 | hrdeploy ORT fp32 | bare OV int8 | hrdeploy OV int8 | "
             "hrdeploy ORT int8 | OV/bare fp32 | OV/bare int8 | OV/ORT fp32 | OV/ORT int8 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in doc["models"]:
        for p in m["points"]:
            d, r = p["device"], p["ratios"]
            lines.append(f"| {m['key']} | {p['batch']} | " + " | ".join(
                f"{d[k]['ips']:.2f}" for k in ("bare_ov_fp32", "hrdeploy_ov_fp32", "hrdeploy_ort_fp32", "bare_ov_int8",
                                               "hrdeploy_ov_int8", "hrdeploy_ort_int8"))
                + " | " + " | ".join(f"{r[k]:.3f}x" for k in ("ov_runner_vs_bare_fp32", "ov_runner_vs_bare_int8",
                                                              "ov_vs_ort_fp32", "ov_vs_ort_int8")) + " |")
    lines += ["", "Parity of each artifact against the source ONNX on onnxruntime fp32 (convert's check):", "",
              "| model | artifact | status | max rel | min cosine | task | inputs |", "|---|---|---|---|---|---|---|"]
    for m in doc["models"]:
        for k, p in m["parity"].items():
            mr = f"{p['max_rel']:.2e}" if p["max_rel"] is not None else "-"
            mc = f"{p['min_cosine']:.6f}" if p["min_cosine"] is not None else "-"
            lines.append(f"| {m['key']} | {k} | {p['status']} | {mr} | {mc} | {p['task'] or '-'} | {p['source']} |")
    lines += ["", "Checks:", ""]
    for c in doc["checks"]:
        v = c["value"]
        lines.append(f"* {'PASS' if c['passed'] else 'MISS'} {c['name']}: {v if v is None else round(v, 4)} (goal {c['goal']})")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np  # noqa: F401 - after the thread variables

    import openvino as ov
    import onnxruntime as ort

    import hrdeploy
    from hrdeploy.plugins import registry as get_registry

    def log(msg: str) -> None:
        print(msg, flush=True)

    registry = get_registry()
    load_start = [round(v, 2) for v in os.getloadavg()]
    t0 = time.perf_counter()
    models = [measure_model(k.strip(), args, registry, log) for k in args.models.split(",") if k.strip()]
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    doc = {"created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "command": "python benchmarks/openvino_vs_onnxruntime.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:])),
           "machine": {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "host": platform.node(),
                       "load_at_start": load_start, "load_at_end": [round(v, 2) for v in os.getloadavg()]},
           "versions": {"hrdeploy": hrdeploy.__version__, "openvino": ov.__version__, "onnxruntime": ort.__version__,
                        "python": platform.python_version()},
           "settings": {"threads": args.threads, "seconds": args.seconds, "rounds": args.rounds, "batches": args.batch},
           "seconds": round(time.perf_counter() - t0, 1), "models": models}
    doc["checks"] = checks(models)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.out_dir / f"openvino-{_dt.date.today().isoformat()}"
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=1))
    stem.with_suffix(".md").write_text(markdown(doc))
    log(markdown(doc))
    log(f"wrote {stem}.json and {stem}.md")
    return 0 if all(c["passed"] for c in doc["checks"] if c["required"]) else 1


if __name__ == "__main__":
    sys.exit(main())
