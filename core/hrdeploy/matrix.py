"""``hrdeploy matrix``: one exported model through every installed target and each precision
it supports — convert (or write the plan where the toolchain is absent), parity against the
source, the task metric on a dataset, device-only throughput, size on disk — as one table, one
JSON and one plot of throughput against accuracy.

Every cell (target x precision) lives in its own sub-folder of the matrix folder with a
``cell.json``; a cell already done with the same source file (sha256) and the same settings is
not redone on a re-run. Nothing here names a target: the cells come from the registry, the
precisions from each target's ``precisions``, and what can run here from its probe.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .errors import ToolchainMissing, UserError
from .io import atomic_write_json

FORMAT = "hrdeploy-matrix/1"
INDEX = "matrix.json"
CELL = "cell.json"
SOURCE_DIR = "source"
CALIB_DIR = "calib-synthetic"

PASSED = "passed"
PARITY_BREACH = "converted, parity below floor"
METRIC_BREACH = "metric below floor"
PLAN = "plan written"
NOT_RUN = "converted, not run here"
FAILED = "failed"
#: the statuses that make ``hrdeploy matrix`` exit 1
BREACHES = (PARITY_BREACH, METRIC_BREACH)

Log = Callable[[str], None]


def _quiet(_message: str) -> None:
    pass


@dataclass
class Settings:
    """What every cell is made with (the part of a cell's identity that is not its target and
    precision). ``target_options`` maps a target name to its options."""

    batches: list[int] = field(default_factory=lambda: [1, 8])
    data: str | None = None
    limit: int | None = None
    calib: Path | None = None
    calib_count: int = 32
    seconds: float = 3.0
    #: a cell's metric may fall this fraction below the source's (0.01: 1 % of its value)
    max_drop: float = 0.01
    target_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["calib"] = str(self.calib) if self.calib else None
        return d


@dataclass
class Cell:
    """One row of the matrix; ``to_dict`` is what ``cell.json`` and the matrix JSON hold."""

    target: str
    precision: str
    status: str = FAILED
    reason: str = ""
    folder: str = ""
    key: str = ""
    artifact: str | None = None
    size_mb: float | None = None
    metric: dict[str, Any] | None = None       # {"name", "value", "source", "floor"}
    cosine: float | None = None                # worst per-sample cosine vs the source, all inputs
    max_rel: float | None = None
    parity: dict[str, Any] | None = None       # {"reference_inputs": ..., "data": [...]}
    agreement: float | None = None             # the task check on the data (top-1 agreement...)
    throughput: list[dict[str, Any]] = field(default_factory=list)  # {"batch", "ms_per_image", "images_per_second"}
    simulated: bool = False
    runner: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    skipped: bool = False                      # done by an earlier run with the same settings

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("skipped")
        return d

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Cell:
        names = set(cls.__dataclass_fields__) - {"skipped"}
        return cls(**{k: v for k, v in doc.items() if k in names})

    @property
    def breach(self) -> bool:
        return self.status in BREACHES


@dataclass
class MatrixResult:
    document: dict[str, Any]
    cells: list[Cell]
    path: Path

    @property
    def breaches(self) -> list[Cell]:
        return [c for c in self.cells if c.breach]


# -- choosing the cells --------------------------------------------------------------------------

def _names(text: str | None, what: str) -> list[str] | None:
    if text is None or text.strip().lower() == "all":
        return None
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if not names:
        raise UserError(f"{what} is empty", "give names separated by commas, or 'all'")
    return list(dict.fromkeys(names))


def plan_cells(registry: Any, targets: str | None = "all", precisions: str | None = None
               ) -> list[tuple[Any, str]]:
    """(target, precision) of every cell: each chosen installed target (``"all"`` or
    ``"a,b"``, unknown names refused) and each of its precisions (filtered by ``precisions``)."""
    chosen = _names(targets, "--targets")
    wanted = _names(precisions, "--precisions")
    objs = [registry.target(n) for n in chosen] if chosen else [registry.targets[n] for n in sorted(registry.targets)]
    if not objs:
        raise UserError("no target is installed", "pip install a target plugin (see 'hrdeploy list')")
    cells = [(t, p) for t in objs for p in t.precisions if wanted is None or p in wanted]
    if wanted:
        known = {p for t in objs for p in t.precisions}
        unknown = [p for p in wanted if p not in known]
        if unknown:
            raise UserError(f"--precisions: no chosen target supports {', '.join(unknown)}",
                            "they support " + ", ".join(sorted(known)))
    return cells


def split_target_options(registry: Any, targets: Sequence[Any], sets: Sequence[str] | None,
                         declared: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Per-target options: ``--set TARGET.KEY=VALUE`` for one target, and the generated flag of
    a key (``--chip``) for every chosen target that declares that key. Each target's set is
    checked here, before any cell runs (a typo is a usage error, not a failed cell)."""
    out: dict[str, dict[str, Any]] = {t.name: {} for t in targets}
    for key, value in (declared or {}).items():
        for t in targets:
            if key in t.options:
                out[t.name][key] = value
    for item in sets or []:
        lhs, sep, value = item.partition("=")
        name, dot, key = lhs.partition(".")
        if not sep or not dot or not name or not key:
            raise UserError(f"--set expects TARGET.KEY=VALUE (e.g. sophon.chip=bm1684x), got {item!r}")
        name, key = name.strip().lower(), key.strip().replace("-", "_")
        if name not in out:
            registry.target(name)  # an unknown name is refused with the installed ones listed
            raise UserError(f"--set {item}: target {name!r} is not in this matrix", "add it to --targets")
        out[name][key] = value
    for t in targets:
        out[t.name] = t.check_options(out[t.name])
    return out


