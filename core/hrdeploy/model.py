"""What a model plugin provides: :class:`ModelSpec` and the objects it hands out.

A model plugin knows one network family for one task. It says which variants exist and what
their input looks like (:class:`Variant`, :class:`InputSpec`), builds the PyTorch module for
``export`` (:meth:`ModelSpec.build`, :meth:`ModelSpec.load_weights`: the only places torch may
be imported), and supplies the numpy/OpenCV pre- and post-processing (:class:`Pipeline`), the
dataset readers and metrics (:class:`Dataset`, :class:`Metric`) and the drawing used by
``predict --vis``. The same pipeline serves every target, so an accuracy figure never depends
on which chip ran the network.

Data flow of ``predict`` / ``eval`` / ``bench`` (the core owns the loop, the plugin the maths)::

    Dataset -> SampleRef -> (core decodes) Sample -> Pipeline.prepare -> [Item, ...]
        -> core batches items of one shape for the runner (padding static batches)
        -> Runner.run -> outputs per item -> Pipeline.finish -> prediction (JSON-able dict)
        -> Metric.update

One image may give several items (a top-down pose model makes one crop per person, and a
flip test adds a mirrored copy of each); the core keeps them together and hands all of an
image's outputs to ``finish`` in item order.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from .errors import UserError

if TYPE_CHECKING:
    import torch

TASKS = ("classification", "pose-topdown", "pose-bottomup")


@dataclass(frozen=True)
class InputSpec:
    """The network input as exported: one NCHW float32 tensor named ``name``.

    ``height``/``width`` are the fixed size, or ``None`` when the ONNX graph takes any size
    that is a multiple of ``stride`` (DEKR). ``gears`` lists the (H, W) sizes a static compiler
    must build when the size varies (Ascend ``--dynamic_dims``, one bmodel per gear on Sophon);
    the pipeline then snaps every image to one of them. ``batch`` is ``"dynamic"`` or a fixed
    batch size the model only supports (DEKR's gears are batch 1).
    """

    name: str = "image"
    channels: int = 3
    height: int | None = 224
    width: int | None = 224
    gears: tuple[tuple[int, int], ...] = ()
    stride: int = 1
    batch: int | str = "dynamic"
    dtype: str = "float32"
    layout: str = "NCHW"

    @property
    def fixed_size(self) -> tuple[int, int] | None:
        if self.height is None or self.width is None:
            return None
        return (self.height, self.width)

    @property
    def sizes(self) -> tuple[tuple[int, int], ...]:
        """Every (H, W) a compiler must build: the fixed size, else the gears."""
        if self.fixed_size:
            return (self.fixed_size,)
        return self.gears

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["gears"] = [list(g) for g in self.gears]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "InputSpec":
        d = dict(d)
        d["gears"] = tuple(tuple(int(v) for v in g) for g in d.get("gears", ()))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class Tolerance:
    """How close a run must be to its reference, per output tensor.

    ``max_rel``: max|test - ref| <= max_rel * max|ref| (relative to the largest reference
    value, because seeded HRNet outputs reach 1e4 while real ones are small).
    ``min_cosine``: cosine similarity of the flattened tensors per sample.
    ``task``: the task-level threshold, read by :meth:`ModelSpec.task_check` (for
    classification the minimum top-1 agreement, for pose the maximum keypoint error in pixels).
    """

    max_rel: float | None = None
    min_cosine: float | None = None
    task: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(max_rel=1e-4, min_cosine=0.9999),
    "fp16": Tolerance(max_rel=1e-2, min_cosine=0.999),
    # bfloat16 keeps 8 mantissa bits: HRNet-W18-C on OpenVINO bf16 gives max rel 3.7e-3, cosine 0.99999
    "bf16": Tolerance(max_rel=1e-2, min_cosine=0.999),
    "int8": Tolerance(max_rel=None, min_cosine=0.99),
}


@dataclass(frozen=True)
class Variant:
    """One exportable configuration of a model (a width, an input size, a flavour)."""

    name: str
    input: InputSpec
    outputs: tuple[str, ...]
    preprocess: dict[str, Any] = field(default_factory=dict)
    tolerances: dict[str, Tolerance] = field(default_factory=lambda: dict(DEFAULT_TOLERANCES))
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def tolerance(self, precision: str) -> Tolerance:
        return self.tolerances.get(precision) or DEFAULT_TOLERANCES.get(precision, Tolerance())


@dataclass(frozen=True)
class OptionSpec:
    """A model option the CLI forwards to :meth:`ModelSpec.build` (export),
    :meth:`ModelSpec.pipeline` and :meth:`ModelSpec.dataset`. Declaring it is all it takes:
    export, convert (calibration), predict and eval get a typed ``--NAME`` flag (``--NAME/--no-NAME``
    for a bool) with this help and default, grouped under the model's name in ``--help``;
    ``--opt NAME=VALUE`` works too."""

    help: str
    default: Any = None
    type: type = str
    #: the smallest value an int/float option takes (checked where the command line is parsed)
    min: float | None = None


@dataclass(frozen=True)
class PipelineRuntime:
    """What :meth:`ModelSpec.pipeline` is told about the model it pre/post-processes for.

    ``sizes``: the (H, W) input sizes the artifact was compiled for (snap images to them), or
    None when it takes any size; ``files``: the files the artifact carries by role (DEKR's
    rescore net), resolved inside it; ``target``: the target's name, or None (export, reference
    inputs)."""

    sizes: tuple[tuple[int, int], ...] | None = None
    files: dict[str, Path] = field(default_factory=dict)
    target: str | None = None

    @classmethod
    def for_variant(cls, variant: "Variant") -> "PipelineRuntime":
        """The runtime of the exported network itself: its fixed size or size gears."""
        return cls(sizes=tuple(tuple(s) for s in variant.input.sizes) or None)  # type: ignore[arg-type]


@dataclass
class SampleRef:
    """One image of a dataset before decoding. ``info`` must be JSON-serialisable
    (it holds labels, COCO image ids, person boxes...): resumed evaluations replay stored
    predictions against it."""

    id: str
    path: Path
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Sample:
    """A decoded image: ``image`` is BGR uint8 HxWx3 as OpenCV reads it."""

    ref: SampleRef
    image: np.ndarray


@dataclass
class Item:
    """One network input made from a sample: ``tensor`` is CHW float32 (no batch axis)."""

    tensor: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskCheck:
    """A task-level comparison of two runs (printed by export/convert/verify)."""

    name: str
    value: float
    passed: bool
    text: str


class Pipeline:
    """Pre- and post-processing of one model variant, in numpy + OpenCV only.

    ``params`` lists every parameter used (resize, crop, mean/std, flip, thresholds...);
    it is written into every result file so that two accuracy figures can be compared.
    ``prepare`` may be called from worker threads at the same time: do not mutate ``self``.
    """

    params: dict[str, Any] = {}

    def prepare(self, sample: Sample) -> list[Item]:
        """Turn a decoded image into the network inputs it needs (at least one)."""
        raise NotImplementedError

    def finish(self, sample: SampleRef, items: list[Item],
               outputs: list[dict[str, np.ndarray]]) -> dict[str, Any]:
        """Turn the outputs of all of a sample's items (one dict name -> array without the
        batch axis per item, in item order) into a JSON-serialisable prediction.

        Classification returns ``{"top_k": [{"index", "name", "score"}, ...]}``, pose returns
        ``{"people": [{"keypoints": [[x, y, score] x 17], "score", "box": [x, y, w, h]}]}``.
        """
        raise NotImplementedError

    def finish_batch(self, samples: list[SampleRef], items: list[list[Item]],
                     outputs: list[list[dict[str, np.ndarray]]]) -> list[dict[str, Any]]:
        """Vectorised form of :meth:`finish` over several samples; override when it pays."""
        return [self.finish(s, i, o) for s, i, o in zip(samples, items, outputs)]


def short_json(value: Any, width: int = 40) -> str:
    """A value as JSON, cut to ``width`` characters, for messages about stored records."""
    text = json.dumps(value, default=str)
    return text if len(text) <= width else text[: width - 3] + "..."


class Metric:
    """Accumulates predictions and scores them."""

    def update(self, ref: SampleRef, prediction: dict[str, Any]) -> None:
        raise NotImplementedError

    def summary(self) -> dict[str, Any]:
        """The figures for result.json (plain JSON types)."""
        raise NotImplementedError

    def rows(self, summary: dict[str, Any]) -> list[tuple[str, str]]:
        """(name, value) rows for the terminal table."""
        return [(k, f"{v:.4f}" if isinstance(v, float) else str(v))
                for k, v in summary.items() if not isinstance(v, (dict, list))]

    def extra_files(self) -> dict[str, Any]:
        """Further JSON files to write next to result.json (e.g. COCO results)."""
        return {}

    def check_prediction(self, prediction: Any) -> str | None:
        """Why a stored prediction (a line of a resumed run's partial file, which anyone can
        edit) is not one :meth:`update` can take, or None. Override to check its shape."""
        return None if isinstance(prediction, dict) else f"a {type(prediction).__name__}, not an object"


class Dataset:
    """An evaluation set: iterates :class:`SampleRef` in a stable order."""

    kind: str = ""
    root: Path = Path(".")

    def __len__(self) -> int:
        raise NotImplementedError

    def __iter__(self) -> Iterator[SampleRef]:
        raise NotImplementedError

    def metric(self) -> Metric:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        return {"kind": self.kind, "root": str(self.root), "images": len(self)}

    def defining_files(self) -> dict[str, Path]:
        """The files besides the images that decide the samples and their labels (a label
        file, an annotation file, person boxes) by what they are: a resumed evaluation checks
        their contents did not change. Sample ids must be unique and stable (a path relative
        to the root, an image id): they key the stored predictions."""
        return {}


class ModelSpec:
    """A model family. Subclass it, fill in the class attributes and the methods.

    Class attributes: ``name`` (what users type), ``task`` (one of :data:`TASKS`),
    ``description``, ``variants`` (ordered; the first is the default), ``dataset_kinds``
    (what ``--data KIND:PATH`` accepts) and ``options`` (extra options of predict/eval).
    """

    name: str = ""
    task: str = ""
    description: str = ""
    variants: dict[str, Variant] = {}
    dataset_kinds: tuple[str, ...] = ()
    options: dict[str, OptionSpec] = {}

    # -- variants -----------------------------------------------------------------------
    def variant(self, name: str | None = None) -> Variant:
        if not self.variants:
            raise UserError(f"model {self.name!r} declares no variants")
        if name is None:
            return next(iter(self.variants.values()))
        try:
            return self.variants[name]
        except KeyError:
            raise UserError(
                f"model {self.name!r} has no variant {name!r}",
                "choose one of: " + ", ".join(self.variants)) from None

    # -- export (the only place torch is used) ---------------------------------------------
    def build(self, variant: Variant, options: dict[str, Any] | None = None) -> "torch.nn.Module":
        """Return the PyTorch module in eval mode, with random (uninitialised) weights.
        Its forward takes the ``image`` tensor and returns the outputs in
        ``variant.outputs`` order (a tensor, or a tuple of tensors). ``options`` are the
        export options the user gave (declared in :attr:`options`, checked and parsed;
        ``hrdeploy export --NAME VALUE`` or ``--opt NAME=VALUE``)."""
        raise NotImplementedError

    def load_weights(self, module: "torch.nn.Module", path: Path, variant: Variant) -> str:
        """Load a checkpoint strictly into ``module``; return a short description of the layout
        that was found (e.g. ``"mmpretrain checkpoint, 4 head biases folded"``). Raise
        :class:`hrdeploy.errors.WeightsError` with one line saying what the file looks like
        when it does not fit."""
        raise NotImplementedError

    def example_input(self, variant: Variant, batch: int = 2, seed: int = 0) -> np.ndarray:
        """The input used to compare PyTorch with ONNX Runtime after export."""
        size = variant.input.fixed_size or variant.input.gears[0]
        rng = np.random.default_rng(seed)
        return rng.standard_normal((batch, variant.input.channels, *size)).astype(np.float32)

    def dynamic_axes(self, variant: Variant, dynamic_batch: bool) -> dict[str, dict[int, str]]:
        axes: dict[int, str] = {0: "batch"} if dynamic_batch else {}
        if variant.input.fixed_size is None:
            axes.update({2: "height", 3: "width"})
        if not axes:
            return {}
        return {name: dict(axes) for name in (variant.input.name, *variant.outputs)}

    # -- runtime (numpy + OpenCV) ------------------------------------------------------------
    def pipeline(self, variant: Variant, options: dict[str, Any] | None = None,
                 runtime: PipelineRuntime | None = None) -> Pipeline:
        """Build the pre/post-processing. ``options`` are the user's model options (checked
        and parsed); ``runtime`` (a :class:`PipelineRuntime`) describes the artifact being run,
        so that a pipeline can snap to compiled gears or find files the artifact carries."""
        raise NotImplementedError

    def dataset(self, kind: str, path: Path, options: dict[str, Any] | None = None) -> Dataset:
        raise UserError(f"model {self.name!r} has no dataset reader for {kind!r}",
                        "supported: " + (", ".join(self.dataset_kinds) or "none"))

    def draw(self, image: np.ndarray, prediction: dict[str, Any]) -> np.ndarray:
        """Return a copy of ``image`` (BGR) with the prediction drawn on it."""
        raise NotImplementedError

    def describe(self, prediction: dict[str, Any]) -> str:
        """One short line for ``predict``'s table (e.g. the top-3 classes, or how many people
        and the best score). The default lists the prediction's fields."""
        return ", ".join(f"{k}: {short_json(v)}" for k, v in prediction.items())

    def task_check(self, variant: Variant, reference: list[np.ndarray],
                   test: list[np.ndarray], tolerance: Tolerance) -> TaskCheck | None:
        """Compare two runs of the raw network at task level (top-1 agreement, keypoint
        error); outputs are in ``variant.outputs`` order with the batch axis."""
        return None

    def network_size(self, variant: Variant, height: int, width: int) -> tuple[int, int] | None:
        """The input size (H, W) this model's preprocessing makes of an image of ``height`` x
        ``width`` without gears; None for fixed-size models (gears do not apply). Models whose
        input size varies implement it so ``hrdeploy gears`` can choose gears from the data."""
        return None

    def artifact_files(self, variant: Variant, weights: Path | None,
                       options: dict[str, Any] | None = None) -> dict[str, bytes]:
        """Extra files a deployment needs besides the network (e.g. a rescoring net as
        ``.npz``); ``export`` writes them next to the ONNX file and ``convert`` copies them
        into the artifact. ``options`` as for :meth:`build`."""
        return {}

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "task": self.task, "description": self.description,
                "variants": list(self.variants), "datasets": list(self.dataset_kinds)}


def parse_option(spec: OptionSpec, raw: str) -> Any:
    """Convert a command-line string to an option's type (``bool`` understands yes/no)."""
    if spec.type is bool:
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise UserError(f"expected true/false, got {raw!r}")
    if spec.type in (list, tuple):
        return [float(v) for v in raw.split(",") if v.strip()]
    try:
        return spec.type(raw)
    except (TypeError, ValueError):
        raise UserError(f"expected a {spec.type.__name__}, got {raw!r}") from None


def sizes_of(items: Sequence[Item]) -> set[tuple[int, int]]:
    return {tuple(it.tensor.shape[-2:]) for it in items}  # type: ignore[misc]
