"""Benchmark: the executor against the raw backend on the same model and the same input.

``python -m tx2_inference.benchmark [--model M] [--backend B] [--frames N] [--output F]``

Measurements, one function each, all on one opened ``Detector`` (so model, backend, threads
and pre-processing are the same):

- ``measure_raw``: the backend alone, in a tight loop on one pre-processed input, in the
  calling thread: the limit.
- ``measure_executor``: the double-buffered executor fed real 640x480 frames of a real photo,
  pre-processing, inference and decoding included. ``feed='closed'`` keeps it saturated (a new
  frame is submitted as each result arrives, so a frame is always pending); a rate in FPS
  feeds it from a thread like a camera.

Rounds alternate raw and executor so that a noisy machine affects both alike; the figures are
medians over rounds, and the ratio (the median of the per-round ratios) is what to compare
across machines. The results dict is printed and,
with ``--output``, written as JSON. New measurements (issue 7: under load, the ROS node, a
naive node) add a function and a key to the results dict.
"""

import argparse
import json
import os
import platform
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Union

import numpy as np

from tx2_inference.detector import Detector

DEFAULT_MODEL = os.path.join('models', 'ssdlite_person.onnx')
FRAME_SIZE = (640, 480)  # width, height


def load_frame(path: Optional[str] = None, size: Any = FRAME_SIZE) -> np.ndarray:
    """Return an RGB uint8 frame of ``size`` (width, height) from a real photograph.

    :param path: an image file; default: scikit-image's ``astronaut.png`` (a person).
    """
    import cv2
    if path:
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None:
            raise SystemExit('cannot read image {!r}'.format(path))
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    else:
        import skimage.data
        rgb = skimage.data.astronaut()
    return np.ascontiguousarray(cv2.resize(rgb, tuple(size), interpolation=cv2.INTER_LINEAR))


def machine() -> Dict[str, Any]:
    """Describe the machine and the library versions the figures come from."""
    info = {'platform': platform.platform(), 'machine': platform.machine(),
            'processor': _cpu_name(), 'cpus': os.cpu_count(),
            'python': platform.python_version(), 'numpy': np.__version__}
    for module in ('onnxruntime', 'cv2', 'tensorrt'):
        if module in sys.modules:
            info[module] = getattr(sys.modules[module], '__version__', '?')
    return info


def _cpu_name() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def measure_raw(detector: Detector, frame: np.ndarray, frames: int,
                warmup: int = 20) -> Dict[str, float]:
    """Run the backend alone on one pre-processed input, ``frames`` times in a tight loop."""
    backend = detector.backend
    slot = backend.create_slot(detector.depth, {detector.config.input['name']:
                                                detector.input_shape})
    try:
        detector.preprocess(frame, 'rgb', slot)
        for _ in range(warmup):
            backend.run(slot)
        times = np.empty(frames)
        start = time.perf_counter()
        for i in range(frames):
            backend.run(slot)
            times[i] = slot.infer_ms
        elapsed = time.perf_counter() - start
    finally:
        backend.release_slot(slot)
    return {'fps': frames / elapsed, 'infer_ms_p50': float(np.percentile(times, 50)),
            'infer_ms_p99': float(np.percentile(times, 99))}


def measure_executor(detector: Detector, frame: np.ndarray, frames: int,
                     feed: Union[str, float] = 'closed',
                     warmup: int = 20) -> Dict[str, float]:
    """Feed real frames through the executor until ``frames`` results have come back.

    :param feed: ``'closed'``: submit one frame per result (always saturated, nothing
        dropped); a number: submit at that many frames per second from a feeder thread.
    """
    done = threading.Event()
    closed = feed == 'closed'
    state = {'results': 0, 'start': 0.0, 'end': 0.0, 'feeding': True, 'before': None}
    latencies = []  # type: List[float]

    def on_result(tag: Any, detections: Any, timing: Dict[str, float]) -> None:
        # Counting only: in closed feed, every result submits the next frame until the end.
        state['results'] += 1
        count = state['results']
        if count == warmup:
            state['start'] = time.perf_counter()
            state['before'] = detector.stats()
        elif warmup < count <= warmup + frames:
            latencies.append(timing['latency_ms'])
            if count == warmup + frames:
                state['end'] = time.perf_counter()
                state['feeding'] = False
                done.set()
        if closed and state['feeding']:
            detector.submit(frame, 'rgb', count)

    detector.on_result = on_result
    feeder = None
    try:
        if closed:
            for i in range(detector.depth + 1):  # every slot busy plus one pending
                detector.submit(frame, 'rgb', -i)
        else:
            feeder = _Feeder(detector, frame, float(feed))
            feeder.start()
        assert done.wait(600), 'measurement did not finish'
        after = detector.stats()
    finally:
        state['feeding'] = False
        if feeder is not None:
            feeder.stop()
        detector.drain(30)
        detector.on_result = None
    elapsed = state['end'] - state['start']
    before = state['before']
    return {'fps': frames / elapsed,
            'latency_ms_p50': float(np.percentile(latencies, 50)),
            'latency_ms_p99': float(np.percentile(latencies, 99)),
            'dropped': after['dropped'] - before['dropped'],
            'prepare_ms_p50': after['prepare_ms_p50'], 'decode_ms_p50': after['decode_ms_p50'],
            'infer_ms_p50': after['infer_ms_p50']}


