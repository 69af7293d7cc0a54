"""The benchmark's ROS graph: processes started, driven and measured from the benchmark.

Every measurement here runs real processes on one isolated ROS domain:

- ``echo_sweep``: the load generator (``loadgen``) sends frames to the echo node at each input
  rate; its round trip is the transport floor, and sent - answered is what the transport lost.
- ``paired_over_rate``: the raw backend loop in this process while the load generator sends
  frames to the echo node (the ceiling with the transport's CPU cost included), alternating
  with windows of the same input to the inference node.
- ``node_sweep``: the inference node (a lifecycle node process, configured and activated
  through its services) at each input rate, optionally followed by a long run at one rate
  while the node's resident memory is sampled (growth per 10,000 frames).
- ``naive_sweep``: the naive node (``naive_node``) at each input rate.

A *transport* is the Fast DDS set-up of every process: ``default`` (Fast DDS defaults) or
``large_shm`` (``config/fastdds_large_frames.xml``: a shared-memory segment that holds a whole
640x480 frame).
"""

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from tx2_inference.tools.processes import ModuleProcess

TOPIC_NAMESPACE = 'tx2_bench'
IMAGE_TOPIC = TOPIC_NAMESPACE + '/image_raw'
DETECTIONS_TOPIC = TOPIC_NAMESPACE + '/detections'
NODE_NAME = 'tx2_bench_inference_node'
PROFILE_FILE = 'fastdds_large_frames.xml'
# The Fast DDS set-ups the graph is measured under (not the node's input_transport).
DDS_TRANSPORTS = ('large_shm', 'default')
_PROFILE_VARIABLES = ('FASTDDS_DEFAULT_PROFILES_FILE', 'FASTRTPS_DEFAULT_PROFILES_FILE')


def profile_path() -> str:
    """Return the bundled Fast DDS profile: the source tree's config/, else the package share."""
    source = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))), 'config', PROFILE_FILE)
    if os.path.isfile(source):
        return source
    for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        candidate = os.path.join(prefix, 'share', 'tx2_inference', 'config', PROFILE_FILE)
        if prefix and os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError('{} is neither in the source tree nor in the package share'.format(
        PROFILE_FILE))


def isolate_graph() -> None:
    """Give this process and its children their own ROS domain, on this machine only.

    Call before rclpy is imported. A ``ROS_DOMAIN_ID`` already set is kept.
    """
    # Domains above 101 reach Linux's ephemeral ports; the topic names are the benchmark's own.
    os.environ.setdefault('ROS_DOMAIN_ID', str(random.randint(1, 101)))
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    os.environ.setdefault('HOME', tempfile.gettempdir())  # rcl needs HOME or ROS_LOG_DIR


def transport_env(transport: str) -> Dict[str, str]:
    """Return the environment of a child process for ``transport`` (see the module doc)."""
    if transport not in DDS_TRANSPORTS:
        raise ValueError('transport {!r} is not one of {}'.format(transport, DDS_TRANSPORTS))
    env = dict(os.environ)
    for name in _PROFILE_VARIABLES:
        env.pop(name, None)
    if transport == 'large_shm':
        env['FASTDDS_DEFAULT_PROFILES_FILE'] = profile_path()
    return env


class Process(ModuleProcess):
    """A benchmark child process, its log in ``<log_dir>/<name>.log``; stopped as Ctrl-C."""

    def __init__(self, args: Sequence[str], env: Dict[str, str], log_dir: str,
                 name: str) -> None:
        """Start ``python -m <args>`` with its output in ``<log_dir>/<name>.log``."""
        super().__init__(args, os.path.join(log_dir, name + '.log'), env)

    def check(self) -> None:
        """Raise if the process has exited, with the end of its log."""
        if not self.alive():
            raise RuntimeError('{} exited with status {}: {}'.format(
                self.log_path, self.process.returncode, self.tail()))

    def tail(self, size: int = 2000) -> str:
        """Return the end of the process's log."""
        return self.log()[-size:]

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15.0) -> Optional[int]:
        """Interrupt the process (as Ctrl-C) and wait; kill it if it does not exit."""
        return super().stop(sig, timeout)


