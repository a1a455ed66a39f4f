"""The TPU-MLIR command lines of one conversion, built as data (no side effects).

A conversion compiles one bmodel per static input shape (batch x height x width), all under
the same net name, and combines them with ``model_tool --combine`` into one multi-stage
bmodel. Paths are relative to the artifact folder (the tools run in ``work/<stage>/``), so a
plan written by ``convert --dry-run`` can be carried to another machine and replayed.

Layout of an artifact folder::

    source.onnx               the exported model (hard link or copy; commands read it relatively)
    plan.json, plan.sh        the steps below, for ``convert --from-plan`` or a plain shell
    model.bmodel              the deployable file (stages largest first)
    calibration_table.txt     INT8 only
    inputs/test_<stage>.npz   the reference inputs the tools compare on (ONNX input name)
    inputs/calib/NNNN.npz     INT8 calibration tensors, preprocessed by the model plugin
    logs/NN_<tool>_<stage>.log
    work/<stage>/             TPU-MLIR's intermediate files (removed after a successful run)
"""
from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hrdeploy.errors import UserError

CHIPS = ("bm1684", "bm1684x")
QUANTIZE = {"fp32": "F32", "fp16": "F16", "int8": "INT8"}
CALIB_METHODS = ("kl", "mse", "max", "percentile9999")
BMODEL = "model.bmodel"
CALIB_TABLE = "calibration_table.txt"
QTABLE = "inputs/quantize_table.txt"
SOURCE = "source.onnx"
#: how commands name the toolchain's bin/ where it is not known (plans)
TOOLCHAIN_BIN = "$HRDEPLOY_TOOLCHAINS/sophon/venv/bin"


def check_chip(chip: str | None) -> str:
    c = (chip or "").strip().lower()
    if c not in CHIPS:
        raise UserError(f"unknown Sophon chip {chip!r}", "choose --chip bm1684 or --chip bm1684x")
    return c


def check_precision(chip: str, precision: str) -> str:
    """The model_deploy --quantize value; BM1684 has no float16 units."""
    if precision not in QUANTIZE:
        raise UserError(f"the sophon target does not build {precision!r}", "choose fp32, fp16 or int8")
    if chip == "bm1684" and precision == "fp16":
        raise UserError("BM1684 cannot run fp16 (it computes in F32 and INT8 only)",
                        "use --precision fp32 or int8 on bm1684, or --chip bm1684x for fp16")
    return QUANTIZE[precision]


def net_name(model: str, variant: str) -> str:
    """TPU-MLIR's --model_name: the net name inside the bmodel and every file prefix."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", f"{model}_{variant}").strip("_")
    return name or "net"


@dataclass(frozen=True)
class Stage:
    """One static input shape to compile."""

    batch: int
    height: int
    width: int
    channels: int = 3

    @property
    def key(self) -> str:
        return f"b{self.batch}_{self.height}x{self.width}"

    @property
    def shape(self) -> list[int]:
        return [self.batch, self.channels, self.height, self.width]

    @property
    def workdir(self) -> str:
        return f"work/{self.key}"

    @property
    def test_input(self) -> str:
        return f"inputs/test_{self.key}.npz"


def plan_stages(batch_sizes: list[int], sizes: tuple[tuple[int, int], ...] | list[tuple[int, int]],
                channels: int = 3) -> list[Stage]:
    """Every (batch, size) to compile, largest first: TPU-MLIR's cmodel runtime sizes its
    input buffers from stage 0 of a combined bmodel and returned zeros for a larger stage
    placed after a smaller one (tpu_mlir 1.30.2, measured), so the combine order is fixed."""
    if not sizes:
        raise UserError("this model has neither a fixed input size nor size gears; Sophon bmodels are static",
                        "export a variant with a fixed input size or with gears")
    if not batch_sizes:
        raise UserError("no batch size given")
    stages = {Stage(int(b), int(h), int(w), channels) for b in batch_sizes for h, w in sizes}
    return sorted(stages, key=lambda s: (-(s.batch * s.height * s.width), -s.batch, s.height, s.width))


@dataclass
class Step:
    """One command: argv, where it runs and where its output goes (relative paths; no log
    for commands that print nothing)."""

    tool: str
    argv: list[str]
    cwd: str
    log: str
    stage: Stage | None = None
    note: str = ""
    parses_compare: bool = False
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        st = self.stage
        return {"tool": self.tool, "argv": list(self.argv), "cwd": self.cwd, "log": self.log, "note": self.note,
                "parses_compare": self.parses_compare,
                "stage": None if st is None else {"batch": st.batch, "height": st.height, "width": st.width,
                                                   "channels": st.channels}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Step":
        st = d.get("stage")
        return cls(d["tool"], list(d["argv"]), d["cwd"], d["log"], Stage(**st) if st else None,
                   d.get("note", ""), bool(d.get("parses_compare")))


def _up(workdir: str) -> str:
    """From a stage's work dir back to the artifact folder."""
    return "/".join([".."] * len(workdir.split("/")))


