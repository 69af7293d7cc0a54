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

Frames are converted without a copy where the layout allows (`ros.image`) and submitted to the
detector, which never blocks; results arrive on the detector's completion thread, in order,
and are published from there (rclpy publishers are thread-safe).

This class holds the lifecycle, the subscriptions and the publishing; the parameters
(`ros.parameters`), messages (`ros.messages`), diagnostics (`ros.diagnostics`) and the main
loop (`ros.spin`) live in their own modules.
"""

import os
import sys
import textwrap
import time
from typing import Any, Dict, List, Optional

from diagnostic_msgs.msg import DiagnosticArray, KeyValue
import numpy as np
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions
from rclpy.utilities import get_rmw_implementation_identifier
from sensor_msgs.msg import CompressedImage, Image
from vision_msgs.msg import Detection2DArray, LabelInfo

from tx2_inference.core import jetson
from tx2_inference.core.tiles import TileGrid
from tx2_inference.core.visualize import draw_detections
from tx2_inference.errors import ConfigError, FrameError, UserError
from tx2_inference.ros import silence
from tx2_inference.ros.diagnostics import (
    camera_status,
    CameraCounters,
    detector_status,
    DIAGNOSTICS_PERIOD_S,
    system_status,
)
from tx2_inference.ros.image import array_to_image_msg, compressed_to_array, image_to_array
from tx2_inference.ros.logging_bridge import PackageLogRoute, route_package_logs
from tx2_inference.ros.messages import detections_to_msg, label_info_msg
from tx2_inference.ros.parameters import (
    callers,
    camera_namespace,
    check_topics,
    default_model_path,
    NodeParameters,
    TABLE,
)
from tx2_inference.ros.spin import run_node
from tx2_inference.ros.tracking import CameraTracking, tracking_config, with_ids

NODE_NAME = 'inference_node'
DRAIN_TIMEOUT_S = 5.0


class _Tag(object):
    """What a frame carries through the detector: where it came from and when."""

    __slots__ = ('camera', 'header', 'received_ns', 'arrived', 'image', 'color', 'debug')

    def __init__(self, camera: 'Camera', header: Any, received_ns: int, arrived: float,
                 image: Optional[np.ndarray], color: str, debug: bool) -> None:
        """Store the frame's origin; ``image`` for the debug image or the tracker's colours.

        :param debug: whether a debug image will be drawn.
        :param arrived: ``time.perf_counter()`` when the callback began, for the stage times.
        """
        self.camera = camera
        self.header = header
        self.received_ns = received_ns
        self.arrived = arrived
        self.image = image
        self.color = color
        self.debug = debug


class Camera(object):
    """One input topic, its subscription, its publishers and its counters."""

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
        self.counters = CameraCounters()
        self.silence = silence.SilenceWatch(image_topic)
        self.tracking = CameraTracking()


def sensor_data_qos() -> QoSProfile:
    """Return the image subscriptions' default QoS: best effort, keep last 1, volatile."""
    return QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                      reliability=ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.VOLATILE)