# -- the matrix folder ---------------------------------------------------------------------------

def prepare_folder(folder: Path, inputs: Sequence[Path | None]) -> None:
    """The matrix folder: new, empty, or one an earlier ``hrdeploy matrix`` wrote (its
    ``matrix.json`` says so); anything else is refused before work starts."""
    from .outputs import refuse_overlap

    refuse_overlap(folder, inputs, "-o")
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} is a file, but a folder is needed here", "choose another -o")
    if folder.is_dir() and any(folder.iterdir()) and not _is_matrix_folder(folder):
        raise UserError(f"output folder {folder} exists and is not a matrix folder (no {INDEX} of hrdeploy's)",
                        "choose another -o")
    folder.mkdir(parents=True, exist_ok=True)


def _is_matrix_folder(folder: Path) -> bool:
    try:
        doc = json.loads((folder / INDEX).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(doc, dict) and doc.get("format") == FORMAT


def _settings_key(doc: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _folder_identity(folder: Path) -> list[Any]:
    """Names, sizes and times of the images in ``folder``: a changed calibration set is a
    different setting."""
    from .io import list_images

    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in list_images(folder)]


def _done(folder: Path, key: str) -> Cell | None:
    """The cell an earlier run finished in ``folder`` with the same key (a failed one is
    tried again: its cause may be gone)."""
    try:
        doc = json.loads((folder / CELL).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("key") != key or doc.get("status") in (FAILED, None):
        return None
    try:
        cell = Cell.from_dict(doc)
    except TypeError:
        return None
    cell.skipped = True
    return cell


def _fresh(folder: Path) -> None:
    """Empty a cell's sub-folder of the matrix folder (the matrix wrote it) for a new run."""
    if folder.is_symlink():
        folder.unlink()
    elif folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, UserError):
        return text[:300]
    return f"{type(exc).__name__}: {text}"[:300]


# -- one cell ----------------------------------------------------------------------------------

def _first_figure(summary: dict[str, Any]) -> tuple[str, float] | None:
    """The metric's headline: its first number (top1 for classification, AP for COCO)."""
    for k, v in summary.items():
        if isinstance(v, float):
            return k, v
    return None


def _model_size(artifact_dir: Path, manifest: dict[str, Any]) -> float | None:
    """MB of what the deployment loads: every file of the artifact but the reference set, the
    plan's own bookkeeping (source copy, plan, script) and tool logs; None when no network
    file exists (a plan)."""
    from .artifact import REFERENCE
    from .kit.plan import plan_files

    skip = {"reference", *plan_files()}
    files = {role: artifact_dir / rel for role, rel in (manifest.get("files") or {}).items()
             if role not in skip and rel != REFERENCE and not str(rel).endswith(".log")}
    if "model" not in files or not files["model"].is_file():
        return None
    return round(sum(f.stat().st_size for f in files.values() if f.is_file()) / 1e6, 3)


def _worst(parity: dict[str, Any] | None, key: str, worst: Callable[[Sequence[float]], float]) -> float | None:
    vals = [o[key] for o in (parity or {}).get("outputs", []) if isinstance(o.get(key), (int, float))]
    return worst(vals) if vals else None


class _CellLog:
    """A cell's progress lines: to the caller and to ``cell.log`` in its folder."""

    def __init__(self, folder: Path, log: Log) -> None:
        self.path = folder / "cell.log"
        self.log = log

    def __call__(self, message: str) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(message + "\n")
        self.log(message)


def run_cell(cell: Cell, source: Path, folder: Path, settings: Settings, available: bool,
             calib: Path | None, source_metric: tuple[str, float] | None, log: Log) -> Cell:
    """Convert (or plan), check, evaluate and time one cell, recording what happened in
    ``cell``; a failure of any step ends the cell with its one-line reason, never the matrix."""
    from . import api

    opts = settings.target_options.get(cell.target, {})
    out = folder / "artifact"
    cell.artifact = str(out)
    t0 = time.perf_counter()
    art = api.convert(source, out, target=cell.target, precision=cell.precision,
                      batch=settings.batches, calib=calib if cell.precision == "int8" else None,
                      calib_count=settings.calib_count, dry_run=not available, target_options=opts,
                      model_options=settings.model_options, log=log)
    cell.seconds["convert"] = round(time.perf_counter() - t0, 1)
    manifest = art.manifest
    cell.size_mb = _model_size(out, manifest)
    if not available:
        cell.status, cell.reason = PLAN, f"plan written: {out}"
        return cell
    parity = manifest.get("parity") or {}
    if parity.get("status") == "not run":
        cell.status, cell.reason = NOT_RUN, str(parity.get("reason", ""))
        return cell
    cell.parity = {"reference_inputs": parity}
    cosines = [c for c in [_worst(parity, "cosine_min", min)] if c is not None]
    rels = [r for r in [_worst(parity, "max_rel", max)] if r is not None]
    breaches = [] if parity.get("status") == "passed" else [_parity_reason("reference inputs", parity)]
    try:
        session = api.open(out, target_options=opts)
    except ToolchainMissing as e:
        cell.status, cell.reason = NOT_RUN, _one_line(e)
        return cell
    with session:
        cell.runner, cell.simulated = session.runner.label, bool(session.runner.simulated)
        if settings.data is not None:
            t0 = time.perf_counter()
            res = api.evaluate(session, settings.data, folder / "eval.json", limit=settings.limit,
                               batch=max(settings.batches), options=settings.model_options, compare=source, log=log)
            cell.seconds["eval"] = round(time.perf_counter() - t0, 1)
            data_parity = res.document.get("compare") or []
            cell.parity["data"] = data_parity
            cosines += [c for p in data_parity for c in [_worst(p, "cosine_min", min)] if c is not None]
            rels += [r for p in data_parity for r in [_worst(p, "max_rel", max)] if r is not None]
            tasks = [p["task"]["value"] for p in data_parity if p.get("task")]
            cell.agreement = min(tasks) if tasks else None
            breaches += [_parity_reason(f"data {p.get('input_size', '')}".strip(), p)
                         for p in data_parity if not p.get("passed", True)]
            figure = _first_figure(res.document.get("metric") or {})
            if figure is not None:
                cell.metric = _judge_metric(figure, source_metric, settings.max_drop)
        if cell.simulated:
            log("simulator: no throughput is measured (the simulator's speed is not the chip's)")
        else:
            t0 = time.perf_counter()
            rep = api.bench(session, settings.batches, seconds=settings.seconds, warmup=2, e2e=False, log=log)
            cell.seconds["bench"] = round(time.perf_counter() - t0, 1)
            for r in rep.document.get("results", []):
                if r.get("device_ips"):
                    cell.throughput.append({"batch": r["batch"], "images_per_second": r["device_ips"],
                                            "ms_per_image": round(r["latency_ms"]["mean"] / r["batch"], 3)})
    cell.cosine = min(cosines) if cosines else None
    cell.max_rel = max(rels) if rels else None
    metric_low = cell.metric is not None and cell.metric.get("passed") is False
    if breaches:
        cell.status, cell.reason = PARITY_BREACH, "; ".join(breaches)
    elif metric_low:
        m = cell.metric or {}
        cell.status = METRIC_BREACH
        cell.reason = f"{m['name']} {m['value']:.4g} below the floor {m['floor']:.4g} (source {m['source']:.4g})"
    else:
        cell.status, cell.reason = PASSED, ""
    return cell


def _parity_reason(where: str, parity: dict[str, Any]) -> str:
    """One short clause per failing output: which limit it missed and by how much (the full
    figures are in the cell's JSON)."""
    parts = []
    for o in parity.get("outputs", []):
        if o.get("passed", True):
            continue
        lim, bad = o.get("limits") or {}, o.get("non_finite") or {}
        bits = ["NaN/inf"] if bad.get("test") or bad.get("reference") else []
        if lim.get("min_cosine") is not None and o["cosine_min"] < lim["min_cosine"]:
            bits.append(f"cosine {o['cosine_min']:.4f} < {lim['min_cosine']:g}")
        if lim.get("max_rel") is not None and o["max_rel"] > lim["max_rel"]:
            bits.append(f"max rel {o['max_rel']:.2e} > {lim['max_rel']:g}")
        parts.append(f"{o['output']} {', '.join(bits)}".strip())
    task = parity.get("task")
    if task and not task.get("passed"):
        parts.append(str(task.get("text")))
    if not parts:
        parts.append("the toolchain's own similarity check failed")
    return f"{where}: {'; '.join(parts)}"


def _judge_metric(figure: tuple[str, float], source: tuple[str, float] | None, max_drop: float) -> dict[str, Any]:
    """The cell's headline metric against the source's own: below ``source * (1 - max_drop)``
    is a breach (a metric where higher is better: top-1, AP)."""
    name, value = figure
    if source is None or source[0] != name:
        return {"name": name, "value": value, "source": None, "floor": None, "passed": None}
    floor = source[1] * (1 - max_drop) if source[1] > 0 else source[1]
    return {"name": name, "value": value, "source": source[1], "floor": round(floor, 6),
            "passed": value >= floor - 1e-9}


# -- the whole matrix ------------------------------------------------------------------------------

def _source_eval(source: Path, folder: Path, settings: Settings, key: str, restart: bool,
                 log: Log) -> dict[str, Any]:
    """The source model's own evaluation on the data (onnxruntime fp32 of the .onnx), once:
    the metric every cell is judged against. Reused on a re-run with the same key."""
    from . import api

    record = folder / CELL
    if not restart:
        try:
            doc = json.loads(record.read_text(encoding="utf-8"))
            if isinstance(doc, dict) and doc.get("key") == key:
                return doc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            pass
    _fresh(folder)
    log(f"evaluating the source {source.name} on {settings.data} (the reference for every cell's metric)")
    res = api.evaluate(source, str(settings.data), folder / "eval.json", limit=settings.limit,
                       batch=max(settings.batches), options=settings.model_options, log=log)
    figure = _first_figure(res.document.get("metric") or {})
    doc = {"key": key, "runner": res.document.get("runner"), "images": res.document["data"]["evaluated"],
           "metric": {"name": figure[0], "value": figure[1]} if figure else None,
           "summary": res.document.get("metric")}
    atomic_write_json(record, doc)
    return doc


def run_matrix(source: Path, out: Path, cells: Sequence[tuple[Any, str]], settings: Settings, *,
               restart: bool = False, log: Log = _quiet,
               progress: Callable[[int, int], Callable[[int], None]] | None = None) -> MatrixResult:
    """Run every cell of ``cells`` ((target, precision) pairs, :func:`plan_cells`) for the
    exported ``source`` into the matrix folder ``out``; ``matrix.json`` there is updated after
    each cell, so an interrupted matrix continues where it stopped."""
    from .artifact import Artifact
    from .evaluation import check_limit, parse_data
    from .synthetic import write_images
    from .target import sha256_file

    src = Artifact.load(source)
    if src.is_folder:
        raise UserError(f"{source} is a converted artifact", "the matrix takes the exported .onnx file")
    check_limit(settings.limit)
    if not 0 <= settings.max_drop < 1:
        raise UserError(f"--max-drop must be a fraction from 0 to below 1, got {settings.max_drop}")
    data_path = parse_data(settings.data)[1] if settings.data is not None else None
    prepare_folder(out, [source, *src.files().values(), data_path, settings.calib])
    sha = sha256_file(src.file("model"))
    base = {"source_sha256": sha, "batches": settings.batches, "model_options": settings.model_options,
            "hrdeploy": __version__}
    doc: dict[str, Any] = {
        "format": FORMAT, "source": {"path": str(source), "sha256": sha, "model": src.model, "variant": src.variant},
        "settings": settings.to_dict(), "source_eval": None, "cells": [],
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "hrdeploy_version": __version__}
    atomic_write_json(out / INDEX, doc)

    source_metric = None
    if settings.data is not None:
        skey = _settings_key({**base, "data": settings.data, "limit": settings.limit})
        doc["source_eval"] = _source_eval(source, out / SOURCE_DIR, settings, skey, restart, log)
        m = doc["source_eval"].get("metric")
        source_metric = (m["name"], m["value"]) if m else None

    calib = settings.calib
    calib_id: Any = _folder_identity(calib) if calib else None
    if calib is None and any(p == "int8" for _, p in cells):
        # calibration from generated images: deterministic, so re-runs find the same set
        calib = out / CALIB_DIR
        count = settings.calib_count + 8  # 8 held out for the parity check
        if len(list(calib.glob("*.jpg"))) != count:
            _fresh(calib)
            write_images(calib, count, seed=100)
        calib_id = f"synthetic {count} images, seed 100"

    probes: dict[str, bool] = {}
    done: list[Cell] = []
    tick = progress(len(cells), 0) if progress else None
    for n, (target, precision) in enumerate(cells, 1):
        if target.name not in probes:
            probes[target.name] = _available(target)
        available = probes[target.name]
        folder = out / f"{target.name}-{precision}"
        key = _settings_key({**base, "target": target.name, "precision": precision,
                             "plugin_version": _plugin_version(target.name),
                             "options": settings.target_options.get(target.name, {}),
                             "mode": "convert" if available else "plan",
                             **({"calib": calib_id, "calib_count": settings.calib_count} if precision == "int8" else {}),
                             **({"data": settings.data, "limit": settings.limit, "max_drop": settings.max_drop,
                                 "source_metric": source_metric, "seconds": settings.seconds} if available else {})})
        cell = None if restart else _done(folder, key)
        label = f"[{n}/{len(cells)}] {target.name} {precision}"
        if cell is not None:
            log(f"{label}: done earlier with the same source and settings ({cell.status}); skipped")
        else:
            cell = Cell(target.name, precision, folder=str(folder), key=key)
            _fresh(folder)
            cell_log = _CellLog(folder, log)
            cell_log(f"{label}: {'converting' if available else 'toolchain absent: writing the plan'}")
            t0 = time.perf_counter()
            try:
                run_cell(cell, source, folder, settings, available, calib, source_metric, cell_log)
            except Exception as e:  # noqa: BLE001 - one cell's failure is its row, the matrix goes on
                cell.status, cell.reason = FAILED, _one_line(e)
            cell.seconds["total"] = round(time.perf_counter() - t0, 1)
            atomic_write_json(folder / CELL, cell.to_dict())
            cell_log(f"{label}: {cell.status}{': ' + cell.reason if cell.reason and cell.status != PLAN else ''}")
        done.append(cell)
        doc["cells"] = [c.to_dict() for c in done]
        atomic_write_json(out / INDEX, doc)
        if tick is not None:
            tick(1)
    return MatrixResult(doc, done, out / INDEX)


def _plugin_version(name: str) -> str | None:
    """The installed version of the distribution providing target ``name`` (a new release of
    a target plugin redoes its cells)."""
    from .plugins import registry

    owner = registry().owner("target", name)
    return owner.version if owner is not None else None


def _available(target: Any) -> bool:
    try:
        return bool(target.probe().available)
    except Exception:  # noqa: BLE001 - a broken probe means: plan only
        return False


# -- presenting it -------------------------------------------------------------------------------

COLUMNS = ("target", "precision", "status", "size MB", "metric", "cosine", "ms/img", "img/s")


def table_rows(cells: Sequence[Cell]) -> list[list[str]]:
    """The matrix table's rows (:data:`COLUMNS`), from fresh cells or cells read back."""
    rows = []
    for c in cells:
        status = c.status
        if c.status == PLAN:
            status = c.reason or PLAN
        elif c.reason:
            status = f"{c.status}: {c.reason}"
        if c.skipped:
            status += " (earlier run)"
        metric = f"{c.metric['name']} {c.metric['value']:.2f}" if c.metric else "-"
        if c.simulated:
            ms, ips = "simulator, no throughput", "-"
        elif c.throughput:
            ms = " / ".join(f"{t['ms_per_image']:.2f}" for t in c.throughput)
            ips = " / ".join(f"{t['images_per_second']:.1f}" for t in c.throughput)
        else:
            ms = ips = "-"
        size = "-" if c.size_mb is None else f"{c.size_mb:.1f}" if c.size_mb >= 10 else f"{c.size_mb:.2f}"
        rows.append([c.target, c.precision, status, size, metric,
                     "-" if c.cosine is None else f"{c.cosine:.6f}", ms, ips])
    return rows


def plot(result: MatrixResult, path: Path) -> None:
    """PNG: throughput (the largest batch measured) against accuracy (the metric on the data,
    or the worst cosine against the source without data), one point per measured cell."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import atomic_write_bytes

    measured = [c for c in result.cells if c.throughput]
    values = {round(c.metric["value"], 6) for c in measured if c.metric}
    # one metric value for every cell (an untrained network scores 0 everywhere) says nothing
    # about accuracy: the cosine against the source tells the cells apart then
    use_metric = len(values) > 1 or (len(values) == 1 and not any(c.cosine is not None for c in measured))
    points = []
    for c in measured:
        x = (c.metric or {}).get("value") if use_metric else c.cosine
        if x is not None:
            best = max(c.throughput, key=lambda t: t["batch"])
            points.append((x, best["images_per_second"], f"{c.target} {c.precision}", best["batch"], c.breach))
    doc = result.document
    fig, ax = plt.subplots(figsize=(7.2, 4.8), dpi=110)
    for x, y, _label, _batch, breach in points:
        ax.scatter([x], [y], marker="x" if breach else "o", color="tab:red" if breach else "tab:blue")
    # labels right of the points in throughput order, pushed apart so close points stay readable
    if points:
        xs = [p[0] for p in points]
        lo, hi = min(xs), max(xs)
        width = (hi - lo) or max(abs(hi) * 0.01, 1e-6)
        ax.set_xlim(lo - 0.05 * width, hi + 0.6 * width)  # room for the labels on the right
        top = max(p[1] for p in points)
        gap, last = 0.06 * top, -float("inf")
        for x, y, label, batch, _breach in sorted(points, key=lambda p: p[1]):
            last = max(y, last + gap)
            ax.annotate(f"{label} (b{batch})", (x, y), xytext=(x + 0.04 * width, last), textcoords="data",
                        fontsize=8, va="center", arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.5})
        ax.set_ylim(0, max(top, last) * 1.1)
    source = (doc.get("source_eval") or {}).get("metric")
    if use_metric and source:
        ax.axvline(source["value"], color="grey", ls="--", lw=1, label=f"source {source['name']}")
        ax.legend(fontsize=8)
    if not points:
        ax.text(0.5, 0.5, "no cell has throughput figures here\n(plans, simulators or failures only)",
                ha="center", va="center", transform=ax.transAxes)
    name = (source or {}).get("name") or next((c.metric["name"] for c in result.cells if c.metric), "metric")
    if use_metric:
        ax.set_xlabel(name)
    elif values:
        ax.set_xlabel(f"worst cosine vs the source ({name} is {values.pop():g} for every cell)")
    else:
        ax.set_xlabel("worst cosine vs the source")
    ax.set_ylabel("device images / second")
    ax.set_title(f"{doc['source']['model']}/{doc['source']['variant']}: throughput vs accuracy", fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


__all__ = ["BREACHES", "Cell", "MatrixResult", "Settings", "plan_cells", "plot", "run_matrix",
           "split_target_options", "table_rows"]
