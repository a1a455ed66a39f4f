"""Entry point of the Sophon target (group ``hrdeploy.targets``): imports nothing heavy."""
from __future__ import annotations

from hrdeploy import hookimpl


@hookimpl
def hrdeploy_targets() -> list:
    from .target import SophonTarget

    return [SophonTarget()]