def rss_mb(pid: int) -> float:
    """Return a process's resident memory in MB (Linux /proc), NaN if unreadable."""
    try:
        with open('/proc/{}/status'.format(pid)) as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        pass
    return float('nan')


def run_loadgen(env: Dict[str, str], rates: Sequence[Any], seconds: float, log_dir: str,
                name: str, diagnostics: bool = False, warmup: float = 1.0,
                grace: float = 1.0,
                on_window: Optional[Callable[[str, float, int], None]] = None,
                peers: Optional[Sequence[Process]] = None,
                targets: Sequence[Tuple[str, str]] = ((IMAGE_TOPIC, DETECTIONS_TOPIC),)
                ) -> List[Dict[str, Any]]:
    """Run the load generator at each rate; return its figures per rate.

    :param rates: FPS, or ``'RATE@TARGET'`` strings to send to another of ``targets``.
    :param on_window: ``on_window('start'|'end', rate, target)`` around each measured window.
    :param peers: processes that must stay alive meanwhile (checked at the end).
    :param targets: (image topic, detections topic) of each target node.
    """
    output = os.path.join(log_dir, name + '.json')
    args = [sys.executable, '-m', 'tx2_inference.tools.bench.loadgen',
            '--rates', ','.join(r if isinstance(r, str) else '{:g}'.format(r) for r in rates),
            '--seconds', str(seconds), '--warmup', str(warmup), '--grace', str(grace),
            '--image-topics', ','.join(t[0] for t in targets),
            '--detections-topics', ','.join(t[1] for t in targets), '--output', output]
    if diagnostics:
        args.append('--diagnostics')
    with open(os.path.join(log_dir, name + '.log'), 'w') as log:
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=log,
                                universal_newlines=True)
        for line in proc.stdout:
            words = line.split()
            if len(words) == 3 and words[0] in ('measuring', 'done') and on_window:
                on_window('start' if words[0] == 'measuring' else 'end', float(words[1]),
                          int(words[2]))
        status = proc.wait()
    for peer in peers or ():
        peer.check()
    if status != 0:
        with open(os.path.join(log_dir, name + '.log')) as f:
            raise RuntimeError('the load generator failed ({}): {}'.format(
                status, f.read()[-2000:]))
    with open(output) as f:
        return json.load(f)


def echo_sweep(env: Dict[str, str], rates: Sequence[float], seconds: float,
               log_dir: str, name: str = 'echo') -> List[Dict[str, Any]]:
    """Measure the transport floor and losses at each rate against the echo node."""
    with Process(_echo_args(), env, log_dir, name + '_node') as echo:
        return run_loadgen(env, rates, seconds, log_dir, name + '_loadgen', peers=[echo])


def _echo_args(image_topic: str = IMAGE_TOPIC,
               detections_topic: str = DETECTIONS_TOPIC) -> List[str]:
    return ['tx2_inference.tools.echo_node', '--ros-args', '-r', 'image:=' + image_topic,
            '-r', 'detections:=' + detections_topic]


