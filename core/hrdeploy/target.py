"""What a target plugin provides: :class:`Target` and the :class:`Runner` it opens.

A target is one accelerator family with its toolchain. It answers three questions:

* ``probe()``: is the toolchain/runtime here, which version, which devices? No side effects,
  no installs, fast (it runs for every ``hrdeploy list``).
* ``convert(request)``: compile an exported ONNX model into files in ``request.out_dir``.
  Every external command goes through :meth:`ConvertRequest.run` (or is at least recorded
  with :meth:`ConvertRequest.record`) so that the manifest lists it and ``--dry-run`` prints
  it without running it. The core writes the manifest and then checks the converted model
  against the ONNX model on the same inputs if :meth:`Target.open` can run it here.
* ``open(artifact, device)``: a :class:`Runner` that runs the compiled file.

Batching rules for the core: a runner with ``batch_sizes=None`` takes any batch; otherwise
the core only sends batches of one of those sizes, padding the last one. A runner with
``sizes=None`` takes any (H, W); otherwise every item must have one of the listed sizes (the
model pipeline snaps images to the gears recorded in the artifact). A target with
``static_shapes`` compiles the gears in ``request.input.gears`` (``convert --gears`` replaces the
variant's own set there).
"""
from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from .errors import ToolchainMissing, UserError
from .kit.toolrun import COMPILE_TIMEOUT, run_tool

if TYPE_CHECKING:
    from .artifact import Artifact
    from .model import InputSpec

#: bf16: execution in bfloat16 (OpenVINO on AVX512_BF16/AMX CPUs; fp32 weights)
PRECISIONS = ("fp32", "fp16", "bf16", "int8")


@dataclass
class Probe:
    """What ``Target.probe`` found. ``detail`` is one line for ``hrdeploy list``."""

    available: bool
    detail: str
    version: str | None = None
    devices: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"available": self.available, "detail": self.detail, "version": self.version,
                "devices": self.devices, **self.extra}


@dataclass
class TargetOption:
    """A target-specific option of ``convert``/``open`` (``--chip``, ``--soc``...).

    Declaring it is all it takes: convert, predict, eval, bench and verify get a ``--NAME``
    flag (``_`` becomes ``-``) with this help, default and choices, grouped under the target's
    name in ``--help``; ``--set NAME=VALUE`` works too. ``type`` (str, int, float) and ``min``
    are checked where the command line is parsed; the target receives the value in
    ``request.options`` / ``open(options=...)`` only when the user gave one."""

    help: str
    default: Any = None
    choices: tuple[str, ...] = ()
    type: type = str
    min: float | None = None


