"""The benchmark's camera and its stopwatch: a frame publisher and an answer subscriber.

``python -m tx2_inference.tools.bench.loadgen --rates 15,30 --seconds 10 --output out.json``

One process publishes 640x480 rgb8 frames of a real photo on the image topic at each rate in
turn, like a camera, and collects the `Detection2DArray` answers on the detections topic. Each
frame is stamped with the wall-clock time it is published and carries ``frame_id``
``bench:<round>:<seq>``; the answering node copies the header, so for each answer the latency
is *receive time - stamp* (end to end, both transports included) and the frame it answers is
known. Frames lost on the way (best-effort QoS), dropped by the node (newest wins) or never
answered all count as *sent - answered*.

Per rate: a warm-up (not counted), a measured window of ``--seconds``, then a grace period for
the answers still on the way. The parent process can run something in step with each window:
``measuring <rate>`` and ``done <rate>`` lines are printed on stdout. With ``--diagnostics``
the last `/diagnostics` values of the answering node (the inference node's detector and camera
status: inference time, drops, ...) are kept per rate.
"""

import argparse
import json
import sys
import threading
import time
from typing import Any, Dict, List, Optional

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from tx2_inference.core.stats import percentile

FRAME_ID = 'bench'


def summarize(latencies_ms: List[float]) -> Dict[str, Any]:
    """Return p50, p90, p99, mean and max of a list of latencies (NaN when empty)."""
    if not latencies_ms:
        nan = float('nan')
        return {'latency_ms_p50': nan, 'latency_ms_p90': nan, 'latency_ms_p99': nan,
                'latency_ms_mean': nan, 'latency_ms_max': nan}
    values = np.asarray(latencies_ms, dtype=np.float64)
    return {'latency_ms_p50': percentile(values, 50),
            'latency_ms_p90': percentile(values, 90),
            'latency_ms_p99': percentile(values, 99),
            'latency_ms_mean': float(values.mean()), 'latency_ms_max': float(values.max())}


