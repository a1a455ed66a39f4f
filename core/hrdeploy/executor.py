"""Where ``hrdeploy eval`` gets its predictions from: the executor seam.

:func:`hrdeploy.evaluation.evaluate` decides *what* is evaluated (dataset, options, resume,
metric, result.json); an executor decides *where* the samples run: the single runner of this
process (:class:`LocalExecutor`, the default), one runner per device of this host
(:class:`hrdeploy.devices.DevicePool`), or the actors of a Ray cluster.

An executor is made by a factory ``ExecutorFactory = Callable[[EvalPlan], Executor]`` that
evaluate calls once with everything a run needs (:class:`EvalPlan`). The executor yields each
finished sample as a :class:`Finished`, in ANY order and from any worker; evaluate appends it to
the partial file as it arrives, feeds the metric in dataset order and refuses, with one line, an
id that was not asked for, that comes twice, or that never comes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol

from .model import Item, Pipeline, SampleRef
from .stream import Observer, Stream, Timings

if TYPE_CHECKING:
    from .session import Session


def host_name() -> str:
    """The host part of this machine's worker labels."""
    return os.uname().nodename


@dataclass
class Finished:
    """One finished sample. ``worker`` names where it ran, ``"HOST/SLOT"`` (``"box1/dev:2"``,
    ``"box1/replica:0"``, a Ray node id and actor): result.json counts samples per worker and
    per host (the part before the first ``/``)."""

    ref: SampleRef
    prediction: dict[str, Any]
    #: the network input sizes of the sample's items, [[H, W], ...] sorted, no repeats
    input_sizes: list[list[int]]
    worker: str


@dataclass
class EvalPlan:
    """What an executor needs to run the samples of one evaluation."""

    session: "Session"
    #: the model pipeline evaluate built (for the runner of this process); a worker elsewhere
    #: rebuilds it from the artifact with ``session.spec.pipeline`` / ``Session.pipeline(options)``
    pipeline: Pipeline
    #: the checked model options the pipeline was built from
    options: dict[str, Any]
    #: requested batch size (each runner fills what it accepts: :func:`hrdeploy.stream.choose_batch`)
    batch: int
    #: decode/preprocess threads per runner (None: the default)
    workers: int | None
    #: ``eval --compare``'s recorder, called with each sample's items and outputs; only an
    #: executor whose runner runs in this process can honour it (others refuse it at creation)
    observe: Observer | None = None


class Executor(Protocol):
    """The prediction source of an evaluation."""

    #: the batch size the runners fill (result.json "batch")
    batch: int
    #: seconds per stage, summed over every worker (result.json timing.per_image_ms)
    timings: Timings

    def predictions(self, todo: list[SampleRef]) -> Iterator[Finished]:
        """Run every sample of ``todo`` once; yield each when it is finished, in any order.
        The iterator's end (or its ``close()``) releases the workers."""
        ...

    def describe(self) -> dict[str, Any]:
        """Fields of result.json that say what ran, replacing the session's (``runner``,
        ``threads``) and, under ``timing``, ``workers``: per worker label its runner label."""
        ...


ExecutorFactory = Callable[[EvalPlan], Executor]


def input_sizes(items: list[Item]) -> list[list[int]]:
    """The distinct (H, W) network input sizes of a sample's items, sorted."""
    return [list(s) for s in sorted({(int(it.tensor.shape[-2]), int(it.tensor.shape[-1])) for it in items})]


@dataclass
class _SizeTap:
    """Observer that keeps each sample's input sizes until its :class:`Finished` is built, then
    passes items and outputs on (``eval --compare``)."""

    then: Observer | None
    last: dict[str, list[list[int]]] = field(default_factory=dict)

    def __call__(self, ref: SampleRef, items: list[Item], outputs: list[dict[str, Any]]) -> None:
        self.last[ref.id] = input_sizes(items)
        if self.then is not None:
            self.then(ref, items, outputs)


class LocalExecutor:
    """The session's one runner in this process, through :class:`hrdeploy.stream.Stream`."""

    def __init__(self, plan: EvalPlan, worker: str | None = None) -> None:
        self.plan = plan
        self.worker = worker or f"{host_name()}/local"
        self._tap = _SizeTap(plan.observe)
        self.stream = Stream(plan.pipeline, plan.session.runner, batch=plan.batch, workers=plan.workers,
                             observe=self._tap)
        self.batch = self.stream.batch
        self.timings = self.stream.timings

    def predictions(self, todo: list[SampleRef]) -> Iterator[Finished]:
        for ref, pred in self.stream.run(todo):
            yield Finished(ref, pred, self._tap.last.pop(ref.id, []), self.worker)

    def describe(self) -> dict[str, Any]:
        runner = self.plan.session.runner
        return {"runner": runner.label, "threads": runner.threads,
                "timing": {"workers": {self.worker: runner.label}}}
