"""The offline converter: TensorFlow -> ONNX -> TensorRT engine / INT8 QDQ ONNX / TFLite.

`tx2-convert` (``python -m tx2_inference.convert``) is the entry point; see ``cli.py``.

The CLI, the engine path and the image helpers run on the robot (Python 3.6, no TensorFlow).
The TensorFlow stages run only on a workstation and may use newer Python: they are listed in
:data:`WORKSTATION_MODULES` (paths relative to the repository root), the one place the
Python 3.6 compatibility check reads its exemptions from.
"""

WORKSTATION_MODULES = (
    'tx2_inference/convert/tf_onnx.py',
    'tx2_inference/convert/tf_lite.py',
    'tx2_inference/convert/tf_runner.py',
    'tx2_inference/convert/evaluate.py',
)
