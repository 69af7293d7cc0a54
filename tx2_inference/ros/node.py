"""
The lifecycle node: image topics in, vision_msgs detections out.

``inference_node`` is an rclpy `LifecycleNode` and thin glue over the `Detector` facade:

- configure: read and check the parameters, load the model (`Detector`), create the publishers.
  A problem the user can fix (a missing model file, an unknown backend, a config that does not
  fit the model, a bad topic list) returns FAILURE with a message naming the file or parameter
  and the fix; the node stays unconfigured and configures once the parameter is fixed.
- activate: subscribe to every camera and switch the publishers on; publish `LabelInfo`.
- deactivate: stop taking frames, drain the frames in flight and publish their results.
- cleanup: release the model, its buffers and GPU memory; shutdown works from any state.

The node never triggers its own transitions: launch (``autostart``) or an operator does.

Frames are converted without a copy where the layout allows (`ros_image`) and submitted to the
detector, which never blocks; results arrive on the detector's completion thread, in order,
and are published from there (rclpy publishers are thread-safe).
"""

import collections
import os
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
import numpy as np
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
import rclpy
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions
from rclpy.validate_topic_name import validate_topic_name
from sensor_msgs.msg import CompressedImage, Image
from vision_msgs.msg import (
    Detection2D,
    Detection2DArray,
    LabelInfo,
    ObjectHypothesisWithPose,
    VisionClass,
)

from tx2_inference.core.visualize import draw_detections
from tx2_inference.errors import ConfigError, FrameError, UserError
from tx2_inference.ros.image import array_to_image_msg, compressed_to_array, image_to_array
from tx2_inference.tools.node_client import spin_until_shutdown

try:  # rclpy of Humble and newer; older ones return None for an unset parameter
    from rclpy.exceptions import ParameterUninitializedException
except ImportError:  # depends on the ROS distribution
    ParameterUninitializedException = LookupError

NODE_NAME = 'inference_node'
DEFAULT_MODEL = 'ssdlite_person.onnx'
BACKENDS = ('auto', 'tensorrt', 'onnxruntime', 'tflite')
PRECISIONS = ('fp32', 'fp16', 'int8')
TRANSPORTS = ('raw', 'compressed')
DRAIN_TIMEOUT_S = 5.0
DIAGNOSTICS_PERIOD_S = 1.0
LATENCY_SAMPLES = 500

# Parameters that need a reconfigure: settable only while unconfigured.
RECONFIGURE = ('model_path', 'model_config', 'backend', 'precision', 'engine_cache_dir',
               'image_topics', 'input_transport', 'executor_depth', 'cpu_threads')
# Parameters applied to the next frame.
LIVE = ('score_threshold', 'nms_iou_threshold', 'max_detections', 'class_allowlist',
        'publish_debug_image')


def default_model_path() -> str:
    """Return the bundled model: the package share's ``models/``, else the source tree's."""
    # What ament_index_python's get_package_share_directory does, without the dependency.
    for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        marker = os.path.join(prefix, 'share', 'ament_index', 'resource_index', 'packages',
                              'tx2_inference')
        if prefix and os.path.isfile(marker):
            candidate = os.path.join(prefix, 'share', 'tx2_inference', 'models', DEFAULT_MODEL)
            if os.path.isfile(candidate):
                return candidate
    source = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(source, 'models', DEFAULT_MODEL)


def _descriptor(description: str, read_only_when_configured: bool = False,
                floating: Optional[Tuple[float, float]] = None,
                integer: Optional[Tuple[int, int]] = None,
                choices: Sequence[str] = ()) -> ParameterDescriptor:
    """Build a ParameterDescriptor; ranges make rclpy reject out-of-range values itself."""
    constraints = []
    if choices:
        constraints.append('one of: ' + ', '.join(choices))
    if read_only_when_configured:
        constraints.append('read-only while configured: deactivate and clean up the node, set '
                           'it, then configure again')
    descriptor = ParameterDescriptor(description=description,
                                     additional_constraints='; '.join(constraints))
    if floating is not None:
        descriptor.floating_point_range = [
            FloatingPointRange(from_value=floating[0], to_value=floating[1], step=0.0)]
    if integer is not None:
        descriptor.integer_range = [
            IntegerRange(from_value=integer[0], to_value=integer[1], step=1)]
    return descriptor


