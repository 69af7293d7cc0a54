"""The naive detector node the benchmark compares against: what the usual snippets give.

Everything happens in the subscription callback, one frame after another on one thread:
convert the message to an array (a copy, as cv_bridge makes), resize it, run the session,
decode, publish. The image subscription is reliable with a queue of 10, the rclpy default of
``create_subscription(Image, topic, callback, 10)``. When frames come faster than the callback
finishes, they wait in that queue: the answers are late by up to ten frames' work, which is
what the benchmark shows against the inference node's bounded latency.

Only the architecture is naive: the decoder and the message are the package's own, so the
comparison measures where the work runs, not a different decoding. With ONNX Runtime it runs
a plain ``InferenceSession.run`` as the snippets do; with another backend, the package's
backend synchronously (``launch`` then ``wait``).

``python -m tx2_inference.tools.bench.naive_node --model models/ssdlite_person.onnx``
(subscribes to ``image``, publishes ``detections``: remap them with ``--ros-args -r``).
"""

import argparse
import sys
from typing import Any, List, Optional

import cv2
import numpy as np
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from tx2_inference.backends import open_backend
from tx2_inference.core.decoders import create_decoder, DetectionParams
from tx2_inference.core.model_config import ModelConfig
from tx2_inference.ros.messages import detections_to_msg
from tx2_inference.ros.spin import run_node


class NaiveNode(Node):
    """Detect in each image inside the subscription callback (see the module docstring)."""

    def __init__(self, model_path: str, config_path: Optional[str] = None,
                 backend: str = 'onnxruntime', threads: Optional[int] = None) -> None:
        """Load the model and subscribe to ``image`` (reliable, queue of 10)."""
        super().__init__('naive_node')
        self._backend = open_backend(model_path, backend, threads=threads)
        config = ModelConfig.for_model(model_path, config_path).resolve(
            self._backend.inputs, self._backend.outputs)
        self._input_name = config.input['name']
        self._height, self._width = config.input['size']
        if config.input['layout'] != 'nhwc' or config.input['color'] != 'rgb':
            raise SystemExit('the naive node handles NHWC RGB models only')
        self._dtype = [t.dtype for t in self._backend.inputs if t.name == self._input_name][0]
        self._scale = float(config.input.get('scale', 1.0))
        self._mean = np.asarray(config.input.get('mean', [0.0] * 3), np.float32)
        self._std = np.asarray(config.input.get('std', [1.0] * 3), np.float32)
        self._labels = list(config.labels)
        self._decoder = create_decoder(config.decoder, config.labels,
                                       (self._height, self._width))
        self._params = DetectionParams()
        self._session: Any = None
        self._slot: Any = None
        if self._backend.name == 'onnxruntime':
            import onnxruntime
            options = onnxruntime.SessionOptions()
            if threads:
                options.intra_op_num_threads = int(threads)
            self._session = onnxruntime.InferenceSession(
                model_path, sess_options=options, providers=['CPUExecutionProvider'])
            self._backend.close()  # only its tensor descriptions were needed
        else:
            self._slot = self._backend.create_slot(
                0, {self._input_name: (1, self._height, self._width, 3)})
        self._pub = self.create_publisher(Detection2DArray, 'detections', 10)
        self.create_subscription(Image, 'image', self._on_image, 10)
        self.frames = 0

    def _on_image(self, msg: Image) -> None:
        # Convert (a copy, as cv_bridge's imgmsg_to_cv2 makes).
        frame = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, -1).copy()
        if msg.encoding == 'bgr8':
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        # Preprocess.
        resized = cv2.resize(frame, (self._width, self._height))
        if self._dtype == np.uint8:
            blob = resized[np.newaxis]
        else:
            blob = ((resized.astype(np.float32) * self._scale - self._mean) /
                    self._std)[np.newaxis].astype(self._dtype)
        # Run.
        if self._session is not None:
            values = self._session.run(None, {self._input_name: blob})
            outputs = {out.name: value for out, value in zip(self._session.get_outputs(),
                                                              values)}
        else:
            np.copyto(self._slot.inputs[self._input_name], blob)
            self._backend.run(self._slot)
            outputs = self._slot.outputs
        # Decode: boxes in model-input pixels -> source pixels.
        detections = self._decoder(outputs, self._params)
        boxes = detections.boxes * np.array([msg.width / float(self._width),
                                             msg.height / float(self._height)] * 2,
                                            np.float32)
        # Publish.
        self._pub.publish(detections_to_msg(msg.header, boxes, detections.scores,
                                            detections.labels))
        self.frames += 1

    def destroy_node(self) -> None:
        """Release the model, then destroy the node."""
        if self._slot is not None:
            self._backend.release_slot(self._slot)
            self._slot = None
        self._backend.close()
        self._session = None
        super().destroy_node()


def main(args: Optional[List[str]] = None) -> int:
    """Spin the naive node until interrupted."""
    argv = sys.argv if args is None else args
    parser = argparse.ArgumentParser(prog='python -m tx2_inference.tools.bench.naive_node',
                                     description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', required=True, help='model file')
    parser.add_argument('--config', help='model config (default: the .yaml beside the model)')
    parser.add_argument('--backend', default='onnxruntime', help='backend (%(default)s)')
    parser.add_argument('--threads', type=int, help='CPU threads for the runtime')
    options = parser.parse_args(rclpy.utilities.remove_ros_args(argv)[1:])
    return run_node(lambda: NaiveNode(options.model, options.config, options.backend,
                                      options.threads), argv)


if __name__ == '__main__':
    sys.exit(main())
