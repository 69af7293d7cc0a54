"""The node under test and this process's side of the graph: the node process, its driver.

`start_node` runs an ``inference_node`` process with reliable, deep image subscriptions (QoS
override parameters) so that every frame is counted; `Driver` publishes frames and reads the
detections and /diagnostics back.
"""

import os
import signal
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from tx2_inference.tools.processes import ModuleProcess
from tx2_inference.tools.requires import require

NODE_MODULE = 'tx2_inference.ros.node'
ASTRONAUT_PERSON = (20.0, 15.0, 370.0, 512.0)  # x1, y1, x2, y2 in the 512 x 512 photo
QUEUE_DEPTH = 1000


class NodeProcess(ModuleProcess):
    """An ``inference_node`` process with its own name, parameters and log file."""

    def __init__(self, name: str, parameters: Dict[str, Any], folder: str,
                 reliable_topics: Sequence[str] = (), depth: int = QUEUE_DEPTH) -> None:
        """
        Start the node.

        :param name: the node's name (``-r __node:=name``).
        :param parameters: ``-p`` values (str, int, float, bool or a list of str).
        :param folder: where its log and QoS override file go.
        :param reliable_topics: image topics (fully qualified) whose subscriptions are made
            reliable, keep last ``depth``, through the node's QoS override parameters.
        """
        self.name = name
        from tx2_inference.tools.client import write_reliable_overrides
        overrides = write_reliable_overrides(os.path.join(folder, name + '_qos.yaml'),
                                             reliable_topics, depth)
        command = [NODE_MODULE, '--ros-args', '-r', '__node:=' + name, '--params-file',
                   overrides]
        for key, value in parameters.items():
            command += ['-p', '{}:={}'.format(key, _ros_arg(value))]
        super().__init__(command, os.path.join(folder, name + '.log'))

    def resources(self) -> Dict[str, float]:
        """Return the process's threads, open file descriptors and RSS (MB), via psutil."""
        psutil = require('psutil', "the soak's process figures (threads, fds, RSS)")
        proc = psutil.Process(self.process.pid)
        return {'threads': proc.num_threads(), 'fds': proc.num_fds(),
                'rss_mb': proc.memory_info().rss / 2.0**20}

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10.0) -> Tuple[Optional[int], float]:
        """Send ``sig`` and wait; return (exit status or None, seconds to exit); kill if stuck."""
        start = time.monotonic()
        code = super().stop(sig, timeout)
        return code, time.monotonic() - start


def _ros_arg(value: Any) -> str:
    """Format a value for ``-p name:=value``."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (list, tuple)):
        return '[' + ','.join(str(v) for v in value) + ']'
    return str(value)


class Driver(object):
    """This process's side: a `NodeClient` on the node plus camera publishers and readers."""

    def __init__(self, node: str, camera: str = 'cam') -> None:
        """Create the client, the raw and compressed publishers and the collectors."""
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage, Image
        from vision_msgs.msg import Detection2DArray

        from tx2_inference.tools.client import NodeClient
        self.client = NodeClient('/' + node, name=node + '_driver')
        self.camera = camera
        self.image_topic = '/{}/image_raw'.format(camera)
        qos = QoSProfile(depth=QUEUE_DEPTH, history=HistoryPolicy.KEEP_LAST,
                         reliability=ReliabilityPolicy.RELIABLE)
        self.raw = self.client.node.create_publisher(Image, self.image_topic, qos)
        self.compressed = self.client.node.create_publisher(
            CompressedImage, self.image_topic + '/compressed', qos)
        self.client.collect(Detection2DArray, '/{}/detections'.format(camera),
                            QoSProfile(depth=QUEUE_DEPTH))
        self.client.collect(DiagnosticArray, '/diagnostics', QoSProfile(depth=100))
        self._stamp_ns = 0
        self.status_name = node + ': ' + self.image_topic.lstrip('/')

    def close(self) -> None:
        """Destroy the client."""
        self.client.close()

    def stamp(self, msg: Any) -> int:
        """Give ``msg`` a unique stamp of now (ns since the epoch) and return it."""
        self._stamp_ns = max(self._stamp_ns + 1000, int(time.time() * 1e9))
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(self._stamp_ns, 10**9)
        msg.header.frame_id = self.camera
        return self._stamp_ns

    def publish(self, msg: Any) -> None:
        """Publish on the topic of ``msg``'s type; retry while the middleware is full."""
        publisher = self.raw if type(msg).__name__ == 'Image' else self.compressed
        for _attempt in range(200):
            try:
                publisher.publish(msg)
                return
            except Exception:  # RCLError 'cannot publish data' under flood (see the notes)
                time.sleep(0.005)
        publisher.publish(msg)

    def detections(self) -> List[Any]:
        """Return the detections received so far."""
        return self.client.messages('/{}/detections'.format(self.camera))

    def answer(self, stamp_ns: int, timeout: float = 15.0) -> Any:
        """Wait for the detections of the frame stamped ``stamp_ns``; None on timeout."""
        sec, nanosec = divmod(stamp_ns, 10**9)

        def find() -> Any:
            for msg in reversed(self.detections()):
                if msg.header.stamp.sec == sec and msg.header.stamp.nanosec == nanosec:
                    return msg
            return None
        return self.client.wait_until(find, timeout=timeout, period=0.005)

    def status(self, since: int = 0) -> Optional[Dict[str, str]]:
        """
        Return the newest camera status on /diagnostics after message ``since``.

        The detector's status from the same message is merged in under ``detector.`` keys
        (its ``dropped_reasons.superseded`` counts the frames a newer one replaced).
        """
        for array in reversed(self.client.messages('/diagnostics')[since:]):
            camera = [s for s in array.status if s.name.endswith(self.status_name)]
            if camera:
                values = {kv.key: kv.value for kv in camera[0].values}
                for status in array.status:
                    if status.name.endswith(': detector'):
                        values.update(('detector.' + kv.key, kv.value) for kv in status.values)
                return values
        return None

    def settled_status(self, frames_in: int, timeout: float = 30.0) -> Dict[str, str]:
        """
        Wait until the node counted ``frames_in`` frames and accounted for each of them.

        A frame is accounted for when it was published (``frames_out``), dropped by the node
        (``dropped``, by reason) or replaced by a newer frame in the detector (``superseded``).
        """
        def ready() -> Optional[Dict[str, str]]:
            status = self.status(max(0, len(self.client.messages('/diagnostics')) - 3))
            if status is None or int(status['frames_in']) < frames_in:
                return None
            return status if accounted(status) >= int(status['frames_in']) else None
        status = self.client.wait_until(ready, timeout=timeout, period=0.2)
        if status is None:
            raise TimeoutError('the node never accounted for {} frames: last status {}'.format(
                frames_in, self.status()))
        return status