# name -> (default, descriptor). class_allowlist has no default (unset: every class).
PARAMETERS = collections.OrderedDict([
    ('model_path', (None, _descriptor(
        'Model file: a TensorRT .engine, an .onnx (TensorRT engine built and cached on a GPU, '
        "else ONNX Runtime) or a .tflite. Default and empty: the package share's models/" +
        DEFAULT_MODEL + '.', True))),
    ('model_config', ('', _descriptor(
        'Model config YAML (input layout, decoder, labels). Empty: <model_path without '
        'extension>.yaml beside the model, else auto-detected.', True))),
    ('backend', ('auto', _descriptor(
        'Inference runtime. auto: TensorRT where a GPU and TensorRT are present, else ONNX '
        'Runtime (or TFLite for a .tflite).', True, choices=BACKENDS))),
    ('precision', ('fp16', _descriptor(
        'TensorRT precision of an engine built from ONNX; CPU runtimes run the model as '
        'it is.', True, choices=PRECISIONS))),
    ('engine_cache_dir', ('', _descriptor(
        "Folder for TensorRT engines built from ONNX. Empty: the detector's default cache.",
        True))),
    ('image_topics', (['image_raw'], _descriptor(
        'Camera image topics, one model for all. Each camera publishes <its namespace>/'
        'detections, <its namespace>/label_info and <its namespace>/debug_image, so put each '
        'under its own namespace (cam0/image_raw, cam1/image_raw).', True))),
    ('input_transport', ('raw', _descriptor(
        'raw: sensor_msgs/Image on each topic; compressed: sensor_msgs/CompressedImage (jpeg, '
        'png) on <topic>/compressed.', True, choices=TRANSPORTS))),
    ('executor_depth', (2, _descriptor(
        'Frames in flight (slots with their own buffers and stream); a newer frame replaces '
        'a waiting one when all are busy.', True, integer=(1, 8)))),
    ('cpu_threads', (0, _descriptor(
        "Threads per CPU inference (ONNX Runtime, TFLite); 0: the runtime's default.", True,
        integer=(0, 64)))),
    ('score_threshold', (0.5, _descriptor(
        'Minimum score of a published detection; applies to the next frame.',
        floating=(0.0, 1.0)))),
    ('nms_iou_threshold', (0.45, _descriptor(
        'Non-maximum suppression: a box overlapping a better box of its class by more than '
        'this IoU is dropped; applies to the next frame.', floating=(0.0, 1.0)))),
    ('max_detections', (100, _descriptor(
        'Most detections per frame, best first; applies to the next frame.',
        integer=(1, 10000)))),
    ('class_allowlist', (Parameter.Type.STRING_ARRAY, _descriptor(
        'Labels to publish (names from the model config); unset or empty: every class. '
        'Applies to the next frame.'))),
    ('publish_debug_image', (True, _descriptor(
        'Publish <camera namespace>/debug_image with boxes and labels drawn; drawn only '
        'while someone subscribes. Applies to the next frame.'))),
])


class _Tag(object):
    """What a frame carries through the detector: where it came from and when."""

    __slots__ = ('camera', 'header', 'received_ns', 'image', 'color')

    def __init__(self, camera: '_Camera', header: Any, received_ns: int,
                 image: Optional[np.ndarray], color: str) -> None:
        """Store the frame's origin; ``image`` only when a debug image will be drawn."""
        self.camera = camera
        self.header = header
        self.received_ns = received_ns
        self.image = image
        self.color = color


