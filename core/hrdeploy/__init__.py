"""hrdeploy: HRNet-family vision models from a PyTorch checkpoint to a measured deployment.

Users call the six verbs of the command line as functions — :func:`export`, :func:`convert`,
:func:`open`, :func:`evaluate`, :func:`bench`, :func:`verify` (see :mod:`hrdeploy.api`).
Plugin authors need :data:`hookimpl`, the base classes in :mod:`hrdeploy.model` and
:mod:`hrdeploy.target`, and the contract tests in :mod:`hrdeploy.testing`.
"""
from __future__ import annotations

import pluggy

__version__ = "0.1.0"

#: Decorator for plugin hook implementations (see :mod:`hrdeploy.hookspecs`).
hookimpl = pluggy.HookimplMarker("hrdeploy")

_API = ("export", "convert", "open", "evaluate", "bench", "verify")


def __getattr__(name: str):  # the API loads on first use: `import hrdeploy` stays cheap for plugins
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'hrdeploy' has no attribute {name!r}")


__all__ = ["__version__", "hookimpl", *_API]
