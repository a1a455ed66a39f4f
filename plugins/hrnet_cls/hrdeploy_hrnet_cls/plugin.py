"""hrdeploy entry point of the HRNet-C plugin (imports no torch)."""
from __future__ import annotations

from hrdeploy import hookimpl
from hrdeploy.model import ModelSpec


@hookimpl
def hrdeploy_models() -> list[ModelSpec]:
    from .spec import HRNetClsSpec

    return [HRNetClsSpec()]