class LoadGenerator(object):
    """Publish stamped frames at a fixed rate and time the answers (see the module docstring).

    :param frame: HxWx3 uint8 RGB pixels, published as rgb8.
    :param image_topics: where the frames go: one topic per target node.
    :param detections_topics: where the answers come from, one per target, likewise.
    :param diagnostics: also keep the latest `/diagnostics` values.
    """

    def __init__(self, frame: np.ndarray, image_topics: List[str], detections_topics: List[str],
                 diagnostics: bool = False, reliable: bool = True,
                 depth: int = 10) -> None:
        """Create the node, the publisher and the subscriptions; spin in a thread."""
        from tx2_inference.ros.image import array_to_image_msg
        self._owns_context = not rclpy.ok()
        if self._owns_context:
            rclpy.init()
        self.node = rclpy.create_node('tx2_bench_loadgen')
        self._msg = array_to_image_msg(frame, 'rgb8')
        # Reliable like camera_player: it talks to best-effort and reliable subscribers alike.
        reliability = ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
        self._pubs = [self.node.create_publisher(
            Image, topic, QoSProfile(depth=depth, reliability=reliability))
            for topic in image_topics]
        self._lock = threading.Lock()
        self._answers = []  # type: List[tuple]
        self._diagnostics = {}  # type: Dict[str, str]
        for topic in detections_topics:
            self.node.create_subscription(Detection2DArray, topic, self._on_answer,
                                          QoSProfile(depth=100))
        self._detections_topics = list(detections_topics)
        if diagnostics:
            from diagnostic_msgs.msg import DiagnosticArray
            self.node.create_subscription(DiagnosticArray, '/diagnostics',
                                          self._on_diagnostics, QoSProfile(depth=10))
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self.node)
        self._spinning = True
        self._thread = threading.Thread(target=self._spin, name='loadgen-spin')
        self._thread.daemon = True
        self._thread.start()

    def _spin(self) -> None:
        while self._spinning:
            try:
                self._executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: B902 - the context shut down under us
                if self._spinning and rclpy.ok():
                    raise
                return

    def _on_answer(self, msg: Detection2DArray) -> None:
        now = time.time()
        with self._lock:
            self._answers.append((msg.header.frame_id, msg.header.stamp.sec,
                                  msg.header.stamp.nanosec, now))

    def _on_diagnostics(self, msg: Any) -> None:
        values = {}
        for status in msg.status:
            prefix = 'detector.' if status.name.endswith(': detector') else 'camera.'
            for item in status.values:
                values[prefix + item.key] = item.value
        if any(key.startswith('detector.') for key in values):
            with self._lock:
                self._diagnostics = values

    def wait_for_peers(self, timeout: float = 60.0) -> None:
        """Wait until every target node subscribes to its frames and publishes answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (all(pub.get_subscription_count() > 0 for pub in self._pubs) and
                    all(self.node.count_publishers(t) > 0 for t in self._detections_topics)):
                time.sleep(0.5)  # let the matching finish on both sides
                return
            time.sleep(0.05)
        raise TimeoutError('no node subscribes to the frames within {:.0f} s'.format(timeout))

    def run_rate(self, rate: float, seconds: float, warmup: float = 1.0,
                 grace: float = 1.0, round_index: int = 0,
                 on_window: Optional[Any] = None, target: int = 0) -> Dict[str, Any]:
        """Publish at ``rate`` FPS to target ``target``: warm-up, a window of ``seconds``, grace.

        A ``rate`` of 0 or less floods: frames are published back to back, as fast as the
        middleware takes them, for the warm-up and the window.

        :param on_window: called with ``'start'`` and ``'end'`` around the measured window.
        :returns: the figures of the measured window (see ``_figures``).
        """
        flood = rate <= 0
        period = 0.0 if flood else 1.0 / rate
        # A flood has no frame count: it publishes as fast as it can for the time given.
        warmup_frames = 0 if flood else int(round(warmup * rate))
        window_frames = 0 if flood else max(1, int(round(seconds * rate)))
        flood_start = time.perf_counter()
        diagnostics_start = {}  # type: Dict[str, str]
        sent = failures = late = 0
        measured_first = measured_end = None  # type: Optional[int]
        window_start = window_end = 0.0
        header = self._msg.header
        publisher = self._pubs[target]
        header.frame_id = ''
        seq = 0
        next_time = time.perf_counter()
        while True:
            if flood:
                now = time.perf_counter()
                if measured_first is None and now >= flood_start + warmup:
                    warmup_frames = seq
                elif measured_first is not None and now >= window_start + seconds:
                    break
            elif seq >= warmup_frames + window_frames:
                break
            if seq == warmup_frames and measured_first is None:
                measured_first = seq
                window_start = time.perf_counter()
                with self._lock:
                    diagnostics_start = dict(self._diagnostics)
                if on_window is not None:
                    on_window('start')
            stamp = time.time()
            header.stamp.sec = int(stamp)
            header.stamp.nanosec = int((stamp - int(stamp)) * 1e9)
            header.frame_id = '{}:{}:{}'.format(FRAME_ID, round_index, seq)
            try:
                publisher.publish(self._msg)
                if measured_first is not None:
                    sent += 1
            except Exception:  # noqa: B902 - RCLError: a flooded middleware refused it
                if measured_first is not None:
                    failures += 1
            seq += 1
            if flood:
                time.sleep(0)  # hand the GIL to the thread timing the answers
                continue
            next_time += period
            delay = next_time - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            elif delay < -period:  # a camera does not catch up: it skips the tick
                late += 1
                next_time = time.perf_counter()
        window_end = time.perf_counter()
        measured_end = seq
        if on_window is not None:
            on_window('end')
        time.sleep(grace)
        with self._lock:
            answers, self._answers = self._answers, []
            diagnostics = dict(self._diagnostics)
        latencies = []
        seen = set()
        for frame_id, sec, nanosec, received in answers:
            parts = frame_id.split(':')
            if len(parts) != 3 or parts[0] != FRAME_ID or int(parts[1]) != round_index:
                continue
            index = int(parts[2])
            if index < measured_first or index >= measured_end or index in seen:
                continue
            seen.add(index)
            latencies.append((received - (sec + nanosec * 1e-9)) * 1e3)
        elapsed = window_end - window_start
        result = {'rate_fps': float(rate), 'flood': flood, 'target': target,
                  'seconds': elapsed, 'sent': sent, 'publish_failures': failures,
                  'late_ticks': late, 'answered': len(seen),
                  'answered_ratio': len(seen) / float(max(sent, 1)),
                  'sent_fps': sent / elapsed, 'fps': len(seen) / elapsed,
                  'latency_ms': [round(v, 3) for v in latencies]}
        result.update(summarize(latencies))
        if diagnostics:
            result['diagnostics'] = diagnostics
            # What the node said before this window: its running totals (stage times) give
            # means over the window, its percentiles mix earlier windows in.
            result['diagnostics_start'] = diagnostics_start
        return result

    def close(self) -> None:
        """Stop spinning and destroy the node (and the context it made)."""
        self._spinning = False
        self._thread.join(2.0)
        self._executor.shutdown()
        self.node.destroy_node()
        if self._owns_context:
            rclpy.try_shutdown()


def main(argv: Optional[List[str]] = None) -> int:
    """Command line: publish at each rate, write the figures as JSON."""
    parser = argparse.ArgumentParser(prog='python -m tx2_inference.tools.bench.loadgen',
                                     description=__doc__.split('\n\n')[0])
    parser.add_argument('--rates', default='15,30',
                        help='comma-separated FPS, each RATE or RATE@TARGET (the index of a '
                             "target topic; default 0); RATE 'flood' or 0: back to back "
                             '(%(default)s)')
    parser.add_argument('--seconds', type=float, default=10.0, help='measured window per rate')
    parser.add_argument('--warmup', type=float, default=1.0, help='seconds before each window')
    parser.add_argument('--grace', type=float, default=1.0, help='seconds after each window')
    parser.add_argument('--image-topics', default='bench/image_raw',
                        help='comma-separated, one per target node (%(default)s)')
    parser.add_argument('--detections-topics', default='bench/detections',
                        help='comma-separated, one per target node (%(default)s)')
    parser.add_argument('--image', help='photo to publish (default: skimage astronaut)')
    parser.add_argument('--diagnostics', action='store_true', help='keep /diagnostics values')
    parser.add_argument('--best-effort', action='store_true',
                        help='publish best effort (default: reliable, as camera_player)')
    parser.add_argument('--depth', type=int, default=10, help='publisher queue (%(default)s)')
    parser.add_argument('--output', help='write the figures here as JSON (default: stdout)')
    args = parser.parse_args(argv)
    from tx2_inference.tools.benchmark import load_frame
    generator = LoadGenerator(load_frame(args.image), args.image_topics.split(','),
                              args.detections_topics.split(','),
                              args.diagnostics, not args.best_effort, args.depth)
    results = []
    try:
        generator.wait_for_peers()
        for index, item in enumerate(args.rates.split(',')):
            rate_text, _, target_text = item.partition('@')
            rate = 0.0 if rate_text == 'flood' else float(rate_text)
            target = int(target_text or 0)

            def signal(what: str, rate: float = rate, target: int = target) -> None:
                print('{} {} {}'.format('measuring' if what == 'start' else 'done', rate,
                                        target), flush=True)
            result = generator.run_rate(rate, args.seconds, args.warmup, args.grace, index,
                                        signal, target)
            print('loadgen: {:.0f} FPS in to {}: {} sent, {} answered, {:.1f} FPS out, latency '
                  'p50 {:.1f} ms, p99 {:.1f} ms'.format(
                      result['sent_fps'], target, result['sent'], result['answered'],
                      result['fps'],
                      result['latency_ms_p50'], result['latency_ms_p99']), file=sys.stderr)
            results.append(result)
    finally:
        generator.close()
    text = json.dumps(results)
    if args.output:
        with open(args.output, 'w') as f:
            f.write(text)
    else:
        print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