def transform_step(name: str, onnx: str, stage: Stage, index: int) -> Step:
    up = _up(stage.workdir)
    zeros = ",".join(["0.0"] * stage.channels)
    ones = ",".join(["1.0"] * stage.channels)
    argv = ["model_transform", "--model_name", name, "--model_def", f"{up}/{onnx}",
            "--input_shapes", "[[" + ",".join(str(v) for v in stage.shape) + "]]",
            # the host pipeline already normalised the tensor: the bmodel takes what ONNX takes
            "--mean", zeros, "--scale", ones,
            "--test_input", f"{up}/{stage.test_input}", "--test_result", f"{name}_top_outputs.npz",
            "--mlir", f"{name}.mlir"]
    return Step("model_transform", argv, stage.workdir, f"logs/{index:02d}_model_transform_{stage.key}.log",
                stage, note="ONNX -> top MLIR, checked against onnxruntime on the test input", parses_compare=True)


def calibration_step(name: str, stage: Stage, chip: str, count: int, method: str, index: int) -> Step:
    """run_calibration writes its table (and a ``shape_pattern_qtable`` beside it) into the
    stage's work dir; the deploy steps read it from there and a copy step keeps it."""
    if method not in CALIB_METHODS:
        raise UserError(f"unknown calibration method {method!r}", "choose " + ", ".join(CALIB_METHODS))
    up = _up(stage.workdir)
    argv = ["run_calibration", f"{name}.mlir", "--dataset", f"{up}/inputs/calib", "--input_num", str(count),
            "--cali_method", method, "--chip", chip, "-o", f"{name}_cali_table"]
    return Step("run_calibration", argv, stage.workdir, f"logs/{index:02d}_run_calibration_{stage.key}.log", stage,
                note=f"INT8 thresholds from {count} preprocessed calibration tensors ({method})")


#: model_deploy's own similarity floors (cosine,euclidean; tpu_mlir 1.30 model_deploy.py):
#: --tolerance for the tpu MLIR against the top MLIR, per --quantize ...
TOLERANCE_FLOORS = {"F32": "0.99,0.99", "F16": "0.99,0.90", "BF16": "0.99,0.90", "INT8": "0.90,0.80"}
#: ... and --correctness for the bmodel against the tpu MLIR (lower with a quantize table)
CORRECTNESS_FLOOR, CORRECTNESS_FLOOR_QTABLE = "0.99,0.90", "0.98,0.80"
#: what model_deploy is given instead: it aborts before writing the bmodel when a floor is
#: missed, so hrdeploy lets it finish, judges the printed figures against the floors above
#: itself (recorded as the toolchain's verdict) and leaves the decision to one parity policy
RECORD_ONLY_FLOOR = "0,0"


def similarity_floors(quantize: str, qtable: bool, tolerance: str | None = None) -> dict[str, str]:
    """The floors TPU-MLIR would apply, by the compared file's reference: ``top`` (tpu MLIR vs
    top MLIR: ``--tolerance``, or the user's ``tolerance`` option) and ``tpu`` (bmodel vs tpu
    MLIR: ``--correctness``)."""
    return {"top": tolerance or TOLERANCE_FLOORS.get(quantize, "0.99,0.99"),
            "tpu": CORRECTNESS_FLOOR_QTABLE if qtable else CORRECTNESS_FLOOR}


def deploy_step(name: str, stage: Stage, chip: str, quantize: str, index: int,
                calibration: str | None = None, qtable: bool = False, tolerance: str | None = None) -> Step:
    """model_deploy writes the bmodel and its side files (``.json``, ``.profile`` and a
    ``<stem>/`` context folder from its cmodel check) in the stage's work dir. Its similarity
    figures are judged by hrdeploy against :func:`similarity_floors` (see RECORD_ONLY_FLOOR)."""
    up = _up(stage.workdir)
    argv = ["model_deploy", "--mlir", f"{name}.mlir", "--quantize", quantize, "--chip", chip]
    if calibration:
        argv += ["--calibration_table", calibration]
    if qtable:
        argv += ["--quantize_table", f"{up}/{QTABLE}"]
    argv += ["--test_input", f"{name}_in_f32.npz", "--test_reference", f"{name}_top_outputs.npz",
             "--tolerance", RECORD_ONLY_FLOOR, "--correctness", RECORD_ONLY_FLOOR]
    argv += ["--model", stage_bmodel(name, stage)]
    floors = similarity_floors(quantize, qtable, tolerance)
    return Step("model_deploy", argv, stage.workdir, f"logs/{index:02d}_model_deploy_{stage.key}.log", stage,
                note=(f"{quantize} bmodel for {chip}, validated on the cmodel against the MLIR; its similarity "
                      f"figures are judged by hrdeploy against TPU-MLIR's floors (tolerance {floors['top']}, "
                      f"correctness {floors['tpu']}) so that a miss keeps the bmodel"),
                parses_compare=True)


