"""The offline converter: TensorFlow -> ONNX -> TensorRT engine / INT8 QDQ ONNX / TFLite.

`tx2-convert` (``python -m tx2_inference.convert``) is the entry point; see ``cli.py``.

The CLI, the engine path and the image helpers run on the robot (Python 3.6, no TensorFlow).
The TensorFlow stages run only on a workstation and may use newer Python: they are listed in
:data:`WORKSTATION_MODULES` (file names in this folder), the one place the Python 3.6
compatibility check (test/test_python36.py) reads its exemptions from.
"""

WORKSTATION_MODULES = (
    'workstation/tf_onnx.py',  # TensorFlow -> ONNX (tf2onnx), validated against TensorFlow
    'workstation/tf_lite.py',  # TensorFlow -> TFLite
    'workstation/compare.py',  # TF vs converted outputs: per-output tolerances, detections
    'workstation/tf_runner.py',  # runs the original TensorFlow graph (the reference)
    'workstation/evaluate.py',  # mAP / agreement / latency report (TF, pycocotools, matplotlib)
)
