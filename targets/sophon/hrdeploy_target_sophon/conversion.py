"""One Sophon conversion: the plan written into the artifact folder, and its execution.

``prepare`` writes what the tools read (source.onnx, test inputs, calibration tensors) and the
plan (plan.json, plan.sh); ``execute`` runs the plan's steps (or records them on a dry run),
turns TPU-MLIR's similarity verdicts into checks, and keeps only the deployable files. The
same ``execute`` compiles a plan carried from another machine (``convert --from-plan``).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from hrdeploy.errors import ToolchainMissing, UserError
from hrdeploy.kit.plan import flag, place_source, plan_files, plan_header, planned_note, write_plan
from hrdeploy.target import ConvertRequest, ConvertResult
from hrdeploy.kit.toolrun import run_tool

from . import commands as C
from . import layers
from . import quantize_table as QT
from .layers import source_graph
from .parsers import describe_failure, parse_calibration_table, parse_model_info, parse_npz_compares, strip_ansi
from .toolchain import INSTALL_HINT, Toolchain

PLAN_FORMAT = "hrdeploy-sophon-plan/1"
#: what a machine needs to compile a plan, in notes and hints
TOOLKIT = "TPU-MLIR ('hrdeploy toolchain install sophon')"


def onnx_io(path: Path) -> tuple[list[str], list[str]]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits], [o.name for o in model.graph.output]


def resample(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an NCHW batch: test inputs for a size gear other than the
    one the reference inputs were made at (the tools only need realistic value ranges)."""
    iy = np.minimum((np.arange(height) + 0.5) * x.shape[2] / height, x.shape[2] - 1).astype(np.int64)
    ix = np.minimum((np.arange(width) + 0.5) * x.shape[3] / width, x.shape[3] - 1).astype(np.int64)
    return np.ascontiguousarray(x[:, :, iy][:, :, :, ix])


def stage_batch(ref: np.ndarray, stage: C.Stage) -> np.ndarray:
    """``stage.batch`` reference rows at the stage's size, cycling when there are fewer."""
    x = ref if ref.shape[2:] == (stage.height, stage.width) else resample(ref, stage.height, stage.width)
    idx = np.arange(stage.batch) % len(x)
    return np.ascontiguousarray(x[idx], dtype=np.float32)


#: a frame of TPU-MLIR's model_runner progress bar ("[#####     ] 50%", "51%52%#  ] 52%"): a tool
#: that dies mid-run (a crash prints nothing to the log) leaves one of these as its last line
_PROGRESS = re.compile(r"[\[\]#\s\d%]*\d+%[\[\]#\s\d%]*")


def _last_line(text: str) -> str:
    skip = ("BMLIB Send Quit Message", "cmodel_deinit complete", "[Running]", "[Success]")
    lines = [ln.strip() for ln in strip_ansi(text).splitlines() if ln.strip() and not _PROGRESS.fullmatch(ln.strip())]
    for ln in reversed(lines):
        if "Error" in ln or "error:" in ln:
            return ln[:200]
    for ln in reversed(lines):
        if not ln.startswith(skip) and "%|" not in ln:
            return ln[:200]
    return ""


def _compare_label(block: dict[str, Any]) -> str:
    def kind(f: str) -> str:
        for suffix, label in (("_ref_outputs.npz", "onnxruntime"), ("_top_outputs.npz", "top MLIR"),
                              ("_tpu_outputs.npz", "tpu MLIR"), ("_model_outputs.npz", "bmodel on the cmodel")):
            if f.endswith(suffix):
                return label
        return Path(f).name
    return f"{kind(block['target'])} vs {kind(block['reference'])}"


