"""The VastAI target: vamc conversion (run here when vamc is installed, planned otherwise),
vaststreamx runtime, vamp benchmark.

Artifact layout (paths relative to the artifact folder; vamc and vamp run with cwd there)::

    source.onnx                       the exported model vamc reads
    calib/                            int8 only: the calibration images (copied, so the plan travels)
    vamc_<name>.yaml                  the build config (current ``vamc compile`` or older ``vamc build``)
    vdsp_params_<name>.json           device preprocessing for vamp / vaststreamx
    vdsp_params_<name>_sdk1.json      + model_info_<name>.json: the old SDK's formats (build generation)
    deploy_weights/...                vamc's output: <prefix>.so/.json/.params
    vamc_<name>.log                   vamc's console output
    plan.json, plan.sh                the jobs, for run_plan() or by hand
"""
from __future__ import annotations

import re
import shlex
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from hrdeploy.artifact import Artifact
from hrdeploy.errors import ToolchainMissing, UserError
from hrdeploy.io import atomic_write_json, list_images
from hrdeploy.kit.plan import (PLAN_FILE, SOURCE_ONNX, execute_plan, flag, from_plan_hint, link_or_copy,
                              load_plan, option_values, place_source, plan_files, plan_header, planned_note,
                              stored_plan, write_plan, write_plan_script)
from hrdeploy.kit.toolrun import COMPILE_TIMEOUT, MEASURE_TIMEOUT, run_tool
from hrdeploy.target import ConvertRequest, ConvertResult, Probe, Runner, Target, TargetOption

from . import layers as layers_mod
from . import probe as probe_mod
from .configs import (
    GENERATIONS,
    QUANT_MODES,
    SETUP_HINT,
    VAMC,
    VAMP,
    CalibSet,
    cmd,
    model_info,
    output_prefix,
    vamc_argv,
    vamc_build_config,
    vamc_compile_config,
    vamp_argv,
    vdsp_params,
    vdsp_params_sdk1,
)
from .parsers import parse_vamp_output, vamp_row
from .preprocess import Preprocess
from .runner import GearRunner, VastaiRunner, import_vsx
from .yamlemit import dump

PLAN_FORMAT = "hrdeploy-vastai-plan/1"
CALIB_DIR = "calib"
MODEL_SUFFIXES = (".so", ".json", ".params")


def _int_option(value: Any, name: str, minimum: int = 0) -> int:
    try:
        v = int(str(value).strip())
    except ValueError:
        raise UserError(f"--{name} expects an integer, got {value!r}") from None
    if v < minimum:
        raise UserError(f"--{name} must be >= {minimum}, got {v}")
    return v


def _device(value: Any) -> int:
    if value is None or str(value).strip().lower() in ("", "auto"):
        return 0
    if "," in str(value):
        raise UserError(f"one runner drives one die, got --device {value}",
                        "hrdeploy shards an evaluation over several dies with one runner per die")
    return _int_option(value, "device")


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.") or "model"


def copy_calibration(src: Path, dst: Path, count: int) -> CalibSet:
    """Copy the first ``count`` images of ``src`` into the artifact. vamc samples one file
    suffix, so the most common suffix wins and other images are left out."""
    images = list_images(src)
    if not images:
        raise UserError(f"no images in --calib {src}")
    suffixes = Counter(p.suffix.lstrip(".") for p in images)
    suffix = suffixes.most_common(1)[0][0]
    chosen = [p for p in images if p.suffix.lstrip(".") == suffix][:count]
    dst.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(chosen):
        link_or_copy(p, dst / f"{i:05d}_{p.name}")
    return CalibSet(path=f"./{dst.name}", suffix=suffix, count=len(chosen))


