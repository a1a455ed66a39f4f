"""``hrdeploy eval --ray [auto|local|ADDRESS]``: the evaluation on a Ray cluster, through Ray Data.

The driver (this process) keeps everything that decides the result: the dataset, the resume
file, the metric (:func:`hrdeploy.evaluation.evaluate`). :class:`RayExecutor` is the
prediction source it plugs in (:mod:`hrdeploy.executor`):

* the samples to run become a Ray Dataset whose rows carry the sample id, its ``info`` (labels,
  person boxes) and the image file's *bytes*, read here: no worker needs the dataset's disk;
* the artifact's files are put once into Ray's object store; every actor of the pool
  (:class:`Predictor`, a callable class given to ``map_batches``) writes them into a private
  temporary folder, opens them once with the target plugin (checking their sha256 as any
  ``open`` does) on the device Ray assigned it (:meth:`hrdeploy.target.Target.ray_resources`,
  :meth:`~hrdeploy.target.Target.ray_device`), and decodes, preprocesses, runs and
  post-processes its blocks with the same :class:`hrdeploy.stream.Stream` a local run uses;
* finished samples stream back in any order and are checked by id here (a block retried after
  an actor died may come twice: an identical repeat is dropped, a different one refused, a
  sample that never comes refused), then handed to evaluate, which appends them to the
  partial file (``--resume`` works for a cluster run) and scores them in dataset order.

Ray is an optional extra (``pip install 'hrdeploy[ray]'``); nothing here imports it before a
cluster run is asked for.
"""
from __future__ import annotations

import atexit
import json
import logging
import math
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import numpy as np

from .errors import UserError
from .executor import EvalPlan, Finished, input_sizes
from .model import SampleRef
from .stream import Stream, Timings, choose_batch

if TYPE_CHECKING:
    from .artifact import Artifact

INSTALL_HINT = "pip install 'hrdeploy[ray]'"
#: samples per Ray block at most: a block is what one actor call runs and what is retried
#: when an actor dies, so blocks stay small enough to spread a dozen images over two nodes
MAX_BLOCK = 64
_STAGES = ("decode", "preprocess", "infer", "postprocess")
#: seconds the actor pool may take to start (each actor imports the runtime and opens the model)
ACTOR_START_TIMEOUT = 300


def import_ray() -> Any:
    """The ``ray`` module, or the one line saying how to install it."""
    try:
        import ray
        import ray.data  # the "data" extra (pyarrow, pandas) is what --ray needs
    except ImportError as e:
        raise UserError(f"--ray needs Ray with Ray Data, which is not installed here ({e.name or e})",
                        f"install it with: {INSTALL_HINT}") from None
    return ray