def prepare(request: ConvertRequest, chip: str, opts: dict[str, Any], target: str) -> dict[str, Any]:
    """Write the plan of a conversion into ``request.out_dir`` with everything its steps read
    (also on a dry run, so the folder compiles anywhere); returns the plan document."""
    quantize = C.check_precision(chip, request.precision)
    if quantize == "INT8" and request.calibration is None:
        raise UserError("int8 needs calibration images",
                        "pass --calib DIR (images run through the model's own preprocessing)")
    inputs, outputs = onnx_io(request.onnx_path)
    if len(inputs) != 1:
        raise UserError(f"{request.onnx_path} has {len(inputs)} inputs; hrdeploy models take one image tensor")
    input_name = inputs[0]
    stages = C.plan_stages(request.batch_sizes, request.sizes, request.input.channels)
    name = C.net_name(request.model, request.variant)
    out = request.out_dir
    place_source(request.onnx_path, out)

    # what the tools read, written even for a dry run so the plan compiles anywhere
    ref = request.reference_inputs
    ref_note = "reference inputs of the conversion"
    if ref is None or len(ref) == 0:
        ref = np.random.default_rng(0).standard_normal(
            (1, request.input.channels, stages[0].height, stages[0].width)).astype(np.float32)
        ref_note = "synthetic standard-normal input (no reference inputs were given)"
    (out / "inputs").mkdir(exist_ok=True)
    for st in stages:
        np.savez(out / st.test_input, **{input_name: stage_batch(ref, st)})
    calib_count = 0
    if quantize == "INT8":
        calib_count = write_calibration(request, C.calibration_stage(stages), input_name)
    user_table = None
    if opts.get("quantize_table"):
        user_table = Path(str(opts["quantize_table"])).expanduser()
        if not user_table.is_file():
            raise UserError(f"quantize table not found: {user_table}")
    kept: list[dict[str, str]] = []
    if request.keep_float and quantize != "INT8":
        request.log(f"note: keep-float ignored: a {request.precision} bmodel has no int8 layers")
    elif request.keep_float:
        kept = QT.table_layers(source_graph(request.onnx_path), request.keep_float)
    qtable = user_table is not None or bool(kept)
    if qtable:  # written even for a dry run: the plan's model_deploy reads it from the folder
        QT.write_table(out / C.QTABLE, kept, user_table)
    else:
        (out / C.QTABLE).unlink(missing_ok=True)  # a table left by an earlier conversion here
    steps = C.build_plan(name=name, onnx=C.SOURCE, stages=stages, chip=chip, precision=request.precision,
                         calib_count=calib_count, calib_method=str(opts.get("calib_method") or "kl"),
                         qtable=qtable, tolerance=str(opts["tolerance"]) if opts.get("tolerance") else None)
    doc = {
        **plan_header(PLAN_FORMAT, target, request, opts),
        "chip": chip, "quantize": quantize, "net_name": name, "input_name": input_name,
        "onnx_outputs": outputs, "test_inputs": ref_note, "calibration_tensors": calib_count,
        "stages": [{"index": i, "batch": st.batch, "size": [st.height, st.width]} for i, st in enumerate(stages)],
        "steps": [step.to_dict() for step in steps],
    }
    if qtable:
        doc["quantize_table"] = {"file": C.QTABLE, "mode": QT.MODE, "from_option": user_table is not None,
                                 "keep_float": kept}
    write_plan(out, doc)
    C.write_plan_script(out, steps)
    return doc


