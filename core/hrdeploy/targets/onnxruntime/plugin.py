"""Entry point of the built-in onnxruntime target (group ``hrdeploy.targets``)."""
from __future__ import annotations

from hrdeploy import hookimpl


@hookimpl
def hrdeploy_targets() -> list:
    from .target import OnnxRuntimeTarget

    return [OnnxRuntimeTarget()]
