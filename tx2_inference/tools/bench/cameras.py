"""Several cameras on one model: batched against unbatched inference (issue 16).

``measure_cameras`` feeds the ``Detector`` from a synchronised rig: every ``1 / fps`` seconds
one thread submits a 640x480 frame for each of N cameras at the same instant (each camera its
own ``source``), like hardware-triggered cameras whose callbacks arrive together. Two
detectors on the same batch-capable model run the same feed in alternating windows: unbatched
(``batch_size`` 1) and batched (``batch_size`` N). Per window: frames answered per second in
all, each camera's answered count, p50/p99 latency (submit to result) and the worst camera's
share of the answers, and the mean frames per inference. The figures are medians over rounds.
``raw_ms_per_frame`` is the model alone, one launch at a time, per frame at batch 1 and at
batch N: where it does not fall with the batch (a CPU already busy at batch 1), batching cannot
raise the throughput; it pays where one frame leaves the device idle (a GPU).

The rig runs in the benchmark's process (no ROS transport): what is measured is the scheduling
and the model, not the middleware (the ROS graph rows measure that).
"""

import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from tx2_inference.detector import Detector


class _Window(object):
    """The answers of one window, per camera."""

    def __init__(self, cameras: int) -> None:
        self.lock = threading.Lock()
        self.latencies = [[] for _ in range(cameras)]  # type: List[List[float]]
        self.open = True

    def on_result(self, tag: Any, detections: Any, timing: Dict[str, float]) -> None:
        with self.lock:
            if self.open:
                self.latencies[tag].append(timing['latency_ms'])


def _run_window(detector: Detector, frame: np.ndarray, cameras: int, fps: float,
                seconds: float) -> Dict[str, Any]:
    """Feed ``cameras`` synchronised cameras at ``fps`` for ``seconds``; return the figures."""
    window = _Window(cameras)
    detector.on_result = window.on_result
    before = detector.stats()
    period = 1.0 / fps
    start = time.perf_counter()
    ticks = int(round(seconds * fps))
    for tick in range(ticks):
        for camera in range(cameras):
            detector.submit(frame, 'rgb', camera, 'cam{}'.format(camera))
        delay = start + (tick + 1) * period - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    elapsed = time.perf_counter() - start
    detector.drain(30.0)
    with window.lock:
        window.open = False
        latencies = [list(values) for values in window.latencies]
    after = detector.stats()
    answered = [len(values) for values in latencies]
    launches = after['inferences'] - before['inferences']
    total = sum(answered)
    return {
        'sent_per_camera': ticks, 'answered': answered,
        'answered_fps': total / elapsed,
        'worst_share': min(answered) / float(total) if total else 0.0,
        'latency_ms_p50': [float(np.percentile(v, 50)) if v else float('nan')
                           for v in latencies],
        'latency_ms_p99': [float(np.percentile(v, 99)) if v else float('nan')
                           for v in latencies],
        'frames_per_inference': (total / float(launches)) if launches else float('nan'),
        'infer_ms_p50': after['infer_ms_p50'],
    }


def raw_ms_per_frame(detector: Detector, batch: int, reps: int = 5) -> float:
    """Return the model's own time per frame at ``batch`` (one slot, launches one at a time)."""
    backend = detector.backend
    shape = (batch,) + tuple(detector.input_shape[1:])
    try:
        slot = backend.create_slot(99, {detector.config.input['name']: shape})
    except Exception:  # noqa: B902 - e.g. a TensorRT engine without a spare profile
        return float('nan')
    try:
        backend.run(slot)
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            backend.run(slot)
            times.append((time.perf_counter() - start) * 1e3 / batch)
        return float(np.median(times))
    finally:
        backend.release_slot(slot)


def _median(rows: List[Dict[str, Any]], key: str) -> Any:
    values = np.array([row[key] for row in rows], dtype=np.float64)
    median = np.median(values, axis=0)
    return median.tolist() if median.ndim else float(median)


def measure_cameras(model: str, frame: np.ndarray, cameras: Sequence[int] = (1, 2, 4),
                    fps: float = 30.0, seconds: float = 5.0, rounds: int = 2,
                    backend: str = 'onnxruntime', threads: Optional[int] = None,
                    batch_timeout_ms: float = 10.0,
                    log: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Return, per camera count, the unbatched and batched figures (see the module).

    :param model: a model that runs batches of every count in ``cameras`` (tx2-convert onnx
        --batch dynamic); unbatched runs use it at batch 1.
    """
    results = {}  # type: Dict[str, Any]
    for count in cameras:
        names = ['cam{}'.format(i) for i in range(count)]
        rows = {'unbatched': [], 'batched': []}  # type: Dict[str, List[Dict[str, Any]]]
        with Detector(model, backend=backend, threads=threads, sources=names) as unbatched, \
                Detector(model, backend=backend, threads=threads, batch_size=count,
                         batch_timeout_ms=batch_timeout_ms, sources=names) as batched:
            for detector in (unbatched, batched):  # warm up
                _run_window(detector, frame, count, fps, 1.0)
            raw = {1: [], count: []}  # type: Dict[int, List[float]]
            for _ in range(rounds):
                for mode, detector in (('unbatched', unbatched), ('batched', batched)):
                    rows[mode].append(_run_window(detector, frame, count, fps, seconds))
                for size in sorted(raw):
                    raw[size].append(raw_ms_per_frame(batched, size))
        entry = {'raw_ms_per_frame': {str(size): float(np.median(values))
                                      for size, values in raw.items()}}  # type: Dict[str, Any]
        for mode, mode_rows in rows.items():
            entry[mode] = {key: _median(mode_rows, key) for key in (
                'answered_fps', 'worst_share', 'latency_ms_p50', 'latency_ms_p99',
                'frames_per_inference', 'infer_ms_p50')}
            entry[mode]['rounds'] = mode_rows
        entry['batched_over_unbatched'] = (entry['batched']['answered_fps'] /
                                           max(entry['unbatched']['answered_fps'], 1e-9))
        results['{}_cameras'.format(count)] = entry
        if log is not None:
            log(format_rows({'{}_cameras'.format(count): entry}, fps))
    return results


def format_rows(results: Dict[str, Any], fps: float = 30.0) -> str:
    """Return the figures as a Markdown table."""
    lines = ['| cameras ({:.0f} FPS each) | mode | answered/s | frames/inference | '
             'inference ms p50 | model alone, ms/frame | per-camera p50 ms | '
             'per-camera p99 ms | worst share |'.format(fps), '|---' * 9 + '|']
    for key, entry in results.items():
        count = key.split('_')[0]
        for mode in ('unbatched', 'batched'):
            row = entry[mode]
            raw = entry['raw_ms_per_frame']['1' if mode == 'unbatched' else count]
            p50 = ' '.join('{:.0f}'.format(v) for v in row['latency_ms_p50'])
            p99 = ' '.join('{:.0f}'.format(v) for v in row['latency_ms_p99'])
            lines.append('| {} | {} | {:.1f} | {:.2f} | {:.1f} | {:.1f} | {} | {} | {:.2f} |'
                         .format(count, mode, row['answered_fps'], row['frames_per_inference'],
                                 row['infer_ms_p50'], raw, p50, p99, row['worst_share']))
    return '\n'.join(lines)