class _Camera(object):
    """One input topic, its publishers and its counters (guarded by ``lock``)."""

    def __init__(self, image_topic: str) -> None:
        """Name the camera's topics, under its image topic's namespace; the node creates them."""
        self.image_topic = image_topic
        namespace = camera_namespace(image_topic)
        prefix = namespace.rstrip('/') + '/' if namespace else ''
        self.detections_topic = prefix + 'detections'
        self.label_info_topic = prefix + 'label_info'
        self.debug_topic = prefix + 'debug_image'
        self.subscription = None  # type: Any
        self.detections_pub = None  # type: Any
        self.label_info_pub = None  # type: Any
        self.debug_pub = None  # type: Any
        self.lock = threading.Lock()
        self.frames_in = 0
        self.frames_out = 0
        self.debug_images = 0
        self.dropped = collections.Counter()  # type: collections.Counter
        self.latencies_ms = collections.deque(maxlen=LATENCY_SAMPLES)  # type: collections.deque
        self.last_rates = (0, 0, time.monotonic())  # frames_in, frames_out, when


def sensor_data_qos() -> QoSProfile:
    """Return the image subscriptions' default QoS: best effort, keep last 1, volatile."""
    return QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                      reliability=ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.VOLATILE)


def camera_namespace(image_topic: str) -> str:
    """Return the namespace of an image topic: ``cam0/image_raw`` -> ``cam0``."""
    head = image_topic.rpartition('/')[0]
    return head if head else ('/' if image_topic.startswith('/') else '')


def detections_to_msg(header: Any, boxes: np.ndarray, scores: np.ndarray,
                      labels: Sequence[str]) -> Detection2DArray:
    """
    Build a `Detection2DArray` (empty when there are no boxes).

    :param header: the source image's header (stamp and frame_id are kept).
    :param boxes: float [N, 4] x1, y1, x2, y2 in source-image pixels.
    :param scores: float [N].
    :param labels: N label strings, the hypotheses' ``class_id``.
    :returns: the message, one `Detection2D` per box with one hypothesis.
    """
    msg = Detection2DArray(header=header)
    for (x1, y1, x2, y2), score, label in zip(boxes.tolist(), scores.tolist(), labels):
        detection = Detection2D(header=header)
        detection.bbox.center.position.x = (x1 + x2) / 2.0
        detection.bbox.center.position.y = (y1 + y2) / 2.0
        detection.bbox.size_x = x2 - x1
        detection.bbox.size_y = y2 - y1
        hypothesis = ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id = str(label)
        hypothesis.hypothesis.score = float(score)
        detection.results.append(hypothesis)
        msg.detections.append(detection)
    return msg


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Return the nearest-rank percentile of sorted values (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, int(round(fraction * len(sorted_values))) - 1))
    return float(sorted_values[index])


