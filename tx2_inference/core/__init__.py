"""The inference core: model config, pre-processing, decoders, NMS, drawing (numpy/OpenCV only)."""
