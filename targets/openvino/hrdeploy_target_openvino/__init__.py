"""hrdeploy target plugin for Intel OpenVINO.

``convert`` turns the exported ONNX model into an OpenVINO IR (``model.xml`` + ``model.bin``)
with ``openvino.convert_model`` / ``save_model``: fp32 (execution forced to f32), fp16
(compressed weights), bf16 (on CPUs that have it) and int8 (NNCF post-training quantization
calibrated through the model's own preprocessing). ``open`` compiles the IR for CPU, GPU, NPU
or AUTO with a latency or throughput hint.
"""
from __future__ import annotations

__version__ = "0.1.0"
