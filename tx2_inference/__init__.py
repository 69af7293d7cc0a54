"""tx2_inference: TensorFlow-trained detectors on a robot, through TensorRT or ONNX Runtime.

The inference core (pre-processing, decoders, backends, the double-buffered executor) is plain
Python and numpy with no ROS import; the lifecycle node is thin glue around it.
"""

__version__ = '0.1.0'
