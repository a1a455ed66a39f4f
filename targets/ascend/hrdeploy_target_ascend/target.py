"""The Ascend target: ATC conversion (run here when the toolkit is set up, planned otherwise),
ais_bench runtime and benchmark.

Artifact layout (all paths relative to the artifact folder, so it can be copied between the
development box and the device machine)::

    source.onnx          the exported model ATC reads (hard link or copy)
    aipp.cfg             only with --aipp on
    plan.json            the ATC jobs, their environment and everything run_plan() needs
    plan.sh              the same jobs as a shell script, for machines without hrdeploy
    model.om             (model_bs<B>.om per batch size with batch_mode=static)
    atc.log              ATC's console output (with ASCEND_SLOG_PRINT_TO_STDOUT=1, its log too)
"""
from __future__ import annotations

import math
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from hrdeploy.artifact import Artifact
from hrdeploy.errors import ToolchainMissing, UserError
from hrdeploy.kit.normalise import Normalisation
from hrdeploy.kit.plan import (SOURCE_ONNX, execute_plan, flag, from_plan_hint, load_plan, option_values,
                              place_source, plan_files, plan_header, planned_note, stored_plan, write_plan,
                              write_plan_script)
from hrdeploy.kit.toolrun import COMPILE_TIMEOUT, MEASURE_TIMEOUT, run_tool
from hrdeploy.target import ConvertRequest, ConvertResult, LayerDump, Probe, Runner, Target, TargetOption

from . import layers as layers_mod
from . import probe as probe_mod
from .commands import ATC, LOG_LEVELS, SET_ENV, AtcPlan, aipp_config, aipp_normalisation, ais_bench_argv, plan_atc
from .parsers import AisBenchReport, bench_row, load_ais_summary_json, parse_ais_bench_output, parse_atc_output
from .runner import RUNTIME_HINT, AscendRunner, import_infer_session

PLAN_FORMAT = "hrdeploy-ascend-plan/1"
ATC_HINT = SET_ENV
#: what the machine that compiles a plan needs, in notes and hints
TOOLKIT = "the CANN toolkit"
#: the first ais_bench run per batch size; seed 004 measures with --loop=20
FIRST_LOOP = 20
MAX_LOOP = 100_000

def _device(value: Any) -> int | None:
    if value is None or str(value).strip().lower() in ("", "auto"):
        return None
    text = str(value).strip()
    if "," in text:
        raise UserError(f"one runner drives one device, got --device {text}",
                        "hrdeploy shards an evaluation over several devices with one runner per chip")
    try:
        dev = int(text)
    except ValueError:
        raise UserError(f"--device expects the logical id of one chip (npu-smi's Device column), got {text!r}") from None
    if dev < 0:
        raise UserError(f"--device must be >= 0, got {dev}")
    return dev


