"""
Robustness runs against a real ``inference_node`` process: faults, churn, flood and signals.

``python -m tx2_inference.tools.soak --output output/soak`` (``make soak``) runs the long versions
and writes ``soak-results.json`` and ``soak.png`` (node memory and latency over frames); the test
suite (``test/test_robustness.py``, ``test/test_fuzz_frames.py``) runs short versions of the
same functions. Each phase starts the node as its own process, drives it through its lifecycle
and parameter services (`NodeClient`) and feeds it over real topics:

- ``fuzz``: broken ``sensor_msgs/Image`` and ``CompressedImage`` messages (unknown and
  mismatched encodings, zero or huge sizes, short steps, short and long data, corrupt
  jpeg/png) with valid photos in between; every rejected frame must be counted by reason on
  /diagnostics, and every valid one must come back with its person.
- ``churn``: configure / activate / deactivate / cleanup cycles with frames flowing; threads,
  file descriptors and RSS of the node process per cycle.
- ``flood``: frames at a rate above the model's throughput; end-to-end latency, node RSS, and
  every frame accounted for (published, superseded or dropped, by reason).
- ``signals``: SIGINT and SIGTERM while frames are processed; exit status and time to exit.

The image subscriptions are made reliable with a deep queue through the node's QoS override
parameters, so that no frame is lost between the processes and the counts are exact (with the
default best-effort sensor-data QoS, large frames are lost on the way on a small machine before
the node sees them).
"""

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from tx2_inference.core.stats import percentile
from tx2_inference.ros.image import ENCODING_LAYOUTS
from tx2_inference.tools.processes import ModuleProcess
from tx2_inference.tools.requires import MissingToolLibraryError, pyplot, require

NODE_MODULE = 'tx2_inference.ros.node'
ASTRONAUT_PERSON = (20.0, 15.0, 370.0, 512.0)  # x1, y1, x2, y2 in the 512 x 512 photo
QUEUE_DEPTH = 1000

# Fault kinds and the drop reason (``bad_frame_<reason>`` on /diagnostics) each must produce.
RAW_FAULTS = (
    'unknown_encoding', 'zero_size', 'huge_size', 'step_too_small', 'data_too_short',
    'data_too_long', 'mismatched_encoding', 'odd_width')
COMPRESSED_FAULTS = ('unknown_format', 'empty', 'random_bytes', 'no_signature',
                     'truncated', 'flipped_bytes')