def paired_over_rate(raw_until: Callable[[threading.Event], Dict[str, float]],
                     env: Dict[str, str], model: str, config: Optional[str], backend: str,
                     depth: int, threads: Optional[int], rate: float, rounds: int,
                     seconds: float, log_dir: str) -> List[Dict[str, Any]]:
    """Raw backend under load and the node at ``rate``, in alternating windows.

    The echo node and the inference node run side by side on their own topics; the load
    generator sends ``rate`` FPS to the echo node while the raw loop runs here (until the window
    ends: ``raw_until(stop_event)``), then to the inference node, ``rounds`` times. Each pair of
    windows is a few seconds apart, so load drifting on a shared machine affects both alike.

    :returns: per round: ``raw`` (the raw loop's figures), ``echo`` and ``node`` (the load
        generator's figures for each window).
    """
    echo_topics = (TOPIC_NAMESPACE + '/echo/image_raw', TOPIC_NAMESPACE + '/echo/detections')
    raw_rows = []  # type: List[Dict[str, float]]
    state = {}  # type: Dict[str, Any]

    def on_window(what: str, _: float, target: int) -> None:
        if target != 0:
            return
        if what == 'start':
            stop = threading.Event()
            worker = threading.Thread(target=lambda: raw_rows.append(raw_until(stop)),
                                      name='raw-under-load')
            worker.daemon = True
            worker.start()
            state['stop'], state['worker'] = stop, worker
        else:
            state['stop'].set()
            state['worker'].join()

    with Process(_echo_args(*echo_topics), env, log_dir, 'paired_echo') as echo:
        with active_node(env, model, config, backend, depth, threads, log_dir,
                         'paired_node') as node:
            rows = run_loadgen(env, ['{:g}@{}'.format(rate, t) for _ in range(rounds)
                                     for t in (0, 1)], seconds, log_dir, 'paired_loadgen',
                               diagnostics=True, on_window=on_window, peers=[echo, node],
                               targets=[echo_topics, (IMAGE_TOPIC, DETECTIONS_TOPIC)])
    if len(raw_rows) != rounds:
        raise RuntimeError('{} raw rounds for {} windows'.format(len(raw_rows), rounds))
    return [{'raw': raw, 'echo': rows[2 * i], 'node': rows[2 * i + 1]}
            for i, raw in enumerate(raw_rows)]


def node_args(model: str, config: Optional[str], backend: str, depth: int,
              threads: Optional[int], params_file: Optional[str] = None,
              extra_params: Sequence[str] = ()) -> List[str]:
    """Return the inference node's command line for the benchmark graph.

    :param extra_params: more ``name:=value`` parameters, last (they win).
    """
    args = ['tx2_inference.ros.node', '--ros-args', '-r', '__node:=' + NODE_NAME,
            '-p', 'model_path:=' + os.path.abspath(model),
            '-p', 'image_topics:=[{}]'.format(IMAGE_TOPIC),
            '-p', 'backend:=' + backend, '-p', 'executor_depth:={}'.format(depth),
            '-p', 'cpu_threads:={}'.format(threads or 0),
            '-p', 'publish_debug_image:=false']
    if config:
        args += ['-p', 'model_config:=' + os.path.abspath(config)]
    for param in extra_params:
        args += ['-p', param]
    if params_file:
        args += ['--params-file', params_file]
    return args


def reliable_params_file(log_dir: str) -> str:
    """Write the QoS override that makes the node's image subscription reliable."""
    from tx2_inference.tools.client import write_reliable_overrides
    return write_reliable_overrides(os.path.join(log_dir, 'node_reliable_images.yaml'),
                                    ['/' + IMAGE_TOPIC])


@contextlib.contextmanager
def active_node(env: Dict[str, str], model: str, config: Optional[str], backend: str,
                depth: int, threads: Optional[int], log_dir: str, name: str,
                reliable: bool = False, extra_params: Sequence[str] = ()) -> Iterator[Process]:
    """Start the inference node, configure and activate it through its services."""
    from tx2_inference.tools.client import NodeClient
    args = node_args(model, config, backend, depth, threads,
                     reliable_params_file(log_dir) if reliable else None, extra_params)
    with Process(args, env, log_dir, name) as node:
        client = NodeClient('/' + NODE_NAME, name='tx2_bench_client')
        try:
            client.wait_for_node(60.0)
            if not client.transition('configure'):
                raise RuntimeError('the inference node did not configure: ' + node.tail())
            if not client.transition('activate'):
                raise RuntimeError('the inference node did not activate: ' + node.tail())
        finally:
            client.close()
        yield node


