"""``hrdeploy debug`` on Ascend: the per-layer comparison runs on the device machine with the
vendor's own tool, ``msit debug compare`` (msit's one-click compare: it dumps every operator
of the .om with the NPU's dump facility, runs the ONNX model on onnxruntime with every node
output exposed, and has CANN's msaccucmp compare the two), and hrdeploy reads its per-layer
table back (:mod:`.msit_csv`) as :class:`~hrdeploy.target.LayerDump` ``figures``.

The plan folder (written here, copied to the device machine and back)::

    debug-inputs.npy        the inputs (the core writes it)
    source.onnx             the golden model msit runs (-gm)
    model.om                the artifact's .om (hard link or copy) (-om)
    inputs/input_<k>.bin    one batch of the .om's batch size per msit run, float32 raw (-i)
    ascend-layer-dump.json  what was planned: runs, batch, shapes, the .om's settings
    run_layer_dump.sh       the msit commands, with the paths of wherever the folder is
    msit/<k>/<timestamp>/result_<timestamp>.csv   what msit writes back (-o msit/<k>)

Decisions: ``-ofs False`` turns onnxruntime's graph fusion off on the golden side, as msit's
docs advise when fused ONNX nodes leave tensors without a golden dump; ``-is`` always gives the
input shape, since hrdeploy exports ONNX models with a dynamic batch (and size) that msit
cannot run otherwise; one msit run per batch because msit compares one input set per call.
msaccucmp's figures are whole-tensor figures of one batch; runs combine as the worst of them.
"""
from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hrdeploy.artifact import Artifact
from hrdeploy.errors import UserError
from hrdeploy.io import atomic_write_json
from hrdeploy.kit.plan import link_or_copy
from hrdeploy.target import LayerDump

from .commands import SET_ENV
from .msit_csv import CompareTableError, graph_nodes, map_rows, parse_compare_csv

MSIT = "msit"
PLAN_DOC = "ascend-layer-dump.json"
PLAN_FORMAT = "hrdeploy-ascend-layer-dump/1"
SCRIPT = "run_layer_dump.sh"
SOURCE = "source.onnx"
OM = "model.om"
RESULTS = "msit"
#: every msit run dumps every operator of the network (gigabytes for an HRNet): a few batches
#: locate a loss as well as many
MAX_RUNS = 8
CANN_DEFAULT = "/usr/local/Ascend/ascend-toolkit/latest"
INSTALL_HINT = "pip install msit && msit install compare (on the machine with the Ascend device and CANN)"


@dataclass
class DumpRun:
    input: str
    output: str
    #: real inputs in this batch (the rest repeat the last one to fill the .om's batch)
    count: int


def _choose_om(artifact: Artifact, om: dict[int | None, Path]) -> tuple[Path, int]:
    """The .om and batch size msit runs: the smallest compiled batch (each run dumps it whole)."""
    keys = sorted(k for k in om if k is not None)
    if keys:
        return om[keys[0]], keys[0]
    batches = sorted(artifact.batch_sizes or [1])
    return om[None], batches[0]