class InferenceNode(LifecycleNode):
    """Serve image topics through one detector and publish vision_msgs detections."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        """Declare the parameters; everything else happens in the lifecycle transitions."""
        self._detector = None  # type: Optional[Any]
        self._cameras = []  # type: List[_Camera]
        self._configured = False
        self._active = False
        self._finalized = False
        self._last_error = ''
        self._live = {}  # type: Dict[str, Any]
        self._diagnostics_pub = None  # type: Optional[Any]
        self._diagnostics_timer = None  # type: Optional[Any]
        self._startup_errors = {}  # type: Dict[str, str]
        super().__init__(node_name, **kwargs)
        # Callbacks first, so values from the command line or a params file are checked too.
        self.add_on_set_parameters_callback(self._validate_parameters)
        if hasattr(self, 'add_post_set_parameters_callback'):
            self.add_post_set_parameters_callback(self._apply_parameters)
        for name, (default, descriptor) in PARAMETERS.items():
            self._declare(name, default_model_path() if name == 'model_path' else default,
                          descriptor)
        for name in LIVE:
            self._live[name] = self._parameter_value(name)
        # /diagnostics is published in every state, so an operator sees why a configure failed.
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._diagnostics_timer = self.create_timer(DIAGNOSTICS_PERIOD_S,
                                                    self._publish_diagnostics)

    @property
    def finalized(self) -> bool:
        """Return whether the shutdown transition ran (the node is finalized)."""
        return self._finalized

    # ---------------------------------------------------------------- parameters

    def _declare(self, name: str, default: Any, descriptor: ParameterDescriptor) -> None:
        """Declare a parameter; a bad startup value falls back to the default, and is kept."""
        try:
            self.declare_parameter(name, default, descriptor)
        except (InvalidParameterTypeException, InvalidParameterValueException) as error:
            # Never die on a bad parameter: configure fails, naming it, until it is set again.
            self.declare_parameter(name, default, descriptor, ignore_override=True)
            self._startup_errors[name] = str(error)
            self.get_logger().error(
                'parameter {} was rejected at startup ({}); configure will fail until it is '
                'set to a valid value (ros2 param set {} {} <value>)'.format(
                    name, error, self.get_fully_qualified_name(), name))

    def _parameter_value(self, name: str) -> Any:
        """Return a parameter's value; None for an unset one (class_allowlist)."""
        try:
            return self.get_parameter(name).value
        except ParameterUninitializedException:
            return None

    def _validate_parameters(self, parameters: List[Parameter]) -> SetParametersResult:
        """On-set callback: accept or reject each value with a reason (no side effects)."""
        for parameter in parameters:
            reason = self._check_parameter(parameter.name, parameter.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        if not hasattr(self, 'add_post_set_parameters_callback'):
            self._apply_parameters(parameters)  # rclpy before Iron: no post-set callbacks
        return SetParametersResult(successful=True)

    def _check_parameter(self, name: str, value: Any) -> str:
        """Return why a value is rejected, or '' when it is accepted."""
        if name in RECONFIGURE and self._configured:
            return ('{} is read-only while the node is configured: deactivate and clean up '
                    'the node, set {}, then configure again.'.format(name, name))
        if name == 'backend' and value not in BACKENDS:
            return 'backend {!r} is not one of {}.'.format(value, ', '.join(BACKENDS))
        if name == 'precision' and value not in PRECISIONS:
            return 'precision {!r} is not one of {}.'.format(value, ', '.join(PRECISIONS))
        if name == 'input_transport' and value not in TRANSPORTS:
            return 'input_transport {!r} is not one of {}.'.format(value, ', '.join(TRANSPORTS))
        if name == 'image_topics':
            return _check_topics(value)
        if name == 'class_allowlist' and value and self._detector is not None:
            unknown = [label for label in value if label not in self._detector.labels]
            if unknown:
                return 'class_allowlist names labels the model does not have: {}; its labels ' \
                       'are: {}.'.format(', '.join(unknown), ', '.join(self._detector.labels))
        return ''

    def _apply_parameters(self, parameters: List[Parameter]) -> None:
        """Post-set callback: live values reach the detector for the next frame."""
        changed = False
        for parameter in parameters:
            self._startup_errors.pop(parameter.name, None)
            if parameter.name in LIVE:
                self._live[parameter.name] = parameter.value
                changed = True
        if changed and self._detector is not None:
            self._detector.params = self._detection_params()
            if any(p.name == 'score_threshold' for p in parameters) and self._active:
                self._publish_label_info()

    def _detection_params(self) -> Any:
        """Return the DetectionParams of the current live parameters."""
        from tx2_inference.core.decoders import DetectionParams
        allowlist = self._live.get('class_allowlist') or None
        return DetectionParams(score_threshold=self._live['score_threshold'],
                               iou_threshold=self._live['nms_iou_threshold'],
                               max_detections=self._live['max_detections'],
                               class_allowlist=list(allowlist) if allowlist else None)

    # ---------------------------------------------------------------- lifecycle

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """
        Load the model and create the publishers.

        :returns: SUCCESS when configured; FAILURE (back to unconfigured, nothing held) when a
            parameter or file must be fixed, with a log message saying which and how.
        """
        try:
            self._configure()
        except UserError as error:
            message = str(error).rstrip()
            if 'configure again' not in message:
                message += ' Then configure again (ros2 lifecycle set {} configure).'.format(
                    self.get_fully_qualified_name())
            return self._fail('configure', message)
        except Exception as error:  # a model or runtime problem no UserError describes
            return self._fail('configure', '{}: {}'.format(type(error).__name__, error))
        self._configured = True
        self._last_error = ''
        self.get_logger().info('configured: {} on {} ({}), cameras: {}'.format(
            self._detector.model_path, self._detector.backend_name, self._detector.precision,
            ', '.join(c.image_topic for c in self._cameras)))
        return TransitionCallbackReturn.SUCCESS

    def _fail(self, transition: str, message: str) -> TransitionCallbackReturn:
        """Log why a transition failed, release everything, and return FAILURE."""
        self._last_error = '{} failed: {}'.format(transition, message)
        self.get_logger().error(self._last_error)
        self._release()
        return TransitionCallbackReturn.FAILURE

    def _configure(self) -> None:
        """Check the parameters, open the detector and create the publishers."""
        if self._startup_errors:
            raise ConfigError('parameters rejected at startup: {}. Set each to a valid value '
                              '(ros2 param set {} <name> <value>) and configure again.'.format(
                                  '; '.join('{} ({})'.format(k, v) for k, v in
                                            sorted(self._startup_errors.items())),
                                  self.get_fully_qualified_name()))
        model_path = os.path.expanduser(self._parameter_value('model_path') or
                                        default_model_path())
        if not os.path.isfile(model_path):
            raise ConfigError(
                'model_path {!r} does not exist: set the parameter model_path to an .onnx, '
                '.engine or .tflite file (ros2 param set {} model_path /path/to/model.onnx) '
                'and configure again.'.format(model_path, self.get_fully_qualified_name()))
        config_path = self._parameter_value('model_config') or None
        if config_path is not None:
            config_path = os.path.expanduser(config_path)
            if not os.path.isfile(config_path):
                raise ConfigError(
                    'model_config {!r} does not exist: set the parameter model_config to the '
                    "model's YAML, or to '' to use <model>.yaml beside the model, and "
                    'configure again.'.format(config_path))
        topics = list(self._parameter_value('image_topics'))
        reason = _check_topics(topics)
        if reason:
            raise ConfigError(reason)
        self._cameras = [_Camera(topic) for topic in topics]

        from tx2_inference.detector import Detector
        self._detector = Detector(
            model_path, config_path=config_path, backend=self._parameter_value('backend'),
            precision=self._parameter_value('precision'),
            engine_cache_dir=self._parameter_value('engine_cache_dir') or None,
            depth=self._parameter_value('executor_depth'),
            threads=self._parameter_value('cpu_threads') or None, on_result=self._on_result,
            on_error=self._on_frame_error)
        reason = self._check_parameter('class_allowlist', self._live.get('class_allowlist'))
        if reason:
            raise ConfigError(reason + ' Set the parameter class_allowlist and configure again.')
        self._detector.params = self._detection_params()

        for camera in self._cameras:
            latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
            camera.detections_pub = self.create_lifecycle_publisher(
                Detection2DArray, camera.detections_topic,
                QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE),
                qos_overriding_options=QoSOverridingOptions.with_default_policies())
            camera.label_info_pub = self.create_lifecycle_publisher(
                LabelInfo, camera.label_info_topic, latched)
            camera.debug_pub = self.create_lifecycle_publisher(
                Image, camera.debug_topic, QoSProfile(depth=1))

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """
        Subscribe to the cameras and switch the publishers on.

        :returns: SUCCESS, or FAILURE (still inactive) if a subscription cannot be created.
        """
        compressed = self._parameter_value('input_transport') == 'compressed'
        try:
            for camera in self._cameras:
                topic = camera.image_topic + '/compressed' if compressed else camera.image_topic
                # A new profile each time: the QoS overrides are written into it.
                camera.subscription = self.create_subscription(
                    CompressedImage if compressed else Image, topic,
                    lambda msg, camera=camera: self._on_image(msg, camera), sensor_data_qos(),
                    qos_overriding_options=QoSOverridingOptions.with_default_policies())
        except Exception as error:  # e.g. an invalid QoS override given as a parameter
            self._destroy_subscriptions()
            self._last_error = 'activate failed: {}'.format(error)
            self.get_logger().error(self._last_error + ': fix the qos_overrides parameters.')
            return TransitionCallbackReturn.FAILURE
        result = super().on_activate(state)
        self._active = True
        self._publish_label_info()
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop taking frames, publish the results of the frames in flight, switch off."""
        self._destroy_subscriptions()
        if self._detector is not None and not self._detector.drain(DRAIN_TIMEOUT_S):
            self.get_logger().warning('frames still in flight after {} s; their results are '
                                      'dropped'.format(DRAIN_TIMEOUT_S))
        self._active = False
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release the model, its buffers and GPU memory, and the publishers."""
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything, from any state; `main` then exits."""
        self._destroy_subscriptions()
        self._release()
        self._finalized = True
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything after an error; SUCCESS returns the node to unconfigured."""
        self._destroy_subscriptions()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _destroy_subscriptions(self) -> None:
        """Destroy the image subscriptions (no more frames)."""
        for camera in self._cameras:
            if camera.subscription is not None:
                self.destroy_subscription(camera.subscription)
                camera.subscription = None

    def _release(self) -> None:
        """Close the detector (joins its completion thread), then destroy the publishers."""
        self._active = False
        self._configured = False
        detector, self._detector = self._detector, None
        if detector is not None:
            try:
                detector.close()
            except Exception as error:  # closing must not stop the cleanup
                self.get_logger().error('closing the detector failed: {}'.format(error))
        for camera in self._cameras:
            for attribute in ('detections_pub', 'label_info_pub', 'debug_pub'):
                publisher = getattr(camera, attribute)
                if publisher is not None:
                    self.destroy_lifecycle_publisher(publisher)
                    setattr(camera, attribute, None)
        self._cameras = []

    # ---------------------------------------------------------------- frames

    def _on_image(self, msg: Any, camera: _Camera) -> None:
        """Convert a frame and hand it to the detector; never blocks, never raises."""
        received_ns = self.get_clock().now().nanoseconds
        with camera.lock:
            camera.frames_in += 1
        detector = self._detector
        if detector is None or not self._active:
            self._drop(camera, 'inactive')
            return
        try:
            if isinstance(msg, CompressedImage):
                array, color = compressed_to_array(msg)
            else:
                array, color = image_to_array(msg)
        except FrameError as error:
            self._drop(camera, 'bad_frame_' + getattr(error, 'reason', 'unknown'))
            self.get_logger().warning('dropped a frame from {}: {}'.format(
                camera.image_topic, error), throttle_duration_sec=5.0)
            return
        debug = (self._live.get('publish_debug_image') and camera.debug_pub is not None and
                 camera.debug_pub.get_subscription_count() > 0)
        tag = _Tag(camera, msg.header, received_ns, array if debug else None, color)
        try:
            detector.submit(array, color, tag)
        except Exception as error:  # the detector refused the frame (closed, bad shape)
            self._drop(camera, 'submit_error')
            self.get_logger().error('the detector refused a frame from {}: {}'.format(
                camera.image_topic, error), throttle_duration_sec=5.0)

    def _drop(self, camera: _Camera, reason: str) -> None:
        """Count a frame that produced no result, by reason."""
        with camera.lock:
            camera.dropped[reason] += 1

    def _on_result(self, tag: _Tag, detections: Any, timing: Dict[str, Any]) -> None:
        """Publish one frame's detections; called on the detector's completion thread."""
        camera = tag.camera
        publisher = camera.detections_pub
        if publisher is None:  # cleaned up while the frame was in flight
            return
        try:
            publisher.publish(detections_to_msg(tag.header, detections.boxes, detections.scores,
                                                detections.labels))
            now_ns = self.get_clock().now().nanoseconds
            stamp_ns = tag.header.stamp.sec * 10**9 + tag.header.stamp.nanosec
            start_ns = stamp_ns if stamp_ns > 0 else tag.received_ns
            with camera.lock:
                camera.frames_out += 1
                camera.latencies_ms.append((now_ns - start_ns) / 1e6)
            if tag.image is not None and camera.debug_pub is not None:
                canvas, encoding = draw_detections(tag.image, tag.color, detections.boxes,
                                                   detections.scores, detections.labels)
                camera.debug_pub.publish(array_to_image_msg(canvas, encoding, tag.header))
                with camera.lock:
                    camera.debug_images += 1
        except Exception as error:  # keep the completion thread alive
            self._drop(camera, 'publish_error')
            self.get_logger().error('publishing detections for {} failed: {}'.format(
                camera.image_topic, error), throttle_duration_sec=5.0)

    def _on_frame_error(self, tag: _Tag, error: BaseException) -> None:
        """Count a frame the detector could not process; called on its completion thread."""
        reason = getattr(error, 'reason', None)
        if reason is None:
            reason = 'frame_error' if isinstance(error, FrameError) else 'inference_error'
        self._drop(tag.camera, reason if reason.endswith('error') else 'bad_frame_' + reason)
        self.get_logger().error('a frame from {} failed: {}'.format(
            tag.camera.image_topic, error), throttle_duration_sec=5.0)

    def _publish_label_info(self) -> None:
        """Publish the class map (transient local: late subscribers get it too)."""
        detector = self._detector
        if detector is None:
            return
        msg = LabelInfo()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.class_map = [VisionClass(class_id=i, class_name=name)
                         for i, name in enumerate(detector.labels)]
        msg.threshold = float(self._live['score_threshold'])
        for camera in self._cameras:
            if camera.label_info_pub is not None:
                camera.label_info_pub.publish(msg)

    # ---------------------------------------------------------------- diagnostics

    def _publish_diagnostics(self) -> None:
        """Publish the node's and each camera's status on /diagnostics (about 1 Hz)."""
        try:
            array = DiagnosticArray()
            array.header.stamp = self.get_clock().now().to_msg()
            array.status = [self._model_status()] + [
                self._camera_status(camera) for camera in list(self._cameras)]
            self._diagnostics_pub.publish(array)
        except Exception as error:  # diagnostics must never take the node down
            self.get_logger().error('diagnostics failed: {}'.format(error),
                                    throttle_duration_sec=10.0)

    def _model_status(self) -> DiagnosticStatus:
        """Return the detector's status: state, backend, precision, model, drops."""
        status = DiagnosticStatus(name='{}: detector'.format(self.get_fully_qualified_name()))
        detector = self._detector
        state = 'active' if self._active else 'inactive' if self._configured else 'unconfigured'
        values = [('state', state)]
        if detector is None:
            status.level = DiagnosticStatus.ERROR if self._last_error else DiagnosticStatus.WARN
            status.message = self._last_error or 'unconfigured'
            values.append(('model', str(self._parameter_value('model_path'))))
        else:
            status.level = DiagnosticStatus.OK if self._active else DiagnosticStatus.WARN
            status.message = state
            status.hardware_id = str(detector.backend_name)
            values += [('backend', str(detector.backend_name)),
                       ('precision', str(detector.precision)),
                       ('model', str(detector.model_path)),
                       ('labels', str(len(detector.labels)))]
            try:
                stats = detector.stats()
            except Exception as error:  # stats are informative only
                stats = {'stats_error': str(error)}
            for key in sorted(stats):
                value = stats[key]
                if isinstance(value, dict):
                    values += [('{}.{}'.format(key, k), str(v)) for k, v in sorted(value.items())]
                else:
                    values.append((key, _format(value)))
        status.values = [KeyValue(key=k, value=v) for k, v in values]
        return status

    def _camera_status(self, camera: _Camera) -> DiagnosticStatus:
        """Return a camera's rates, latency (image stamp to publish) and drops."""
        now = time.monotonic()
        with camera.lock:
            frames_in, frames_out = camera.frames_in, camera.frames_out
            debug_images = camera.debug_images
            dropped = dict(camera.dropped)
            latencies = sorted(camera.latencies_ms)
            last_in, last_out, last_time = camera.last_rates
            camera.last_rates = (frames_in, frames_out, now)
        period = max(now - last_time, 1e-3)
        rate_in, rate_out = (frames_in - last_in) / period, (frames_out - last_out) / period
        status = DiagnosticStatus(name='{}: {}'.format(self.get_fully_qualified_name(),
                                                       camera.image_topic))
        if not self._active:
            status.level, status.message = DiagnosticStatus.WARN, 'inactive'
        elif rate_in == 0.0:
            status.level, status.message = DiagnosticStatus.WARN, 'no images'
        else:
            status.level, status.message = DiagnosticStatus.OK, 'ok'
        values = [
            ('image_topic', camera.image_topic), ('detections_topic', camera.detections_topic),
            ('input_rate_hz', _format(rate_in)), ('output_rate_hz', _format(rate_out)),
            ('latency_p50_ms', _format(percentile(latencies, 0.50))),
            ('latency_p99_ms', _format(percentile(latencies, 0.99))),
            ('frames_in', str(frames_in)), ('frames_out', str(frames_out)),
            ('debug_images', str(debug_images)),
            ('dropped', str(sum(dropped.values())))]
        values += [('dropped.' + reason, str(count)) for reason, count in sorted(dropped.items())]
        status.values = [KeyValue(key=k, value=v) for k, v in values]
        return status