def node_sweep(env: Dict[str, str], model: str, config: Optional[str], backend: str,
               depth: int, threads: Optional[int], rates: Sequence[float], seconds: float,
               log_dir: str, name: str, reliable: bool = False,
               memory_rate: Optional[float] = None,
               memory_frames: int = 0) -> Dict[str, Any]:
    """Run the inference node at each rate, then (optionally) a memory run.

    :returns: ``rates`` (the load generator's figures per rate, with the node's
        diagnostics) and, with ``memory_frames``, ``memory`` (see ``_memory``).
    """
    with active_node(env, model, config, backend, depth, threads, log_dir, name + '_node',
                     reliable) as node:
        result = {'rates': run_loadgen(env, rates, seconds, log_dir, name + '_loadgen',
                                       diagnostics=True, peers=[node])}
        if memory_frames and memory_rate:
            result['memory'] = _memory(env, node, memory_rate, memory_frames, log_dir,
                                       name + '_memory')
    return result


def _memory(env: Dict[str, str], node: Process, rate: float, frames: int, log_dir: str,
            name: str) -> Dict[str, Any]:
    """Send ``frames`` frames at ``rate`` and sample the node's resident memory.

    The growth is the slope of a straight line fitted to the samples of the window after its
    first fifth (allocator and caches settle), in MB per 10,000 frames sent.
    """
    samples = []  # type: List[tuple]
    sampling = threading.Event()
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            if sampling.is_set():
                samples.append((time.perf_counter(), rss_mb(node.pid)))
            stop.wait(0.25)

    def on_window(what: str, *_: Any) -> None:
        if what == 'start':
            sampling.set()
        else:
            sampling.clear()

    sampler = threading.Thread(target=sample, name='rss-sampler')
    sampler.daemon = True
    sampler.start()
    try:
        figures = run_loadgen(env, [rate], frames / float(rate), log_dir, name,
                              on_window=on_window, peers=[node])[0]
    finally:
        stop.set()
        sampler.join()
    times = np.array([t for t, _ in samples])
    rss = np.array([m for _, m in samples])
    keep = times >= times[0] + (times[-1] - times[0]) / 5.0
    slope_mb_per_s = float(np.polyfit(times[keep] - times[0], rss[keep], 1)[0])
    sent_per_s = figures['sent'] / figures['seconds']
    return {'rate_fps': rate, 'sent': figures['sent'], 'answered': figures['answered'],
            'answered_fps': figures['fps'], 'latency_ms_p50': figures['latency_ms_p50'],
            'rss_mb_start': float(rss[0]), 'rss_mb_end': float(rss[-1]),
            'rss_mb_max': float(rss.max()), 'samples': len(samples),
            'rss_growth_mb_per_10k_frames': slope_mb_per_s / sent_per_s * 1e4,
            # A step (an allocator arena) and a steady leak look alike in a slope: the second
            # half alone tells them apart.
            'rss_mb_second_half': float(rss[-1] - rss[len(rss) // 2]),
            'rss_mb': [round(float(v), 2) for v in rss[::max(1, len(rss) // 200)]]}


def naive_args(model: str, config: Optional[str], backend: str, threads: Optional[int],
               image_topic: str = IMAGE_TOPIC,
               detections_topic: str = DETECTIONS_TOPIC) -> List[str]:
    """Return the naive node's command line, on the given topics."""
    args = ['tx2_inference.tools.bench.naive_node', '--model', os.path.abspath(model),
            '--backend', backend]
    if config:
        args += ['--config', os.path.abspath(config)]
    if threads:
        args += ['--threads', str(threads)]
    return args + ['--ros-args', '-r', 'image:=' + image_topic,
                   '-r', 'detections:=' + detections_topic]


def naive_sweep(env: Dict[str, str], model: str, config: Optional[str], backend: str,
                threads: Optional[int], rates: Sequence[float], seconds: float,
                log_dir: str, name: str = 'naive') -> List[Dict[str, Any]]:
    """Run the naive node at each rate."""
    with Process(naive_args(model, config, backend, threads), env, log_dir,
                 name + '_node') as naive:
        return run_loadgen(env, rates, seconds, log_dir, name + '_loadgen', peers=[naive])
