"""The exact command lines and config files the Ascend toolchain gets.

Sources: the ATC parameter reference (hiascend), the seeds' guides (000 HRNet-W18-C, 001 DEKR,
004 TResNet; their commands are pinned in the tests) and ais_bench's argument parser.

Decisions recorded here:

* ``--precision_mode`` is always written out, even though ``force_fp16`` is ATC's default for
  inference (the seeds omit it: their .om files are fp16). ``fp16 -> force_fp16``;
  ``fp32 -> force_fp32``: keep float32 where the chip computes it, and on 310/310P, whose cube
  units have no fp32 path, compute fp16-in/fp32-out (ATC's ``cube_fp16in_fp32out``) instead of
  failing as ``must_keep_origin_dtype`` would there. ``must_keep_origin_dtype`` and the mixed
  modes stay available through the ``precision_mode`` option. int8 needs AMCT, not ATC: refused.
* Several batch sizes go into one .om with ``--dynamic_batch_size`` by default
  (``batch_mode=dynamic``); ``batch_mode=static`` makes one .om per batch size the way seed 000
  does (``hrnet_bs${batch_size}``), which is what the seeds' throughput tables were measured on.
* Size gears (DEKR) use ``--input_format=ND`` + ``--dynamic_dims`` with ``-1`` for H and W (seed
  001); several batch sizes with gears put the batch into the dims as well.
* AIPP is generated for normalisation only (uint8 RGB in, the host still resizes and crops):
  ``mean_chn`` stays 0 because it is an integer field, the float mean goes into ``min_chn``.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Sequence

from hrdeploy.errors import UserError
from hrdeploy.model import InputSpec
from hrdeploy.kit.normalise import Normalisation, records_normalisation

ATC = "atc"
#: one command line to activate the toolkit, used in every "atc not found" message
SET_ENV = "source /usr/local/Ascend/ascend-toolkit/set_env.sh"

PRECISION_MODES = {"fp16": "force_fp16", "fp32": "force_fp32"}
#: values ATC's --precision_mode accepts (the v1 option; v2 is a separate option)
KNOWN_PRECISION_MODES = ("force_fp16", "allow_fp32_to_fp16", "must_keep_origin_dtype", "allow_mix_precision",
                         "allow_mix_precision_fp16", "allow_mix_precision_bf16", "force_fp32",
                         "cube_fp16in_fp32out", "force_lowerprecision")
LOG_LEVELS = ("debug", "info", "warning", "error", "null")
MAX_GEARS = 100  # ATC's limit for each of the three gear options

# "310P3", "Ascend310P3", "ascend 910b3", "Ascend 910A" (npu-smi -m)
# the Atlas A3 names ("Ascend910_9391": Chip Name _ NPU Name) carry an underscore
_SOC = re.compile(r"^\s*(?:ascend)?\s*(\d{3}[0-9a-z_]*)\s*$", re.IGNORECASE)
#: npu-smi -m prints internal names for some chips; the same box's table view says 310
_CODENAMES = {"minid": "310"}
#: the --soc_version values that are not all upper case after "Ascend" (torch_npu's
#: socVersionMap spells them so; ATC matches the name exactly, "Ascend910PROB" is unknown)
_MIXED_CASE_SOCS = ("Ascend910ProA", "Ascend910ProB", "Ascend910PremiumA")


def normalise_soc(name: str) -> str:
    """``310P3`` / ``Ascend310P3`` / ``Ascend 910A`` -> ``Ascend310P3`` / ``Ascend910A``.

    Seeds 001/004 pass ``Ascend${chip_name}`` with the Name column (``310P3``), seed 000 passes
    the full ``Ascend310P3``: both end up here."""
    raw = str(name).strip()
    key = raw.replace(" ", "").lower()
    if key in _CODENAMES:
        raw = _CODENAMES[key]
    m = _SOC.match(raw)
    if not m:
        raise UserError(f"{name!r} is not an Ascend SoC name",
                        "pass --soc like Ascend310P3 (\"Ascend\" + the Name column of npu-smi info)")
    soc = "Ascend" + m.group(1).upper()
    return next((known for known in _MIXED_CASE_SOCS if known.upper() == soc.upper()), soc)


def precision_mode_for(precision: str, override: str | None = None) -> str:
    if override and override != "auto":
        if override not in KNOWN_PRECISION_MODES:
            raise UserError(f"unknown ATC precision_mode {override!r}", "choose " + ", ".join(KNOWN_PRECISION_MODES))
        return override
    if precision not in PRECISION_MODES:
        raise UserError(f"ATC does not build {precision}",
                        "Ascend int8 needs AMCT quantisation first; choose fp16 or fp32")
    return PRECISION_MODES[precision]


@dataclass
class AtcJob:
    """One ATC process. Paths are relative to the artifact folder (ATC runs with cwd there),
    so the recorded command works unchanged wherever the folder is copied."""

    argv: list[str]
    output: str
    log: str
    batch: int | None = None

    @property
    def cmd(self) -> str:
        return shlex.join(self.argv)


@dataclass
class AtcPlan:
    jobs: list[AtcJob]
    soc: str
    precision_mode: str
    #: "batch" (--dynamic_batch_size), "dims" (--dynamic_dims) or None (static shapes)
    dynamic: str | None
    batch_mode: str
    batch_sizes: list[int]
    sizes: list[tuple[int, int]]
    #: the -1-marked shape and the gears exactly as written on the command line
    input_shape: str
    gears: list[list[int]] = field(default_factory=list)
    aipp: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"soc": self.soc, "precision_mode": self.precision_mode, "dynamic": self.dynamic,
                "batch_mode": self.batch_mode, "batch_sizes": list(self.batch_sizes),
                "sizes": [list(s) for s in self.sizes], "input_shape": self.input_shape,
                "gears": [list(g) for g in self.gears], "aipp": self.aipp is not None,
                "om_by_batch": {str(j.batch): j.output + ".om" for j in self.jobs if j.batch is not None}}


def _dims(spec: InputSpec, batch: str, height: str, width: str) -> str:
    letters = {"N": batch, "C": str(spec.channels), "H": height, "W": width}
    layout = (spec.layout or "NCHW").upper()
    if sorted(layout) != sorted("NCHW"):
        raise UserError(f"unsupported input layout {spec.layout!r}")
    return ",".join(letters[c] for c in layout)


def onnx_input_format(spec: InputSpec) -> str:
    """ATC's --input_format for an ONNX input: NCHW, ND or NCDHW are all it accepts for ONNX
    ("only support NCHW, ND, NCDHW in ONNX model"), so any other layout is ND (any format)."""
    return "NCHW" if (spec.layout or "NCHW").upper() == "NCHW" else "ND"


def plan_atc(spec: InputSpec, batch_sizes: Sequence[int], precision: str, soc: str, *,
             onnx: str = "source.onnx", prefix: str = "model", log_level: str = "error",
             batch_mode: str = "dynamic", aipp: str | None = None,
             precision_mode: str | None = None) -> AtcPlan:
    """Build the ATC command(s) for one model input."""
    soc = normalise_soc(soc)
    pmode = precision_mode_for(precision, precision_mode)
    if log_level not in LOG_LEVELS:
        raise UserError(f"unknown ATC log level {log_level!r}", "choose " + ", ".join(LOG_LEVELS))
    if batch_mode not in ("dynamic", "static"):
        raise UserError(f"batch_mode must be dynamic or static, got {batch_mode!r}")
    batches = sorted({int(b) for b in batch_sizes})
    if not batches or batches[0] < 1:
        raise UserError("batch sizes must be positive integers")
    if isinstance(spec.batch, int) and batches != [spec.batch]:
        raise UserError(f"this model only runs at batch {spec.batch}, not {','.join(map(str, batches))}")

    fixed = spec.fixed_size
    sizes = [fixed] if fixed else [tuple(g) for g in spec.gears]
    if not sizes:
        raise UserError("the model takes any input size but declares no size gears",
                        "ATC needs fixed shapes: the model plugin must list gears for it")
    if len(sizes) > MAX_GEARS:
        raise UserError(f"{len(sizes)} size gears; ATC accepts at most {MAX_GEARS}")
    if aipp is not None and onnx_input_format(spec) != "NCHW":
        raise UserError(f"AIPP needs an NCHW input; this model's input is {spec.layout}", "convert without --aipp")
    if aipp is not None and len(sizes) > 1:
        raise UserError("AIPP cannot be combined with size gears (ATC refuses --insert_op_conf with "
                        "--dynamic_dims)", "convert without --aipp")
    dyn_batch = len(batches) > 1 and batch_mode == "dynamic"
    if dyn_batch and len(batches) * len(sizes) > MAX_GEARS:
        raise UserError(f"{len(batches)} batch sizes x {len(sizes)} gears exceeds ATC's {MAX_GEARS} gears",
                        "use --batch_mode static or fewer batch sizes")

    name = spec.name
    common_tail = [f"--soc_version={soc}", f"--precision_mode={pmode}"]
    if aipp is not None:
        common_tail.append("--insert_op_conf=aipp.cfg")
    common_tail.append(f"--log={log_level}")

    def job(batch_dim: str, out: str, batch: int | None) -> tuple[AtcJob, str, list[list[int]], str | None]:
        argv = [ATC, "--framework=5", f"--model={onnx}", f"--output={out}"]
        gears: list[list[int]] = []
        dynamic: str | None = None
        if len(sizes) > 1:
            # ATC wants ND with --dynamic_dims; one value per -1, in order (seed 001)
            shape = _dims(spec, batch_dim, "-1", "-1")
            bvals = batches if batch_dim == "-1" else [None]
            gears = [([b] if b is not None else []) + [h, w] for b in bvals for h, w in sizes]
            argv += ["--input_format=ND", f"--input_shape={name}:{shape}",
                     "--dynamic_dims=" + ";".join(",".join(map(str, g)) for g in gears)]
            dynamic = "dims"
        else:
            h, w = sizes[0]
            shape = _dims(spec, batch_dim, str(h), str(w))
            argv += [f"--input_format={onnx_input_format(spec)}", f"--input_shape={name}:{shape}"]
            if batch_dim == "-1":
                argv.append("--dynamic_batch_size=" + ",".join(map(str, batches)))
                dynamic = "batch"
        argv += common_tail
        log = f"atc_{out}.log" if out != prefix else "atc.log"
        return AtcJob(argv, out, log, batch), f"{name}:{shape}", gears, dynamic

    jobs: list[AtcJob] = []
    if dyn_batch:
        j, shape, gears, dynamic = job("-1", prefix, None)
        jobs.append(j)
    elif len(batches) == 1:
        j, shape, gears, dynamic = job(str(batches[0]), prefix, batches[0])
        jobs.append(j)
    else:  # static: one .om per batch size, as the seeds build them
        shape, gears, dynamic = "", [], None
        for b in batches:
            j, shape, gears, dynamic = job(str(b), f"{prefix}_bs{b}", b)
            jobs.append(j)
    return AtcPlan(jobs=jobs, soc=soc, precision_mode=pmode, dynamic=dynamic,
                   batch_mode="dynamic" if dyn_batch else "static", batch_sizes=batches,
                   sizes=[tuple(s) for s in sizes], input_shape=shape, gears=gears, aipp=aipp)


def _num(v: float) -> str:
    return f"{v:.15g}"


def aipp_normalisation(preprocess: dict[str, Any] | None, channels: int = 3) -> Normalisation:
    """The normalisation AIPP redoes on the device; a model that records none cannot use AIPP
    (the "/255 only" fallback would silently be wrong for it)."""
    if not records_normalisation(preprocess):
        raise UserError("the model records no normalisation (mean/std) in its preprocessing",
                        "AIPP needs it; convert without --aipp")
    return Normalisation.from_preprocess(preprocess, channels)


def aipp_config(norm: Normalisation, height: int, width: int) -> str:
    """Static AIPP: uint8 RGB (the network's channel order) in, ``(x - min_chn) * var_reci_chn``
    out; the .om input becomes uint8 NHWC of the network's H x W."""
    lines = ["# generated by hrdeploy: normalisation on the device; resize and crop stay on the host",
             "aipp_op {", "    aipp_mode : static", "    related_input_rank : 0",
             "    input_format : RGB888_U8", f"    src_image_size_w : {width}",
             f"    src_image_size_h : {height}", "    crop : false", "    csc_switch : false",
             "    rbuv_swap_switch : false"]
    for i, (m, s) in enumerate(zip(norm.mean255, norm.std255)):
        lines += [f"    mean_chn_{i} : 0", f"    min_chn_{i} : {_num(m)}", f"    var_reci_chn_{i} : {_num(1.0 / s)}"]
    lines.append("}")
    return "\n".join(lines) + "\n"


def parse_aipp_config(text: str) -> dict[str, str]:
    """``key : value`` pairs of an AIPP file (one aipp_op block), for checks and stand-ins."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if ":" in line and not line.endswith("{"):
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    return out


def ais_bench_argv(python: str, om: str, *, loop: int, batch: int, device: int | str, output: str,
                   dirname: str, warmup: int = 1, dym_batch: int | None = None,
                   dym_dims: str | None = None) -> list[str]:
    """ais_bench's pure-inference mode (no --input: it feeds zeros), with the summary JSON
    written to ``<output>/<dirname>_summary.json``."""
    argv = [python, "-m", "ais_bench", "--model", om, "--loop", str(loop), "--batchsize", str(batch),
            "--device", str(device), "--warmup_count", str(warmup), "--display_all_summary", "1",
            "--output", output, "--output_dirname", dirname]
    if dym_batch is not None:
        argv += ["--dymBatch", str(dym_batch)]
    if dym_dims is not None:
        argv += ["--dymDims", dym_dims]
    return argv