def _format(value: Any) -> str:
    """Format a diagnostics value: floats with 2 decimals."""
    if isinstance(value, float):
        return '{:.2f}'.format(value)
    return str(value)


def _check_topics(topics: Sequence[str]) -> str:
    """Return why a list of image topics is rejected, or ''."""
    if not topics:
        return 'image_topics is empty: give at least one camera topic, e.g. [image_raw].'
    for topic in topics:
        try:
            validate_topic_name(topic)
        except Exception as error:  # rclpy raises InvalidTopicNameException
            return 'image_topics: {!r} is not a valid topic name ({}).'.format(topic, error)
    if len(set(topics)) != len(topics):
        return 'image_topics lists a topic twice: {}.'.format(', '.join(topics))
    namespaces = [camera_namespace(topic) for topic in topics]
    if len(set(namespaces)) != len(namespaces):
        return ('image_topics {} share a namespace, so their detections topics would clash: '
                'put each camera under its own namespace (cam0/image_raw, cam1/image_raw).'
                .format(', '.join(topics)))
    return ''


def main(args: Optional[List[str]] = None) -> None:
    """Run the node until Ctrl-C, an external shutdown, or its shutdown transition."""
    rclpy.init(args=args)
    node = InferenceNode()
    try:
        spin_until_shutdown(node, lambda: node.finalized)
    finally:
        held = node._detector is not None
        node._release()
        node.get_logger().info('shutting down: model {}released'.format(
            '' if held else 'already '))
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main(sys.argv)
