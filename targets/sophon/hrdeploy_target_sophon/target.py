"""The Sophon target: ONNX -> TPU-MLIR -> bmodel for BM1684 / BM1684X, run by sophon.sail on
a device or by TPU-MLIR's cmodel simulator without one."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hrdeploy.artifact import Artifact
from hrdeploy.errors import ToolchainMissing, UserError
from hrdeploy.target import ConvertRequest, ConvertResult, Probe, Runner, Target, TargetOption

from . import commands as C
from .parsers import bmrt_rows, describe_failure, parse_bmrt_test, parse_calibration_table, parse_model_info, \
    parse_npz_compares, strip_ansi
from .probe import query_devices, sail_status
from .toolchain import INSTALL_HINT, Toolchain, find_toolchain, human_size, install_toolchain, read_state

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


def _last_line(text: str) -> str:
    skip = ("BMLIB Send Quit Message", "cmodel_deinit complete", "[Running]", "[Success]")
    lines = [ln.strip() for ln in strip_ansi(text).splitlines() if ln.strip()]
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
                f"{st.get('python_version')}) in {st.get('venv')}, {human_size(st.get('size_bytes'))}, "
                f"{st.get('install_seconds', 0):.0f} s; state: {path}")

    # -- convert -----------------------------------------------------------------------------------
    def convert(self, request: ConvertRequest) -> ConvertResult:
        opts = request.options
        chip = resolve_chip(opts.get("chip"))
        quantize = C.check_precision(chip, request.precision)
        tc = find_toolchain()
        if tc is None and not request.dry_run:
            raise ToolchainMissing("TPU-MLIR is not installed", INSTALL_HINT)
        if quantize == "INT8" and request.calibration is None:
            raise UserError("int8 needs calibration images",
                            "pass --calib DIR (images run through the model's own preprocessing)")
        inputs, outputs = onnx_io(request.onnx_path)
        if len(inputs) != 1:
            raise UserError(f"{request.onnx_path} has {len(inputs)} inputs; hrdeploy models take one image tensor")
        input_name = inputs[0]
        stages = C.plan_stages(request.batch_sizes, request.sizes, request.input.channels)
        name = C.net_name(request.model, request.variant)
        root = request.out_dir
        root.mkdir(parents=True, exist_ok=True)

        # inputs the tools read, written even for a dry run so the plan can be replayed elsewhere
        ref = request.reference_inputs
        ref_note = "reference inputs of the conversion"
        if ref is None or len(ref) == 0:
            ref = np.random.default_rng(0).standard_normal(
                (1, request.input.channels, stages[0].height, stages[0].width)).astype(np.float32)
            ref_note = "synthetic standard-normal input (no reference inputs were given)"
        (root / "inputs").mkdir(exist_ok=True)
        for st in stages:
            np.savez(root / st.test_input, **{input_name: stage_batch(ref, st)})
        calib_count = 0
        if quantize == "INT8":
            calib_count = self._write_calibration(request, C.calibration_stage(stages), input_name)
        qtable = bool(opts.get("quantize_table"))
        if qtable:
            src = Path(str(opts["quantize_table"])).expanduser()
            if not src.is_file():
                raise UserError(f"quantize table not found: {src}")
            shutil.copyfile(src, root / C.QTABLE)
        steps = C.build_plan(name=name, onnx=str(request.onnx_path), stages=stages, chip=chip,
                             precision=request.precision, calib_count=calib_count,
                             calib_method=str(opts.get("calib_method") or "kl"), qtable=qtable,
                             tolerance=str(opts["tolerance"]) if opts.get("tolerance") else None)

        checks: list[dict[str, Any]] = []
        seconds: dict[str, float] = {}
        for step in steps:
            proc = self._run(request, step, tc)
            if proc is None:
                continue
            seconds[Path(step.log).stem] = request.commands[-1].get("seconds", 0.0)
            self._verdicts(step, proc, root, checks)

        files = {"model": C.BMODEL}
        if quantize == "INT8":
            files["calibration_table"] = C.CALIB_TABLE
        if qtable:
            files["quantize_table"] = C.QTABLE
        extra: dict[str, Any] = {
            "chip": chip, "quantize": quantize, "net_name": name, "input_name": input_name,
            "onnx_outputs": outputs,
            "stages": [{"index": i, "batch": s.batch, "size": [s.height, s.width]} for i, s in enumerate(stages)],
            "preprocessing": "on the host by the model plugin; the bmodel takes the normalised float tensor "
                             "(TPU-MLIR mean 0, scale 1)",
            "test_inputs": ref_note,
        }
        if calib_count:
            extra["calibration"] = {"tensors": calib_count, "method": opts.get("calib_method") or "kl"}
        if not request.dry_run:
            assert tc is not None
            extra["seconds"] = seconds
            extra["bmodel"] = self._bmodel_info(tc, root / C.BMODEL)
            if quantize == "INT8" and (root / C.CALIB_TABLE).is_file():
                table = parse_calibration_table((root / C.CALIB_TABLE).read_text())
                extra["calibration"].update({"ops": len(table["ops"]), "samples": table["samples"]})
            keep = str(opts.get("keep_work", "false")).lower() == "true"
            extra["work_kept"] = keep
            if not keep:
                shutil.rmtree(root / "work", ignore_errors=True)
                shutil.rmtree(root / "inputs" / "calib", ignore_errors=True)
        toolchain = tc.to_dict() if tc else {"name": "tpu_mlir", "version": None, "origin": "not installed (dry run)"}
        toolchain["chip"] = chip
        return ConvertResult(files=files, toolchain=toolchain, batch_sizes=sorted({s.batch for s in stages}),
                             sizes=sorted({(s.height, s.width) for s in stages}), checks=checks, extra=extra)

    def _write_calibration(self, request: ConvertRequest, stage: C.Stage, input_name: str) -> int:
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

    def _run(self, request: ConvertRequest, step: C.Step, tc: Toolchain | None) -> subprocess.CompletedProcess[str] | None:
        root = request.out_dir
        cwd = root / step.cwd
        if not request.dry_run:
            cwd.mkdir(parents=True, exist_ok=True)
        request.log(f"{step.tool} {step.stage.key if step.stage else ''}: {step.note}".rstrip())
        proc = request.run(step.argv, cwd=cwd, log=root / step.log, env=tc.env() if tc else None,
                           note=step.note, check=False, tool_hint=INSTALL_HINT)
        # record paths relative to the artifact folder (it is renamed after conversion) and
        # the toolchain's bin/ rather than this machine's whole PATH
        entry = request.commands[-1]
        entry["cwd"], entry["log"], entry["tool"] = step.cwd, step.log, step.tool
        if step.stage:
            entry["stage"] = step.stage.key
        entry["env"] = {"PATH": f"{tc.bin_dir if tc else '$HRDEPLOY_TOOLCHAINS/sophon/venv/bin'}:$PATH"}
        return proc

    def _verdicts(self, step: C.Step, proc: subprocess.CompletedProcess[str], root: Path,
                  checks: list[dict[str, Any]]) -> None:
        """Similarity verdicts of one tool run into ``checks``; a failed compare or a failed
        tool becomes one UserError line with the log path."""
        stage = step.stage.key if step.stage else "all stages"
        blocks = parse_npz_compares(proc.stdout) if step.parses_compare else []
        for b in blocks:
            sim = b.get("min_similarity") or {}
            checks.append({
                "tool": step.tool, "stage": stage, "compare": _compare_label(b), "passed": bool(b["passed"]),
                "tolerance": b["tolerance"], "min_cosine": sim.get("cosine"), "min_euclidean": sim.get("euclidean"),
                "tensors": len(b["tensors"]), "failed": [t["name"] for t in b["tensors"] if not t["passed"]],
                "log": step.log,
                "text": (f"{step.tool} {stage}: {_compare_label(b)} {'PASSED' if b['passed'] else 'FAILED'}"
                         + (f" (min cosine {sim.get('cosine'):.6f}, euclidean {sim.get('euclidean'):.6f})"
                            if sim.get("cosine") is not None and sim.get("euclidean") is not None else "")),
            })
        failed = [b for b in blocks if b["passed"] is False]
        if failed:
            raise UserError(f"{step.tool} {stage}: similarity check failed: {describe_failure(failed[0])}; "
                            f"log: {root / step.log}")
        if proc.returncode != 0:
            raise UserError(f"{step.tool} {stage} failed (exit {proc.returncode}): {_last_line(proc.stdout)}; "
                            f"log: {root / step.log}")
        if step.tool == "model_deploy" and not blocks:
            checks.append({"tool": step.tool, "stage": stage, "compare": "none", "passed": None, "log": step.log,
                           "text": f"model_deploy {stage}: no similarity verdict in its output"})

    def _bmodel_info(self, tc: Toolchain, bmodel: Path) -> dict[str, Any]:
        try:
            out = subprocess.run(["model_tool", "--info", str(bmodel)], capture_output=True, text=True,
                                 env={**os.environ, **tc.env()}, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:
            return {"error": str(e)}
        info = parse_model_info(out.stdout)
        return {"chip": info["chip"], "nets": [{"name": n["name"], "stages": [
            {"index": s["index"], "input_shapes": [i["shape"] for i in s["inputs"]]} for s in n["stages"]]}
            for n in info["nets"]]}

    # -- run ---------------------------------------------------------------------------------------
    def open(self, artifact: Artifact, device: str | None = None, options: dict[str, Any] | None = None) -> Runner:
        from .runner import SailRunner, WorkerRunner

        bmodel = artifact.file("model")
        assert bmodel is not None
        m = artifact.manifest
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
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
        text = proc.stdout + proc.stderr
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
