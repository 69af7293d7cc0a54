"""Benchmark: the executor against the raw backend on the same model and the same input.

``python -m tx2_inference.benchmark [--model M] [--backend B] [--frames N] [--output F]``

Measurements, one function each, on the same model, input and pre-processing:

- ``measure_raw``: the backend alone, in a tight loop on one pre-processed input, in the
  calling thread, one inference at a time: the limit.
- ``measure_executor``: the double-buffered executor fed real 640x480 frames of a real photo,
  pre-processing, inference and decoding included. ``feed='closed'`` keeps it saturated (a new
  frame is submitted as each result arrives, so a frame is always pending); a rate in FPS
  feeds it from a thread like a camera. ``executor`` uses the same backend settings as the
  raw loop; ``executor_split`` (CPU backends) gives each concurrently running slot
  cores // depth runtime threads instead of all of them.

Rounds alternate raw and executor so that a noisy machine affects both alike; the figures are
medians over rounds, and the ratio (the median of the per-round ratios) is what to compare
across machines. The results dict is printed and,
with ``--output``, written as JSON. New measurements (issue 7: under load, the ROS node, a
naive node) add a function and a key to the results dict.
"""

import argparse
import collections
import contextlib
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
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(frames):
            backend.run(slot)
            times[i] = slot.infer_ms
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        backend.release_slot(slot)
    return {'fps': frames / elapsed, 'cpu_ms_per_frame': cpu * 1e3 / frames,
            'infer_ms_p50': float(np.percentile(times, 50)),
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
    state = {'results': 0, 'start': 0.0, 'end': 0.0, 'cpu': 0.0, 'feeding': True,
             'before': None}  # type: Dict[str, Any]
    latencies = []  # type: List[float]

    def on_result(tag: Any, detections: Any, timing: Dict[str, float]) -> None:
        # Counting only: in closed feed, every result submits the next frame until the end.
        state['results'] += 1
        count = state['results']
        if count == warmup:
            state['start'], state['cpu'] = time.perf_counter(), time.process_time()
            state['before'] = detector.stats()
        elif warmup < count <= warmup + frames:
            latencies.append(timing['latency_ms'])
            if count == warmup + frames:
                state['end'], state['cpu'] = (time.perf_counter(),
                                              time.process_time() - state['cpu'])
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
    return {'fps': frames / elapsed, 'cpu_ms_per_frame': state['cpu'] * 1e3 / frames,
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
                  backend: str = 'onnxruntime', frames: int = 150, rounds: int = 10,
                  feed: Union[str, float] = 'closed', depth: int = 2,
                  threads: Optional[int] = None, split_threads: Optional[int] = 0,
                  image: Optional[str] = None, log: Any = None) -> Dict[str, Any]:
    """Run every measurement and return the results dict (see the module docstring).

    :param split_threads: also measure the executor with this many runtime threads per run
        (``executor_split``): on CPU the slots run concurrently, so they can split the cores
        instead of each run using all of them. 0: cores // depth; None: skip.
    """
    frame = load_frame(image)
    rows = collections.OrderedDict([('raw', []), ('executor', [])])  # type: Dict[str, List]
    with contextlib.ExitStack() as stack:
        detector = stack.enter_context(Detector(model, config_path=config, backend=backend,
                                                depth=depth, threads=threads))
        split = None
        if split_threads is not None and detector.backend_name in ('onnxruntime', 'tflite'):
            split_threads = split_threads or max(1, (os.cpu_count() or 1) // depth)
            if split_threads != threads:
                split = stack.enter_context(Detector(model, config_path=config, backend=backend,
                                                     depth=depth, threads=split_threads))
                rows['executor_split'] = []
        for index in range(rounds):
            rows['raw'].append(measure_raw(detector, frame, frames))
            rows['executor'].append(measure_executor(detector, frame, frames, feed))
            if split is not None:
                rows['executor_split'].append(measure_executor(split, frame, frames, feed))
            if log is not None:
                log('round {}: {}'.format(index + 1, ', '.join(
                    '{} {:.1f} FPS'.format(name, r[-1]['fps']) for name, r in rows.items())))
        results = collections.OrderedDict([
            ('model', model), ('backend', detector.backend_name),
            ('precision', detector.precision), ('depth', depth), ('threads', threads),
            ('split_threads', split_threads if split is not None else None),
            ('frames_per_round', frames), ('rounds', rounds), ('frame_size', list(FRAME_SIZE)),
            ('feed', feed)])  # type: Dict[str, Any]
    for name, measured in rows.items():
        for key in measured[0]:
            if key == 'dropped':
                results[name + '_dropped'] = sum(r[key] for r in measured)
            else:
                results['{}_{}'.format(name, key)] = _median(measured, key)
        results[name + '_fps_rounds'] = [round(r['fps'], 2) for r in measured]
    # Ratios are paired per round (measured back to back), so that load drifting between
    # rounds on a shared machine cancels out.
    for name in rows:
        if name != 'raw':
            results[name + '_over_raw'] = float(np.median(
                [e['fps'] / r['fps'] for r, e in zip(rows['raw'], rows[name])]))
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
    parser.add_argument('--frames', type=int, default=150, help='frames per measurement')
    parser.add_argument('--rounds', type=int, default=10, help='raw/executor rounds')
    parser.add_argument('--feed', default='closed',
                        help="'closed' (saturated) or a frame rate in FPS")
    parser.add_argument('--depth', type=int, default=2, help='executor slots')
    parser.add_argument('--threads', type=int, help='CPU threads for the runtime')
    parser.add_argument('--split-threads', type=int, default=0,
                        help='threads per run for executor_split (0: cores // depth; '
                             '-1: skip)')
    parser.add_argument('--image', help='photo to feed (default: skimage astronaut)')
    parser.add_argument('--output', help='write the results as JSON here')
    args = parser.parse_args(argv)
    if not os.path.isfile(args.model):
        parser.error('model {!r} not found; make it with tools/get_default_model.py'.format(
            args.model))
    feed = args.feed if args.feed == 'closed' else float(args.feed)
    results = run_benchmark(args.model, args.config, args.backend, args.frames, args.rounds,
                            feed, args.depth, args.threads,
                            None if args.split_threads < 0 else args.split_threads, args.image,
                            log=lambda line: print(line, file=sys.stderr))
    print('raw backend: {raw_fps:.1f} FPS   executor: {executor_fps:.1f} FPS   '
          'executor/raw: {executor_over_raw:.3f}'.format(**results))
    if 'executor_split_fps' in results:
        print('executor, {split_threads} thread(s) per run: {executor_split_fps:.1f} FPS   '
              'executor_split/raw: {executor_split_over_raw:.3f}'.format(**results))
    print(json.dumps(results, indent=2))
    if args.output:
        with open(args.output, 'w') as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
