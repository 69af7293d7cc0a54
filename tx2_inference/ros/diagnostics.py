"""
The node's /diagnostics: one status for the detector, one per camera, about once a second.

`CameraCounters` are what the frame and result callbacks count (thread-safe);
`detector_status` and `camera_status` turn the detector's stats and a camera's counters into
`DiagnosticStatus` messages. To publish a new figure, count it in `CameraCounters` (or return
it from ``Detector.stats()``, which is published key by key) and add its line to the values.
"""

import collections
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from tx2_inference.core.stats import nearest_rank_percentile

DIAGNOSTICS_PERIOD_S = 1.0
LATENCY_SAMPLES = 500
# A frame's way through the node, in order (docs/BENCHMARKS.md): image stamp -> callback
# (transport_in) -> submit (convert) -> inference start (queue: pre-processing, the hand-off
# to the slot's worker, or waiting as the pending frame) -> end (infer) -> the completion thread
# takes it (collect) -> decoded (decode) -> published (publish).
STAGES = ('transport_in', 'convert', 'queue', 'infer', 'collect', 'decode', 'publish')
# Drop reasons that turn a camera's status to WARN while they happen: a frame above
# max_frame_pixels, and a frame whose conversion raised (MemoryError, ...).
ALARM_DROPS = ('bad_frame_too_large', 'frame_exception')
_STAMPS = ('submitted', 'infer_end', 'infer_ms', 'collected', 'decoded')


class CameraCounters(object):
    """A camera's frame counters and recent latencies, updated from the node's callbacks."""

    def __init__(self) -> None:
        """Start at zero."""
        self.lock = threading.Lock()
        self.frames_in = 0
        self.frames_out = 0
        self.debug_images = 0
        self.dropped = collections.Counter()  # type: collections.Counter
        self.latencies_ms = collections.deque(maxlen=LATENCY_SAMPLES)  # type: collections.deque
        self.last_rates = (0, 0, time.monotonic())  # frames_in, frames_out, when
        # Running totals of each stage (ms) over stage_frames frames; a reader takes
        # differences (means over any window), nothing is kept per frame.
        self.stage_frames = 0
        self.stage_ms_total = [0.0] * len(STAGES)
        self.last_stages = (0, [0.0] * len(STAGES))  # at the last camera_status
        self.last_alarms = {}  # type: Dict[str, int]

    def frame_in(self) -> None:
        """Count a frame that arrived."""
        with self.lock:
            self.frames_in += 1

    def drop(self, reason: str) -> None:
        """Count a frame that produced no result, by reason."""
        with self.lock:
            self.dropped[reason] += 1

    def frame_out(self, latency_ms: float) -> None:
        """Count a published result and its latency (image stamp to publish)."""
        with self.lock:
            self.frames_out += 1
            self.latencies_ms.append(latency_ms)

    def stages(self, transport_ms: float, arrived: float, timing: Dict[str, float],
               published: float) -> None:
        """Add one published frame's stage times (see ``STAGES``).

        :param transport_ms: image stamp to the subscription callback.
        :param arrived: ``perf_counter`` at the callback; ``timing``: the detector's (its
            stamps: submitted, infer_end, collected, decoded); ``published``: after publish.
            A timing without the stamps is not counted.
        """
        if any(key not in timing for key in _STAMPS):
            return
        submitted, ended = timing['submitted'], timing['infer_end']
        started = ended - timing['infer_ms'] / 1e3
        with self.lock:
            self.stage_frames += 1
            totals = self.stage_ms_total
            totals[0] += transport_ms
            totals[1] += (submitted - arrived) * 1e3
            totals[2] += (started - submitted) * 1e3
            totals[3] += timing['infer_ms']
            totals[4] += (timing['collected'] - ended) * 1e3
            totals[5] += (timing['decoded'] - timing['collected']) * 1e3
            totals[6] += (published - timing['decoded']) * 1e3

    def debug_image(self) -> None:
        """Count a published debug image."""
        with self.lock:
            self.debug_images += 1


