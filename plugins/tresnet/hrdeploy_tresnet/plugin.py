"""Entry point of the hrdeploy-model-tresnet distribution (group ``hrdeploy.models``)."""
from __future__ import annotations

from hrdeploy import hookimpl
from hrdeploy.model import ModelSpec


@hookimpl
def hrdeploy_models() -> list[ModelSpec]:
    from .spec import TResNetSpec

    return [TResNetSpec()]
