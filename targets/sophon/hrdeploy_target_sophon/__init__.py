"""hrdeploy target plugin for Sophgo Sophon BM1684 / BM1684X.

TPU-MLIR (a Python 3.10 toolchain, provisioned into its own virtual environment by
``hrdeploy toolchain install sophon``) compiles ONNX to bmodels; a Sophon device runs them
through ``sophon.sail``, and without one the toolchain's cmodel simulator runs them in a
long-lived worker process.
"""
from __future__ import annotations

__version__ = "0.1.0"