def format_value(value: Any) -> str:
    """Format a diagnostics value: floats with 2 decimals."""
    if isinstance(value, float):
        return '{:.2f}'.format(value)
    return str(value)


def _status(level: int, name: str, message: str, values: Sequence[Tuple[str, str]],
            hardware_id: str = '') -> DiagnosticStatus:
    """Build a DiagnosticStatus from (key, value) pairs."""
    status = DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id)
    status.values = [KeyValue(key=k, value=v) for k, v in values]
    return status


def detector_status(node_name: str, state: str, detector: Any, last_error: str,
                    model_path: Any) -> DiagnosticStatus:
    """
    Return the detector's status: state, backend, precision, model and its stats.

    :param state: 'active', 'inactive' or 'unconfigured'.
    :param detector: the open `Detector`, or None while unconfigured.
    :param last_error: why the last transition failed ('' if it did not).
    :param model_path: the model_path parameter, shown while no model is loaded.
    """
    name = '{}: detector'.format(node_name)
    values: List[Tuple[str, str]] = [('state', state)]
    if detector is None:
        values.append(('model', str(model_path)))
        level = DiagnosticStatus.ERROR if last_error else DiagnosticStatus.WARN
        return _status(level, name, last_error or 'unconfigured', values)
    values += [('backend', str(detector.backend_name)),
               ('precision', str(detector.precision)),
               ('model', str(detector.model_path)),
               ('labels', str(len(detector.labels)))]
    try:
        stats = detector.stats()
    except Exception as error:  # stats are informative only
        stats = {'stats_error': str(error)}
    listed = {key for key, _ in values}
    for key in sorted(set(stats) - listed):  # the stats repeat the backend: listed once
        value = stats[key]
        if key == 'sources':  # per camera: in each camera's status
            continue
        if isinstance(value, dict):
            values += [('{}.{}'.format(key, k), str(v)) for k, v in sorted(value.items())]
        else:
            values.append((key, format_value(value)))
    level = DiagnosticStatus.OK if state == 'active' else DiagnosticStatus.WARN
    message = state
    health = stats.get('backend_health')  # a remote backend's connection (triton)
    if isinstance(health, dict) and health.get('level') in ('warn', 'error'):
        level = max(level, DiagnosticStatus.ERROR if health['level'] == 'error'
                    else DiagnosticStatus.WARN)
        message = '{}; backend {} at {}: {}'.format(state, health.get('state'),
                                                   health.get('url'), health.get('last_error'))
    recent, bad = int(stats.get('recent_frames', 0)), int(stats.get('nonfinite_recent', 0))
    if bad:  # the model gives NaN/Inf: those frames are dropped, not published as empty
        level = max(level, DiagnosticStatus.ERROR if bad == recent else DiagnosticStatus.WARN)
        message = ('{}; {} of the last {} frames had NaN/Inf model outputs and were dropped '
                   '(an FP16 overflow? rebuild the engine in fp32)'.format(message, bad, recent))
    return _status(level, name, message, values, hardware_id=str(detector.backend_name))