class _Feeder(threading.Thread):
    """Submit the same frame at a fixed rate, like a camera."""

    def __init__(self, detector: Detector, frame: np.ndarray, fps: float) -> None:
        super(_Feeder, self).__init__(name='benchmark-feeder')
        self.daemon = True
        self._detector, self._frame, self._period = detector, frame, 1.0 / fps
        self._stop_event = threading.Event()

    def run(self) -> None:
        tag, next_time = 0, time.perf_counter()
        while not self._stop_event.is_set():
            self._detector.submit(self._frame, 'rgb', tag)
            tag += 1
            next_time += self._period
            delay = next_time - time.perf_counter()
            if delay > 0:
                self._stop_event.wait(delay)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)


def run_benchmark(model: str = DEFAULT_MODEL, config: Optional[str] = None,
                  backend: str = 'onnxruntime', frames: int = 200, rounds: int = 5,
                  feed: Union[str, float] = 'closed', depth: int = 2,
                  threads: Optional[int] = None, image: Optional[str] = None,
                  log: Any = None) -> Dict[str, Any]:
    """Run every measurement and return the results dict (see the module docstring)."""
    frame = load_frame(image)
    raw, executor = [], []
    with Detector(model, config_path=config, backend=backend, depth=depth,
                  threads=threads) as detector:
        for index in range(rounds):
            raw.append(measure_raw(detector, frame, frames))
            executor.append(measure_executor(detector, frame, frames, feed))
            if log is not None:
                log('round {}: raw {:.1f} FPS, executor {:.1f} FPS'.format(
                    index + 1, raw[-1]['fps'], executor[-1]['fps']))
        results = {
            'model': model, 'backend': detector.backend_name, 'precision': detector.precision,
            'depth': depth, 'threads': threads, 'frames_per_round': frames, 'rounds': rounds,
            'frame_size': list(FRAME_SIZE), 'feed': feed,
            'raw_fps': _median(raw, 'fps'),
            'raw_infer_ms_p50': _median(raw, 'infer_ms_p50'),
            'executor_fps': _median(executor, 'fps'),
            'executor_latency_ms_p50': _median(executor, 'latency_ms_p50'),
            'executor_latency_ms_p99': _median(executor, 'latency_ms_p99'),
            'executor_prepare_ms_p50': _median(executor, 'prepare_ms_p50'),
            'executor_decode_ms_p50': _median(executor, 'decode_ms_p50'),
            'executor_dropped': sum(r['dropped'] for r in executor),
            'raw_fps_rounds': [r['fps'] for r in raw],
            'executor_fps_rounds': [r['fps'] for r in executor],
        }
    # Paired per round (raw and executor back to back), so that load drifting between rounds
    # on a shared machine cancels out of the ratio.
    results['executor_over_raw'] = float(np.median(
        [e['fps'] / r['fps'] for r, e in zip(raw, executor)]))
    results['machine'] = machine()
    return results


def _median(rows: List[Dict[str, float]], key: str) -> float:
    return float(np.median([row[key] for row in rows]))


def main(argv: Optional[List[str]] = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog='python -m tx2_inference.benchmark',
                                     description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', default=DEFAULT_MODEL, help='model file (%(default)s)')
    parser.add_argument('--config', help='model config (default: the .yaml beside the model)')
    parser.add_argument('--backend', default='onnxruntime', help='backend (%(default)s)')
    parser.add_argument('--frames', type=int, default=200, help='frames per measurement')
    parser.add_argument('--rounds', type=int, default=5, help='raw/executor rounds')
    parser.add_argument('--feed', default='closed',
                        help="'closed' (saturated) or a frame rate in FPS")
    parser.add_argument('--depth', type=int, default=2, help='executor slots')
    parser.add_argument('--threads', type=int, help='CPU threads for the runtime')
    parser.add_argument('--image', help='photo to feed (default: skimage astronaut)')
    parser.add_argument('--output', help='write the results as JSON here')
    args = parser.parse_args(argv)
    if not os.path.isfile(args.model):
        parser.error('model {!r} not found; make it with tools/get_default_model.py'.format(
            args.model))
    feed = args.feed if args.feed == 'closed' else float(args.feed)
    results = run_benchmark(args.model, args.config, args.backend, args.frames, args.rounds,
                            feed, args.depth, args.threads, args.image,
                            log=lambda line: print(line, file=sys.stderr))
    print('raw backend: {raw_fps:.1f} FPS   executor: {executor_fps:.1f} FPS   '
          'executor/raw: {executor_over_raw:.3f}'.format(**results))
    print(json.dumps(results, indent=2))
    if args.output:
        with open(args.output, 'w') as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
