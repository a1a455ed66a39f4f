"""The embedded default target: ONNX Runtime on the CPU (CUDA/TensorRT providers when installed)."""