def parse_resources(text: str | None) -> dict[str, float] | None:
    """``--ray-resources '{"NPU": 1, "CPU": 2}'``: what one actor reserves, replacing what the
    target declares; None when not given."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"--ray-resources expects a JSON object such as '{{\"NPU\": 1}}', got {text!r} ({e.msg})") from None
    if not isinstance(value, dict) or not value or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
            for k, v in value.items()):
        raise UserError(f"--ray-resources expects a JSON object of resource name -> amount >= 0, got {text!r}")
    return {k: float(v) for k, v in value.items()}


# -- shipping the artifact --------------------------------------------------------------------------

def pack_artifact(artifact: Artifact) -> tuple[str, dict[str, bytes]]:
    """The artifact as ``(entry, {relative path: bytes})``: what a worker writes into a folder
    of its own to open it there. ``entry`` is the folder's or the ``.onnx`` file's name; a
    folder ships every file in it (symbolic links leading out of it excepted), an exported
    ``.onnx`` the file and the companions its metadata names (reference, extra files)."""
    if artifact.is_folder:
        root = artifact.path.resolve()
        files: dict[str, bytes] = {}
        for dirpath, dirnames, filenames in os.walk(artifact.path):
            dirnames.sort()
            for name in sorted(filenames):
                p = Path(dirpath) / name
                if p.is_file() and p.resolve().is_relative_to(root):
                    files[f"{artifact.path.name}/{p.relative_to(artifact.path).as_posix()}"] = p.read_bytes()
        return artifact.path.name, files
    files = {artifact.path.name: artifact.path.read_bytes()}
    for p in artifact.files().values():
        if p.is_file():
            files[p.relative_to(artifact.folder).as_posix()] = p.read_bytes()
    return artifact.path.name, files


def unpack_artifact(files: Mapping[str, bytes], folder: Path) -> None:
    """Write :func:`pack_artifact`'s files under ``folder`` (names that would leave it refused)."""
    root = folder.resolve()
    for rel, data in files.items():
        dest = (folder / rel).resolve()
        if not dest.is_relative_to(root):
            raise UserError(f"the shipped artifact names a file outside its folder: {rel!r}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)


# -- the actor ------------------------------------------------------------------------------------

def decode_image(data: bytes, path: Path) -> np.ndarray:
    """Decode image file bytes exactly as :func:`hrdeploy.io.read_image` decodes the file
    (BGR uint8, EXIF orientation ignored): a cluster run's inputs are a local run's, bit for bit."""
    import cv2

    buf = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if buf.size else None
    if image is None:
        raise UserError(f"cannot decode image {path}: the file is corrupt or not an image")
    return image


class _Encoded(dict):  # type: ignore[type-arg]
    """Image bytes by sample id that :class:`Stream` takes as its decoded images: each is
    decoded when the stream's preprocessing threads ask for it, so decoding overlaps inference
    as in a local run."""

    def __init__(self, data: dict[str, bytes], paths: dict[str, Path]) -> None:
        super().__init__(data)
        self.paths = paths

    def __getitem__(self, key: str) -> np.ndarray:  # type: ignore[override]
        return decode_image(dict.__getitem__(self, key), self.paths[key])

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return self[key] if key in self else default


def _empty_result() -> dict[str, list[Any]]:
    return {"id": [], "prediction": [], "input_sizes": [], "worker": [], "runner": [], "error": [],
            **{f"t_{s}": [] for s in _STAGES}}


class Predictor:
    """One actor of the pool: opens the shipped artifact once, then runs blocks of samples.

    Constructed by Ray Data on the node and with the resources Ray chose; every call returns one
    row per sample of its block (``error`` set, and no predictions, when the block could not
    run: a corrupt image is the user's to fix, not a reason to retry)."""

    def __init__(self, artifact: list[Any], entry: str, target_options: dict[str, Any],
                 model_options: dict[str, Any], batch: int, workers: int | None,
                 threads: int | None) -> None:
        import ray

        from .artifact import Artifact
        from .plugins import registry
        from .session import open_session

        blob = ray.get(artifact[0]) if isinstance(artifact[0], ray.ObjectRef) else artifact[0]
        self.folder = Path(tempfile.mkdtemp(prefix="hrdeploy-ray-"))
        atexit.register(shutil.rmtree, self.folder, True)  # the worker's exit; a killed one leaves it in /tmp
        unpack_artifact(blob, self.folder)
        ctx = ray.get_runtime_context()
        reg = registry()
        target = reg.target(Artifact.load(self.folder / entry).target)
        device = target.ray_device(ctx.get_accelerator_ids())
        opts = dict(target_options)
        if threads and "threads" in target.options and "threads" not in opts:
            opts["threads"] = threads  # the CPUs this actor reserved, not every core of the node
        self.session = open_session(reg, self.folder / entry, device=device, target_options=opts)
        self.pipeline = self.session.pipeline(model_options)
        self.batch = batch
        self.workers = workers
        self.worker = f"{os.uname().nodename}:{ctx.get_node_id()[:8]}/actor:{os.getpid()}"

    def __call__(self, block: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        ids = [str(v) for v in block["id"]]
        paths = {k: Path(str(p)) for k, p in zip(ids, block["path"])}
        refs = [SampleRef(k, paths[k], json.loads(str(info))) for k, info in zip(ids, block["info"])]
        images = _Encoded({k: bytes(b) for k, b in zip(ids, block["image"])}, paths)
        sizes: dict[str, list[list[int]]] = {}
        stream = Stream(self.pipeline, self.session.runner, batch=self.batch, workers=self.workers, images=images,
                        observe=lambda ref, items, outputs: sizes.__setitem__(ref.id, input_sizes(items)))
        out = _empty_result()
        try:
            preds = list(stream.run(refs))
        except UserError as e:
            for k in ids:
                _append(out, k, {}, [], self.worker, self.session.runner.label, str(e))
            return out
        for ref, pred in preds:
            _append(out, ref.id, pred, sizes.pop(ref.id, []), self.worker, self.session.runner.label, "")
        if preds:  # the block's stage seconds on its first row: the sums stay exact
            for s in _STAGES:
                out[f"t_{s}"][0] = getattr(stream.timings, s)
        return out

    def __del__(self) -> None:
        session = getattr(self, "session", None)
        if session is not None:
            session.close()
        if getattr(self, "folder", None) is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def _append(out: dict[str, list[Any]], key: str, pred: dict[str, Any], sizes: list[list[int]],
            worker: str, runner: str, error: str) -> None:
    from .io import dumps

    out["id"].append(key)
    out["prediction"].append(dumps(pred, indent=None) if not error else "")
    out["input_sizes"].append(json.dumps(sizes))
    out["worker"].append(worker)
    out["runner"].append(runner)
    out["error"].append(error)
    for s in _STAGES:
        out[f"t_{s}"].append(0.0)


# -- the driver -------------------------------------------------------------------------------------

class RayExecutor:
    """The :class:`hrdeploy.executor.Executor` of ``eval --ray``: see the module docstring.

    ``address``: ``"auto"`` (the cluster this machine belongs to, or ``RAY_ADDRESS``),
    ``"local"`` (a private one-machine Ray started for this run) or a cluster address
    (``HOST:6379``, ``ray://HOST:10001``). A Ray connection already open in this process is
    used as it is. ``actors``: the pool size (default: as many as the cluster's resources hold);
    ``resources``: what one actor reserves, replacing the target's
    :meth:`~hrdeploy.target.Target.ray_resources`."""

    def __init__(self, plan: EvalPlan, address: str = "auto", *, actors: int | None = None,
                 resources: dict[str, float] | None = None, log: Any = print) -> None:
        if plan.observe is not None:
            raise UserError("--compare runs on the runner of this process and cannot be combined with --ray",
                            "run the --compare evaluation without --ray")
        if actors is not None and actors < 1:
            raise UserError(f"--ray-actors must be a whole number >= 1, got {actors}")
        self.ray = import_ray()
        self.plan = plan
        self.log = log
        session = plan.session
        self.batch = choose_batch(plan.batch, session.runner.batch_sizes)
        self.timings = Timings()
        self.resources = dict(resources if resources is not None else session.target.ray_resources(session.options))
        self._owned = self._connect(address)
        try:
            self.address = self.ray.get_runtime_context().gcs_address
            self.actors = self._pool_size(actors)
        except BaseException:
            self._disconnect()
            raise
        self.runners: dict[str, str] = {}
        self.redelivered = 0
        self.nodes = len([n for n in self.ray.nodes() if n.get("Alive")])

    # -- connection and placement ----------------------------------------------------------------
    def _connect(self, address: str) -> bool:
        ray = self.ray
        if ray.is_initialized():
            return False
        kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False,
                                  "include_dashboard": False}
        try:
            # "local" always starts a new Ray, even when another runs on this machine
            ray.init(address=address, **kwargs)
        except ConnectionError as e:
            raise UserError(f"--ray {address}: no Ray cluster to connect to ({str(e).splitlines()[0][:160]})",
                            "start one with 'ray start --head' (then --ray auto), give its address, "
                            "or use --ray local for a Ray on this machine only") from None
        except (ValueError, RuntimeError) as e:
            raise UserError(f"--ray {address}: {str(e).splitlines()[0][:200]}") from None
        return True

    def _disconnect(self) -> None:
        if self._owned and self.ray.is_initialized():
            self.ray.shutdown()
        self._owned = False

    def _pool_size(self, actors: int | None) -> int:
        """The requested pool size, or as many actors as the cluster's resources hold; a
        resource the cluster does not have at all is refused (the pool would wait forever)."""
        total = self.ray.cluster_resources()
        need = {k: v for k, v in self.resources.items() if v > 0}
        missing = [k for k in need if total.get(k, 0) < need[k]]
        if missing:
            have = ", ".join(f"{k}: {v:g}" for k, v in sorted(total.items())
                             if not k.startswith(("node:", "memory", "object_store_memory"))) or "none"
            raise UserError(f"the Ray cluster has too little {', '.join(repr(k) for k in missing)} for one actor "
                            f"of target {self.plan.session.target.name!r} (each needs "
                            f"{json.dumps(self.resources)}; the cluster has {have})",
                            "start the nodes with those resources (ray start --resources=...) or pass --ray-resources")
        if actors is not None:
            return actors
        fits = [int(total[k] // v) for k, v in need.items()]
        return max(1, min(fits)) if fits else max(1, int(total.get("CPU", 1)))

    # -- the run -----------------------------------------------------------------------------------
    def _dataset(self, todo: list[SampleRef]) -> Any:
        """The samples as a Ray Dataset of blocks of image bytes, each put into the object store
        as soon as it is read (the driver holds one block at a time)."""
        import pyarrow as pa

        # about four blocks per actor (to spread and balance), a batch's worth when that fits
        # (each block is its own run of batches), at most MAX_BLOCK (the retry unit)
        n = len(todo)
        size = min(MAX_BLOCK, max(math.ceil(n / (self.actors * 4)), min(self.batch, math.ceil(n / self.actors))))
        refs = []
        for start in range(0, len(todo), size):
            chunk = todo[start:start + size]
            refs.append(self.ray.put(pa.table({
                "id": [r.id for r in chunk], "path": [str(r.path) for r in chunk],
                "info": [json.dumps(r.info) for r in chunk],
                "image": pa.array([_read_bytes(r.path) for r in chunk], pa.binary())})))
        return self.ray.data.from_arrow_refs(refs), size

    def predictions(self, todo: list[SampleRef]) -> Iterator[Finished]:
        try:
            if not todo:
                return
            yield from self._run(todo)
        finally:
            self._disconnect()

    def _run(self, todo: list[SampleRef]) -> Iterator[Finished]:
        ray = self.ray
        from ray.data import ActorPoolStrategy, DataContext

        ctx = DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        # the pool starts whole before the first block: the work spreads over every actor, and
        # a cluster that cannot place them all says so instead of running on fewer
        ctx.wait_for_min_actors_s = ACTOR_START_TIMEOUT
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # its notes (progress bars off...) are not the user's
        session = self.plan.session
        ds, block = self._dataset(todo)
        entry, files = pack_artifact(session.artifact)
        artifact_ref = ray.put(files)
        del files  # the object store holds them now
        resources = dict(self.resources)
        num_cpus = resources.pop("CPU", 0.0)
        threads = int(num_cpus) if num_cpus >= 1 else None
        self.log(f"ray: {_count(self.actors, 'actor')} of {json.dumps(self.resources)} on "
                 f"{_count(self.nodes, 'node')} ({self.address}), {_count(len(todo), 'image')} in blocks of {block}")
        out = ds.map_batches(
            # one block in flight per actor: the blocks all live on the driver's node, and Ray
            # Data's locality preference would otherwise queue them on the actors there first
            Predictor, batch_size=block, batch_format="numpy",
            compute=ActorPoolStrategy(size=self.actors, max_tasks_in_flight_per_actor=1),
            fn_constructor_kwargs={"artifact": [artifact_ref], "entry": entry,
                                   "target_options": dict(session.options), "model_options": dict(self.plan.options),
                                   "batch": self.plan.batch, "workers": self.plan.workers, "threads": threads},
            num_cpus=num_cpus, resources=resources or None)
        # Ray Data's actor pools restart a dead actor and run its blocks again (max_restarts
        # and max_task_retries default to -1 there); the ledger makes each sample count once
        ledger = IdLedger(todo)
        try:
            for rows in out.iter_batches(batch_size=None, batch_format="numpy"):
                yield from self._finished(rows, ledger)
        except ray.exceptions.RayError as e:
            raise _user_error(e) from None
        ledger.check_complete()
        self.redelivered = ledger.redelivered

    def _finished(self, rows: dict[str, np.ndarray], ledger: IdLedger) -> Iterator[Finished]:
        for i, key in enumerate(str(k) for k in rows["id"]):
            error = str(rows["error"][i])
            if error:
                raise UserError(error)
            pred = str(rows["prediction"][i])
            if not ledger.take(key, pred):
                continue
            worker = str(rows["worker"][i])
            self.runners.setdefault(worker, str(rows["runner"][i]))
            for s in _STAGES:
                setattr(self.timings, s, getattr(self.timings, s) + float(rows[f"t_{s}"][i]))
            yield Finished(ledger.refs[key], json.loads(pred), json.loads(str(rows["input_sizes"][i])), worker)

    def describe(self) -> dict[str, Any]:
        self._disconnect()  # evaluate asks after the run; a run with nothing left to do never iterated
        labels = sorted(set(self.runners.values()))
        nodes = Counter(w.split("/", 1)[0] for w in self.runners)
        return {"runner": f"ray: {_count(len(self.runners), 'actor')} on {_count(len(nodes), 'node')}; "
                          + "; ".join(labels),
                "threads": None,
                "timing": {"workers": dict(sorted(self.runners.items())),
                           "ray": {"address": self.address, "nodes": self.nodes, "actors": self.actors,
                                   "resources_per_actor": self.resources,
                                   "redelivered": self.redelivered}}}


class IdLedger:
    """Each asked-for sample once: a block Ray ran again after its actor died may deliver its
    samples a second time (dropped when identical, counted in :attr:`redelivered`); a
    different second prediction, an id not asked for, or one that never came refuses the run."""

    def __init__(self, todo: list[SampleRef]) -> None:
        self.refs = {r.id: r for r in todo}
        self.seen: dict[str, str] = {}
        self.redelivered = 0

    def take(self, key: str, prediction: str) -> bool:
        """True when ``key`` arrives for the first time (its prediction as JSON text)."""
        if key not in self.refs:
            raise UserError(f"the Ray cluster returned sample {key!r}, which was not asked for: the run is refused")
        if key in self.seen:
            if self.seen[key] != prediction:
                raise UserError(f"the Ray cluster returned sample {key!r} twice with different predictions "
                                "(a retried block ran differently): the run is refused")
            self.redelivered += 1
            return False
        self.seen[key] = prediction
        return True

    def check_complete(self) -> None:
        missing = [k for k in self.refs if k not in self.seen]
        if missing:
            raise UserError(f"the Ray cluster returned no prediction for {_count(len(missing), 'image')} of "
                            f"{len(self.refs)} ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}): "
                            "the run is refused", "run it again with --resume to evaluate the rest")


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _read_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise UserError(f"image not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"image not found: {path} is a folder") from None


def _user_error(err: Exception) -> UserError:
    """One line for a failure inside the cluster: the UserError an actor raised (an artifact
    that does not open there, a missing plugin), else Ray's own first line."""
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, UserError):
            return UserError(f"on the Ray cluster: {cur}")
        cur = getattr(cur, "cause", None) or cur.__cause__ or cur.__context__
    first = next((ln.strip() for ln in str(err).splitlines() if ln.strip()), type(err).__name__)
    return UserError(f"the Ray cluster run failed: {first[:300]}", "see the Ray logs (/tmp/ray/session_latest/logs)")


def ray_executor(address: str, *, actors: int | None = None, resources: dict[str, float] | None = None,
                 log: Any = print) -> Any:
    """The factory ``evaluate(..., executor=...)`` takes for a cluster run."""
    def make(plan: EvalPlan) -> RayExecutor:
        return RayExecutor(plan, address, actors=actors, resources=resources, log=log)
    return make