@dataclass
class ConvertRequest:
    """Everything a target needs to convert one ONNX model."""

    onnx_path: Path
    out_dir: Path
    model: str
    variant: str
    task: str
    input: "InputSpec"
    preprocess: dict[str, Any]
    precision: str = "fp32"
    batch_sizes: list[int] = field(default_factory=lambda: [1])
    options: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False
    calib_dir: Path | None = None
    calib_count: int = 100
    #: yields preprocessed calibration tensors (CHW float32) through the model's own
    #: pipeline; None when no ``--calib`` was given
    calibration: Callable[[int], Iterator[np.ndarray]] | None = None
    #: reference inputs (NCHW) the core uses for parity; targets may pass them to a
    #: toolchain's own comparison (TPU-MLIR ``--test_input``)
    reference_inputs: np.ndarray | None = None
    commands: list[dict[str, Any]] = field(default_factory=list)
    log: Callable[[str], None] = print
    #: seconds each tool step (one :meth:`run`) may take before it is stopped; None: no limit
    step_timeout: float | None = COMPILE_TIMEOUT
    #: mixed precision (``convert --accuracy-budget``): tensor names of the *source* ONNX graph
    #: whose producing layers stay in float while the rest is quantized to ``precision``. Only
    #: sent to targets with :attr:`Target.mixed_precision`; each maps them to its toolchain's
    #: means (onnxruntime: nodes excluded from quantization; TPU-MLIR: a quantize table)
    keep_float: list[str] = field(default_factory=list)

    @property
    def sizes(self) -> tuple[tuple[int, int], ...]:
        return self.input.sizes

    def record(self, argv: Sequence[str], *, cwd: Path | None = None, log: Path | None = None,
               env: dict[str, str] | None = None, note: str = "") -> dict[str, Any]:
        entry: dict[str, Any] = {"argv": [str(a) for a in argv], "cmd": shlex.join(map(str, argv))}
        if cwd:
            entry["cwd"] = str(cwd)
        if log:
            entry["log"] = str(log)
        if env:
            entry["env"] = env
        if note:
            entry["note"] = note
        self.commands.append(entry)
        return entry

    def run(self, argv: Sequence[str], *, cwd: Path | None = None, log: Path | None = None,
            env: dict[str, str] | None = None, note: str = "", check: bool = True,
            tool_hint: str = "", step: str = "") -> subprocess.CompletedProcess[str] | None:
        """Record ``argv`` and run it (unless ``dry_run``), its output going to ``log``, through
        :func:`hrdeploy.kit.toolrun.run_tool`: in its own process group, stopped with hrdeploy,
        and stopped after ``step_timeout`` seconds (``step`` names it in that message; default:
        the executable's name).

        Returns None on a dry run. A missing executable raises :class:`ToolchainMissing`
        with ``tool_hint``; a non-zero exit raises :class:`UserError` naming the log file
        unless ``check`` is False.
        """
        entry = self.record(argv, cwd=cwd, log=log, env=env, note=note)
        if self.dry_run:
            return None
        exe = str(argv[0])
        if shutil.which(exe, path=(env or {}).get("PATH", os.environ.get("PATH"))) is None \
                and not Path(exe).exists():
            raise ToolchainMissing(f"{exe} not found", tool_hint or "install the vendor toolchain")
        full_env = {**os.environ, **(env or {})}
        t0 = time.perf_counter()
        proc = run_tool(argv, step=step or Path(exe).name, log=log, cwd=cwd, env=full_env,
                        timeout=self.step_timeout, tool_hint=tool_hint)
        entry["seconds"] = round(time.perf_counter() - t0, 3)
        entry["returncode"] = proc.returncode
        if check and proc.returncode != 0:
            where = f"; log: {log}" if log else ""
            last = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()][-1:] or [""]
            raise UserError(f"{Path(exe).name} failed with exit code {proc.returncode}: "
                            f"{last[0][:200]}{where}")
        return proc


@dataclass
class ConvertResult:
    """What ``Target.convert`` produced. ``files`` maps roles to paths relative to the
    artifact folder (``{"model": "model.onnx"}``; the runner finds them by role)."""

    files: dict[str, str]
    toolchain: dict[str, Any] = field(default_factory=dict)
    batch_sizes: list[int] | None = None
    sizes: list[tuple[int, int]] | None = None
    #: the toolchain's own verdicts (TPU-MLIR similarity, ATC success line, ...)
    checks: list[dict[str, Any]] = field(default_factory=list)
    #: recorded as the manifest's ``conversion``; an optional ``"summary"`` string says in a few
    #: words what the artifact is (printed in the title of convert's parity table)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class LayerDump:
    """A converted model's intermediate tensors, for ``hrdeploy debug``.

    ``tensors`` maps a tensor name *of the source ONNX graph* to the converted model's value of
    that tensor (float32, the batch of inputs given, same layout as the source's tensor): the
    target undoes its toolchain's renaming (QDQ suffixes, TPU-MLIR location names, dump file
    names). Tensors the toolchain fused away or renamed beyond recognition are simply absent;
    the core compares the names both sides have, in the source's topological order.

    A vendor tool that compares per layer itself against its own golden run (Ascend's
    ``msit debug compare``) may give ``figures`` instead: source tensor name ->
    ``{"cosine": .., "max_rel": .., "sqnr_db": ..}`` (any of them); the core reports those.
    ``producers`` may name the converted model's layer behind each tensor. ``label`` says what ran ("TPU-MLIR 1.30.2 model_runner, cmodel"); ``notes`` what the user
    should know (tensors that could not be matched, emulated kernels...)."""

    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    figures: dict[str, dict[str, float]] = field(default_factory=dict)
    #: source tensor name -> the converted model's layer computing it ("name (OpType)"), when
    #: the toolchain fused several source layers into one (Conv + Relu into one Conv): the
    #: report then names the layer that really runs
    producers: dict[str, str] = field(default_factory=dict)
    label: str = ""
    notes: list[str] = field(default_factory=list)