def camera_status(node_name: str, image_topic: str, detections_topic: str,
                  counters: CameraCounters, active: bool,
                  source: Optional[Dict[str, Any]] = None,
                  tracking: Sequence[Tuple[str, str]] = ()) -> DiagnosticStatus:
    """Return a camera's rates since the last call, latency (image stamp to publish), drops.

    :param source: the executor's counts of this camera (``Detector.stats()['sources']``):
        ``superseded`` (frames a newer frame of the same camera replaced while they waited;
        not in ``dropped``, which counts the node's own reasons, as the detector's total
        ``dropped_reasons.superseded`` never was), answered, executor latency (submit to result).
    :param tracking: the camera's tracking values (``ros.tracking.CameraTracking.values``).
    """
    now = time.monotonic()
    with counters.lock:
        frames_in, frames_out = counters.frames_in, counters.frames_out
        debug_images = counters.debug_images
        dropped = dict(counters.dropped)
        latencies = sorted(counters.latencies_ms)
        last_in, last_out, last_time = counters.last_rates
        counters.last_rates = (frames_in, frames_out, now)
        stage_frames, stage_totals = counters.stage_frames, list(counters.stage_ms_total)
        last_stage_frames, last_stage_totals = counters.last_stages
        counters.last_stages = (stage_frames, stage_totals)
    period = max(now - last_time, 1e-3)
    rate_in, rate_out = (frames_in - last_in) / period, (frames_out - last_out) / period
    if not active:
        level, message = DiagnosticStatus.WARN, 'inactive'
    elif rate_in == 0.0:
        level, message = DiagnosticStatus.WARN, 'no images'
    else:
        level, message = DiagnosticStatus.OK, 'ok'
    # Frames refused for their size, or that raised while converting: WARN while they come.
    alarms = {reason: dropped.get(reason, 0) for reason in ALARM_DROPS}
    with counters.lock:
        last_alarms, counters.last_alarms = counters.last_alarms, alarms
    new = ['{} {}'.format(r, n - last_alarms.get(r, 0)) for r, n in sorted(alarms.items())
           if n > last_alarms.get(r, 0)]
    if new:
        level = max(level, DiagnosticStatus.WARN)
        message = '{}; frames refused since the last status: {}'.format(message, ', '.join(new))
    values = [
        ('image_topic', image_topic), ('detections_topic', detections_topic),
        ('input_rate_hz', format_value(rate_in)), ('output_rate_hz', format_value(rate_out)),
        ('latency_p50_ms', format_value(nearest_rank_percentile(latencies, 50))),
        ('latency_p99_ms', format_value(nearest_rank_percentile(latencies, 99))),
        ('frames_in', str(frames_in)), ('frames_out', str(frames_out)),
        ('debug_images', str(debug_images)),
        ('dropped', str(sum(dropped.values())))]
    if source is not None:
        values += [('superseded', str(source['dropped_reasons']['superseded'])),
                   ('answered', str(source['completed'])),
                   ('inference_latency_p50_ms', format_value(source['latency_ms_p50'])),
                   ('inference_latency_p99_ms', format_value(source['latency_ms_p99']))]
    values += [('dropped.' + reason, str(count)) for reason, count in sorted(dropped.items())]
    values += list(tracking)
    # Stage means over the frames published since the last status, and the running totals
    # (a tool's means over its own window: differences of totals over differences of frames).
    new_frames = stage_frames - last_stage_frames
    values.append(('stage_frames', str(stage_frames)))
    for index, stage in enumerate(STAGES):
        mean = ((stage_totals[index] - last_stage_totals[index]) / new_frames
                if new_frames else float('nan'))
        values += [('stage_ms.' + stage, format_value(mean)),
                   ('stage_ms_total.' + stage, '{:.3f}'.format(stage_totals[index]))]
    return _status(level, '{}: {}'.format(node_name, image_topic), message, values)


def system_status(node_name: str, board: Dict[str, Any], verdict: Tuple[str, str, list],
                  resident_mb: Optional[float], device_memory: Optional[Dict[str, Any]]
                  ) -> DiagnosticStatus:
    """Return the machine's status: the Jetson's (``core.jetson.assess``) and the memory.

    :param board: ``core.jetson.board_state``'s result (its model is the hardware id).
    :param verdict: ``core.jetson.assess(board)``: ('ok' or 'warn', message, values).
    :param resident_mb: the node's resident memory (None: unknown).
    :param device_memory: the backend's CUDA memory ({'used_mb', 'free_mb', 'total_mb'}), or
        None without CUDA.
    """
    level, message, values = verdict
    values = list(values)
    if resident_mb is not None:
        values.insert(0, ('node_rss_mb', '{:.0f}'.format(resident_mb)))
    for key, value in sorted((device_memory or {}).items()):
        values.append(('cuda_' + key, format_value(value)))
    return _status(DiagnosticStatus.WARN if level == 'warn' else DiagnosticStatus.OK,
                   '{}: system'.format(node_name), message, values,
                   hardware_id=str(board.get('model', '')))
