"""The Sophon target: ONNX -> TPU-MLIR -> bmodel for BM1684 / BM1684X, run by sophon.sail on
a device or by TPU-MLIR's cmodel simulator without one."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from hrdeploy.artifact import Artifact
from hrdeploy.errors import ToolchainMissing, UserError
from hrdeploy.kit.plan import execute_plan, from_plan_hint, load_plan, option_values
from hrdeploy.target import ConvertRequest, ConvertResult, LayerDump, Probe, Runner, Target, TargetOption
from hrdeploy.kit.toolrun import COMPILE_TIMEOUT, MEASURE_TIMEOUT, run_tool

from . import commands as C
from . import conversion
from .conversion import PLAN_FORMAT, TOOLKIT, _last_line
from .parsers import bmrt_rows, parse_bmrt_test
from .probe import query_devices, sail_status
from .toolchain import INSTALL_HINT, find_toolchain, human_size, install_toolchain, read_state

SIMULATOR_NAMES = ("cmodel", "sim", "simulator")
SIMULATOR_LABEL = "simulator (cmodel)"


def chip_from_devices(devices: list[dict[str, Any]]) -> str | None:
    chips = [d.get("chip") for d in devices if d.get("chip")]
    return chips[0] if chips else None


def resolve_chip(option: str | None, devices: list[dict[str, Any]] | None = None) -> str:
    """--chip if given, else the family of the first device bm-smi reports."""
    if option:
        return C.check_chip(option)
    if devices is None:
        devices, _how = query_devices()
    chip = chip_from_devices(devices)
    if chip:
        return chip
    if devices:
        boards = ", ".join(sorted({str(d.get("board")) for d in devices}))
        raise UserError(f"cannot tell the chip family of the Sophon board(s) here ({boards})",
                        "pass --chip bm1684 or --chip bm1684x")
    raise UserError("--chip is required: no Sophon device here to detect it from",
                    "pass --chip bm1684x (SC7, SE7, ...) or --chip bm1684 (SC5, SE5, ...)")


class SophonTarget(Target):
    name = "sophon"
    description = ("Sophgo Sophon BM1684/BM1684X: TPU-MLIR bmodels, sophon.sail on a device, "
                   "the cmodel simulator without one")
    precisions = ("fp32", "fp16", "int8")
    static_batch = True
    options = {
        "chip": TargetOption("bm1684 or bm1684x (default: detected with bm-smi; required without a device)",
                             None, C.CHIPS),
        "calib_method": TargetOption("int8 threshold method of run_calibration", "kl", C.CALIB_METHODS),
        "quantize_table": TargetOption("int8: a TPU-MLIR qtable file of layers kept in float (mixed precision)"),
        "tolerance": TargetOption("model_deploy's cosine,euclidean similarity floor (default: TPU-MLIR's per precision)"),
        "keep_work": TargetOption("keep TPU-MLIR's intermediate files in work/ (true/false)", "false", ("true", "false")),
    }
    setup_hint = INSTALL_HINT
    #: ``request.keep_float`` becomes a TPU-MLIR quantize table (:mod:`.quantize_table`)
    mixed_precision = True
    ray_actor_resources = {"sophon": 1.0}  # eval --ray: custom, ray start --resources='{"sophon": N}'

    # -- probe -----------------------------------------------------------------------------------
    def probe(self) -> Probe:
        tc = find_toolchain()
        devices, how = query_devices()
        sail = sail_status()
        parts = [f"TPU-MLIR {tc.version} ({tc.origin}: {tc.home or tc.bin_dir})" if tc
                 else "TPU-MLIR not installed ('hrdeploy toolchain install sophon')"]
        if devices:
            boards = ", ".join(f"{d.get('id')}: {d.get('board') or '?'} ({d.get('chip') or '?'})" for d in devices)
            parts.append(f"devices {boards}")
        else:
            parts.append("no Sophon device" + (f": bmodels run on the {SIMULATOR_LABEL}" if tc else ""))
        parts.append("sail importable" if sail["importable"] else f"sail: {sail['reason']}")
        if devices and sail["importable"]:
            runner = "sophon.sail"
        elif devices and tc:
            runner = "sophon.sail (toolchain interpreter)" if _python_has_sail(tc.python) else None
        else:
            runner = SIMULATOR_LABEL if tc else None
        available = tc is not None or runner is not None
        return Probe(available, "; ".join(parts), version=tc.version if tc else None, devices=devices,
                     extra={"toolchain": tc.to_dict() if tc else None, "sail": sail, "device_query": how,
                            "runner": runner, "simulator": runner == SIMULATOR_LABEL,
                            "can_convert": tc is not None})

    # -- provisioning ------------------------------------------------------------------------------
    def install_toolchain(self, python: str | None = None) -> str:
        def log(msg: str) -> None:
            print(msg, file=sys.stderr, flush=True)

        path = install_toolchain(python, log)
        st = read_state(path.parent) or {}
        return (f"sophon toolchain ready: tpu_mlir {st.get('tpu_mlir')} (torch {st.get('torch')}, Python "
                f"{st.get('python_version')}) in {st.get('venv')}, {human_size(st.get('size_bytes'))} "
                f"({st.get('install_seconds', 0):.0f} s this run); state: {path}")

    # -- convert -----------------------------------------------------------------------------------
    def convert(self, request: ConvertRequest) -> ConvertResult:
        """Plan the conversion into the artifact folder (source.onnx, test and calibration
        inputs, plan.json, plan.sh), then run it unless this is a dry run."""
        opts = option_values(self.options, request.options)
        chip = resolve_chip(opts.get("chip"))
        C.check_precision(chip, request.precision)
        tc = find_toolchain()
        if tc is None and not request.dry_run:
            raise ToolchainMissing("TPU-MLIR is not installed", INSTALL_HINT)
        doc = conversion.prepare(request, chip, opts, self.name)
        return conversion.execute(doc, request.out_dir, request, tc)

    def run_plan(self, artifact: Artifact | Path | str, log: Any = print,
                 step_timeout: float | None = COMPILE_TIMEOUT) -> ConvertResult:
        """Compile a ``convert --dry-run`` folder on a machine with TPU-MLIR (``hrdeploy convert
        --from-plan``): run its recorded steps in the folder and return what ``convert`` would
        have; ``result.extra["commands"]`` holds the commands that ran."""
        folder, doc = load_plan(artifact, PLAN_FORMAT, "a Sophon plan", self.name)
        tc = find_toolchain()
        if tc is None:
            raise ToolchainMissing("TPU-MLIR is not installed", INSTALL_HINT)
        return execute_plan(doc, folder, lambda d, out, req: conversion.execute(d, out, req, tc), log, step_timeout)

    # -- run ---------------------------------------------------------------------------------------
    def open(self, artifact: Artifact, device: str | None = None, options: dict[str, Any] | None = None) -> Runner:
        from .runner import SailRunner, WorkerRunner

        m = artifact.manifest
        name = (m.get("files") or {}).get("model", C.BMODEL)
        if not artifact.inside(name, "files.model").is_file() and (artifact.folder / "plan.json").is_file():
            raise UserError(f"{artifact.path} has no compiled bmodel yet", from_plan_hint(TOOLKIT))
        bmodel = artifact.file("model")
        assert bmodel is not None
        chip = (m.get("conversion") or {}).get("chip") or (m.get("toolchain") or {}).get("chip")
        common: dict[str, Any] = {"input_name": (m.get("input") or {}).get("name"), "output_names": m.get("outputs"),
                                  "batch_sizes": artifact.batch_sizes, "sizes": artifact.sizes}
        dev = (device or "").strip().lower() or None
        if dev is not None and dev.startswith("sophon:"):
            dev = dev.split(":", 1)[1]
        devices: list[dict[str, Any]] = []
        if dev not in SIMULATOR_NAMES:
            devices, how = query_devices()
            if not devices and dev is not None:
                raise ToolchainMissing(f"no Sophon device here ({how})",
                                       "use --device cmodel for the simulator, or run on the machine with the card")
        if dev in SIMULATOR_NAMES or not devices:
            tc = find_toolchain()
            if tc is None:
                raise ToolchainMissing("no Sophon device here, and the cmodel simulator needs TPU-MLIR", INSTALL_HINT)
            return WorkerRunner(bmodel, tc.python, tc.env(), backend="cmodel", **common)
        try:
            dev_id = int(dev) if dev is not None else int(devices[0]["id"])
        except ValueError:
            raise UserError(f"unknown Sophon device {device!r}", "give a device id (0, 1, ...) or 'cmodel'") from None
        info = next((d for d in devices if d.get("id") == dev_id), None)
        if info is None:
            raise UserError(f"Sophon device {dev_id} not found", f"devices here: {[d.get('id') for d in devices]}")
        if chip and info.get("chip") and info["chip"] != chip:
            raise UserError(f"this bmodel was compiled for {chip} but device {dev_id} is a {info.get('board')} "
                            f"({info['chip']})", f"convert again with --chip {info['chip']}")
        if sail_status()["importable"]:
            return SailRunner(bmodel, dev_id, **common)
        tc = find_toolchain()
        if tc is not None and _python_has_sail(tc.python):
            return WorkerRunner(bmodel, tc.python, tc.env(), backend="sail", device=dev_id, **common)
        raise ToolchainMissing(f"sophon.sail is not importable ({sail_status()['reason']})",
                               "install the sophon wheel of your SDK (PCIe or SoC build for this Python)")

    # -- debug -------------------------------------------------------------------------------------
    def layer_outputs(self, artifact: Artifact, inputs: np.ndarray, source: Path, workdir: Path,
                      log: Callable[[str], None] = print) -> LayerDump:
        """Every layer of the bmodel on ``inputs``, replayed on TPU-MLIR's cmodel by its bmodel
        debugger and keyed by ``source``'s tensor names (:mod:`.layers`). Needs TPU-MLIR here,
        device or not: sophon.sail runs a bmodel but cannot expose its intermediate tensors."""
        from .layers import dump_layers

        return dump_layers(artifact, inputs, source, workdir, find_toolchain(), log)

    # -- bench -------------------------------------------------------------------------------------
    def bench_native(self, artifact: Artifact, batch_sizes: Sequence[int], seconds: float,
                     device: str | None = None) -> list[dict[str, Any]] | None:
        """bmrt_test on a device, one row per compiled batch size. Without a device this
        returns None: the cmodel's time is host simulation time, and the core marks a
        simulated runner's figures as non-throughput (its bench rows carry device_ips None);
        parity on the simulator is measured by convert/verify, not by bench."""
        exe = shutil.which("bmrt_test")
        if exe is None or (device or "").lower() in SIMULATOR_NAMES:
            return None
        devices, _how = query_devices()
        if not devices:
            return None
        dev_id = str(int(device)) if device and device.isdigit() else str(devices[0]["id"])
        bmodel = artifact.file("model")
        stages = (artifact.manifest.get("conversion") or {}).get("stages") or []
        rows: list[dict[str, Any]] = []
        for b in batch_sizes:
            idx = next((s["index"] for s in stages if int(s["batch"]) == int(b)), None)
            if idx is None and not stages and artifact.batch_sizes == [b]:
                idx = 0
            if idx is None:
                continue
            base = [exe, "--bmodel", str(bmodel), "--devid", dev_id, "--stage_idx", str(idx)]
            first = bmrt_rows(parse_bmrt_test(self._bmrt(base + ["--loopnum", "1"])))
            if not first:
                continue
            loops = int(min(100000, max(5, seconds * 1000 / max(first[0]["latency_ms"], 1e-3))))
            for row in bmrt_rows(parse_bmrt_test(self._bmrt(base + ["--loopnum", str(loops)]))):
                row["batch"] = int(b)
                row["device_ips"] = round(int(b) * 1000 / row["latency_ms"], 3)
                row["per_image_ms"] = round(row["latency_ms"] / int(b), 4)
                rows.append(row)
        return rows or None

    @staticmethod
    def _bmrt(argv: list[str]) -> str:
        proc = run_tool(argv, step="bmrt_test", timeout=MEASURE_TIMEOUT, tool_hint=INSTALL_HINT,
                        timeout_hint="lower --seconds")
        text = proc.stdout
        if proc.returncode != 0:
            raise UserError(f"bmrt_test failed (exit {proc.returncode}): {_last_line(text)}")
        return text


def _python_has_sail(python: Path) -> bool:
    try:
        out = subprocess.run([str(python), "-c", "import importlib.util as u; print(u.find_spec('sophon.sail') is not None)"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.stdout.strip().endswith("True")
