"""Entry point ``ascend`` of the group ``hrdeploy.targets``."""
from __future__ import annotations

from hrdeploy import hookimpl


@hookimpl
def hrdeploy_targets() -> list:
    from .target import AscendTarget

    return [AscendTarget()]


@hookimpl
def hrdeploy_commands(cli) -> None:
    from .workflow import register

    register(cli)
