"""hrdeploy target plugin for VastAI (VA1 / SV100): vamc conversion (both YAML generations),
vaststreamx runtime, vamp benchmark, vasmi device query.

The vendor SDK is never imported at module level: ``vaststreamx`` is imported inside
:meth:`VastaiTarget.open`, the command-line tools are looked up on PATH when needed.
"""
from __future__ import annotations

__version__ = "0.1.0"
