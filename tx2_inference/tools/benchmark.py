"""Benchmark: the executor against the raw backend on the same model and the same input.

``python -m tx2_inference.tools.benchmark [--model M] [--backend B] [--frames N] [--output F]``

Measurements, one function each, on the same model, input and pre-processing:

- ``measure_raw``: the backend alone, in a tight loop on one pre-processed input, in the
  calling thread, one inference at a time: the limit. It runs on a `RawModel`: the same model
  on a backend of its own, never a slot added to the detector's backend (a dynamic TensorRT
  engine has one optimisation profile per executor slot, and no more).
- ``measure_executor``: the double-buffered executor fed real 640x480 frames of a real photo,
  pre-processing, inference and decoding included. ``feed='closed'`` keeps it saturated (a new
  frame is submitted as each result arrives, so a frame is always pending); a rate in FPS
  feeds it from a thread like a camera. ``executor`` uses the same backend settings as the
  raw loop; ``executor_split`` (CPU backends) gives each concurrently running slot
  cores // depth runtime threads instead of all of them.

Rounds alternate raw and executor so that a noisy machine affects both alike; the figures are
medians over rounds, and the ratio (the median of the per-round ratios) is what to compare
across machines.

Then, in a real ROS graph (``tx2_inference.tools.bench``, issue 7; ``--no-ros`` skips it): the
transport floor against the echo node, the raw backend under load paired with the inference
node at an input rate above the model's throughput, the node and a naive node at 15, 30 and
60 FPS and that over-rate input, and the node's memory over 10,000 frames. ``--output`` is a
folder: ``benchmark-results.json`` (every figure, the issue's fields at the top level), the
plots, and the processes' logs. docs/BENCHMARKS.md reads the figures of one run.

The ``triton`` row (``tx2_inference.tools.bench.triton_bench``; ``--no-triton`` skips it): the
executor and single requests on local ONNX Runtime against ``backend: triton`` to NVIDIA's
Triton server on localhost (``tools/setup_triton.sh``), a row, not a goal.
Several cameras (issue 16, ``tx2_inference.tools.bench.cameras``; ``--cameras ''`` skips it):
1, 2 and 4 synchronised cameras at 30 FPS each, batched (``batch_size`` = cameras) against
unbatched, alternating, on the default model converted with ``--batch dynamic`` (made once
into the output folder when ``--batch-model`` does not exist).

On a GPU, ``--backend tensorrt`` adds the ``gpu`` rows (executor against the raw engine,
executor depth 2 against 1); elsewhere they say why they are skipped. ``--compare-depth``
measures depth 1 against 2 on any backend.
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
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np

from tx2_inference.backends import open_backend
from tx2_inference.core.model_config import ModelConfig
from tx2_inference.core.preprocess import Preprocessor
from tx2_inference.core.stats import percentile
from tx2_inference.detector import Detector, input_shape, integer_quantization
from tx2_inference.tools.bench.ros_bench import DDS_TRANSPORTS
from tx2_inference.tools.requires import require

DEFAULT_MODEL = os.path.join('models', 'ssdlite_person.onnx')
FRAME_SIZE = (640, 480)  # width, height
RESULTS_FILE = 'benchmark-results.json'


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
        rgb = require('skimage.data', "the benchmark's default photo (or give --image)"
                      ).astronaut()
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


class RawModel(object):
    """The model alone on a backend of its own: one slot holding one pre-processed frame.

    Opened with the detector's settings, so it runs the same model (a TensorRT engine built
    from ONNX comes from the same cache), pre-processed by the same code.
    """

    def __init__(self, model: str, frame: np.ndarray, config: Optional[str] = None,
                 backend: str = 'auto', precision: str = 'fp16',
                 threads: Optional[int] = None,
                 backend_options: Optional[Dict[str, Any]] = None) -> None:
        """Open the backend, make slot 0 and write ``frame`` (RGB) into its input."""
        self.backend = open_backend(model, backend, precision=precision, threads=threads,
                                    **(backend_options or {}))
        try:
            resolved = ModelConfig.for_model(model, config).resolve(self.backend.inputs,
                                                                    self.backend.outputs)
            name, shape = resolved.input['name'], input_shape(resolved.input)
            dtype = [t.dtype for t in self.backend.inputs if t.name == name][0]
            self.slot = self.backend.create_slot(0, {name: shape})
            preprocess = Preprocessor(resolved.input, shape, dtype,
                                      integer_quantization(self.backend, name, dtype))
            preprocess(frame, 'rgb', self.slot.inputs[name])
        except BaseException:
            self.backend.close()
            raise

    def close(self) -> None:
        """Release the slot and the backend."""
        self.backend.release_slot(self.slot)
        self.backend.close()

    def __enter__(self) -> 'RawModel':
        """Use as a context manager: closes on exit."""
        return self

    def __exit__(self, *exc: Any) -> None:
        """Close the model."""
        self.close()


def measure_raw(raw: RawModel, frames: int, warmup: int = 20,
                stop: Optional[threading.Event] = None) -> Dict[str, float]:
    """Run the backend alone on its pre-processed input, ``frames`` times in a tight loop.

    :param stop: run until this event is set instead (at most ``frames`` times).
    """
    backend, slot = raw.backend, raw.slot
    for _ in range(warmup):
        backend.run(slot)
    times = np.empty(frames)
    start, cpu = time.perf_counter(), time.process_time()
    count = 0
    while count < frames and not (stop is not None and stop.is_set()):
        backend.run(slot)
        times[count] = slot.infer_ms
        count += 1
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    times = times[:max(count, 1)]
    frames = max(count, 1)
    return {'fps': count / elapsed, 'cpu_ms_per_frame': cpu * 1e3 / frames,
            'infer_ms_p50': percentile(times, 50),
            'infer_ms_p99': percentile(times, 99)}


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
            'latency_ms_p50': percentile(latencies, 50),
            'latency_ms_p99': percentile(latencies, 99),
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
        raw = stack.enter_context(RawModel(model, frame, config, backend, threads=threads))
        split = None
        if split_threads is not None and detector.backend_name in ('onnxruntime', 'tflite'):
            split_threads = split_threads or max(1, (os.cpu_count() or 1) // depth)
            if split_threads != threads:
                split = stack.enter_context(Detector(model, config_path=config, backend=backend,
                                                     depth=depth, threads=split_threads))
                rows['executor_split'] = []
        for index in range(rounds):
            rows['raw'].append(measure_raw(raw, frames))
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


def compare_depth(model: str, config: Optional[str] = None, backend: str = 'onnxruntime',
                  frames: int = 150, rounds: int = 10, threads: Optional[int] = None,
                  image: Optional[str] = None) -> Dict[str, Any]:
    """Measure the saturated executor with one slot against two (double buffering).

    Rounds (half of ``rounds``, at least 3) alternate the two depths; the ratio is the
    median of the per-round ratios.
    """
    frame = load_frame(image)
    rows = {1: [], 2: []}  # type: Dict[int, List[Dict[str, float]]]
    with contextlib.ExitStack() as stack:
        detectors = {depth: stack.enter_context(Detector(model, config_path=config,
                                                         backend=backend, depth=depth,
                                                         threads=threads))
                     for depth in (1, 2)}
        for _ in range(max(3, rounds // 2)):
            for depth in (1, 2):
                rows[depth].append(measure_executor(detectors[depth], frame, frames))
    return {'depth_1_fps': _median(rows[1], 'fps'), 'depth_2_fps': _median(rows[2], 'fps'),
            'depth_2_over_depth_1': float(np.median(
                [two['fps'] / one['fps'] for one, two in zip(rows[1], rows[2])]))}


def gpu_rows(results: Dict[str, Any], depth_compare: Callable[[], Dict[str, Any]]
             ) -> Dict[str, Any]:
    """Return the GPU figures (TensorRT executor vs raw engine, depth 2 vs 1), or why not.

    :param depth_compare: measures depth 1 against 2 (`compare_depth` with the run's settings).
    """
    if results['backend'] != 'tensorrt':
        from tx2_inference.backends.tensorrt.cuda import probe_gpu
        count, why = probe_gpu()
        return {'skipped': 'the GPU rows need --backend tensorrt on a machine with an NVIDIA '
                           'GPU and TensorRT; this run used {} ({})'.format(
                               results['backend'],
                               '{} GPU(s) present'.format(count) if count else why)}
    rows = {'executor_over_raw': results['executor_over_raw'], 'raw_fps': results['raw_fps'],
            'executor_fps': results['executor_fps']}
    rows.update(depth_compare())
    return rows


def batch_model(args: argparse.Namespace, log: Any) -> str:
    """Return ``--batch-model``, converting the default model with --batch dynamic if absent."""
    if os.path.isfile(args.batch_model):
        return args.batch_model
    import subprocess
    path = os.path.join(args.output_dir, 'ssdlite_person_batch.onnx')
    if not os.path.isfile(path):
        log('cameras: converting the default model with --batch dynamic into ' + path)
        subprocess.check_call([
            sys.executable, '-m', 'tx2_inference.convert', 'onnx',
            os.path.join('models', 'ssdlite_person_savedmodel'), '-o', path,
            '--inputs', 'image_tensor:0[1,300,300,3]', '--batch', 'dynamic',
            '--outputs', 'Postprocessor/ExpandDims_1:0,Postprocessor/convert_scores:0',
            '--labels', 'person', '--decoder', 'boxes_scores', '--background-class', '0'])
    return path


def camera_rows(args: argparse.Namespace, log: Any) -> Dict[str, Any]:
    """Measure 1, 2, 4 synchronised cameras, batched against unbatched (issue 16)."""
    from tx2_inference.tools.bench.cameras import format_rows, measure_cameras
    counts = [int(c) for c in args.cameras.split(',') if c]
    rows = measure_cameras(batch_model(args, log), load_frame(args.image), counts,
                           args.cameras_fps, args.cameras_seconds, args.cameras_rounds,
                           args.backend, args.threads, log=log)
    print(format_rows(rows, args.cameras_fps))
    return rows


def tiles_rows(args: argparse.Namespace, log: Any) -> Dict[str, Any]:
    """Measure tiled inference, tiles batched against sequential, per grid (issue 24)."""
    import cv2

    from tx2_inference.tools.bench.tiles import format_cost, measure_cost, parse_grids
    frame = cv2.imread(os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), 'test', 'data', 'small_people', 'vtest_340.jpg'))
    rows = measure_cost(args.model, batch_model(args, log), frame, parse_grids(args.tiles),
                        args.tiles_frames, args.tiles_rounds, args.backend, args.threads,
                        log=log)
    print(format_cost(rows))
    return rows


def run_graph(results: Dict[str, Any], model: str, config: Optional[str], backend: str,
              depth: int, threads: Optional[int], image: Optional[str], rates: List[float],
              over_rate: Optional[float], seconds: float, memory_frames: int,
              transports: List[str], load_rounds: int, load_seconds: float, output_dir: str,
              log: Any) -> Dict[str, Any]:
    """Add the ROS graph's measurements (issue 7) and the headline figures to ``results``.

    :param over_rate: the input rate above the model's throughput; None: from the raw FPS.
    The other arguments are the command line's (``--rates 15,30`` is ``[15.0, 30.0]``).
    """
    from tx2_inference.tools.bench import suite
    frame = load_frame(image)
    over_rate = over_rate or suite.over_rate_for(results['raw_fps'])
    with RawModel(model, frame, config, backend, threads=threads) as raw:
        graph = suite.measure_graph(
            lambda stop: measure_raw(raw, 10**6, stop=stop), model, config, backend, depth,
            threads, rates, over_rate, seconds, memory_frames, transports, load_rounds,
            load_seconds, suite.log_dir_for(output_dir), log)
    results.update(graph)
    results.update(suite.headline(results))
    results['goals'] = suite.goals(results)
    return results


def run_camera_rates(model: str, config: Optional[str], backend: str, depth: int,
                     threads: Optional[int], rates: List[Any], rounds: int, seconds: float,
                     transport: str, node_params: List[str], profile_dir: Optional[str],
                     output_dir: str, log: Any) -> Dict[str, Any]:
    """Return the node against the naive node at camera rates and in a flood (issue 15).

    :param rates: FPS, or ``'flood'``. The other arguments are the command line's.
    :returns: the figures (``tx2_inference.tools.bench.camera_rates.summarize``) and
        ``table``, the Markdown table printed at the end.
    """
    from tx2_inference.tools.bench import camera_rates, ros_bench, suite
    start = time.time()
    result = camera_rates.measure(
        ros_bench.transport_env(transport), model, config, backend, depth, threads, rates,
        rounds, seconds, suite.log_dir_for(output_dir), log, node_params, profile_dir)
    result['transport'] = transport
    result['seconds_per_window'] = seconds
    result['loadavg'] = [round(v, 2) for v in os.getloadavg()]
    result['table'] = camera_rates.table(result)
    log('camera rates: {} rounds in {:.0f} s'.format(rounds, time.time() - start))
    return result


def main(argv: Optional[List[str]] = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog='python -m tx2_inference.tools.benchmark',
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
    parser.add_argument('--compare-depth', action='store_true',
                        help='also measure executor depth 1 against 2 (always with tensorrt)')
    parser.add_argument('--no-triton', action='store_true',
                        help='skip the triton row (remote backend against local ONNX Runtime)')
    parser.add_argument('--triton-rounds', type=int, default=3,
                        help='rounds of the triton row (%(default)s)')
    cams = parser.add_argument_group('several cameras, batched (issue 16)')
    cams.add_argument('--cameras', default='1,2,4',
                      help="camera counts ('' skips; %(default)s)")
    cams.add_argument('--cameras-fps', type=float, default=30.0, help='FPS per camera')
    cams.add_argument('--cameras-seconds', type=float, default=5.0,
                      help='seconds per window')
    cams.add_argument('--cameras-rounds', type=int, default=2,
                      help='unbatched/batched window pairs per camera count')
    cams.add_argument('--batch-model', default=os.path.join('models',
                                                            'ssdlite_person_batch.onnx'),
                      help='a model converted with --batch dynamic (made if absent)')
    tiles = parser.add_argument_group('tiled inference, batched against sequential (issue 24)')
    tiles.add_argument('--tiles', default='3x3,2x2+whole',
                       help="grids, COLUMNSxROWS[+whole] ('' skips; %(default)s)")
    tiles.add_argument('--tiles-frames', type=int, default=20,
                       help='frames per detector per round (%(default)s)')
    tiles.add_argument('--tiles-rounds', type=int, default=3,
                       help='rounds, the three detectors alternating (%(default)s)')
    ros = parser.add_argument_group('ROS graph (issue 7)')
    ros.add_argument('--no-ros', action='store_true', help='in-process measurements only')
    ros.add_argument('--rates', default='15,30,60',
                     help='input rates in FPS; the over-rate is added (%(default)s)')
    ros.add_argument('--over-rate', type=float,
                     help='an input rate above the throughput (default: 1.5 x raw, to 5 FPS)')
    ros.add_argument('--seconds', type=float, default=10.0,
                     help='measured seconds per input rate (%(default)s)')
    ros.add_argument('--memory-frames', type=int, default=10000,
                     help='frames of the memory run (0: skip; %(default)s)')
    ros.add_argument('--load-rounds', type=int, default=7,
                     help='paired windows of the raw loop under load and the node at the '
                          'over-rate input (%(default)s)')
    ros.add_argument('--load-seconds', type=float, default=5.0,
                     help='seconds of each paired window (%(default)s)')
    ros.add_argument('--transports', default=','.join(DDS_TRANSPORTS),
                     help='Fast DDS set-ups, the headline first (%(default)s)')
    camera = parser.add_argument_group('node against the naive node at camera rates (issue 15)')
    camera.add_argument('--camera-rates', default='15,30,60,flood',
                        help="input rates in FPS, 'flood': back to back; empty: skip "
                             '(%(default)s)')
    camera.add_argument('--camera-rounds', type=int, default=3,
                        help='alternating rounds, node and naive each one window per rate '
                             '(%(default)s)')
    camera.add_argument('--camera-seconds', type=float, default=10.0,
                        help='measured seconds per window (%(default)s)')
    camera.add_argument('--camera-only', action='store_true',
                        help='run this row set alone (no in-process rows, no issue-7 graph)')
    camera.add_argument('--node-param', action='append', default=[], metavar='NAME:=VALUE',
                        help='an extra parameter of the node in this row set (repeatable), '
                             "e.g. 'ort_spinning:=true'")
    camera.add_argument('--profile', metavar='DIR',
                        help='record each window of each node with py-spy into DIR')
    parser.add_argument('--output', help='folder for benchmark-results.json and the plots '
                                         '(or a .json file: plots beside it)')
    args = parser.parse_args(argv)
    if not os.path.isfile(args.model):
        parser.error('model {!r} not found; make it with tools/get_default_model.py'.format(
            args.model))
    if args.output and args.output.endswith('.json'):
        args.output_dir, results_path = os.path.dirname(args.output) or '.', args.output
    else:
        args.output_dir = args.output or os.path.join('output', 'benchmark')
        results_path = os.path.join(args.output_dir, RESULTS_FILE)
    if not os.path.isdir(args.output_dir):
        os.makedirs(args.output_dir)
    if not args.no_ros:
        from tx2_inference.tools.bench.ros_bench import isolate_graph
        isolate_graph()  # before rclpy is imported anywhere

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    load_before = os.getloadavg()
    if args.camera_only:
        if args.no_ros:
            parser.error('--camera-only runs a ROS graph: drop --no-ros')
        results = collections.OrderedDict([('model', args.model), ('backend', args.backend),
                                           ('depth', args.depth), ('threads', args.threads),
                                           ('machine', machine())])  # type: Dict[str, Any]
    else:
        feed = args.feed if args.feed == 'closed' else float(args.feed)
        results = run_benchmark(args.model, args.config, args.backend, args.frames,
                                args.rounds, feed, args.depth, args.threads,
                                None if args.split_threads < 0 else args.split_threads,
                                args.image, log=log)
        print('raw backend: {raw_fps:.1f} FPS   executor: {executor_fps:.1f} FPS   '
              'executor/raw: {executor_over_raw:.3f}'.format(**results))
        if 'executor_split_fps' in results:
            print('executor, {split_threads} thread(s) per run: {executor_split_fps:.1f} FPS '
                  '  executor_split/raw: {executor_split_over_raw:.3f}'.format(**results))

        def depth_compare() -> Dict[str, Any]:
            return compare_depth(args.model, args.config, args.backend, args.frames,
                                 args.rounds, args.threads, args.image)

        results['gpu'] = gpu_rows(results, depth_compare)
        if args.compare_depth and 'depth_2_over_depth_1' not in results['gpu']:
            results['depth_compare'] = depth_compare()
        if not args.no_triton and args.model.endswith('.onnx'):
            from tx2_inference.tools.bench.triton_bench import triton_row
            results['triton'] = triton_row(args.model, args.config, load_frame(args.image),
                                           args.frames, args.triton_rounds, args.depth,
                                           args.threads, log)
            if 'skipped' not in results['triton']:
                print('triton (localhost): {triton_fps:.1f} FPS, latency p50 '
                      '{triton_latency_ms_p50:.1f} ms   onnxruntime: {onnxruntime_fps:.1f} FPS, '
                      'latency p50 {onnxruntime_latency_ms_p50:.1f} ms'.format(
                          **results['triton']))
        if args.cameras:
            results['cameras'] = camera_rows(args, log)
        if args.tiles:
            results['tiles'] = tiles_rows(args, log)
        if not args.no_ros:
            run_graph(results, args.model, args.config, args.backend, args.depth, args.threads,
                      args.image, [float(r) for r in args.rates.split(',') if r],
                      args.over_rate, args.seconds, args.memory_frames,
                      [t for t in args.transports.split(',') if t], args.load_rounds,
                      args.load_seconds, args.output_dir, log)
            from tx2_inference.tools.bench.suite import write_plots
            results['plots'] = write_plots(results, args.output_dir)
    if not args.no_ros and args.camera_rates:
        results['camera_rates'] = run_camera_rates(
            args.model, args.config, args.backend, args.depth, args.threads,
            [r if r == 'flood' else float(r) for r in args.camera_rates.split(',') if r],
            args.camera_rounds, args.camera_seconds,
            [t for t in args.transports.split(',') if t][0], args.node_param, args.profile,
            args.output_dir, log)
        print(results['camera_rates'].pop('table'))
    results['machine']['loadavg_before'] = [round(v, 2) for v in load_before]
    results['machine']['loadavg_after'] = [round(v, 2) for v in os.getloadavg()]
    with open(results_path, 'w') as f:
        json.dump(results, f, indent=2)
    summary = {k: v for k, v in results.items()
               if k not in ('sweeps', 'memory', 'paired', 'camera_rates')}
    print(json.dumps(summary, indent=2))
    print('results: ' + results_path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
