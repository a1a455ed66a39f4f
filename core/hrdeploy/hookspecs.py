"""The hrdeploy plugin contract: the plugin author's manual.

A plugin is a Python module named by an entry point in one of two groups of its
distribution's ``pyproject.toml``::

    [project.entry-points."hrdeploy.models"]
    my_model = "my_package.plugin"

    [project.entry-points."hrdeploy.targets"]
    my_chip = "my_package.plugin"

``pip install`` the distribution and the module shows up in ``hrdeploy list``; nothing in
hrdeploy names it. The built-in ``onnxruntime`` target is registered the same way by the
``hrdeploy`` distribution itself.

The module implements some of the hooks below as plain functions decorated with
:data:`hrdeploy.hookimpl`::

    from hrdeploy import hookimpl

    @hookimpl
    def hrdeploy_models():
        return [MyModel()]

How a plugin is loaded:

* Each entry point is imported on its own (stevedore). An import error, or a hook
  implementation that does not match a spec below (a misspelled hook name, an argument the
  spec does not have), puts that plugin in the ``error`` state: ``hrdeploy list`` and
  ``hrdeploy doctor`` show its name, distribution, version and the error on one line, and
  every other plugin keeps working.
* ``HRDEPLOY_DISABLE_PLUGINS=name1,name2`` skips entry points by name (``hrdeploy list``
  shows them as ``disabled``); ``HRDEPLOY_DISABLE_PLUGIN_AUTOLOAD=1`` loads only the built-in
  target, which is what a plugin's own test suite may want.
* Objects are created when hrdeploy asks for them, which is at most once per process.
  Keep module import cheap: import torch inside ``ModelSpec.build`` and
  ``ModelSpec.load_weights`` only (deployment machines run eval/bench/predict without torch),
  and vendor SDKs inside ``Target.probe``/``Target.open``.

What the returned objects must provide is documented on the base classes
:class:`hrdeploy.model.ModelSpec` (with :class:`~hrdeploy.model.Pipeline`,
:class:`~hrdeploy.model.Dataset`, :class:`~hrdeploy.model.Metric`) and
:class:`hrdeploy.target.Target` (with :class:`~hrdeploy.target.Runner`). The reusable
contract tests in :mod:`hrdeploy.testing` check a plugin against them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # only for the signatures: no import cost at run time
    from pathlib import Path

    from .artifact import Artifact
    from .model import ModelSpec
    from .results import BenchResult, EvalResult, ExportResult
    from .target import Target

hookspec = pluggy.HookspecMarker("hrdeploy")


@hookspec
def hrdeploy_models() -> list[ModelSpec]:
    """Return the models this plugin provides.

    Called once, the first time hrdeploy needs the model registry (``list``, ``export``,
    ``predict``, ``eval``, ...). Return a list of :class:`hrdeploy.model.ModelSpec`
    instances; each one's ``name`` is what users type (``hrdeploy export hrnet_cls``) and
    must be unique across installed plugins (a clash is reported and the later one is
    skipped). Raising here puts the plugin in the error state with the exception's text.
    """


@hookspec
def hrdeploy_targets() -> list[Target]:
    """Return the deployment targets this plugin provides.

    Called once, the first time hrdeploy needs the target registry. Return a list of
    :class:`hrdeploy.target.Target` instances; ``name`` is what users pass to ``--target``.
    Do not touch the device or the toolchain here: that is what ``Target.probe`` is for.
    """


@hookspec
def hrdeploy_commands(cli: Any) -> None:
    """Add subcommands to the ``hrdeploy`` command line.

    ``cli`` is the root :class:`typer.Typer` application: register commands with
    ``@cli.command()`` or a group with ``cli.add_typer(group, name="mychip")`` (a group named
    after the plugin keeps names from clashing). Called once per invocation, before the
    command line is parsed; keep it cheap (import heavy modules inside the commands). A
    command reports a problem by raising :class:`hrdeploy.errors.UserError` (one line, exit 2)
    and a breach with ``typer.Exit(1)``, like the built-in commands. The ascend target adds
    ``hrdeploy ascend preprocess|score`` this way.
    """


@hookspec
def hrdeploy_after_export(onnx_path: Path, report: dict[str, Any], result: ExportResult) -> None:
    """Called after an export wrote ``onnx_path`` and checked it — by ``hrdeploy export`` and
    by a library call of :func:`hrdeploy.export` alike.

    ``report`` is ``result.to_json()``: the model, variant, the ONNX metadata and the parity
    figures against PyTorch (as printed); ``result`` is the typed
    :class:`hrdeploy.results.ExportResult`. Take only the arguments you need. Return value
    ignored. Use it for reporting (upload, registry entry, notification) without touching the
    core.
    """


@hookspec
def hrdeploy_after_convert(artifact: Artifact) -> None:
    """Called after a conversion wrote an artifact folder (``hrdeploy convert``, ``convert
    --from-plan`` or a library call of :func:`hrdeploy.convert`; not for ``--dry-run``).

    ``artifact.manifest`` holds the commands run, the toolchain version and the parity of
    the converted model against the ONNX model. Return value ignored.
    """


@hookspec
def hrdeploy_after_eval(result: dict[str, Any], result_path: Path, outcome: EvalResult) -> None:
    """Called after an evaluation wrote its result JSON (``hrdeploy eval`` or a library call of
    :func:`hrdeploy.evaluate`): ``result`` holds the metric figures, model, target, precision
    and every pre/post-processing parameter; ``outcome`` is the typed
    :class:`hrdeploy.results.EvalResult` (with the ``--compare`` reports). Return value ignored."""


@hookspec
def hrdeploy_after_bench(report: dict[str, Any], result: BenchResult) -> None:
    """Called after a benchmark measured all batch sizes (``hrdeploy bench`` or a library call
    of :func:`hrdeploy.bench`), with the same report it writes as JSON (``results`` holds one
    row per batch size) and the typed :class:`hrdeploy.results.BenchResult`. Return value
    ignored."""
