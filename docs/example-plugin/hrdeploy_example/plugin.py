"""The hook implementations: all hrdeploy needs to find the model and the target."""
from __future__ import annotations

from hrdeploy import hookimpl


@hookimpl
def hrdeploy_models() -> list:
    from .spec import TinyNetSpec

    return [TinyNetSpec()]


@hookimpl
def hrdeploy_targets() -> list:
    from .target import CopycatTarget

    return [CopycatTarget()]
