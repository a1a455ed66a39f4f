"""``eval --compare``: every network input of an evaluation run again through a reference
model (typically the exported ONNX on onnxruntime), and the two sets of outputs compared with
the figures of export/convert/verify. It answers "does the converted model agree with the
original on *my* images", where verify answers it on the reference inputs stored at export.

Inputs and outputs are kept in memory until the end of the run (a few hundred classification
images or pose crops are tens of MB); inputs of different sizes (DEKR's gears) are compared
per size.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .stream import run_arrays
from .errors import UserError
from .model import Item, SampleRef
from .parity import ParityReport, compare
from .session import Session


@dataclass
class OutputRecorder:
    """A :class:`~hrdeploy.stream.Stream` observer keeping each network input and its outputs."""

    names: list[str]
    inputs: list[np.ndarray] = field(default_factory=list)
    outputs: list[dict[str, np.ndarray]] = field(default_factory=list)

    def __call__(self, ref: SampleRef, items: list[Item], outputs: list[dict[str, np.ndarray]]) -> None:
        for item, out in zip(items, outputs):
            self.inputs.append(item.tensor)
            self.outputs.append(out)


def check_reference(session: Session, reference: Session) -> None:
    a, b = session, reference
    if (a.spec.name, a.variant.name) != (b.spec.name, b.variant.name):
        raise UserError(f"--compare model is {b.spec.name}/{b.variant.name}, the evaluated one "
                        f"{a.spec.name}/{a.variant.name}", "compare with the ONNX file the artifact was converted from")


def compare_recorded(session: Session, reference: Session, recorded: OutputRecorder,
                     batch: int = 8) -> list[tuple[str, ParityReport]]:
    """Run the recorded inputs through ``reference`` and compare; one report per input size,
    labelled ``HxW``, against the tolerance of the evaluated artifact's precision."""
    if not recorded.inputs:
        return []
    names = [n for n in recorded.names if n in reference.runner.output_names]
    if not names:
        raise UserError("the --compare model has none of the evaluated model's outputs "
                        f"({', '.join(recorded.names)})")
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, x in enumerate(recorded.inputs):
        by_shape.setdefault(tuple(x.shape), []).append(i)
    reports = []
    for shape, idx in by_shape.items():
        x = np.stack([recorded.inputs[i] for i in idx])
        ref_outs = dict(zip(reference.runner.output_names, run_arrays(reference.runner, x, batch)))
        ref = [ref_outs[n] for n in names]
        got = [np.stack([recorded.outputs[i][n] for i in idx]) for n in names]
        report = compare(session.spec, session.variant, ref, got, session.artifact.precision,
                         f"{reference.target.name} {reference.artifact.precision} ({reference.artifact.path.name})",
                         f"{session.target.name} {session.artifact.precision} on {session.runner.label}", names)
        reports.append((f"{shape[-2]}x{shape[-1]}", report))
    return reports
