"""Dry-run plans of toolchain targets: the self-contained artifact folder that ``convert
--dry-run`` writes on a development box and ``convert --from-plan`` compiles on the machine
with the vendor toolchain.

A plan folder holds ``source.onnx`` (the exported model, hard-linked or copied in, so recorded
commands read a relative path), ``plan.json`` (the conversion request plus the target's jobs)
and ``plan.sh`` (the same jobs as a shell script, for machines without hrdeploy). Shared
because every target that records commands it cannot run here (Ascend ATC, VastAI vamc, and
future ones) needs the same folder layout, the same plan checks and the same way back from a
plan to a :class:`~hrdeploy.target.ConvertRequest`; only the jobs differ.

Also here: the option helpers those targets' ``convert``/``open`` share (defaults merged with
what was given; the on/off parser).
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..artifact import Artifact
from ..errors import UserError
from ..io import atomic_write_json
from ..model import InputSpec
from ..target import ConvertRequest, ConvertResult, TargetOption
from .toolrun import COMPILE_TIMEOUT

PLAN_FILE = "plan.json"
PLAN_SCRIPT = "plan.sh"
SOURCE_ONNX = "source.onnx"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

#: runs a plan's jobs: (plan document, artifact folder, request) -> what ``convert`` returns
Execute = Callable[[dict[str, Any], Path, ConvertRequest], ConvertResult]


# -- options ------------------------------------------------------------------------------------
def flag(value: Any, name: str) -> bool:
    """An on/off option (``--aipp on``, ``--softmax off``; also true/false, yes/no, 1/0)."""
    if isinstance(value, bool):
        return value
    low = str(value).strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise UserError(f"--{name} expects on/off, got {value!r}")


def option_values(declared: Mapping[str, TargetOption], given: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every declared option's value: the given one, else its default (None counts as not given,
    which is what the CLI passes for an option left out)."""
    opts = {k: o.default for k, o in declared.items()}
    opts.update({k: v for k, v in (given or {}).items() if v is not None})
    return opts


# -- writing a plan -----------------------------------------------------------------------------
def link_or_copy(src: Path, dst: Path) -> None:
    """Put ``src`` at ``dst`` as a hard link when the filesystem allows, else as a copy
    (replacing ``dst``): big inputs cost no space, and the folder stays self-contained."""
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def place_source(onnx_path: Path, out_dir: Path) -> Path:
    """Create the artifact folder and put the ONNX file in it as ``source.onnx``: recorded
    commands then read a relative path that is valid wherever the folder is copied."""
    out_dir.mkdir(parents=True, exist_ok=True)
    dst = out_dir / SOURCE_ONNX
    link_or_copy(Path(onnx_path), dst)
    return dst


def plan_header(fmt: str, target: str, request: ConvertRequest, options: Mapping[str, Any]) -> dict[str, Any]:
    """The part of ``plan.json`` every target writes: its format tag and what
    :func:`plan_request` needs to rebuild the request on the other machine. Targets add their
    jobs and settings to it."""
    return {"format": fmt, "target": target, "model": request.model, "variant": request.variant,
            "task": request.task, "input": request.input.to_dict(), "preprocess": request.preprocess,
            "precision": request.precision, "batch_sizes": list(request.batch_sizes), "options": dict(options)}


def write_plan(out_dir: Path, doc: Mapping[str, Any]) -> None:
    atomic_write_json(out_dir / PLAN_FILE, doc)