def execute(doc: dict[str, Any], out: Path, request: ConvertRequest, tc: Toolchain | None) -> ConvertResult:
    """Run (or on a dry run record) a plan's steps with the toolchain ``tc``; collect the
    tools' similarity verdicts."""
    if request.dry_run:
        tc = None
    elif tc is None:
        raise ToolchainMissing("TPU-MLIR is not installed", INSTALL_HINT)
    steps = [C.Step.from_dict(d) for d in doc["steps"]]
    checks: list[dict[str, Any]] = []
    seconds: dict[str, float] = {}
    floors = C.similarity_floors(doc["quantize"], bool(doc["options"].get("quantize_table") or doc.get("quantize_table")),
                                 str(doc["options"]["tolerance"]) if doc["options"].get("tolerance") else None)
    for step in steps:
        proc = run_step(request, step, tc)
        if proc is None:
            continue
        if step.log:
            seconds[Path(step.log).stem] = request.commands[-1].get("seconds", 0.0)
        verdicts(step, proc, out, checks, floors)

    quantize = doc["quantize"]
    files = {**plan_files(), "model": C.BMODEL}
    if quantize == "INT8":
        files["calibration_table"] = C.CALIB_TABLE
    if (out / C.QTABLE).is_file():
        files["quantize_table"] = C.QTABLE
    extra: dict[str, Any] = {
        "chip": doc["chip"], "quantize": quantize, "net_name": doc["net_name"], "input_name": doc["input_name"],
        "onnx_outputs": doc["onnx_outputs"], "stages": doc["stages"], "planned": bool(request.dry_run),
        "preprocessing": "on the host by the model plugin; the bmodel takes the normalised float tensor "
                         "(TPU-MLIR mean 0, scale 1)",
        "test_inputs": doc["test_inputs"],
    }
    if doc.get("quantize_table"):
        extra["quantize_table"] = dict(doc["quantize_table"])
    if doc.get("calibration_tensors"):
        extra["calibration"] = {"tensors": doc["calibration_tensors"],
                                "method": doc["options"].get("calib_method") or "kl"}
    if tc is not None:
        extra["seconds"] = seconds
        extra["bmodel"] = bmodel_info(tc, out / C.BMODEL)
        if quantize == "INT8" and (out / C.CALIB_TABLE).is_file():
            table = parse_calibration_table((out / C.CALIB_TABLE).read_text())
            extra["calibration"].update({"ops": len(table["ops"]), "samples": table["samples"]})
        context = layers.keep_context(out, doc)
        if context is not None:  # what `hrdeploy debug` replays (layers.dump_layers); text files of one stage
            files.update(context[0])
            extra["layer_debug"] = context[1]
        if doc.get("quantize_table"):
            # model_deploy skips unknown table names silently: read back what each layer became
            tpu_mlir = out / context[0]["debug_tpu_mlir"] if context else None
            if tpu_mlir is not None and doc["quantize_table"]["keep_float"]:
                extra["quantize_table"]["keep_float"] = QT.verify(doc["quantize_table"]["keep_float"], tpu_mlir,
                                                                   request.log)
        keep = flag(doc["options"].get("keep_work") or "false", "keep_work")
        extra["work_kept"] = keep
        if not keep:  # intermediate MLIR/weights and the calibration tensors: hundreds of MB for HRNet
            shutil.rmtree(out / "work", ignore_errors=True)
            shutil.rmtree(out / "inputs" / "calib", ignore_errors=True)
    toolchain = tc.to_dict() if tc else {"name": "tpu_mlir", "version": None,
                                         "origin": "planned (--dry-run): not run here"}
    toolchain["chip"] = doc["chip"]
    batches = sorted({int(s["batch"]) for s in doc["stages"]})
    sizes = sorted({(int(s["size"][0]), int(s["size"][1])) for s in doc["stages"]})
    return ConvertResult(files=files, toolchain=toolchain, batch_sizes=batches, sizes=sizes,  # type: ignore[arg-type]
                         checks=checks, extra=extra)


def write_calibration(request: ConvertRequest, stage: C.Stage, input_name: str) -> int:
    """Calibration tensors from the model's own preprocessing, as npz files holding one
    batch of the calibrating MLIR's shape each; tensors of another size are skipped."""
    assert request.calibration is not None
    folder = request.out_dir / "inputs" / "calib"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    want = (request.input.channels, stage.height, stage.width)
    group: list[np.ndarray] = []
    written = skipped = 0
    for t in request.calibration(request.calib_count):
        t = np.asarray(t, dtype=np.float32)
        if tuple(t.shape) != want:
            skipped += 1
            continue
        group.append(t)
        if len(group) == stage.batch:
            np.savez(folder / f"{written:04d}.npz", **{input_name: np.stack(group)})
            written += 1
            group = []
    if written == 0:
        raise UserError(f"no calibration tensor of shape {list(want)} came out of --calib "
                        f"({skipped} of another size)", "check --calib DIR and --calib-count")
    request.log(f"calibration: {written} npz file(s) of batch {stage.batch}"
                + (f", {skipped} tensor(s) of another size skipped" if skipped else ""))
    return written


