"""hrdeploy: HRNet-family vision models from a PyTorch checkpoint to a measured deployment.

Plugin authors need :data:`hookimpl`, the base classes in :mod:`hrdeploy.model` and
:mod:`hrdeploy.target`, and the contract tests in :mod:`hrdeploy.testing`.
"""
from __future__ import annotations

import pluggy

__version__ = "0.1.0"

#: Decorator for plugin hook implementations (see :mod:`hrdeploy.hookspecs`).
hookimpl = pluggy.HookimplMarker("hrdeploy")

__all__ = ["__version__", "hookimpl"]
