"""Entry point of the ``dekr`` model plugin (imports no torch)."""
from __future__ import annotations

from hrdeploy import hookimpl


@hookimpl
def hrdeploy_models() -> list:
    from .spec import DEKRSpec

    return [DEKRSpec()]