def run_step(request: ConvertRequest, step: C.Step, tc: Toolchain | None) -> subprocess.CompletedProcess[str] | None:
    out = request.out_dir
    cwd = out / step.cwd
    note = planned_note(TOOLKIT) + f"; {step.note}" if request.dry_run else step.note
    log = out / step.log if step.log else None
    if not request.dry_run:
        cwd.mkdir(parents=True, exist_ok=True)
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
        if step.parses_compare or step.tool == "run_calibration":
            request.log(f"{step.tool} {step.stage.key if step.stage else ''}: {step.note}")
    proc = request.run(step.argv, cwd=cwd, log=log, env=tc.env() if tc else None, note=note, check=False,
                       tool_hint=INSTALL_HINT, step=f"{step.tool} {step.stage.key if step.stage else ''}".strip())
    # record paths relative to the artifact folder (it is renamed after conversion and may
    # be copied to another machine) and the toolchain's bin/ rather than this PATH
    entry = request.commands[-1]
    entry["cwd"], entry["tool"] = step.cwd, step.tool
    if step.log:
        entry["log"] = step.log
    if step.stage:
        entry["stage"] = step.stage.key
    entry["env"] = {"PATH": f"{tc.bin_dir if tc else C.TOOLCHAIN_BIN}:$PATH"}
    return proc


def _meets(sim: dict[str, Any], floor: str) -> bool:
    cos, euc = (float(v) for v in floor.split(","))
    return sim.get("cosine") is not None and sim.get("euclidean") is not None \
        and float(sim["cosine"]) >= cos and float(sim["euclidean"]) >= euc


def verdicts(step: C.Step, proc: subprocess.CompletedProcess[str], root: Path,
             checks: list[dict[str, Any]], floors: dict[str, str] | None = None) -> None:
    """Similarity verdicts of one tool run into ``checks``. model_transform's verdict is its
    own (it stops on a miss); model_deploy's figures are judged here against TPU-MLIR's floors
    (:func:`commands.similarity_floors`): a miss is recorded, not raised — the core's parity
    policy decides. A failed tool becomes one UserError line with the log path."""
    stage = step.stage.key if step.stage else "all stages"
    blocks = parse_npz_compares(proc.stdout) if step.parses_compare else []
    for b in blocks:
        sim = b.get("min_similarity") or {}
        floor = b["tolerance"]
        failed = [t["name"] for t in b["tensors"] if not t["passed"]]
        if step.tool == "model_deploy" and floors is not None and b["passed"] is not False:
            floor = floors["top"] if b["reference"].endswith("_top_outputs.npz") else floors["tpu"]
            failed = [t["name"] for t in b["tensors"] if t.get("cosine") is not None and not _meets(t, floor)]
        passed = bool(b["passed"]) and not failed
        checks.append({
            "tool": step.tool, "stage": stage, "compare": _compare_label(b), "passed": passed,
            "tolerance": floor, "min_cosine": sim.get("cosine"), "min_euclidean": sim.get("euclidean"),
            "tensors": len(b["tensors"]), "failed": failed, "log": step.log,
            "text": (f"{step.tool} {stage}: {_compare_label(b)} {'PASSED' if passed else 'FAILED'} "
                     f"(floor cosine,euclidean {floor}"
                     + (f"; min cosine {sim.get('cosine'):.6f}, euclidean {sim.get('euclidean'):.6f})"
                        if sim.get("cosine") is not None and sim.get("euclidean") is not None else ")")),
        })
    failed = [b for b in blocks if b["passed"] is False]
    if failed:  # the tool applied a floor of its own and stopped
        raise UserError(f"{step.tool} {stage}: similarity check failed: {describe_failure(failed[0])}; "
                        f"log: {root / step.log}")
    if proc.returncode != 0:
        where = f"; log: {root / step.log}" if step.log else ""
        raise UserError(f"{step.tool} {stage} failed (exit {proc.returncode}): {_last_line(proc.stdout)}{where}")
    if step.tool == "model_deploy" and not blocks:
        checks.append({"tool": step.tool, "stage": stage, "compare": "none", "passed": None, "log": step.log,
                       "text": f"model_deploy {stage}: no similarity verdict in its output"})


def bmodel_info(tc: Toolchain, bmodel: Path) -> dict[str, Any]:
    try:
        out = run_tool(["model_tool", "--info", str(bmodel)], step="model_tool --info",
                       env={**os.environ, **tc.env()}, timeout=120, tool_hint=INSTALL_HINT)
    except UserError as e:  # the information is a bonus: a missing or hung model_tool is noted
        return {"error": str(e)}
    info = parse_model_info(out.stdout)
    return {"chip": info["chip"], "nets": [{"name": n["name"], "stages": [
        {"index": s["index"], "input_shapes": [i["shape"] for i in s["inputs"]]} for s in n["stages"]]}
        for n in info["nets"]]}