class InferenceNode(LifecycleNode):
    """Serve image topics through one detector and publish vision_msgs detections."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        """Declare the parameters; everything else happens in the lifecycle transitions."""
        self._detector = None  # type: Optional[Any]
        self._cameras = []  # type: List[Camera]
        self._configured = False
        self._active = False
        self._finalized = False
        self._last_error = ''
        self._diagnostics_pub = None  # type: Optional[Any]
        self._diagnostics_timer = None  # type: Optional[Any]
        self._warmup_note = ''
        self._tracker_config = None  # type: Optional[Any]
        self._log_route: Optional[PackageLogRoute] = None
        self._max_pixels = 0
        # A Jetson's tegrastats, started on the first diagnostics there (never elsewhere).
        self._tegrastats = jetson.TegrastatsReader()
        super().__init__(node_name, **kwargs)
        # The core's Python logs (e.g. the engine build's progress) go to this node's log.
        self._log_route = route_package_logs(self.get_logger())
        self._params = NodeParameters(
            self, is_configured=lambda: self._configured,
            labels=lambda: self._detector.labels if self._detector is not None else None,
            on_live_change=self._on_live_change)
        self._max_pixels = int(self._params.value('max_frame_pixels'))
        # /diagnostics is published in every state, so an operator sees why a configure failed.
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._diagnostics_timer = self.create_timer(DIAGNOSTICS_PERIOD_S,
                                                    self._publish_diagnostics)

    @property
    def finalized(self) -> bool:
        """Return whether the shutdown transition ran (the node is finalized)."""
        return self._finalized

    def destroy_node(self) -> None:
        """Release the model (if still held) and destroy the node: the process's last step."""
        held = self._detector is not None
        self._release()
        self.get_logger().info('shutting down: model {}released'.format(
            '' if held else 'already '))
        if self._log_route is not None:
            self._log_route.close()
        self._tegrastats.close()
        super().destroy_node()

    def _on_live_change(self, names: List[str]) -> None:
        """Hand changed live parameters to the detector, for the next frame."""
        if self._detector is None:
            return
        self._set_detection_params()
        if 'batch_timeout_ms' in names:
            self._detector.batch_timeout_ms = self._params.live['batch_timeout_ms']
        # LabelInfo's threshold is what is decoded: with tracking, the low threshold.
        if self._active and {'score_threshold', 'tracking', 'tracking_low_threshold'} & set(names):
            self._publish_label_info()

    def _set_detection_params(self) -> None:
        """Give the detector its parameters: with tracking, decoded down to the low threshold."""
        params, self._tracker_config = tracking_config(
            self._params.detection_params(self._detector.config), self._params.live)
        self._detector.params = params

    # ---------------------------------------------------------------- lifecycle

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """
        Load the model and create the publishers.

        :returns: SUCCESS when configured; FAILURE (back to unconfigured, nothing held) when a
            parameter or file must be fixed, with a log message saying which and how.
        """
        self._log_request('configure')
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
        tiles = self._detector.tiles
        self.get_logger().info('configured: {} on {} ({}), cameras: {}, {}{}'.format(
            self._detector.model_path, self._detector.backend_name, self._detector.precision,
            ', '.join(c.image_topic for c in self._cameras), self._warmup_note,
            '' if tiles is None else ', tiles {} ({} inference(s) per frame, {} per batch)'
            .format(tiles, len(tiles), self._detector.batch_size)))
        return TransitionCallbackReturn.SUCCESS

    def _log_request(self, transition: str) -> None:
        """Log a transition and who may have asked (the node never triggers its own)."""
        self.get_logger().info('{} requested through {}/change_state (its clients: {})'.format(
            transition, self.get_fully_qualified_name(), callers(self, 'change_state')))

    def _set_hint(self, name: str, example: str) -> str:
        """Return how to set a parameter now: ros2 param set, or at launch when read-only."""
        if self.describe_parameter(name).read_only:
            return ('it is read-only (launch only): restart the node with -p {}:={} or set it '
                    'in the params file'.format(name, example))
        return 'ros2 param set {} {} {}'.format(self.get_fully_qualified_name(), name, example)

    def _fail(self, transition: str, message: str) -> TransitionCallbackReturn:
        """Log why a transition failed, release everything, and return FAILURE."""
        self._last_error = '{} failed: {}'.format(transition, message)
        self.get_logger().error(self._last_error)
        self._release()
        return TransitionCallbackReturn.FAILURE

    def _configure(self) -> None:
        """Check the parameters, open the detector and create the publishers."""
        self._params.check_startup()
        model_path = os.path.expanduser(self._params.value('model_path') or
                                        default_model_path())
        backend = self._params.value('backend')
        if not os.path.isfile(model_path) and backend != 'triton':  # triton: a name here
            raise ConfigError(
                'model_path {!r} does not exist: set the parameter model_path to an .onnx, '
                '.engine or .tflite file ({}) and configure again.'.format(
                    model_path, self._set_hint('model_path', '/path/to/model.onnx')))
        config_path = self._params.value('model_config') or None
        if config_path is not None:
            config_path = os.path.expanduser(config_path)
            if not os.path.isfile(config_path):
                raise ConfigError(
                    'model_config {!r} does not exist: set the parameter model_config to the '
                    "model's YAML, or to '' to use <model>.yaml beside the model ({}), and "
                    'configure again.'.format(config_path, self._set_hint(
                        'model_config', '/path/to/model.yaml')))
        topics = list(self._params.value('image_topics'))
        reason = check_topics(topics)
        if reason:
            raise ConfigError(reason)
        self._cameras = [Camera(topic) for topic in topics]

        from tx2_inference.core import decoder_plugins
        from tx2_inference.detector import Detector
        decoder_plugins.allow_modules(self._params.value('decoder_modules') or ())
        self._detector = Detector(
            model_path, config_path=config_path, backend=backend,
            backend_options=self._params.backend_options(),
            precision=self._params.value('precision'),
            engine_cache_dir=self._params.value('engine_cache_dir') or None,
            depth=self._params.value('executor_depth'),
            threads=self._params.value('cpu_threads') or None, on_result=self._on_result,
            on_error=self._on_frame_error, batch_size=self._params.value('batch_size'),
            batch_timeout_ms=self._params.live['batch_timeout_ms'], sources=topics,
            spinning=self._params.value('ort_spinning'),
            spin_us=self._params.value('ort_spin_us'), tiles=TileGrid.parse(
                self._params.value('tiles'), self._params.value('tile_overlap'),
                self._params.value('tile_whole_frame')),
            tile_sources=self._tile_cameras(topics))
        reason = self._params.check('class_allowlist',
                                        self._params.live.get('class_allowlist'))
        if reason:
            raise ConfigError(reason + ' Set the parameter class_allowlist and configure again.')
        # ros2 param get shows the thresholds in force: the model config's, unless set.
        sources = self._params.show_model_defaults(self._detector.config)
        self._set_detection_params()
        self.get_logger().info('detection parameters in force: {}'.format('; '.join(
            '{} {} (from the {})'.format(name, self._params.value(name), source)
            for name, source in sources.items())))
        # The first inference of a new session or engine is the slow one: not the first frame's.
        self._warmup_note = 'no warm-up'
        if self._params.value('warmup'):
            self._warmup_note = 'warm-up {:.1f} ms'.format(self._detector.warmup())
        caller_cpus = getattr(self._detector.backend, 'caller_cpus', None)
        if caller_cpus:
            self.get_logger().info(
                'ONNX Runtime pinned its pool threads to CPU(s) {}: each inference is called '
                'from CPU(s) {} (docs/BENCHMARKS.md, issue 23)'.format(
                    ','.join(str(c) for c in sorted(self._detector.backend.pool_cpus)),
                    ','.join(str(c) for c in caller_cpus)))

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

    def _tile_cameras(self, topics: List[str]) -> Optional[List[str]]:
        """Return the cameras to tile (None: all), or raise ConfigError naming unknown ones."""
        chosen = list(self._params.value('tile_cameras') or ())
        unknown = [topic for topic in chosen if topic not in topics]
        if unknown:
            raise ConfigError('tile_cameras names topics that are not in image_topics: {}; '
                              'image_topics: {}. Set tile_cameras to some of them (or unset '
                              'it: every camera).'.format(', '.join(unknown), ', '.join(topics)))
        return chosen or None

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """
        Subscribe to the cameras and switch the publishers on.

        :returns: SUCCESS, or FAILURE (still inactive) if a subscription cannot be created.
        """
        self._log_request('activate')
        compressed = self._params.value('input_transport') == 'compressed'
        try:
            for camera in self._cameras:
                topic = camera.image_topic + '/compressed' if compressed else camera.image_topic
                camera.silence = silence.SilenceWatch(
                    topic, rmw=get_rmw_implementation_identifier())
                # A new profile each time: the QoS overrides are written into it.
                camera.subscription = camera.silence.subscribe(
                    lambda callbacks, camera=camera, topic=topic: self.create_subscription(
                        CompressedImage if compressed else Image, topic,
                        lambda msg: self._on_image(msg, camera), sensor_data_qos(),
                        qos_overriding_options=QoSOverridingOptions.with_default_policies(),
                        event_callbacks=callbacks))
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
        self._log_request('deactivate')
        self._destroy_subscriptions()
        if self._detector is not None and not self._detector.drain(DRAIN_TIMEOUT_S):
            self.get_logger().warning('frames still in flight after {} s; their results are '
                                      'dropped'.format(DRAIN_TIMEOUT_S))
        self._active = False
        for camera in self._cameras:  # tracks start anew at the next activation
            camera.tracking.reset()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release the model, its buffers and GPU memory, and the publishers."""
        self._log_request('cleanup')
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything, from any state; `main` then exits."""
        self._log_request('shutdown')
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

    def _on_image(self, msg: Any, camera: Camera) -> None:
        """Convert a frame and hand it to the detector; never blocks, never raises.

        An exception escaping a subscription callback would end rclpy's spin and the process:
        whatever one frame raises is counted (frame_exception, WARN on /diagnostics) instead.
        """
        try:
            self._take_image(msg, camera)
        except Exception as error:  # noqa: B902
            camera.counters.drop('frame_exception')
            self.get_logger().error('dropped a frame from {} ({}: {})'.format(
                camera.image_topic, type(error).__name__, error), throttle_duration_sec=5.0)

    def _take_image(self, msg: Any, camera: Camera) -> None:
        """Count, convert and submit one frame (`_on_image`'s body)."""
        arrived = time.perf_counter()
        received_ns = self.get_clock().now().nanoseconds
        camera.counters.frame_in()
        stamp = msg.header.stamp
        camera.silence.on_frame(stamp.sec * 10**9 + stamp.nanosec, received_ns)
        detector = self._detector
        if detector is None or not self._active:
            camera.counters.drop('inactive')
            return
        try:
            if isinstance(msg, CompressedImage):
                array, color = compressed_to_array(msg, self._max_pixels)
            else:
                array, color = image_to_array(msg, self._max_pixels)
        except FrameError as error:
            camera.counters.drop('bad_frame_' + getattr(error, 'reason', 'unknown'))
            self.get_logger().warning('dropped a frame from {}: {}'.format(
                camera.image_topic, error), throttle_duration_sec=5.0)
            return
        except Exception as error:  # noqa: B902 - MemoryError, cv2.error: no frame ends the node
            camera.counters.drop('frame_exception')
            self.get_logger().error('dropped a frame from {} that failed to convert ({}: {}); '
                                    'counted as frame_exception on /diagnostics'.format(
                                        camera.image_topic, type(error).__name__, error),
                                    throttle_duration_sec=5.0)
            return
        debug = (self._params.live.get('publish_debug_image') and
                 camera.debug_pub is not None and camera.debug_pub.get_subscription_count() > 0)
        keep = debug or self._params.live['tracking']  # the tracker reads the boxes' colours
        tag = _Tag(camera, msg.header, received_ns, arrived, array if keep else None, color,
                   bool(debug))
        try:
            detector.submit(array, color, tag, camera.image_topic)  # its pending frame, batch
        except Exception as error:  # the detector refused the frame (closed, bad shape)
            camera.counters.drop('submit_error')
            self.get_logger().error('the detector refused a frame from {}: {}'.format(
                camera.image_topic, error), throttle_duration_sec=5.0)
            return
        # Hand the GIL to the thread that runs the frame now, rather than after this
        # executor's own bookkeeping (its next wait set): the frame's inference starts sooner.
        time.sleep(0)

    def _on_result(self, tag: _Tag, detections: Any, timing: Dict[str, Any]) -> None:
        """Publish one frame's detections; called on the detector's completion thread."""
        camera = tag.camera
        publisher = camera.detections_pub
        if publisher is None:  # cleaned up while the frame was in flight
            return
        try:
            stamp_ns = tag.header.stamp.sec * 10**9 + tag.header.stamp.nanosec
            start_ns = stamp_ns if stamp_ns > 0 else tag.received_ns
            # Tracks predict by the frames' stamps: a dropped frame is a longer step.
            detections, ids = camera.tracking.apply(
                self._params.live['tracking'], self._tracker_config, start_ns / 1e9, detections,
                tag.image, tag.color)
            publisher.publish(detections_to_msg(tag.header, detections.boxes, detections.scores,
                                                detections.labels, ids))
            published = time.perf_counter()
            now_ns = self.get_clock().now().nanoseconds
            camera.counters.frame_out((now_ns - start_ns) / 1e6)
            camera.counters.stages(
                (tag.received_ns - start_ns) / 1e6, tag.arrived, timing, published)
            if tag.debug and tag.image is not None and camera.debug_pub is not None:
                canvas, encoding = draw_detections(tag.image, tag.color, detections.boxes,
                                                   detections.scores,
                                                   with_ids(detections.labels, ids))
                camera.debug_pub.publish(array_to_image_msg(canvas, encoding, tag.header))
                camera.counters.debug_image()
        except Exception as error:  # keep the completion thread alive
            camera.counters.drop('publish_error')
            self.get_logger().error('publishing detections for {} failed: {}'.format(
                camera.image_topic, error), throttle_duration_sec=5.0)

    def _on_frame_error(self, tag: _Tag, error: BaseException) -> None:
        """Count a frame the detector could not process; called on its completion thread."""
        reason = getattr(error, 'reason', None)
        if reason is None:
            reason = 'frame_error' if isinstance(error, FrameError) else 'inference_error'
        tag.camera.counters.drop(reason if reason.endswith('error') else 'bad_frame_' + reason)
        if reason.startswith('triton_'):  # the network's normal state: /diagnostics says ERROR
            self.get_logger().warning('a frame from {} failed: {}'.format(
                tag.camera.image_topic, error), throttle_duration_sec=5.0)
            return
        self.get_logger().error('a frame from {} failed: {}'.format(
            tag.camera.image_topic, error), throttle_duration_sec=5.0)

    def _publish_label_info(self) -> None:
        """Publish the class map (transient local: late subscribers get it too)."""
        detector = self._detector
        if detector is None:
            return
        msg = label_info_msg(detector.labels, detector.params.score_threshold,
                             self.get_clock().now().to_msg())
        for camera in self._cameras:
            if camera.label_info_pub is not None:
                camera.label_info_pub.publish(msg)

    # ---------------------------------------------------------------- diagnostics

    def _publish_diagnostics(self) -> None:
        """Publish the node's and each camera's status on /diagnostics (about 1 Hz)."""
        try:
            array = DiagnosticArray()
            array.header.stamp = self.get_clock().now().to_msg()
            name = self.get_fully_qualified_name()
            state = ('active' if self._active else 'inactive' if self._configured else
                     'unconfigured')
            array.status = [detector_status(name, state, self._detector, self._last_error,
                                            self._params.value('model_path'))]
            self._params.describe_sources()  # outside the parameter callbacks
            if self._detector is not None:
                array.status[0].values += [
                    KeyValue(key='param.' + key, value='{} (from the {})'.format(
                        self._params.value(key), source))
                    for key, source in sorted(self._params.sources.items())]
            sources = self._detector.stats()['sources'] if self._detector is not None else {}
            array.status += [self._silence_status(camera, camera_status(
                name, camera.image_topic, camera.detections_topic, camera.counters, self._active,
                sources.get(camera.image_topic), camera.tracking.values()))
                for camera in list(self._cameras)]
            array.status.append(self._system_status(name))
            self._diagnostics_pub.publish(array)
        except Exception as error:  # diagnostics must never take the node down
            self.get_logger().error('diagnostics failed: {}'.format(error),
                                    throttle_duration_sec=10.0)

    def _system_status(self, name: str) -> Any:
        """Return the machine's status: a Jetson's clocks, temperatures and memory."""
        board = jetson.read_sysfs()
        if board['jetson']:
            board = jetson.board_state(tegrastats_line=self._tegrastats.latest(), sysfs=board)
        detector = self._detector
        device_memory = None
        if detector is not None:  # only a backend that holds CUDA memory answers
            device_memory = detector.stats().get('device_memory')
        return system_status(name, board, jetson.assess(board), jetson.resident_mb(),
                             device_memory)

    def _silence_status(self, camera: Camera, status: Any) -> Any:
        """Say in a camera's status (and the log, throttled) why it hears nothing, if so."""
        if camera.subscription is None:
            return status
        watch = camera.silence
        watch.silence_timeout_s = self._params.live['silence_timeout_s']
        watch.max_frame_age_s = self._params.live['max_frame_age_s']
        level, kind, message, values = watch.assess(self.count_publishers(watch.topic))
        if kind and watch.log_due(kind):
            self.get_logger().warning(message)
        return silence.apply(status, level, message, values)