class VastaiTarget(Target):
    name = "vastai"
    description = "VastAI VA1 / SV100: vamc -> model three-piece, vaststreamx runtime, vamp benchmark"
    precisions = ("fp16", "int8")
    static_batch = False
    options = {
        "generation": TargetOption("vamc config generation: compile (current SDK) or build (older SDK, seed 003)",
                                   "compile", GENERATIONS),
        "calib_mode": TargetOption("int8 calibration (vamc quant mode)", "percentile", QUANT_MODES),
        "softmax": TargetOption("append a softmax to the graph (VastModelZOO classification configs do; "
                                "off keeps the raw outputs the parity check compares)", "off", ("on", "off")),
        "name": TargetOption("build name (default: <model>_<variant>)", ""),
        "device": TargetOption("die id to run on (vasmi / /dev/vastaiN)", "0"),
        "input_mode": TargetOption("runtime input: tensor (host-normalised fp16 tensor) or image (uint8 pixels "
                                   "through the vdsp op)", "tensor", ("tensor", "image")),
        "batch": TargetOption("runtime batch of vsx.Model", "1"),
        "instances": TargetOption("vamp -i: model instances per die", "1"),
        "iterations": TargetOption("vamp --iterations per batch size", "1024"),
    }
    setup_hint = SETUP_HINT
    ray_actor_resources = {"vastai": 1.0}  # eval --ray: custom, ray start --resources='{"vastai": N}'
    # hrdeploy debug: refused in one line; .layers says what was looked for and what it would take
    layer_debug_refusal = layers_mod.REASON
    layer_debug_hint = layers_mod.HINT

    # -- probe -------------------------------------------------------------------------------------
    def probe(self) -> Probe:
        st = probe_mod.status()
        parts = ["vamc found" if st.vamc else "vamc not found",
                 "vaststreamx importable" if st.vaststreamx else "vaststreamx not importable",
                 "vamp found" if st.vamp else "vamp not found"]
        if st.nodes:
            cards = f" ({', '.join(st.cards.card_types)})" if st.cards and st.cards.card_types else ""
            parts.append(f"{len(st.nodes)} die(s){cards}")
            if not st.root and st.vasmi:
                parts.append("vasmi needs root")
        else:
            parts.append("no /dev/vastai* device")
        devices = [{"id": i, "node": n} for i, n in enumerate(st.nodes)]
        if st.cards:
            for e in st.cards.entries:
                devices.append({"id": e["device_id"], "die": e["die_id"], **e["fields"], "clocks_mhz": e["clocks_mhz"]})
        return st.to_probe(parts, SETUP_HINT, version=probe_mod.vamc_version(), devices=devices)

    # -- convert -----------------------------------------------------------------------------------
    def convert(self, request: ConvertRequest) -> ConvertResult:
        opts = option_values(self.options, request.options)
        if request.precision not in self.precisions:
            raise UserError(f"VastAI builds fp16 or int8, not {request.precision}", "choose --precision fp16 or int8")
        generation = str(opts["generation"])
        if generation not in GENERATIONS:
            raise UserError(f"unknown vamc generation {generation!r}", "choose compile or build")
        quant = str(opts["calib_mode"])
        if quant not in QUANT_MODES:
            raise UserError(f"unknown calibration mode {quant!r}", "choose " + ", ".join(QUANT_MODES))
        if request.precision == "int8" and request.calib_dir is None:
            raise UserError("VastAI int8 needs calibration images", "pass --calib DIR (percentile calibration)")
        if not request.dry_run and probe_mod.which(VAMC) is None:
            raise ToolchainMissing("vamc not found: the VastAI compiler is not installed on this machine", SETUP_HINT)
        spec = request.input
        sizes = [spec.fixed_size] if spec.fixed_size else [tuple(g) for g in spec.gears]
        if not sizes:
            raise UserError("the model takes any input size but declares no size gears",
                            "vamc compiles one shape per build: the model plugin must list gears")
        softmax = flag(opts["softmax"], "softmax")
        name = _safe_name(str(opts["name"]) or f"{request.model}_{request.variant}")

        out = request.out_dir
        place_source(request.onnx_path, out)
        calib = None
        if request.precision == "int8":
            assert request.calib_dir is not None
            calib = copy_calibration(Path(request.calib_dir), out / CALIB_DIR, request.calib_count)
        builds: list[dict[str, Any]] = []
        for h, w in sizes:
            bname = name if len(sizes) == 1 else f"{name}_{h}x{w}"
            pre = Preprocess.from_params(request.preprocess, (h, w), spec.channels)
            shape = [1, spec.channels, h, w]
            if generation == "compile":
                cfg = vamc_compile_config(bname, spec.name, shape, SOURCE_ONNX, request.precision, pre, calib,
                                          softmax=softmax, calib_mode=quant)
            else:
                cfg = vamc_build_config(bname, spec.name, shape, SOURCE_ONNX, request.precision, pre, calib,
                                        softmax=softmax, quant_mode=quant)
            prefix = output_prefix(generation, bname, request.precision, quant, shape)
            cfg_file, vdsp_file = f"vamc_{bname}.yaml", f"vdsp_params_{bname}.json"
            (out / cfg_file).write_text(dump(cfg, header=f"generated by hrdeploy: {cmd(vamc_argv(generation, cfg_file))}"))
            atomic_write_json(out / vdsp_file, vdsp_params(pre), indent=4)
            build = {"name": bname, "size": [h, w], "shape": shape, "prefix": prefix, "config": cfg_file,
                     "vdsp_params": vdsp_file, "log": f"vamc_{bname}.log", "argv": vamc_argv(generation, cfg_file),
                     "preprocess": pre.to_dict()}
            if generation == "build":
                build["vdsp_params_sdk1"] = f"vdsp_params_{bname}_sdk1.json"
                build["model_info"] = f"model_info_{bname}.json"
                atomic_write_json(out / build["vdsp_params_sdk1"], vdsp_params_sdk1(pre))
                atomic_write_json(out / build["model_info"], model_info(bname, prefix), indent=4)
            builds.append(build)
        plan_doc = {**plan_header(PLAN_FORMAT, self.name, request, opts),
                    "generation": generation, "quant_mode": quant if request.precision == "int8" else None,
                    "softmax": softmax, "calibration": calib.__dict__ if calib else None, "builds": builds,
                    "setup": SETUP_HINT}
        write_plan(out, plan_doc)
        write_plan_script(out, "the VastAI SDK (vamc)", [(b["argv"], b["log"]) for b in builds])
        return self._execute(plan_doc, out, request)

    @staticmethod
    def _find_outputs(out: Path, build: dict[str, Any], generation: str) -> str | None:
        """The prefix vamc wrote: the expected one, or (older SDKs name the folder
        ``-1_C_H_W-`` in later versions) the one glob finds."""
        prefix = build["prefix"]
        if any((out / (prefix + s)).is_file() for s in MODEL_SUFFIXES):
            return prefix
        if generation == "build":
            ws = prefix.split("/", 1)[0]
            for so in sorted(out.glob(f"{ws}/{build['name']}-*-vacc/{build['name']}.so")):
                return str(so.relative_to(out))[: -len(".so")]
        return None

    def _execute(self, plan_doc: dict[str, Any], out: Path, request: ConvertRequest) -> ConvertResult:
        generation = plan_doc["generation"]
        files = plan_files()
        checks: list[dict[str, Any]] = []
        builds = []
        for i, b in enumerate(plan_doc["builds"]):
            b = dict(b)
            if request.dry_run:
                request.record(b["argv"], cwd=out, log=out / b["log"], note=planned_note("vamc"))
            else:
                proc = request.run(b["argv"], cwd=out, log=out / b["log"], check=False, tool_hint=SETUP_HINT)
                assert proc is not None
                if proc.returncode != 0:
                    tail = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()][-1:] or [""]
                    raise UserError(f"vamc {generation} failed for {b['name']} (exit code {proc.returncode}): "
                                    f"{tail[0][:200]}; log: {out / b['log']}")
                found = self._find_outputs(out, b, generation)
                if found is None:
                    raise UserError(f"vamc exited 0 but wrote no {b['prefix']}.so/.json/.params; log: {out / b['log']}",
                                    "check the log and the workspace path in the config")
                b["prefix"] = found
                checks.append({"tool": f"vamc {generation}", "build": b["name"], "passed": True,
                               "files": sorted(p.name for p in (out / found).parent.glob(Path(found).name + ".*"))})
            sfx = "" if i == 0 else f"_{b['size'][0]}x{b['size'][1]}"
            files[f"model{sfx}"] = b["prefix"] + ".so"
            files[f"model_graph{sfx}"] = b["prefix"] + ".json"
            files[f"model_params{sfx}"] = b["prefix"] + ".params"
            files[f"vamc_config{sfx}"] = b["config"]
            files[f"vdsp_params{sfx}"] = b["vdsp_params"]
            files[f"vamc_log{sfx}"] = b["log"]
            for extra in ("vdsp_params_sdk1", "model_info"):
                if extra in b:
                    files[f"{extra}{sfx}"] = b[extra]
            builds.append({k: b[k] for k in ("name", "size", "prefix", "config", "vdsp_params", "preprocess")})
        extra = {"generation": generation, "dtype": plan_doc["precision"], "quant_mode": plan_doc["quant_mode"],
                 "softmax": plan_doc["softmax"], "calibration": plan_doc["calibration"], "builds": builds,
                 "planned": bool(request.dry_run),
                 "note": "compiled at batch 1; vaststreamx / vamp batch at run time"}
        return ConvertResult(files=files, toolchain={"name": f"vamc {generation}", "version": probe_mod.vamc_version()},
                             batch_sizes=None, sizes=[tuple(b["size"]) for b in builds], checks=checks, extra=extra)

    def run_plan(self, artifact: Artifact | Path | str, log: Any = print,
                 step_timeout: float | None = COMPILE_TIMEOUT) -> ConvertResult:
        """Compile a ``convert --dry-run`` artifact where vamc is (``hrdeploy convert --from-plan``);
        same contract as the Ascend target's: ``result.extra["commands"]`` holds what ran."""
        folder, plan_doc = load_plan(artifact, PLAN_FORMAT, "a VastAI plan", self.name)
        if probe_mod.which(VAMC) is None:
            raise ToolchainMissing("vamc not found: the VastAI compiler is not installed on this machine", SETUP_HINT)
        return execute_plan(plan_doc, folder, self._execute, log, step_timeout)

    # -- run ---------------------------------------------------------------------------------------
    @staticmethod
    def _builds(artifact: Artifact) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        conv = dict(artifact.manifest.get("conversion") or {})
        if not conv.get("builds"):
            doc = stored_plan(artifact.folder)
            if doc is None:
                raise UserError(f"{artifact.path} is not a VastAI artifact (no build list, no {PLAN_FILE})")
            conv = {"generation": doc["generation"], "builds": doc["builds"]}
        builds = conv["builds"]
        for b in builds:
            if not any(artifact.inside(b["prefix"] + s, "a build prefix").is_file() for s in MODEL_SUFFIXES):
                raise UserError(f"{artifact.path} has no compiled model ({b['prefix']}.*)", from_plan_hint("vamc"))
        return conv, builds

    def open(self, artifact: Artifact, device: str | None = None, options: dict[str, Any] | None = None) -> Runner:
        conv, builds = self._builds(artifact)
        opts = option_values(self.options, options)
        dev = _device(device if device is not None else opts.get("device"))
        import_vsx()
        if not probe_mod.device_nodes():
            # ToolchainMissing: the core records the parity check as "not run" on a build box
            raise ToolchainMissing("no VastAI device on this machine (no /dev/vastai*)",
                                   "run 'hrdeploy verify' on the machine that has the card")
        mode = str(opts["input_mode"])
        batch = _int_option(opts["batch"], "batch", 1)
        spec = artifact.input
        outputs = list(artifact.manifest.get("outputs") or [])

        def make(b: dict[str, Any]) -> VastaiRunner:
            return VastaiRunner(artifact.inside(b["prefix"], "a build prefix"), dev, input_name=spec.name,
                                output_names=outputs,
                                size=tuple(b["size"]), channels=spec.channels, batch=batch, input_mode=mode,
                                vdsp_json=artifact.inside(b["vdsp_params"], "a build's vdsp_params"),
                                preprocess=Preprocess.from_dict(b["preprocess"]),
                                label_extra=f"{conv.get('dtype') or artifact.precision}")
        if len(builds) == 1:
            return make(builds[0])
        return GearRunner({tuple(b["size"]): (lambda b=b: make(b)) for b in builds}, spec.name, outputs)

    # -- bench -------------------------------------------------------------------------------------
    def bench_native(self, artifact: Artifact, batch_sizes: Sequence[int], seconds: float,
                     device: str | None = None) -> list[dict[str, Any]] | None:
        """vamp per batch size (and per size gear), run in the artifact folder."""
        conv, builds = self._builds(artifact)
        vamp = probe_mod.which(VAMP)
        if vamp is None:
            raise ToolchainMissing("vamp not found: the VastAI vastpipe tools are not set up on this machine",
                                   SETUP_HINT)
        opts = option_values(self.options, artifact.manifest.get("target_options"))
        dev = _device(device if device is not None else opts.get("device"))
        instances = _int_option(opts["instances"], "instances", 1)
        iterations = _int_option(opts["iterations"], "iterations", 1)
        rows: list[dict[str, Any]] = []
        for b in batch_sizes:
            for build in builds:
                h, w = build["size"]
                argv = vamp_argv(build["prefix"], build["vdsp_params"], batch=int(b), instances=instances,
                                 device=dev, shape_chw=[artifact.input.channels, h, w], iterations=iterations)
                argv[0] = vamp
                proc = run_tool(argv, step=f"vamp batch {b}", cwd=artifact.folder, timeout=MEASURE_TIMEOUT,
                                tool_hint=SETUP_HINT, timeout_hint="lower --seconds or --set iterations=N")
                if proc.returncode != 0:
                    tail = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()][-1:] or [""]
                    raise UserError(f"vamp failed with exit code {proc.returncode} at batch {b}: {tail[0][:200]}")
                runs = parse_vamp_output(proc.stdout)
                try:
                    row = vamp_row(runs[-1], batch=int(b), iterations=iterations) if runs else None
                except ValueError as e:
                    raise UserError(f"could not read vamp's result at batch {b}: {e}") from None
                if row is None:
                    raise UserError(f"vamp printed no result at batch {b}")
                row.update({"device": dev, "tool": "vamp", "command": shlex.join(argv)})
                if len(builds) > 1:
                    row["size"] = [h, w]
                rows.append(row)
        return rows
