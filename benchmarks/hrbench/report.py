"""The results as a markdown page and a PNG plot."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

# device-only series in display order: (key, label, precision whose peak it is compared with)
SERIES = (
    ("pytorch", "PyTorch eager", "fp32"),
    ("bare_fp32", "bare ORT fp32", "fp32"),
    ("hrdeploy_fp32", "hrdeploy fp32", "fp32"),
    ("bare_int8", "bare ORT int8", "int8"),
    ("hrdeploy_int8", "hrdeploy int8", "int8"),
)
E2E = (("fp32", "hrdeploy fp32 e2e"), ("int8", "hrdeploy int8 e2e"))


def _fmt(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _cell(entry: dict[str, Any] | None, key: str = "ips") -> str:
    if not entry or entry.get(key) is None:
        return "–"
    frac = entry.get("peak_fraction")
    return f"{entry[key]:.2f}" + (f" ({100 * frac:.0f}%)" if frac is not None else "")


def _verdict(row: dict[str, Any]) -> str:
    if row["passed"] is None:
        return "not measured"
    return "PASS" if row["passed"] else "FAIL"


def markdown(results: dict[str, Any]) -> str:
    mach, peak = results["machine"], results["peak"]
    lines = [
        f"# hrdeploy benchmark — {results['host']}, {results['date']}",
        "",
        f"`{results['command']}`",
        "",
        f"* machine: {mach['cpu']}, {mach['cpus']} CPUs, {mach['threads']} threads for every runtime; "
        f"load average (1 min) {mach['load_before'][0]:.2f} before, {mach['load_after'][0]:.2f} after"
        + (f" (waited {mach['waited_s']:.0f} s for a quiet machine)" if mach.get("waited_s") else ""),
        f"* software: {', '.join(f'{k} {v}' for k, v in mach['versions'].items())}",
        f"* measured peak: fp32 {peak['fp32_gflops']:.1f} GFLOP/s, int8 {peak['int8_gops']:.1f} GOP/s "
        f"({peak['method']})",
        f"* weights: seeded random (speed does not depend on the values); device-only figures: the five series "
        f"alternate in up to {results['settings']['rounds']} rounds of {results['settings']['seconds']} s / rounds "
        "(at least 5 iterations each) and each figure is its best round; eval: best of 2 runs",
        "",
        "## Checks (issue 8)",
        "",
        "| check | achieved | target | verdict |",
        "|---|---|---|---|",
    ]
    for r in results["checks"]:
        val = "–" if r["value"] is None else f"{r['value']:.3f}"
        extra = f" — {r['detail']}" if r.get("detail") else ""
        lines.append(f"| {r['check']}{'' if r['required'] else ' (informative)'} | {val}{extra} | "
                     f"{r['op']} {r['threshold']} | {_verdict(r)} |")
    lines += ["", results["checks_summary"], "",
              "## Throughput, images/s (fraction of the measured peak of that precision)", "",
              "| model | GFLOPs/img | batch | " + " | ".join(lbl for _, lbl, _ in SERIES) + " | "
              + " | ".join(lbl for _, lbl in E2E) + " |",
              "|---|---|---|" + "---|" * (len(SERIES) + len(E2E))]
    for m in results["models"]:
        for p in m["points"]:
            dev = p.get("device", {})
            e2e = p.get("e2e", {})
            cells = [_cell(dev.get(k)) for k, _, _ in SERIES] + [_cell(e2e.get(k), "e2e_ips") for k, _ in E2E]
            lines.append(f"| {m['key']} | {m['flops']['gflops']:.2f} | {p['batch']} | " + " | ".join(cells) + " |")
    lines += ["", "## Where end-to-end time goes (ms per image)", "",
              "Decode and preprocess run in worker threads and overlap inference; wall = 1000 / e2e images/s.",
              "", "| model | precision | batch | network runs/img | decode | preprocess | infer | postprocess | wall |",
              "|---|---|---|---|---|---|---|---|---|"]
    for m in results["models"]:
        for p in m["points"]:
            if p["batch"] != m.get("breakdown_batch"):
                continue
            for prec, e in p.get("e2e", {}).items():
                t = e["e2e_per_image_ms"]
                lines.append(f"| {m['key']} | {prec} | {p['batch']} | {m.get('items_per_image', 1)} | "
                             f"{t['decode']:.1f} | {t['preprocess']:.1f} | {t['infer']:.1f} | {t['postprocess']:.1f} | "
                             f"{1000 / e['e2e_ips']:.1f} |")
    evals = [(m, prec, e) for m in results["models"] for prec, e in (m.get("eval") or {}).items()]
    if evals:
        lines += ["", "## hrdeploy eval (streaming decode + preprocess + infer + top-k + metric)", "",
                  "| model | precision | batch | images | eval images/s (runs) | device-only alongside (runs) | "
                  "ms/img decode/pre/infer/post (best run) |", "|---|---|---|---|---|---|---|"]
        for m, prec, e in evals:
            t = e["per_image_ms"]
            runs = ", ".join(f"{v:.2f}" for v in e.get("runs_ips", []))
            devs = ", ".join(f"{v:.2f}" for v in e.get("device_runs_ips", []))
            lines.append(f"| {m['key']} | {prec} | {e['batch']} | {e['images']} | {e['images_per_second']:.2f} ({runs}) | "
                         f"{_fmt(e.get('device_ips'), 2)} ({devs}) | "
                         f"{t['decode']:.1f}/{t['preprocess']:.1f}/{t['infer']:.1f}/{t['postprocess']:.1f} |")
    par = [(m["key"], m.get("int8_parity") or {}) for m in results["models"]]
    lines += ["", "## int8 vs fp32 parity (from each int8 artifact's manifest, held-out images)", "",
              "| model | worst cosine | task check |", "|---|---|---|"]
    for key, pr in par:
        lines.append(f"| {key} | {_fmt(pr.get('min_cosine'), 5)} | {pr.get('top1', '–')} |")
    return "\n".join(lines) + "\n"


def plot_png(results: dict[str, Any]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = results["models"]
    cols = min(2, len(models)) or 1
    rows = (len(models) + cols - 1) // cols or 1
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows), dpi=72, squeeze=False)
    styles = {"pytorch": "kx:", "bare_fp32": "C0+--", "hrdeploy_fp32": "C0o-", "bare_int8": "C1+--", "hrdeploy_int8": "C1o-"}
    for ax, m in zip(axes.flat, models):
        b = [p["batch"] for p in m["points"]]
        for key, label, _ in SERIES:
            y = [(p.get("device", {}).get(key) or {}).get("ips") for p in m["points"]]
            if any(v is not None for v in y):
                ax.plot(b, [float("nan") if v is None else v for v in y], styles[key], label=label, ms=4)
        for prec, label in E2E:
            y = [(p.get("e2e", {}).get(prec) or {}).get("e2e_ips") for p in m["points"]]
            if any(v is not None for v in y):
                ax.plot(b, [float("nan") if v is None else v for v in y], ("C0" if prec == "fp32" else "C1") + "s:",
                        label=label, ms=4)
        if len(b) > 1:
            ax.set_xscale("log", base=2)
        ax.set_xticks(b, [str(v) for v in b])
        ax.set_title(f"{m['key']} ({m['flops']['gflops']:.1f} GFLOPs/img)", fontsize=9)
        ax.set_xlabel("batch", fontsize=8)
        ax.set_ylabel("images / s", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(models):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=7, frameon=False)
    fig.suptitle(f"hrdeploy benchmark, {results['host']} {results['date']} "
                 f"({results['machine']['threads']} threads)", fontsize=9)
    fig.tight_layout(rect=(0, 0.08, 1, 0.97))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def write(results: dict[str, Any], stem: Path) -> list[Path]:
    from hrdeploy.io import atomic_write_bytes, atomic_write_json

    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".json"), stem.with_suffix(".md"), stem.with_suffix(".png")]
    atomic_write_json(paths[0], results)
    atomic_write_bytes(paths[1], markdown(results).encode())
    atomic_write_bytes(paths[2], plot_png(results))
    return paths