def write_plan(artifact: Artifact, conv: dict[str, Any], om: dict[int | None, Path], inputs: np.ndarray,
               source: Path, folder: Path) -> list[dict[str, Any]]:
    """Write the plan folder for :meth:`AscendTarget.layer_dump_plan`; return its commands."""
    if conv.get("aipp"):
        raise UserError("this .om normalises on the device (AIPP): it takes uint8 pixels, the source ONNX float "
                        "tensors, so msit cannot feed both the same input",
                        "convert without --aipp to debug the layers, then rebuild with AIPP")
    x = np.ascontiguousarray(inputs, dtype=np.float32)
    if x.ndim != 4 or len(x) == 0:
        raise UserError(f"expected a non-empty NCHW batch of inputs, got shape {list(x.shape)}")
    om_path, batch = _choose_om(artifact, om)
    h, w = int(x.shape[2]), int(x.shape[3])
    sizes = [tuple(s) for s in (artifact.sizes or [])]
    if sizes and (h, w) not in sizes:
        raise UserError(f"the inputs are {h}x{w}, the .om is built for {', '.join(f'{a}x{b}' for a, b in sizes)}",
                        "debug with inputs of one of the compiled sizes")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SOURCE).write_bytes(Path(source).read_bytes())
    link_or_copy(om_path, folder / OM)
    (folder / "inputs").mkdir(exist_ok=True)
    runs: list[DumpRun] = []
    chunks = math.ceil(len(x) / batch)
    for k in range(min(chunks, MAX_RUNS)):
        part = x[k * batch:(k + 1) * batch]
        count = len(part)
        if count < batch:  # fill the .om's static batch with copies of the last input
            part = np.concatenate([part, np.repeat(part[-1:], batch - count, axis=0)])
        name = f"inputs/input_{k}.bin"
        part.tofile(folder / name)  # msit reads a .bin as the raw bytes of the model input (float32 here)
        runs.append(DumpRun(name, f"{RESULTS}/{k}", count))
    shape = f"{artifact.input.name}:{batch},{x.shape[1]},{h},{w}"
    doc = {"format": PLAN_FORMAT, "om": OM, "om_source": om_path.name, "source": SOURCE, "batch": batch,
           "input_shape": shape, "soc": conv.get("soc"), "precision_mode": conv.get("precision_mode"),
           "inputs_total": len(x), "inputs_used": int(sum(r.count for r in runs)),
           "runs": [r.__dict__ for r in runs]}
    atomic_write_json(folder / PLAN_DOC, doc)
    _write_script(folder, runs, shape)
    here = str(folder.resolve())
    commands = [{"cmd": f"cd {shlex.quote(here)} && sh {SCRIPT}",
                 "note": f"on the machine with the Ascend device and msit ({INSTALL_HINT}); runs the "
                         f"{len(runs)} msit command(s) below with the folder's paths wherever it is copied; "
                         f"DEVICE=<id> picks the chip, ASCEND_TOOLKIT_HOME the CANN path"}]
    for r in runs:
        argv = compare_argv(f"{here}/{SOURCE}", f"{here}/{OM}", f"{here}/{r.input}", shape, CANN_DEFAULT, "0",
                            f"{here}/{r.output}")
        commands.append({"cmd": shlex.join(argv), "note": f"msit per-layer compare of batch {r.output.rsplit('/', 1)[1]}"})
    if len(runs) < chunks:
        commands[0]["note"] += f"; {len(runs)} of {chunks} batches planned (at most {MAX_RUNS})"
    return commands


def compare_argv(golden: str, om: str, inp: str, shape: str, cann: str, device: str, out: str) -> list[str]:
    """One ``msit debug compare`` call (its option names as msit's argument parser defines them)."""
    return [MSIT, "debug", "compare", "-gm", golden, "-om", om, "-i", inp, "-is", shape, "-c", cann,
            "-d", device, "-ofs", "False", "-o", out]


def _write_script(folder: Path, runs: list[DumpRun], shape: str) -> None:
    lines = ["#!/bin/sh", "# written by 'hrdeploy debug': per-layer compare of model.om against source.onnx",
             "# with msit debug compare; copy this folder back and run 'hrdeploy debug ... --from-dump <folder>'",
             "set -e", 'HERE=$(cd "$(dirname "$0")" && pwd)',
             f"command -v {MSIT} >/dev/null 2>&1 || . {SET_ENV.split(' ', 1)[1]}",
             f"command -v {MSIT} >/dev/null 2>&1 || {{ echo 'msit not found: {INSTALL_HINT}' >&2; exit 127; }}",
             f'CANN="${{ASCEND_TOOLKIT_HOME:-{CANN_DEFAULT}}}"', 'DEVICE="${DEVICE:-0}"']
    for r in runs:
        lines.append(f'mkdir -p "$HERE/{r.output}"')
        argv = compare_argv('"$HERE/' + SOURCE + '"', '"$HERE/' + OM + '"', '"$HERE/' + r.input + '"',
                            shlex.quote(shape), '"$CANN"', '"$DEVICE"', '"$HERE/' + r.output + '"')
        lines.append(" ".join(argv))
    path = folder / SCRIPT
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o755)


# -- reading back ----------------------------------------------------------------------------------
def _load_doc(folder: Path) -> dict[str, Any]:
    path = Path(folder) / PLAN_DOC
    if not path.is_file():
        raise UserError(f"{folder} is not an Ascend layer dump folder: no {PLAN_DOC} in it",
                        "give the folder 'hrdeploy debug' wrote for the device machine")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is not readable JSON: {e}") from None
    if doc.get("format") != PLAN_FORMAT:
        raise UserError(f"{path} has format {doc.get('format')!r}, expected {PLAN_FORMAT}")
    return doc