class AscendTarget(Target):
    name = "ascend"
    description = "Huawei Ascend 310/310P/910 (CANN): ATC -> .om, ais_bench runtime and benchmark"
    precisions = ("fp16", "fp32")
    static_batch = True
    options = {
        "soc": TargetOption("SoC to compile for: auto (read npu-smi info on this machine) or e.g. Ascend310P3",
                            "auto"),
        "aipp": TargetOption("normalise on the device with AIPP (the .om then takes uint8 NHWC pixels)",
                             "off", ("on", "off")),
        "log": TargetOption("ATC log level (kept in atc.log next to the .om)", "error", LOG_LEVELS),
        "device": TargetOption("logical device id (npu-smi's Device column) for --soc auto and for running",
                               "auto"),
        "batch_mode": TargetOption("several batch sizes: dynamic = one .om with --dynamic_batch_size, "
                                   "static = one .om per batch size (as the seeds)", "dynamic",
                                   ("dynamic", "static")),
        "precision_mode": TargetOption("ATC --precision_mode override (auto: fp16 -> force_fp16, "
                                       "fp32 -> force_fp32)", "auto"),
    }
    setup_hint = SET_ENV
    ray_actor_resources = {"NPU": 1.0}  # eval --ray: Ray Core's own name for Ascend chips

    # -- probe -------------------------------------------------------------------------------------
    def probe(self) -> Probe:
        st = probe_mod.status()
        devices = [c.to_dict() for c in (st.chips.chips if st.chips else [])]
        parts = []
        parts.append(f"atc {st.version or '(version unknown)'}" if st.atc else "atc not found")
        parts.append("ais_bench importable" if st.ais_bench and st.aclruntime
                     else "ais_bench/aclruntime not importable")
        if devices:
            socs = sorted({d["soc"] or d["name"] for d in devices})
            parts.append(f"{len(devices)} chip(s): {', '.join(socs)}")
        elif st.davinci:
            parts.append(f"{len(st.davinci)} /dev/davinci node(s), npu-smi unreadable")
        else:
            parts.append("no Ascend device")
        return st.to_probe(parts, SET_ENV, version=st.version, devices=devices)

    # -- convert -----------------------------------------------------------------------------------
    def convert(self, request: ConvertRequest) -> ConvertResult:
        opts = option_values(self.options, request.options)
        if request.precision not in self.precisions:
            raise UserError(f"Ascend conversion builds fp16 or fp32, not {request.precision}",
                            "int8 on Ascend needs AMCT quantisation, which hrdeploy does not drive")
        if not request.dry_run and shutil.which(ATC) is None:
            raise ToolchainMissing("atc not found: the Ascend CANN toolkit is not set up on this machine", ATC_HINT)
        device = _device(opts["device"])
        soc, soc_source = probe_mod.resolve_soc(opts["soc"], device)
        aipp_text = norm = None
        if flag(opts["aipp"], "aipp"):
            fixed = request.input.fixed_size
            if fixed is None:
                raise UserError("AIPP cannot be combined with size gears (ATC refuses --insert_op_conf with "
                                "--dynamic_dims)", "convert without --aipp")
            norm = aipp_normalisation(request.preprocess, request.input.channels)
            aipp_text = aipp_config(norm, *fixed)
        plan = plan_atc(request.input, request.batch_sizes, request.precision, soc, onnx=SOURCE_ONNX,
                        log_level=str(opts["log"]), batch_mode=str(opts["batch_mode"]), aipp=aipp_text,
                        precision_mode=str(opts["precision_mode"]))

        out = request.out_dir
        place_source(request.onnx_path, out)
        if aipp_text is not None:
            (out / "aipp.cfg").write_text(aipp_text)
        env = self._env(plan)
        plan_doc = {
            **plan_header(PLAN_FORMAT, self.name, request, opts),
            "soc": soc, "soc_source": soc_source, "atc": plan.to_dict(), "env": env, "setup": SET_ENV,
            "jobs": [{"argv": j.argv, "output": j.output, "log": j.log, "batch": j.batch} for j in plan.jobs],
            "aipp_normalisation": norm.to_dict() if norm is not None else None,
        }
        write_plan(out, plan_doc)
        write_plan_script(out, "the Ascend CANN toolkit", [(j.argv, j.log) for j in plan.jobs], env=env,
                          setup=[f"command -v atc >/dev/null 2>&1 || . {SET_ENV.split(' ', 1)[1]}"])
        return self._execute(plan_doc, out, request)

    @staticmethod
    def _env(plan: AtcPlan) -> dict[str, str]:
        # with a log level, ATC's own log goes to stdout and so into atc.log next to the .om
        # instead of ~/ascend/log
        return {} if plan.jobs and "--log=null" in plan.jobs[0].argv else {"ASCEND_SLOG_PRINT_TO_STDOUT": "1"}

    def _execute(self, plan_doc: dict[str, Any], out: Path, request: ConvertRequest) -> ConvertResult:
        """Run (or, on a dry run, record) every ATC job of a plan; check what each one wrote."""
        files = plan_files()
        if (out / "aipp.cfg").is_file():
            files["aipp"] = "aipp.cfg"
        checks: list[dict[str, Any]] = []
        om_by_batch: dict[str, str] = {}
        env = plan_doc.get("env") or {}
        for i, job in enumerate(plan_doc["jobs"]):
            argv, output, log = job["argv"], job["output"], job["log"]
            if request.dry_run:
                request.record(argv, cwd=out, log=out / log, env=env or None, note=planned_note(TOOLKIT))
                om_name = output + ".om"
            else:
                proc = request.run(argv, cwd=out, log=out / log, env=env or None, check=False, tool_hint=ATC_HINT)
                assert proc is not None
                outcome = parse_atc_output(proc.stdout, proc.returncode)
                if not outcome.ok:
                    codes = f" [{', '.join(outcome.errors)}]" if outcome.errors else ""
                    raise UserError(f"atc failed for {output} (exit code {proc.returncode}){codes}: "
                                    f"{outcome.message}; log: {out / log}")
                produced = sorted(out.glob(f"{output}*.om"))
                if not produced:
                    raise UserError(f"atc exited 0 but wrote no {output}.om; log: {out / log}",
                                    "check the log for the reason and the free disk space")
                om_name = produced[0].name
                checks.append({"tool": "atc", "output": om_name, "passed": True,
                               "success_line": outcome.success_line, "warnings": outcome.warnings,
                               "text": outcome.message})
            files[log.rsplit(".", 1)[0] if i else "atc_log"] = log
            role = "model" if i == 0 else f"model_bs{job['batch']}"
            files[role] = om_name
            if job.get("batch") is not None:
                om_by_batch[str(job["batch"])] = om_name
        atc = plan_doc["atc"]
        version, vfile = probe_mod.toolkit_version()
        extra = {"soc": plan_doc["soc"], "soc_source": plan_doc["soc_source"], "dynamic": atc["dynamic"],
                 "batch_mode": atc["batch_mode"], "precision_mode": atc["precision_mode"],
                 "input_shape": atc["input_shape"], "gears": atc["gears"], "aipp": atc["aipp"],
                 "aipp_normalisation": plan_doc.get("aipp_normalisation"),
                 "om_by_batch": om_by_batch if len(plan_doc["jobs"]) > 1 else {},
                 "planned": bool(request.dry_run),
                 "note": ("fp32 on Ascend 310/310P computes convolutions fp16-in/fp32-out (force_fp32): "
                          "expect fp16-level parity" if atc["precision_mode"] == "force_fp32" else "")}
        return ConvertResult(files=files,
                             toolchain={"name": "CANN ATC", "version": version, "version_file": vfile,
                                        "soc": plan_doc["soc"]},
                             batch_sizes=list(atc["batch_sizes"]),
                             sizes=[tuple(s) for s in atc["sizes"]], checks=checks, extra=extra)

    def run_plan(self, artifact: Artifact | Path | str, log: Any = print,
                 step_timeout: float | None = COMPILE_TIMEOUT) -> ConvertResult:
        """Compile a ``convert --dry-run`` artifact where the toolkit is (``hrdeploy convert
        --from-plan``): run its recorded ATC jobs in the folder, check their outputs, and return
        what ``convert`` would have returned. ``result.extra["commands"]`` holds the executed
        commands (with exit codes and durations) for the manifest; the core then updates
        ``files``, ``toolchain``, ``checks``, ``commands``, ``conversion`` and ``dry_run`` and runs
        its parity check."""
        folder, plan_doc = load_plan(artifact, PLAN_FORMAT, "an Ascend plan", self.name)
        if shutil.which(ATC) is None:
            raise ToolchainMissing("atc not found: the Ascend CANN toolkit is not set up on this machine", ATC_HINT)
        local = probe_mod.query_chips()
        if local is not None:
            socs = {c.soc for c in local.chips if c.soc}
            if socs and plan_doc["soc"] not in socs:
                log(f"note: the plan compiles for {plan_doc['soc']}, this machine has {', '.join(sorted(socs))}")
        return execute_plan(plan_doc, folder, self._execute, log, step_timeout)

    # -- run ---------------------------------------------------------------------------------------
    @staticmethod
    def _conversion(artifact: Artifact) -> dict[str, Any]:
        conv = dict(artifact.manifest.get("conversion") or {})
        if not conv:  # older manifests / hand-run plan.sh: read the plan
            doc = stored_plan(artifact.folder)
            if doc is not None:
                atc = doc.get("atc", {})
                conv = {"soc": doc.get("soc"), "dynamic": atc.get("dynamic"), "aipp": atc.get("aipp"),
                        "aipp_normalisation": doc.get("aipp_normalisation"),
                        "om_by_batch": atc.get("om_by_batch", {}) if len(doc.get("jobs", [])) > 1 else {}}
        return conv

    def _om_files(self, artifact: Artifact, conv: dict[str, Any]) -> dict[int | None, Path]:
        folder = artifact.folder
        by_batch = conv.get("om_by_batch") or {}
        if by_batch:
            om = {int(b): artifact.inside(name, "conversion.om_by_batch") for b, name in by_batch.items()}
        else:
            om = {None: artifact.inside(artifact.manifest.get("files", {}).get("model", "model.om"), "files.model")}
        missing = [p.name for p in om.values() if not p.is_file()]
        if missing:
            # a dry-run plan whose .om files were never built here
            found = sorted(folder.glob("model*.om"))
            if not by_batch and len(found) == 1:
                return {None: found[0]}
            raise UserError(f"{artifact.path} has no compiled model ({', '.join(missing)})", from_plan_hint(TOOLKIT))
        return om

    def open(self, artifact: Artifact, device: str | None = None,
             options: dict[str, Any] | None = None) -> Runner:
        conv = self._conversion(artifact)
        om = self._om_files(artifact, conv)
        opts = option_values(self.options, options)
        dev = _device(device if device is not None else opts.get("device"))
        factory = import_infer_session()
        chips = probe_mod.query_chips()
        if chips is None and not probe_mod.davinci_nodes():
            # ToolchainMissing: the core records the parity check as "not run" on a build box
            raise ToolchainMissing("no Ascend device on this machine (no /dev/davinci*, npu-smi lists no chip)",
                                   "run 'hrdeploy verify' on the machine that has the NPU")
        device_id = dev if dev is not None else probe_mod.default_device(chips)
        norm = None
        if conv.get("aipp"):
            nd = conv.get("aipp_normalisation")
            norm = Normalisation.from_dict(nd) if nd else aipp_normalisation(artifact.manifest.get("preprocess"),
                                                                             artifact.input.channels)
        sizes = artifact.sizes
        return AscendRunner(om, device_id, dynamic=conv.get("dynamic"), input_name=artifact.input.name,
                            output_names=list(artifact.manifest.get("outputs") or []),
                            batch_sizes=artifact.batch_sizes, sizes=sizes, aipp=norm, soc=conv.get("soc") or "",
                            session_factory=factory)

    # -- layer-wise debugging (hrdeploy debug) ------------------------------------------------------
    def layer_dump_plan(self, artifact: Artifact, inputs: Any, source: Path, folder: Path) -> list[dict[str, Any]]:
        """``msit debug compare`` of the .om against the source ONNX, per batch, written into
        ``folder`` for the device machine (:mod:`.layers`)."""
        conv = self._conversion(artifact)
        return layers_mod.write_plan(artifact, conv, self._om_files(artifact, conv), inputs, source, folder)

    def read_layer_dump(self, artifact: Artifact, folder: Path, source: Path) -> LayerDump:
        """msit's per-layer tables in ``folder`` as figures keyed by the source's tensor names."""
        return layers_mod.read_dump(folder, source)

    # -- bench -------------------------------------------------------------------------------------
    def bench_native(self, artifact: Artifact, batch_sizes: Sequence[int], seconds: float,
                     device: str | None = None) -> list[dict[str, Any]] | None:
        """ais_bench pure-inference mode per batch size (and per gear for DEKR-like .om files):
        a first run of ``--loop 20``, then one long enough for ``seconds`` of device time."""
        conv = self._conversion(artifact)
        om = self._om_files(artifact, conv)
        python = self._ais_python()
        dev = _device(device)
        device_id = dev if dev is not None else probe_mod.default_device(probe_mod.query_chips())
        compiled = sorted(artifact.batch_sizes or [])
        spec = artifact.input
        rows: list[dict[str, Any]] = []
        skipped: list[int] = []
        for b in batch_sizes:
            if compiled and b not in compiled:
                skipped.append(b)
                continue
            key: int | None = b if b in om else None
            if key not in om:
                skipped.append(b)
                continue
            runs: list[tuple[dict[str, Any], list[str]]] = []
            if conv.get("dynamic") == "dims":
                for h, w in (artifact.sizes or []):
                    dims = ",".join({"N": str(b), "C": str(spec.channels), "H": str(h), "W": str(w)}[c]
                                    for c in spec.layout.upper())
                    runs.append(({"size": [h, w]}, ["--dymDims", f"{spec.name}:{dims}"]))
            elif conv.get("dynamic") == "batch":
                runs.append(({}, ["--dymBatch", str(b)]))
            else:
                runs.append(({}, []))
            for extra, dyn in runs:
                rows.append({**self._bench_one(python, om[key], b, device_id, seconds, dyn), **extra})
        if not rows:
            raise UserError(f"none of the batch sizes {list(batch_sizes)} is compiled into {artifact.path}",
                            f"compiled: {', '.join(map(str, compiled)) or 'unknown'}")
        return rows

    @staticmethod
    def _ais_python() -> str:
        if probe_mod.importable("ais_bench"):
            return sys.executable
        raise ToolchainMissing("ais_bench is not importable here", RUNTIME_HINT)

    def _bench_one(self, python: str, om: Path, batch: int, device_id: int, seconds: float,
                   dyn: list[str]) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="hrdeploy-ais-") as tmp:
            row, mean_ms = self._ais_run(python, om, batch, device_id, FIRST_LOOP, dyn, Path(tmp), "probe")
            wanted = math.ceil(seconds * 1000.0 / mean_ms) if mean_ms > 0 else FIRST_LOOP
            if wanted > FIRST_LOOP * 2:
                row, _ = self._ais_run(python, om, batch, device_id, min(wanted, MAX_LOOP), dyn, Path(tmp), "run")
        return row

    @staticmethod
    def _ais_run(python: str, om: Path, batch: int, device_id: int, loop: int, dyn: list[str],
                 tmp: Path, tag: str) -> tuple[dict[str, Any], float]:
        dirname = f"bs{batch}_{tag}"
        argv = ais_bench_argv(python, str(om), loop=loop, batch=batch, device=device_id, output=str(tmp),
                              dirname=dirname)
        argv += dyn
        proc = run_tool(argv, step=f"ais_bench batch {batch}", timeout=MEASURE_TIMEOUT, tool_hint=RUNTIME_HINT,
                        timeout_hint="lower --seconds")
        if proc.returncode != 0:
            tail = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()][-1:] or [""]
            raise UserError(f"ais_bench failed with exit code {proc.returncode} at batch {batch}: {tail[0][:200]}")
        summary = tmp / f"{dirname}_summary.json"
        if not summary.is_file():
            found = sorted(tmp.glob(f"**/{dirname}*_summary.json"))
            summary = found[0] if found else summary
        text_report: AisBenchReport = parse_ais_bench_output(proc.stdout)
        try:
            if summary.is_file():
                row = bench_row(batch, summary_json=load_ais_summary_json(summary), warmup=1, iterations=loop)
            elif text_report.summaries:
                row = bench_row(batch, text_summary=text_report.summaries[-1], warmup=1, iterations=loop)
            else:
                raise ValueError("no performance summary")
        except ValueError as e:
            raise UserError(f"could not read ais_bench's result at batch {batch}: {e}") from None
        row.update({"device": device_id, "loop": loop, "command": shlex.join(argv), "tool": "ais_bench"})
        return row, float(row["latency_ms"]["mean"])