def write_plan_script(out_dir: Path, toolkit: str, jobs: Sequence[tuple[Sequence[str], str]], *,
                      env: Mapping[str, str] | None = None, setup: Sequence[str] = ()) -> None:
    """``plan.sh`` in ``out_dir``: run each job (argv, log file relative to the folder) from the artifact
    folder with ``env`` set, stopping at the first failure. ``toolkit`` names what the machine
    needs ("the VastAI SDK (vamc)"); ``setup`` lines run first (e.g. sourcing set_env.sh)."""
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
    lines = ["#!/bin/sh", f"# hrdeploy plan: compile this artifact on a machine with {toolkit}.",
             "# Preferred: hrdeploy convert --from-plan <this folder>  (records the result and checks parity).",
             "set -e", 'cd "$(dirname "$0")"', *setup]
    for argv, log in jobs:
        lines.append(f"{prefix + ' ' if prefix else ''}{shlex.join(argv)} > {shlex.quote(log)} 2>&1")
    path = out_dir / PLAN_SCRIPT
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o755)


def plan_files() -> dict[str, str]:
    """The ``ConvertResult.files`` roles of the plan itself."""
    return {"source_onnx": SOURCE_ONNX, "plan": PLAN_FILE, "plan_script": PLAN_SCRIPT}


def planned_note(where: str) -> str:
    """The note of a command recorded by ``--dry-run``; ``where`` is what the machine needs."""
    return f"planned (--dry-run): run with 'hrdeploy convert --from-plan' on a machine with {where}"


def from_plan_hint(where: str) -> str:
    """The hint for opening a plan whose compiled files do not exist yet."""
    return f"it is a --dry-run plan: run 'hrdeploy convert --from-plan' on a machine with {where} first"


# -- reading a plan -----------------------------------------------------------------------------
def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON: {e}") from None


def load_plan(artifact: Artifact | Path | str, fmt: str, kind: str, target: str) -> tuple[Path, dict[str, Any]]:
    """(folder, plan document) of a plan folder about to be compiled, after checking it is one
    of ``fmt`` (``kind`` names it in the error: "an Ascend plan") and still holds its
    ``source.onnx``."""
    folder = Path(artifact.path if isinstance(artifact, Artifact) else artifact)
    plan_path = folder / PLAN_FILE
    if not plan_path.is_file():
        raise UserError(f"{folder} has no {PLAN_FILE}", f"convert --dry-run --target {target} writes it")
    doc = _read(plan_path)
    if doc.get("format") != fmt:
        raise UserError(f"{plan_path} is not {kind} (format {doc.get('format')!r})")
    if not (folder / SOURCE_ONNX).is_file():
        raise UserError(f"{folder / SOURCE_ONNX} is missing", "copy the whole artifact folder")
    return folder, doc


def stored_plan(folder: Path) -> dict[str, Any] | None:
    """The plan document of an artifact folder, None when it has none (artifacts converted
    directly, or whose manifest already says everything)."""
    path = Path(folder) / PLAN_FILE
    return _read(path) if path.is_file() else None


def plan_request(doc: Mapping[str, Any], folder: Path, log: Callable[[str], None] = print,
                 step_timeout: float | None = COMPILE_TIMEOUT) -> ConvertRequest:
    """The request ``convert`` got, rebuilt from a plan in ``folder`` (wherever it now is), to
    run for real; each tool step may take ``step_timeout`` seconds."""
    return ConvertRequest(
        onnx_path=folder / SOURCE_ONNX, out_dir=folder, model=doc["model"], variant=doc["variant"],
        task=doc["task"], input=InputSpec.from_dict(doc["input"]), preprocess=doc["preprocess"],
        precision=doc["precision"], batch_sizes=list(doc["batch_sizes"]), options=doc["options"],
        dry_run=False, log=log, step_timeout=step_timeout)


def execute_plan(doc: dict[str, Any], folder: Path, execute: Execute,
                 log: Callable[[str], None] = print, step_timeout: float | None = COMPILE_TIMEOUT) -> ConvertResult:
    """Run a plan's jobs with the target's ``execute`` (the same function its ``convert`` ends
    with) and put the commands that ran, with exit codes and durations, into
    ``result.extra["commands"]``, where ``convert --from-plan`` takes them for the manifest."""
    request = plan_request(doc, folder, log, step_timeout)
    result = execute(doc, folder, request)
    result.extra["commands"] = request.commands
    return result
