"""Opening a MODEL_FILE for predict / eval / bench / verify: the artifact, its model plugin,
variant, target and runner, and the model's pipeline configured for that runner."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .artifact import Artifact
from .errors import UserError
from .model import ModelSpec, Pipeline, PipelineRuntime, Variant, parse_option
from .plugins import Registry
from .target import Runner, Target


@dataclass
class Session:
    artifact: Artifact
    spec: ModelSpec
    variant: Variant
    target: Target
    runner: Runner
    #: the target options the runner was opened with (the manifest's, then the command line's)
    options: dict[str, Any] = field(default_factory=dict)

    def __enter__(self) -> "Session":
        self.runner.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.runner.__exit__(*exc)

    def pipeline(self, options: dict[str, Any] | None = None) -> Pipeline:
        sizes = self.runner.sizes or self.artifact.sizes
        runtime = PipelineRuntime(
            sizes=tuple(tuple(s) for s in sizes) if sizes and not self.artifact.input.fixed_size else None,
            files=self.artifact.files(), target=self.target.name)
        return self.spec.pipeline(self.variant, check_model_options(self.spec, options), runtime=runtime)

    def describe(self) -> dict[str, Any]:
        return {"model": self.spec.name, "variant": self.variant.name, "task": self.spec.task,
                "target": self.target.name, "precision": self.artifact.precision,
                "artifact": str(self.artifact.path), "runner": self.runner.label,
                "simulated": self.runner.simulated, "threads": self.runner.threads}

    def close(self) -> None:
        self.runner.close()


COMMON_OPTIONS = {"top_k", "interpolation", "labels", "skip_missing"}


def check_model_options(spec: ModelSpec, options: dict[str, Any] | None) -> dict[str, Any]:
    """Refuse options the model does not declare; turn command-line strings into the
    declared types (``--opt flip=false`` must arrive as False, not as a true string)."""
    opts = {k: v for k, v in (options or {}).items() if v is not None}
    unknown = set(opts) - set(spec.options) - COMMON_OPTIONS
    if unknown:
        raise UserError(f"model {spec.name!r} has no option {', '.join('--' + u.replace('_', '-') for u in sorted(unknown))}",
                        "its options: " + (", ".join(spec.options) or "none"))
    for key, value in opts.items():
        if key in spec.options and isinstance(value, str):
            try:
                opts[key] = parse_option(spec.options[key], value)
            except UserError as e:
                raise UserError(f"option {key}: {e}") from None
    return opts


def open_session(registry: Registry, model_file: Path, device: str | None = None,
                 target_options: dict[str, Any] | None = None) -> Session:
    artifact = Artifact.load(model_file)
    spec = registry.model(artifact.model)
    variant = spec.variant(artifact.variant)
    target = registry.target(artifact.target)
    opts = target.check_options(target_options)
    if artifact.manifest.get("dry_run"):
        raise UserError(f"{model_file} is a dry-run plan: nothing was compiled",
                        "compile it with 'hrdeploy convert --from-plan' on the machine with the toolchain")
    # before any runtime reads a file: nothing changed since conversion (sha256), reference matches
    artifact.check_integrity()
    run_opts = {**artifact.manifest.get("target_options", {}), **opts}
    runner = target.open(artifact, device=device, options=run_opts)
    return Session(artifact, spec, variant, target, runner, run_opts)