def stage_bmodel(name: str, stage: Stage) -> str:
    return f"{name}_{stage.key}.bmodel"


def combine_step(parts: list[str], index: int) -> Step:
    return Step("model_tool", ["model_tool", "--combine", *parts, "-o", BMODEL], ".",
                f"logs/{index:02d}_model_tool_combine.log",
                note="one multi-stage bmodel; the runtime picks the stage from the input shape")


def copy_step(src: str, dst: str, index: int, what: str) -> Step:
    return Step("cp", ["cp", src, dst], ".", "", note=f"keep {what} (work/ is removed after a successful run)")


def build_plan(*, name: str, onnx: str, stages: list[Stage], chip: str, precision: str,
               calib_count: int = 0, calib_method: str = "kl", qtable: bool = False,
               tolerance: str | None = None) -> list[Step]:
    """All commands of a conversion in order: model_transform per stage, run_calibration once
    (INT8, on the smallest stage of the first size: the table holds per-op thresholds that do
    not depend on the shape), model_deploy per stage, then the deployable files out of
    work/: ``model_tool --combine`` for several stages, a copy for one."""
    quantize = check_precision(chip, precision)
    steps: list[Step] = []
    for st in stages:
        steps.append(transform_step(name, onnx, st, len(steps) + 1))
    table = None
    if quantize == "INT8":
        if calib_count < 1:
            raise UserError("int8 needs calibration images", "pass --calib DIR (images the model's own preprocessing turns into tensors)")
        cal = calibration_stage(stages)
        steps.append(calibration_step(name, cal, chip, calib_count, calib_method, len(steps) + 1))
        table = f"{cal.workdir}/{name}_cali_table"
    for st in stages:
        steps.append(deploy_step(name, st, chip, quantize, len(steps) + 1,
                                 calibration=f"{_up(st.workdir)}/{table}" if table else None,
                                 qtable=qtable, tolerance=tolerance))
    parts = [f"{st.workdir}/{stage_bmodel(name, st)}" for st in stages]
    if len(parts) > 1:
        steps.append(combine_step(parts, len(steps) + 1))
    else:
        steps.append(copy_step(parts[0], BMODEL, len(steps) + 1, "the bmodel"))
    if table:
        steps.append(copy_step(table, CALIB_TABLE, len(steps) + 1, "the calibration table"))
    return steps


def calibration_stage(stages: list[Stage]) -> Stage:
    """The stage whose MLIR calibrates: the first input size, smallest batch."""
    first = (stages[0].height, stages[0].width)
    return min((s for s in stages if (s.height, s.width) == first), key=lambda s: s.batch)


def write_plan_script(out: Path, steps: list[Step]) -> None:
    """``plan.sh``: the steps as a shell script for a machine with TPU-MLIR but no hrdeploy
    (``hrdeploy convert --from-plan`` is preferred: it records verdicts and checks parity)."""
    lines = ["#!/bin/sh", "# hrdeploy plan: compile this artifact on a machine with TPU-MLIR "
             "('hrdeploy toolchain install sophon').",
             "# Preferred: hrdeploy convert --from-plan <this folder>  (records the result and checks parity).",
             "set -e", 'cd "$(dirname "$0")"',
             'export PATH="${HRDEPLOY_TOOLCHAINS:-$HOME/.cache/hrdeploy/toolchains}/sophon/venv/bin:$PATH"',
             "mkdir -p logs"]
    for st in steps:
        cmd = shlex.join(st.argv)
        if os.path.normpath(st.cwd) != ".":
            cmd = f"mkdir -p {shlex.quote(st.cwd)} && (cd {shlex.quote(st.cwd)} && {cmd})"
        lines.append(f"{cmd} > {shlex.quote(st.log)} 2>&1" if st.log else cmd)
    path = out / "plan.sh"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o755)