def result_table(folder: Path, run: dict[str, Any]) -> Path | None:
    """The newest ``result_*.csv`` msit wrote under a run's output folder (msit puts it in a
    ``<timestamp>`` folder, one level deeper for dynamic-shape ranges)."""
    found = sorted((Path(folder) / run["output"]).rglob("result_*.csv"), key=lambda p: (p.stat().st_mtime, p.name))
    return found[-1] if found else None


def read_dump(folder: Path, source: Path) -> LayerDump:
    """The figures of every msit table in ``folder`` keyed by ``source``'s tensor names."""
    from hrdeploy.layerwise import source_tensors

    folder = Path(folder)
    doc = _load_doc(folder)
    runs = doc["runs"]
    tables = {i: result_table(folder, r) for i, r in enumerate(runs)}
    missing = [runs[i]["output"] for i, t in tables.items() if t is None]
    if missing:
        raise UserError(f"{folder} is incomplete: no msit result_*.csv under {', '.join(missing)}",
                        f"run {SCRIPT} in it on the device machine, then copy the folder back")
    nodes = graph_nodes(source)
    batch = int(doc["batch"])
    _, dims = doc["input_shape"].rsplit(":", 1)
    shape = [int(d) for d in dims.split(",")]
    # msaccucmp reports the maximum absolute error; max_rel (hrdeploy's figure) divides it by the
    # source tensor's peak on the same inputs, which the source ONNX gives here
    xs = [np.fromfile(folder / r["input"], dtype=np.float32).reshape(shape) for r in runs]
    ref = source_tensors(source, np.concatenate(xs))
    figures: dict[str, dict[str, float]] = {}
    producers: dict[str, str] = {}
    fused: dict[str, str] = {}
    unknown: set[str] = set()
    for i, run in enumerate(runs):
        table = tables[i]
        assert table is not None
        try:
            rows = parse_compare_csv(table.read_text(encoding="utf-8", errors="replace"))
        except CompareTableError as e:
            raise UserError(f"{table} is not an msit compare table: {e}") from None
        mapped, names = map_rows(rows, nodes)
        unknown.update(names)
        for f in mapped:
            fig = figures.setdefault(f.tensor, {})
            if f.cosine is not None:
                fig["cosine"] = min(fig.get("cosine", 1.0), f.cosine)
            if f.sqnr_db is not None:
                fig["sqnr_db"] = min(fig.get("sqnr_db", math.inf), f.sqnr_db)
            if f.max_abs is not None and f.tensor in ref:
                peak = float(np.max(np.abs(ref[f.tensor][i * batch:(i + 1) * batch])))
                rel = f.max_abs / peak if peak > 0 else (0.0 if f.max_abs == 0 else math.inf)
                fig["max_rel"] = max(fig.get("max_rel", 0.0), rel)
            producers[f.tensor] = f"{f.npu_op} ({f.op_type})"
            if len(f.fused) > 1:
                fused[f.tensor] = "+".join(f.fused)
    figures = {t: v for t, v in figures.items() if v}
    if not figures:
        raise UserError(f"no row of msit's tables in {folder} names a node of {Path(source).name}",
                        "is --source the ONNX file the .om was converted from?")
    notes = []
    if fused:
        t, group = next(iter(fused.items()))
        notes.append(f"{len(fused)} NPU operators fuse several ONNX nodes; each is reported at the output of its "
                     f"last node (e.g. {group} at {t})")
    if unknown:
        notes.append(f"{len(unknown)} GroundTruth node names of msit's table are not in the source graph "
                     f"(e.g. {min(unknown)})")
    if doc.get("inputs_used", 0) < doc.get("inputs_total", 0):
        notes.append(f"msit compared {doc['inputs_used']} of the {doc['inputs_total']} inputs")
    label = (f"msit debug compare (CANN msaccucmp), {doc.get('soc') or 'Ascend'} {doc.get('precision_mode') or ''}, "
             f"{len(runs)} run(s) of batch {batch}").replace("  ", " ")
    return LayerDump(figures=figures, label=label, notes=notes,
                     producers={t: p for t, p in producers.items() if t in figures})
