"""The offline converter: TensorFlow -> ONNX -> TensorRT engine / INT8 QDQ ONNX / TFLite.

`tx2-convert` (``python -m tx2_inference.convert``) is the entry point; see ``cli.py``.

The CLI, the engine path and the quantizer run on the robot (Python 3.6, no TensorFlow). The
TensorFlow stages run only on a workstation and may use newer Python: they live in the folder
``workstation/``, which the Python 3.6 check (test/test_python36.py) exempts and the only
place allowed to import TensorFlow (test/test_import_rules.py).
"""