class Runner:
    """Runs a compiled model. Subclasses set the attributes in ``__init__``."""

    input_name: str = "image"
    output_names: list[str] = []
    #: allowed batch sizes, None = any
    batch_sizes: tuple[int, ...] | None = None
    #: allowed (H, W) input sizes, None = any
    sizes: tuple[tuple[int, int], ...] | None = None
    #: shown in every output: e.g. "onnxruntime 1.23 CPUExecutionProvider, 2 threads"
    label: str = ""
    #: True when this is a simulator: its timings are not the device's
    simulated: bool = False
    threads: int | None = None

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run one batch; return the outputs in ``output_names`` order, float32.

        The returned arrays must be the runner's to give away: the core keeps them across
        batches (a stream holds views of earlier outputs while later batches run), so a runtime
        that reuses its output buffers between calls (OpenVINO, many device SDKs) must copy
        them here. ``TargetContract`` checks this."""
        raise NotImplementedError

    def input_array(self, feeds: dict[str, np.ndarray], dtype: Any = None) -> np.ndarray:
        """The one NCHW input of ``feeds`` (by ``input_name``, or the only entry), C-contiguous
        and of ``dtype`` when given; anything else is refused with one line."""
        if self.input_name in feeds:
            x = feeds[self.input_name]
        elif len(feeds) == 1:
            x = next(iter(feeds.values()))
        else:
            raise UserError(f"the model takes one input {self.input_name!r}, got {sorted(feeds)}")
        x = np.ascontiguousarray(x, dtype=dtype)
        if x.ndim != 4:
            raise UserError(f"expected an NCHW batch, got shape {list(x.shape)}")
        return x

    def run_many(self, batches: Sequence[dict[str, np.ndarray]]) -> list[list[np.ndarray]]:
        """Run several batches; runners behind a process boundary override this to make
        one round trip."""
        return [self.run(b) for b in batches]

    def device_times_ms(self) -> list[float] | None:
        """Per-call device compute times of the calls so far, when the runtime reports them."""
        return None

    def close(self) -> None:
        pass

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Target:
    """An accelerator family. Subclass it and fill in the class attributes and methods."""

    name: str = ""
    description: str = ""
    precisions: tuple[str, ...] = ("fp32",)
    #: True when compiled models have fixed batch sizes (the core pads the last batch)
    static_batch: bool = True
    #: True when compiled models take only the (H, W) sizes they were built for: the core then
    #: hands the target the gear set chosen with ``convert --gears`` (in ``request.input.gears``)
    #: and every one must be compiled; False (onnxruntime) when any size runs, and a chosen
    #: gear set is ignored with a note in the log and the manifest
    static_shapes: bool = True
    #: target-specific options of convert/open (``--chip``, ``--soc``, ``--threads``...)
    options: dict[str, TargetOption] = {}
    #: one line telling how to install or activate the toolchain
    setup_hint: str = ""
    #: True when :meth:`convert` honours ``request.keep_float`` (``convert --accuracy-budget``)
    mixed_precision: bool = False
    #: why this target's models cannot be compared layer by layer at all (its vendor documents
    #: no per-layer dump), and what to do instead: ``hrdeploy debug`` says it in one line
    layer_debug_refusal: str = ""
    layer_debug_hint: str = ""
    #: what one ``eval --ray`` actor reserves on its node (:meth:`ray_resources`)
    ray_actor_resources: dict[str, float] = {"CPU": 1.0}

    def probe(self) -> Probe:
        raise NotImplementedError

    def convert(self, request: ConvertRequest) -> ConvertResult:
        raise NotImplementedError

    def open(self, artifact: "Artifact", device: str | None = None,
             options: dict[str, Any] | None = None) -> Runner:
        raise NotImplementedError

    def bench_native(self, artifact: "Artifact", batch_sizes: Sequence[int], seconds: float,
                     device: str | None = None) -> list[dict[str, Any]] | None:
        """Measure device-only throughput with the vendor's own tool (ais_bench, bmrt_test,
        vamp). Return one row per batch size in the bench table's format, or None to let the
        core time :meth:`Runner.run` itself."""
        return None

    # -- optional capabilities: the base versions refuse with one line -------------------------
    def run_plan(self, artifact: "Artifact | Path | str", log: Callable[[str], None] = print,
                 step_timeout: float | None = COMPILE_TIMEOUT) -> ConvertResult:
        """Compile a folder written by ``convert --dry-run`` on the machine that has the
        toolchain (``hrdeploy convert --from-plan PLAN``): run its recorded commands there and
        return what :meth:`convert` would have returned, with the commands that ran in
        ``result.extra["commands"]``. The core then updates the manifest and runs the parity
        check. Override it when :meth:`convert` writes self-contained plans (the
        :mod:`hrdeploy.kit.plan` helpers do the bookkeeping); each tool step must honour
        ``step_timeout``."""
        raise UserError(f"target {self.name!r} cannot compile a plan", "run 'hrdeploy convert' on this machine instead")

    def install_toolchain(self, python: str | None = None) -> str:
        """Provision the toolchain into hrdeploy's cache (``hrdeploy toolchain install NAME``)
        from the package registries only; return one line saying what is ready and where.
        Nothing is installed behind the user's back: only this command calls it."""
        raise UserError(f"target {self.name!r} has no installable toolchain", self.setup_hint or "see its documentation")

    # -- layer-wise debugging (``hrdeploy debug``) ------------------------------------------------
    def layer_outputs(self, artifact: "Artifact", inputs: np.ndarray, source: Path, workdir: Path,
                      log: Callable[[str], None] = print) -> LayerDump:
        """Run the converted model here on ``inputs`` (NCHW float32, what the source ONNX
        ``source`` takes) with its intermediate tensors exposed, and return them keyed by the
        source graph's tensor names (:class:`LayerDump`). ``workdir`` is a scratch folder of the
        core's (kept for the user under ``debug --keep``). Use the toolchain's own dump facility
        (TPU-MLIR ``model_runner --dump_all_tensors``, onnxruntime
        ``qdq_loss_debug``) rather than rewriting it. Targets whose models only run on a device
        machine implement :meth:`layer_dump_plan` and :meth:`read_layer_dump` instead."""
        self._refuse_layer_debug()
        raise UserError(f"target {self.name!r} cannot expose the layers of its models",
                        "its plugin implements neither layer_outputs nor layer_dump_plan")

    def _refuse_layer_debug(self) -> None:
        if self.layer_debug_refusal:
            raise UserError(self.layer_debug_refusal, self.layer_debug_hint or None)

    def layer_dump_plan(self, artifact: "Artifact", inputs: np.ndarray, source: Path,
                        folder: Path) -> list[dict[str, Any]]:
        """For a model that only runs on the device machine: write into ``folder`` what the
        vendor's per-layer dump and compare tools need (input files, the source ONNX copy, a
        script) and return the commands to run there, each ``{"cmd": str, "note": str}``; the
        core prints them and records them in ``folder/debug-plan.json``. After the user ran
        them (the folder copied to the device machine and back), ``hrdeploy debug ARTIFACT
        --from-dump FOLDER`` calls :meth:`read_layer_dump`."""
        self._refuse_layer_debug()
        raise UserError(f"target {self.name!r} writes no layer dump plan")

    def read_layer_dump(self, artifact: "Artifact", folder: Path, source: Path) -> LayerDump:
        """Parse what the commands of :meth:`layer_dump_plan` wrote into ``folder`` (dumped
        tensors, or the vendor compare tool's per-layer table as ``figures``). Refuse a folder
        that is not complete with one line naming what is missing."""
        self._refuse_layer_debug()
        raise UserError(f"target {self.name!r} reads no layer dumps")

    def capabilities(self) -> list[str]:
        """The optional methods this target implements (``run_plan``, ``install_toolchain``,
        ``bench_native``, ``layer_outputs``, ``layer_dump_plan``) and ``mixed_precision``: shown
        by ``hrdeploy list --json`` and checked by the contract."""
        names = [name for name in ("run_plan", "install_toolchain", "bench_native", "layer_outputs",
                                   "layer_dump_plan")
                 if getattr(type(self), name) is not getattr(Target, name)]
        return names + (["mixed_precision"] if self.mixed_precision else [])

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "precisions": list(self.precisions), "static_batch": self.static_batch,
                "static_shapes": self.static_shapes,
                "options": {k: o.help for k, o in self.options.items()}, "capabilities": self.capabilities()}

    def check_options(self, options: dict[str, Any] | None) -> dict[str, Any]:
        """The options given for this target (unset ones dropped), refused with one line when
        one is not declared in :attr:`options` or is not one of its ``choices``. The one check
        convert, predict, eval, bench and verify all make."""
        opts = {k: v for k, v in (options or {}).items() if v is not None}
        unknown = sorted(set(opts) - set(self.options))
        if unknown:
            def flag(k: str) -> str:
                return "--" + k.replace("_", "-")
            raise UserError(f"target {self.name!r} has no option {', '.join(map(flag, unknown))}",
                            "its options: " + (", ".join(map(flag, self.options)) or "none"))
        for key, value in opts.items():
            choices = self.options[key].choices
            if choices and str(value) not in choices:
                raise UserError(f"target {self.name!r} option {key}: {value!r} is not one of {', '.join(choices)}")
        return opts

    def split_devices(self, devices: str | None, options: dict[str, Any]) -> list["Placement"]:
        """The runners ``eval``/``bench --devices SPEC`` open, one :class:`Placement` each:
        ``options`` are the target options of the run. The base version takes ``SPEC`` as a
        comma-separated list of the device ids :meth:`open` takes (Ascend device id, Sophon
        device id, VastAI die) and opens each with the same options; no ``SPEC`` is one runner
        on the default device. Override it when a device is chosen otherwise (onnxruntime
        splits the CPU cores into ``--replicas`` runners)."""
        if not devices:
            return [Placement(None, dict(options), "default")]
        ids = [d.strip() for d in str(devices).split(",")]
        if any(not d for d in ids):
            raise UserError(f"--devices expects comma-separated device ids (e.g. 0,1,2,3), got {devices!r}")
        twice = sorted({d for d in ids if ids.count(d) > 1})
        if twice:
            raise UserError(f"--devices names device {', '.join(twice)} twice", "give each device once")
        return [Placement(d, dict(options), f"dev:{d}") for d in ids]

    def require(self, probe: Probe | None = None) -> Probe:
        """Raise :class:`ToolchainMissing` with the setup hint unless the toolchain is here."""
        probe = probe or self.probe()
        if not probe.available:
            raise ToolchainMissing(f"target {self.name!r} is not usable here: {probe.detail}",
                                   self.setup_hint or None)
        return probe

    # -- Ray clusters (``eval --ray``, :mod:`hrdeploy.cluster`) ----------------------------------
    def ray_resources(self, options: dict[str, Any] | None = None) -> dict[str, float]:
        """What one Ray actor running this target's model reserves on its node, in Ray's
        resource names: ``{"NPU": 1}`` (Ray Core knows Ascend NPUs), a custom resource the
        nodes were started with (``ray start --resources='{"sophon": 3}'``), ``{"CPU": n}``
        for a CPU runtime. ``options`` are the run's target options. ``"CPU"`` is reserved as
        Ray's ``num_cpus``; the pool gets as many actors as the cluster holds. The base
        version returns :attr:`ray_actor_resources` (a vendor target sets just that)."""
        return dict(self.ray_actor_resources)

    def ray_device(self, assigned: dict[str, list[str]]) -> str | None:
        """The ``device`` a Ray actor opens, given the accelerator ids Ray assigned it
        (``ray.get_runtime_context().get_accelerator_ids()``, e.g. ``{"NPU": ["2"]}``). Ray
        makes an assigned accelerator the only one the actor sees (``ASCEND_RT_VISIBLE_DEVICES``,
        ``CUDA_VISIBLE_DEVICES``), as device 0: the base version returns "0" when one of this
        target's :meth:`ray_resources` was assigned ids, else None (the target's default
        device). Custom resources carry no ids: override it when a node's chips must be told
        apart otherwise."""
        names = set(self.ray_resources())
        return "0" if any(assigned.get(n) for n in names) else None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Placement:
    """One runner of a multi-device run (:meth:`Target.split_devices`): the ``device`` passed
    to :meth:`Target.open` (None: the one ``--device`` chose), the target ``options`` it opens
    with, and a short ``slot`` naming it in worker labels and bench tables ("dev:2", "replica:0")."""

    device: str | None
    options: dict[str, Any]
    slot: str
