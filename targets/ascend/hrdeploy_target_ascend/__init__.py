"""hrdeploy target plugin for Huawei Ascend (CANN): ATC conversion, ais_bench runtime and
benchmark, npu-smi device detection.

Nothing here imports the vendor SDK at module level: ``ais_bench`` is imported inside
:meth:`AscendTarget.open`, the command-line tools are looked up on PATH when they are needed.
"""
from __future__ import annotations

__version__ = "0.1.0"