def superseded(status: Dict[str, str]) -> int:
    """Return the frames the detector dropped for a newer one (from a merged status)."""
    return int(status.get('detector.dropped_reasons.superseded', 0))


def dropped(status: Dict[str, str]) -> Dict[str, int]:
    """Return the node's drop counts by reason (its ``dropped.<reason>`` values)."""
    return {k[len('dropped.'):]: int(v) for k, v in status.items() if k.startswith('dropped.')}


def accounted(status: Dict[str, str]) -> int:
    """Return the frames a merged status accounts for: published, dropped or superseded."""
    return int(status['frames_out']) + int(status['dropped']) + superseded(status)


def person_found(msg: Any, offset: Tuple[float, float] = (0.0, 0.0),
                 scale: Any = 1.0) -> bool:
    """Return whether ``msg`` has a person on the astronaut (IoU >= 0.5 with the hand label)."""
    from tx2_inference.tools.client import detection_xyxy
    sx, sy = scale if isinstance(scale, (tuple, list)) else (scale, scale)
    x1, y1, x2, y2 = (v * f for v, f in zip(ASTRONAUT_PERSON, (sx, sy, sx, sy)))
    want = (x1 + offset[0], y1 + offset[1], x2 + offset[0], y2 + offset[1])
    for detection in msg.detections:
        box = detection_xyxy(detection)
        w = max(0.0, min(box[2], want[2]) - max(box[0], want[0]))
        h = max(0.0, min(box[3], want[3]) - max(box[1], want[1]))
        area = detection.bbox.size_x * detection.bbox.size_y
        union = area + (want[2] - want[0]) * (want[3] - want[1]) - w * h
        if detection.results and detection.results[0].hypothesis.class_id == 'person' and \
                union > 0 and w * h / union >= 0.5:
            return True
    return False


def start_node(name: str, model: str, folder: str, transport: str = 'raw',
               camera: str = 'cam', extra: Optional[Dict[str, Any]] = None,
               ) -> Tuple[NodeProcess, Driver]:
    """Start a node on ``model`` (ONNX Runtime, fp32) with a reliable deep image queue."""
    topic = '/{}/image_raw'.format(camera)
    parameters = {'model_path': model, 'backend': 'onnxruntime', 'precision': 'fp32',
                  'image_topics': [camera + '/image_raw'], 'input_transport': transport}
    parameters.update(extra or {})
    node = NodeProcess(name, parameters, folder, [topic, topic + '/compressed'])
    driver = Driver(name, camera)
    try:
        driver.client.wait_for_node(timeout=30.0)
    except Exception:
        driver.close()
        node.stop(signal.SIGKILL)
        raise
    return node, driver


def activate(driver: Driver) -> None:
    """Configure and activate the node; wait until it subscribes to the camera."""
    for transition in ('configure', 'activate'):
        if not driver.client.transition(transition):
            raise RuntimeError('{} failed'.format(transition))
    topic = driver.image_topic
    driver.client.wait_until(lambda: driver.client.node.count_subscribers(topic) +
                             driver.client.node.count_subscribers(topic + '/compressed') > 0,
                             timeout=10.0)
    time.sleep(0.3)  # let the reliable writer match the new reader


# --------------------------------------------------------------------------- phases
