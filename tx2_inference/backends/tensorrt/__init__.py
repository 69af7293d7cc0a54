"""The TensorRT backend: the runtime, the one place that knows API versions, CUDA, the build."""
