"""The ``triton`` row of ``make bench``: the remote backend against local ONNX Runtime.

The same model, frames and executor, once with ONNX Runtime in this process and once through
``backend: triton`` to NVIDIA's Triton server on localhost (``tritonserver`` 2.51.0 from the
nvidia-pytriton wheel, the model in its Python backend with ONNX Runtime,
``tx2_inference.tools.triton_server``): what the gRPC hop and the server cost. On
this 2-core machine the server competes with the client for the same cores, so the figures
are a floor for a real GPU server on a network; docs/BENCHMARKS.md and the README say what to
expect there. A row, not a goal.
"""

import os
import tempfile
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from tx2_inference.detector import Detector


def triton_row(model: str, config: Optional[str], frame: np.ndarray, frames: int, rounds: int,
               depth: int, threads: Optional[int], log: Callable[[str], None],
               folder: Optional[str] = None) -> Dict[str, Any]:
    """Measure local ONNX Runtime and triton alike, rounds alternating; return the medians.

    Each round: the executor saturated (closed feed) on each backend, and one request at a
    time (``measure_raw``: the request's round trip). Skipped, with the reason, where the server
    is not set up (tools/setup_triton.sh).
    """
    from tx2_inference.tools.benchmark import measure_executor, measure_raw, RawModel
    from tx2_inference.tools.triton_server import TritonServer
    name = os.path.splitext(os.path.basename(model))[0]
    server = TritonServer(folder or tempfile.mkdtemp(prefix='tx2_bench_triton_'),
                          {name: model}, threads=threads or 0)
    try:
        server.start()
    except (OSError, RuntimeError) as error:
        return {'skipped': 'no local Triton server: {}'.format(error)}
    rows: Dict[str, List[Dict[str, float]]] = {'onnxruntime': [], 'triton': []}
    try:
        remote_options = {'url': server.url, 'timeout_s': 10.0}
        with Detector(model, config_path=config, backend='onnxruntime', depth=depth,
                      threads=threads) as local, \
                Detector(model, config_path=config, backend='triton', depth=depth,
                         backend_options=remote_options) as remote, \
                RawModel(model, frame, config, backend='onnxruntime', threads=threads) as one, \
                RawModel(model, frame, config, backend='triton',
                         backend_options=remote_options) as one_remote:
            singles = {'onnxruntime': one, 'triton': one_remote}
            for index in range(rounds):
                for label, detector in (('onnxruntime', local), ('triton', remote)):
                    row = measure_executor(detector, frame, frames)
                    raw = measure_raw(singles[label], max(frames // 3, 10), warmup=5)
                    row['request_ms_p50'] = raw['infer_ms_p50']
                    row['request_ms_p99'] = raw['infer_ms_p99']
                    rows[label].append(row)
                    log('triton row {}/{}: {} {:.1f} FPS, latency p50 {:.1f} ms'.format(
                        index + 1, rounds, label, row['fps'], row['latency_ms_p50']))
    finally:
        server.stop()
    result = {'server': 'tritonserver 2.51.0 (Python backend, ONNX Runtime on CPU) on '
                        'localhost, sharing the cores', 'frames': frames, 'rounds': rounds,
              'depth': depth}  # type: Dict[str, Any]
    for label, measured in rows.items():
        for key in ('fps', 'latency_ms_p50', 'latency_ms_p99', 'request_ms_p50',
                    'request_ms_p99', 'cpu_ms_per_frame'):
            result['{}_{}'.format(label, key)] = float(np.median([r[key] for r in measured]))
    result['triton_over_onnxruntime_fps'] = float(np.median(
        [t['fps'] / o['fps'] for o, t in zip(rows['onnxruntime'], rows['triton'])]))
    return result