# The encodings raw faults are applied to, and their bytes per pixel.
BYTES_PER_PIXEL = {
    name: ENCODING_LAYOUTS[name][1] * np.dtype(ENCODING_LAYOUTS[name][0]).itemsize
    for name in ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', 'mono16', 'yuv422', 'yuv422_yuy2')}


def astronaut(size: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Return the astronaut photo (skimage.data, a person), RGB, resized to (width, height)."""
    image = require('skimage.data', "the soak's photo").astronaut()
    if size is not None and tuple(size) != image.shape[1::-1]:
        image = cv2.resize(image, tuple(size), interpolation=cv2.INTER_AREA)
    return image


# --------------------------------------------------------------------------- fault messages

def raw_fault(kind: str, width: int, height: int, encoding: str, delta: int,
              text: str = 'bayer_xyz8') -> Tuple[Any, str]:
    """
    Build one broken `sensor_msgs/Image` with exactly one defect.

    :param kind: one of `RAW_FAULTS`.
    :param width: pixels per row (>= 1; the ``huge_size`` kind takes it as is).
    :param height: rows (>= 1).
    :param encoding: a supported encoding (key of ``BYTES_PER_PIXEL``) the defect is applied to.
    :param delta: how far a size is off (>= 1).
    :param text: the encoding name for ``unknown_encoding`` (must not be a supported one).
    :returns: ``(msg, reason)``: the ``reason`` the node must count the frame under.
    """
    from sensor_msgs.msg import Image

    msg = Image()
    bpp = BYTES_PER_PIXEL[encoding]
    msg.encoding, msg.width, msg.height = encoding, width, height
    msg.step = width * bpp
    size = msg.step * height
    reason = kind
    if kind == 'unknown_encoding':
        if text in ENCODING_LAYOUTS:
            raise ValueError('{!r} is a supported encoding'.format(text))
        msg.encoding = text
    elif kind == 'zero_size':
        if delta % 2:
            msg.width, msg.step = 0, 0
        else:
            msg.height = 0
        size, reason = width * bpp * (delta % 3), 'empty'
    elif kind == 'huge_size':  # far above any model input, data for one row only
        msg.width, msg.height = 4096 + width * 16, 3072 + height * 16
        msg.step = msg.width * bpp
        size, reason = msg.step, 'data_too_short'
    elif kind == 'step_too_small':
        msg.step = max(0, msg.step - delta)
        size = msg.step * height
    elif kind == 'data_too_short':
        size = max(0, size - delta)
    elif kind == 'data_too_long':
        size += delta
    elif kind == 'mismatched_encoding':  # mono8 pixels labelled with a wider encoding
        if bpp == 1:
            msg.encoding, bpp = 'rgb8', 3
        msg.step, size, reason = width, width * height, 'step_too_small'
    elif kind == 'odd_width':
        msg.encoding = 'yuv422' if delta % 2 else 'yuv422_yuy2'
        msg.width = width | 1
        msg.step = msg.width * 2
        size = msg.step * height
    else:
        raise ValueError('unknown fault kind {!r}'.format(kind))
    msg.data = bytes(bytearray((i * 7 + delta) & 0xFF for i in range(min(size, 64)))) * (
        size // 64) + bytes(size % 64)
    return msg, reason


def compressed_fault(kind: str, image: np.ndarray, fmt: str, delta: int,
                     text: str = 'bmp', junk: bytes = b'junk') -> Tuple[Any, Optional[str]]:
    """
    Build one broken `sensor_msgs/CompressedImage`.

    :param kind: one of `COMPRESSED_FAULTS`.
    :param image: an RGB photo to encode (the defect is applied to its encoding).
    :param fmt: ``'jpeg'`` or ``'png'``.
    :param delta: where the data is cut or changed.
    :param text: the format string for ``unknown_format`` (must not name jpeg or png).
    :param junk: the data for ``random_bytes``.
    :returns: ``(msg, reason)``; ``reason`` is None when the damaged data still decodes (a
        truncated jpeg often does, gray at the bottom), so the node must accept the frame.
    """
    from tx2_inference.ros.image import array_to_compressed_msg
    msg = array_to_compressed_msg(image, 'rgb', fmt)
    data = bytearray(msg.data)
    reason = None  # type: Optional[str]
    if kind == 'unknown_format':
        if any(name in text.lower() for name in ('jpeg', 'jpg', 'png')) or not text:
            raise ValueError('{!r} names a supported format'.format(text))
        msg.format, reason = text, 'unknown_format'
    elif kind == 'empty':
        data, reason = bytearray(), 'empty'
    elif kind == 'random_bytes':  # a leading zero byte: no image format starts so
        data, reason = bytearray(b'\x00' + junk), 'corrupt_data'
    elif kind == 'no_signature':
        data[0:4] = b'\x00\x00\x00\x00'
        reason = 'corrupt_data'
    elif kind in ('truncated', 'flipped_bytes'):
        cut = 8 + delta % max(1, len(data) - 8)
        if kind == 'truncated':
            data = data[:cut]
        else:
            data[cut] ^= 0xFF
        # What this OpenCV makes of the damaged data decides the expected outcome.
        decoded = cv2.imdecode(np.frombuffer(bytes(data), np.uint8), cv2.IMREAD_UNCHANGED)
        reason = None if decoded is not None and decoded.size else 'corrupt_data'
    else:
        raise ValueError('unknown fault kind {!r}'.format(kind))
    msg.data = bytes(data)
    return msg, reason


def random_raw_fault(rng: np.random.RandomState) -> Tuple[Any, str]:
    """Draw one broken Image (the soak's generator; the tests draw with hypothesis)."""
    kind = RAW_FAULTS[rng.randint(len(RAW_FAULTS))]
    encoding = sorted(BYTES_PER_PIXEL)[rng.randint(len(BYTES_PER_PIXEL))]
    text = ''.join(chr(c) for c in rng.randint(33, 127, size=rng.randint(0, 12)))
    if text in ENCODING_LAYOUTS:
        text += '_x'
    return raw_fault(kind, int(rng.randint(1, 96)), int(rng.randint(1, 96)), encoding,
                     int(rng.randint(1, 5000)), text)


def random_compressed_fault(rng: np.random.RandomState,
                            image: np.ndarray) -> Tuple[Any, Optional[str]]:
    """Draw one broken CompressedImage (the soak's generator)."""
    kind = COMPRESSED_FAULTS[rng.randint(len(COMPRESSED_FAULTS))]
    junk = rng.randint(0, 256, size=rng.randint(0, 2000)).astype(np.uint8).tobytes()
    return compressed_fault(kind, image, ('jpeg', 'png')[rng.randint(2)],
                            int(rng.randint(0, 1 << 20)), 'raw; x-' + str(rng.randint(99)),
                            junk)


# --------------------------------------------------------------------------- the node process

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

def fuzz(driver: Driver, frames: int, compressed: bool, seed: int = 0,
         valid_every: int = 20, valid: Optional[np.ndarray] = None,
         generate: Optional[Callable[[], Tuple[Any, Optional[str]]]] = None
         ) -> Dict[str, Any]:
    """
    Publish ``frames`` broken messages with a valid photo after every ``valid_every``.

    Each valid frame is waited for (its detections must contain the person), so no valid frame
    is superseded and every count is exact.

    :returns: sent, expected drop counts by reason, valid frames sent and answered with a person.
    """
    from tx2_inference.ros.image import array_to_compressed_msg, array_to_image_msg
    rng = np.random.RandomState(seed)
    image = astronaut() if valid is None else valid
    if generate is None:
        def generate() -> Tuple[Any, Optional[str]]:
            if compressed:
                return random_compressed_fault(rng, image)
            return random_raw_fault(rng)
    good = (array_to_compressed_msg(image, 'rgb', 'jpeg') if compressed
            else array_to_image_msg(image, 'rgb8'))
    expected = {}  # type: Dict[str, int]
    result = {'faults_sent': 0, 'accepted_damaged': 0, 'valid_sent': 0, 'valid_with_person': 0}
    for index in range(frames):
        msg, reason = generate()
        driver.stamp(msg)
        driver.publish(msg)
        result['faults_sent'] += 1
        if reason is None:
            result['accepted_damaged'] += 1
        else:
            expected[reason] = expected.get(reason, 0) + 1
        if (index + 1) % valid_every == 0 or index + 1 == frames:
            stamp = driver.stamp(good)
            driver.publish(good)
            result['valid_sent'] += 1
            answer = driver.answer(stamp)
            if answer is not None and person_found(answer):
                result['valid_with_person'] += 1
    result['expected_drops'] = expected
    return result


def churn(node: NodeProcess, driver: Driver, cycles: int, fps: float = 15.0,
          frame: Optional[np.ndarray] = None) -> Dict[str, Any]:
    """
    Run configure / activate / deactivate / cleanup ``cycles`` times with frames flowing.

    Frames are published from a thread at ``fps`` the whole time; each cycle waits for one
    answered frame before deactivating.

    :returns: per-cycle threads, fds and RSS of the node (measured unconfigured), and counts.
    """
    from tx2_inference.ros.image import array_to_image_msg
    msg = array_to_image_msg(astronaut((320, 240)) if frame is None else frame, 'rgb8')
    stop = threading.Event()
    sent = [0]

    def feed() -> None:
        while not stop.is_set():
            driver.stamp(msg)
            driver.publish(msg)
            sent[0] += 1
            stop.wait(1.0 / fps)
    thread = threading.Thread(target=feed, name='churn-feed', daemon=True)
    samples = []  # type: List[Dict[str, float]]
    failures = []  # type: List[str]
    answered = 0
    thread.start()
    try:
        for cycle in range(cycles):
            for transition in ('configure', 'activate'):
                if not driver.client.transition(transition):
                    failures.append('cycle {}: {}'.format(cycle, transition))
            before = len(driver.detections())
            if driver.client.wait_until(lambda n=before: len(driver.detections()) > n,
                                        timeout=10.0):
                answered += 1
            for transition in ('deactivate', 'cleanup'):
                if not driver.client.transition(transition):
                    failures.append('cycle {}: {}'.format(cycle, transition))
            sample = node.resources()
            sample['cycle'] = cycle + 1
            samples.append(sample)
    finally:
        stop.set()
        thread.join(timeout=5.0)
    return {'cycles': cycles, 'cycles_answered': answered, 'failures': failures,
            'frames_sent': sent[0], 'samples': samples}


def flood(node: NodeProcess, driver: Driver, frames: int, fps: float,
          frame: Optional[np.ndarray] = None) -> Dict[str, Any]:
    """
    Publish ``frames`` frames at ``fps`` (above the model's throughput) to the active node.

    :returns: counts (sent, answered, node's frames_in/out and drops by reason), end-to-end
        latency per answered frame (stamp to arrival here), and the node's RSS over frames.
    """
    from tx2_inference.ros.image import array_to_image_msg
    image = astronaut((320, 240)) if frame is None else frame
    template = array_to_image_msg(image, 'rgb8')
    start_count = len(driver.detections())
    memory = []  # type: List[Tuple[int, float]]
    load = []  # type: List[Tuple[int, float]]
    period = 1.0 / fps
    started = time.monotonic()
    next_sample = started
    for index in range(frames):
        due = started + index * period
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        driver.stamp(template)
        driver.publish(template)
        if time.monotonic() >= next_sample:
            memory.append((index, node.resources()['rss_mb']))
            load.append((index, os.getloadavg()[0]))
            next_sample += 1.0
    elapsed = time.monotonic() - started
    status = driver.settled_status(frames)
    memory.append((frames, node.resources()['rss_mb']))
    arrivals = driver.client.timed_messages('/{}/detections'.format(driver.camera))[start_count:]
    latencies = [(arrived - (m.header.stamp.sec + m.header.stamp.nanosec * 1e-9)) * 1e3
                 for arrived, m in arrivals]
    scale = (image.shape[1] / 512.0, image.shape[0] / 512.0)
    with_person = sum(1 for _, m in arrivals if person_found(m, scale=scale))
    drops = dropped(status)
    drops['superseded'] = superseded(status)
    unaccounted = frames - int(status['frames_out']) - sum(drops.values())
    return {'frames_sent': frames, 'input_fps': frames / elapsed, 'unaccounted': unaccounted,
            'answered': len(arrivals), 'answered_with_person': with_person,
            'output_fps': len(arrivals) / elapsed,
            'node_frames_in': int(status['frames_in']),
            'node_frames_out': int(status['frames_out']), 'node_dropped': drops,
            'node_latency_p50_ms': float(status['latency_p50_ms']),
            'node_latency_p99_ms': float(status['latency_p99_ms']),
            'latency_ms': latencies, 'memory_mb': memory, 'loadavg_1min': load,
            'frame_size': '{}x{}'.format(image.shape[1], image.shape[0])}


def signal_exit(model: str, folder: str, sig: int, fps: float = 60.0) -> Dict[str, Any]:
    """Send ``sig`` to an active node while frames are processed; return status and time."""
    from tx2_inference.ros.image import array_to_image_msg
    name = 'signal_node_' + signal.Signals(sig).name.lower()
    node, driver = start_node(name, model, folder)
    try:
        activate(driver)
        msg = array_to_image_msg(astronaut(), 'rgb8')
        before = len(driver.detections())
        for _ in range(int(fps)):  # one second of frames: the node is busy when signalled
            driver.stamp(msg)
            driver.publish(msg)
            time.sleep(1.0 / fps)
        processing = len(driver.detections()) > before
        code, seconds = node.stop(sig)
    finally:
        driver.close()
        if node.alive():
            node.stop(signal.SIGKILL)
    return {'signal': signal.Signals(sig).name, 'exit_code': code, 'seconds': seconds,
            'answered_before': processing, 'log': node.log()}


# --------------------------------------------------------------------------- report

def rss_growth(samples: Sequence[Dict[str, float]]) -> float:
    """
    Return the RSS growth over churn cycles: peak of the last half minus peak of the first.

    Peaks, not single samples: the allocator keeps or returns a freed model's memory from one
    cycle to the next (the node measures 160 or 188 MB unconfigured), while a leak raises the
    peak cycle after cycle.
    """
    half = max(1, len(samples) // 2)
    return (max(s['rss_mb'] for s in samples[-half:]) -
            max(s['rss_mb'] for s in samples[:half]))


def summary(results: Dict[str, Any]) -> Dict[str, Any]:
    """Return the headline figures of a soak run (what the README quotes)."""
    out = {}  # type: Dict[str, Any]
    churn_result = results.get('churn')
    if churn_result:
        first, last = churn_result['samples'][0], churn_result['samples'][-1]
        out['churn'] = {
            'cycles': churn_result['cycles'], 'failures': len(churn_result['failures']),
            'threads_before_after': (first['threads'], last['threads']),
            'fds_before_after': (first['fds'], last['fds']),
            'rss_before_after_mb': (round(first['rss_mb'], 1), round(last['rss_mb'], 1)),
            'rss_growth_mb': round(rss_growth(churn_result['samples']), 1)}
    flood_result = results.get('flood')
    if flood_result:
        memory = [mb for _, mb in flood_result['memory_mb']]
        quarter = memory[len(memory) // 4] if memory else float('nan')
        out['flood'] = {
            'frames_sent': flood_result['frames_sent'],
            'input_fps': round(flood_result['input_fps'], 1),
            'output_fps': round(flood_result['output_fps'], 1),
            'answered': flood_result['answered'], 'node_dropped': flood_result['node_dropped'],
            'node_frames_in': flood_result['node_frames_in'],
            'unaccounted': flood_result['unaccounted'],
            'latency_p50_ms': round(percentile(flood_result['latency_ms'], 50), 1),
            'latency_p99_ms': round(percentile(flood_result['latency_ms'], 99), 1),
            'latency_max_ms': round(max(flood_result['latency_ms'] or [float('nan')]), 1),
            'rss_growth_after_first_quarter_mb': round(memory[-1] - quarter, 1),
            'frame_size': flood_result['frame_size'],
            'loadavg_1min_max': max([v for _, v in flood_result['loadavg_1min']] or [0.0])}
    for key in ('fuzz_raw', 'fuzz_compressed'):
        if results.get(key):
            r = results[key]
            out[key] = {'faults_sent': r['faults_sent'], 'valid_sent': r['valid_sent'],
                        'valid_with_person': r['valid_with_person'],
                        'rejected_by_node': r['node_rejected'],
                        'accepted_damaged': r['accepted_damaged'],
                        'rejections_as_expected': r['node_rejected'] == {
                            'bad_frame_' + k: v for k, v in r['expected_drops'].items()},
                        'node_alive': r['alive'], 'traceback_in_log': r['traceback_in_log']}
    if results.get('signals'):
        out['signals'] = [{k: s[k] for k in ('signal', 'exit_code', 'seconds',
                                              'released_logged')}
                          for s in results['signals']]
    return out


def plot(results: Dict[str, Any], path: str) -> bool:
    """Plot the node's RSS and latency over frames and cycles; False without matplotlib."""
    try:
        plt = pyplot("the soak's plot")
    except MissingToolLibraryError:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    flood_result = results.get('flood') or {}
    memory = flood_result.get('memory_mb') or []
    axes[0].plot([f for f, _ in memory], [mb for _, mb in memory])
    axes[0].set(title='flood: node RSS', xlabel='frames sent', ylabel='MB')
    latency = flood_result.get('latency_ms') or []
    axes[1].plot(range(len(latency)), latency, '.', markersize=2, alpha=0.5)
    axes[1].set(title='flood: latency, image stamp to detections here',
                xlabel='answered frame', ylabel='ms')
    samples = (results.get('churn') or {}).get('samples') or []
    axes[2].plot([s['cycle'] for s in samples], [s['rss_mb'] for s in samples], label='RSS MB')
    axes[2].plot([s['cycle'] for s in samples], [s['threads'] for s in samples],
                 label='threads')
    axes[2].plot([s['cycle'] for s in samples], [s['fds'] for s in samples], label='fds')
    axes[2].set(title='churn: node process per cycle', xlabel='cycle')
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def main(argv: Optional[List[str]] = None) -> int:
    """Run every phase, print the figures, write the JSON and the plot."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--output', default='output/soak')
    parser.add_argument('--model', default=os.path.join('models', 'ssdlite_person.onnx'))
    parser.add_argument('--cycles', type=int, default=200)
    parser.add_argument('--frames', type=int, default=20000)
    parser.add_argument('--fps', type=float, default=150.0)
    parser.add_argument('--fuzz-frames', type=int, default=5000)
    parser.add_argument('--frame-size', default='320x240',
                        help='flood frames, WIDTHxHEIGHT of the astronaut photo')
    parser.add_argument('--phases', default='fuzz,churn,flood,signals',
                        help='comma-separated subset of fuzz, churn, flood, signals')
    args = parser.parse_args(argv)
    phases = set(args.phases.split(','))
    size = tuple(int(v) for v in args.frame_size.lower().split('x'))
    os.makedirs(args.output, exist_ok=True)
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    os.environ.setdefault('ROS_DOMAIN_ID', str(100 + os.getpid() % 100))
    model = os.path.abspath(args.model)
    logs = tempfile.mkdtemp(prefix='soak_logs_', dir=os.path.abspath(args.output))
    results = {'started': time.strftime('%Y-%m-%dT%H:%M:%S%z'), 'model': model,
               'cpu_count': os.cpu_count(), 'arguments': vars(args)}  # type: Dict[str, Any]
    import rclpy
    rclpy.init()
    try:
        for transport in ('raw', 'compressed') if 'fuzz' in phases else ():
            name = 'soak_fuzz_' + transport
            node, driver = start_node(name, model, logs, transport)
            try:
                activate(driver)
                started = time.monotonic()
                r = fuzz(driver, args.fuzz_frames, transport == 'compressed', seed=1)
                r['node_rejected'] = {k: v for k, v in dropped(driver.settled_status(
                    r['faults_sent'] + r['valid_sent'])).items() if v}
                r['seconds'] = time.monotonic() - started
                r['traceback_in_log'] = 'Traceback' in node.log()
                r['alive'] = node.alive()
                results['fuzz_' + transport] = r
                print('fuzz {}: {}'.format(transport, json.dumps(summary(results).get(
                    'fuzz_' + transport))), flush=True)
            finally:
                driver.close()
                node.stop()
        # One inference thread: the model's throughput stays well below the input rate.
        node, driver = start_node('soak_churn', model, logs, extra={'cpu_threads': 1})
        try:
            if 'churn' in phases:
                results['churn'] = churn(node, driver, args.cycles)
                print('churn: {}'.format(json.dumps(summary(results)['churn'])), flush=True)
            if 'flood' in phases:
                activate(driver)
                results['flood'] = flood(node, driver, args.frames, args.fps, astronaut(size))
                print('flood: {}'.format(json.dumps(summary(results)['flood'])), flush=True)
            results['churn_flood_log_traceback'] = 'Traceback' in node.log()
        finally:
            driver.close()
            code, _ = node.stop()
            results['churn_flood_exit_code'] = code
        results['signals'] = []
        for sig in (signal.SIGINT, signal.SIGTERM) if 'signals' in phases else ():
            r = signal_exit(model, logs, sig)
            r['released_logged'] = 'model released' in r.pop('log')
            results['signals'].append(r)
        if results['signals']:
            print('signals: {}'.format(json.dumps(summary(results)['signals'])), flush=True)
    finally:
        rclpy.try_shutdown()
    results['summary'] = summary(results)
    with open(os.path.join(args.output, 'soak-results.json'), 'w') as f:
        json.dump(results, f, indent=1, sort_keys=True)
    if plot(results, os.path.join(args.output, 'soak.png')):
        print('plot: ' + os.path.join(args.output, 'soak.png'))
    print(json.dumps(results['summary'], indent=1, sort_keys=True))
    return 0


if __name__ == '__main__':
    sys.exit(main())
