"""``hrdeploy verify``: run an artifact's reference inputs on this machine's runtime and compare
with the ONNX Runtime fp32 outputs stored when it was exported/converted (Polygraphy-style
save-here, compare-there), per output and at task level."""
from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .artifact import VERIFY_REPORT, Artifact, load_reference
from .errors import UserError
from .io import atomic_write_json
from .parity import ParityReport, compare
from .plugins import Registry
from .results import VerifyResult
from .session import Session, open_session
from .stream import run_arrays


def report_path(artifact: Artifact) -> Path:
    if artifact.is_folder:
        return artifact.path / VERIFY_REPORT
    return artifact.path.with_suffix(".verify.json")


Reference = tuple[np.ndarray, dict[str, np.ndarray]]


def stored_reference(artifact: Artifact) -> Reference:
    """The artifact's reference inputs and outputs, refused (exit 2) when absent, damaged or
    not stored for this artifact's input and outputs."""
    ref_file = artifact.file("reference", required=False)
    if ref_file is None or not ref_file.is_file():
        raise UserError(f"{artifact.path} carries no reference outputs",
                        "re-run 'hrdeploy export' / 'hrdeploy convert' with this version to store them")
    x, stored = load_reference(ref_file)
    artifact.check_reference(x, stored)
    return x, stored


def reference_report(session: Session, reference: Reference | None = None) -> ParityReport:
    """Run the artifact's stored reference inputs on the session's runner and compare with the
    stored onnxruntime fp32 outputs, per output and at task level. A reference that cannot
    belong to the artifact (other input shape, other outputs) is a UserError, exit 2: a breach
    (exit 1) is reserved for a model that runs and differs."""
    artifact = session.artifact
    x, stored = reference or stored_reference(artifact)
    got = run_arrays(session.runner, x)
    by_name = dict(zip(session.runner.output_names, got))
    outputs = list(session.variant.outputs)
    missing = [n for n in outputs if n not in stored or n not in by_name]
    if missing:
        # some toolchains rename outputs; fall back to position when the counts agree
        if len(got) == len(outputs) and all(n in stored for n in outputs):
            by_name = dict(zip(outputs, got))
        else:
            raise UserError(f"outputs {missing} missing from the run or the reference of {artifact.path}")
    ref = [stored[n] for n in outputs]
    test = [np.asarray(by_name[n]) for n in outputs]
    for name, r, t in zip(outputs, ref, test):
        if r.size != t.size:
            raise UserError(f"reference output {name!r} of {artifact.path} has shape {list(r.shape)}, but the "
                            f"model gives {list(t.shape)}: the reference does not belong to this model",
                            "re-convert to store a matching reference")
    return compare(session.spec, session.variant, ref, test, artifact.precision,
                   "onnxruntime fp32 (stored)", f"{artifact.target} {artifact.precision} on {session.runner.label}")


def verify(registry: Registry, model_file: Path, device: str | None = None,
           target_options: dict[str, Any] | None = None) -> VerifyResult:
    """Run ``model_file`` on this machine on the reference inputs stored in it and compare with
    the stored onnxruntime fp32 outputs; writes the report next to the artifact."""
    artifact = Artifact.load(model_file)
    # a missing, damaged or foreign reference is refused before a device opens or a simulator starts
    reference = stored_reference(artifact)
    session = open_session(registry, model_file, device=device, target_options=target_options)
    with session.runner:
        report = reference_report(session, reference)
        label, simulated = session.runner.label, session.runner.simulated
    doc = {"artifact": str(artifact.path), "model": artifact.model, "variant": artifact.variant,
           "target": artifact.target, "precision": artifact.precision, "runner": label, "simulated": simulated,
           "device": device, "verdict": "pass" if report.passed else "breach", **report.to_dict(),
           "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "hrdeploy_version": __version__}
    path = report_path(artifact)
    atomic_write_json(path, doc)
    return VerifyResult(report, doc, path)