def usage() -> str:
    """Return the ``--help`` text: how to run the node and every parameter with its default."""
    from rclpy.parameter import Parameter
    lines = ['usage: inference_node [-h] [--ros-args -p NAME:=VALUE ... --params-file FILE]',
             '', __doc__.strip().splitlines()[0], '',
             textwrap.fill('Start it, then drive its lifecycle: ros2 lifecycle set '
                           '/inference_node configure (then activate), or launch it with '
                           'autostart:=true. Parameters (ros2 param describe shows the same; '
                           'config/params.yaml holds them all):', 99), '']
    for spec in TABLE:
        default = spec.default_value()
        shown = 'unset' if isinstance(default, Parameter.Type) else repr(default)
        lines.append('  {} (default {}; {})'.format(
            spec.name, shown, 'launch only' if spec.launch_only else
            'reconfigure' if spec.reconfigure else 'live'))
        lines += textwrap.wrap(spec.description, 95, initial_indent='      ',
                               subsequent_indent='      ')
    return '\n'.join(lines)


def main(args: Optional[List[str]] = None) -> int:
    """Run the node until Ctrl-C, an external shutdown, or its shutdown transition.

    ``-h``/``--help`` (outside the ROS arguments) prints the usage and the parameters instead.
    """
    from rclpy.utilities import remove_ros_args
    argv = sys.argv if args is None else args
    if any(arg in ('-h', '--help') for arg in remove_ros_args(args=argv)[1:]):
        print(usage())
        return 0
    return run_node(InferenceNode, args, done=lambda node: node.finalized)


if __name__ == '__main__':
    sys.exit(main(sys.argv))
