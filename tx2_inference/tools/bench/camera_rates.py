"""The inference node against the naive node at camera rates and in a flood (issue 15).

Both nodes run side by side, each on its own topics, for the whole measurement; one load
generator process (``loadgen``: 640x480 rgb8 frames of a real photo, reliable, depth 10)
sends each input rate to one node and then to the other, round after round, the order
swapped every round. So load drifting on a shared machine affects both alike, and the
figures to compare are the ratios within one run: node / naive per round, then the median.

The rates are camera rates (15, 30, 60 FPS by default) and ``flood``: frames back to back, as
fast as the publisher goes (about 900 FPS on 2 cores), far above what either node serves.

From the node's ``/diagnostics`` (its running totals of each stage, before and after each
window), the mean time per frame of each stage of the node's hot path: ``transport_in``
(image stamp to the subscription callback), ``convert`` (callback to submit), ``queue``
(submit to inference start: pre-processing, the hand-off to the slot's worker, or waiting as
the pending frame), ``infer``, ``collect`` (inference end to the completion thread taking
it), ``decode`` and ``publish`` (the message built and published); ``out`` is the rest of the
end-to-end mean (the answer's transport and the load generator's receipt).

``python -m tx2_inference.tools.benchmark --camera-only`` runs this row set alone.
"""

import contextlib
import os
import subprocess
import sys
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np

from tx2_inference.tools.bench import ros_bench

NAIVE_TOPICS = (ros_bench.TOPIC_NAMESPACE + '/naive/image_raw',
                ros_bench.TOPIC_NAMESPACE + '/naive/detections')
NODE_TOPICS = (ros_bench.IMAGE_TOPIC, ros_bench.DETECTIONS_TOPIC)
STAGES = ('transport_in', 'convert', 'queue', 'infer', 'collect', 'decode', 'publish')
SERIES = ('node', 'naive')


def rate_label(rate: Any) -> str:
    """Return a rate's name in the table and the JSON: ``15`` or ``flood``."""
    return 'flood' if rate == 'flood' or float(rate) <= 0 else '{:g}'.format(float(rate))


class _Profiler(object):
    """py-spy ``record`` of one process during each of its windows (``--profile``)."""

    def __init__(self, folder: str, pids: Dict[int, int], seconds: float) -> None:
        self._folder, self._pids, self._seconds = folder, pids, seconds
        self._running = []  # type: List[subprocess.Popen]
        os.makedirs(folder, exist_ok=True)

    def __call__(self, what: str, rate: float, target: int) -> None:
        if what != 'start':
            return
        name = '{}_{}_{}.txt'.format(SERIES[target], rate_label(rate), len(self._running))
        beside = os.path.join(os.path.dirname(sys.executable), 'py-spy')
        self._running.append(subprocess.Popen(
            [beside if os.path.isfile(beside) else 'py-spy', 'record',
             '--pid', str(self._pids[target]), '--threads', '--idle', '--nonblocking',
             '--rate', '250', '--format', 'raw', '--duration', str(max(1, int(self._seconds))),
             '-o', os.path.join(self._folder, name)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def close(self) -> None:
        for proc in self._running:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def _graph(env: Dict[str, str], model: str, config: Optional[str], backend: str, depth: int,
           threads: Optional[int], log_dir: str,
           node_params: Sequence[str]) -> Iterator[List[ros_bench.Process]]:
    """Start the naive node and the inference node (configured and active)."""
    with ros_bench.Process(ros_bench.naive_args(model, config, backend, threads, *NAIVE_TOPICS),
                           env, log_dir, 'camera_naive') as naive:
        with ros_bench.active_node(env, model, config, backend, depth, threads, log_dir,
                                   'camera_node', extra_params=node_params) as node:
            yield [node, naive]


def measure(env: Dict[str, str], model: str, config: Optional[str], backend: str, depth: int,
            threads: Optional[int], rates: Sequence[Any], rounds: int, seconds: float,
            log_dir: str, log: Callable[[str], None], node_params: Sequence[str] = (),
            profile_dir: Optional[str] = None) -> Dict[str, Any]:
    """Run the alternating rounds; return the raw windows and the summary (``summarize``).

    :param rates: FPS, or ``'flood'``.
    :param node_params: extra ``-p name:=value`` parameters of the inference node.
    :param profile_dir: record each window of each node with py-spy into this folder.
    """
    plan = []  # type: List[str]
    for index in range(rounds):
        for rate in rates:
            rate_text = 'flood' if rate_label(rate) == 'flood' else '{:g}'.format(float(rate))
            order = (0, 1) if index % 2 == 0 else (1, 0)
            plan += ['{}@{}'.format(rate_text, target) for target in order]
    rss = []  # type: List[float]  # the node's resident MB at the end of each of its windows
    with _graph(env, model, config, backend, depth, threads, log_dir, node_params) as procs:
        profiler = None
        if profile_dir:
            profiler = _Profiler(profile_dir, {0: procs[0].pid, 1: procs[1].pid}, seconds)

        def on_window(what: str, rate: float, target: int) -> None:
            if what == 'end' and target == 0:
                rss.append(round(ros_bench.rss_mb(procs[0].pid), 2))
            if profiler is not None:
                profiler(what, rate, target)
        try:
            windows = ros_bench.run_loadgen(env, plan, seconds, log_dir, 'camera_loadgen',
                                            diagnostics=True, peers=procs,
                                            targets=[NODE_TOPICS, NAIVE_TOPICS],
                                            on_window=on_window)
        finally:
            if profiler is not None:
                profiler.close()
    result = summarize(windows, [rate_label(r) for r in rates], rounds)
    result['node_params'] = list(node_params)
    result['node_rss_mb'] = rss
    return result


def _stage_means(window: Dict[str, Any]) -> Dict[str, float]:
    """Return the node's mean ms per frame of each stage over one window (NaN if unknown)."""
    before, after = window.get('diagnostics_start', {}), window.get('diagnostics', {})
    key = 'camera.stage_frames'
    try:
        frames = float(after[key]) - float(before.get(key, 0.0))
    except (KeyError, ValueError):
        frames = 0.0
    means = {}
    for stage in STAGES:
        key = 'camera.stage_ms_total.' + stage
        try:
            total = float(after[key]) - float(before.get(key, 0.0))
        except (KeyError, ValueError):
            total = float('nan')
        means[stage] = total / frames if frames > 0 else float('nan')
    known = [v for v in means.values() if np.isfinite(v)]
    means['out'] = (window['latency_ms_mean'] - sum(known)) if known else float('nan')
    return means


def summarize(windows: List[Dict[str, Any]], labels: Sequence[str],
              rounds: int) -> Dict[str, Any]:
    """Group the windows by rate and series; return per rate the rounds and the ratios.

    Per rate and series: ``latency_ms_p50``, ``latency_ms_p99``, ``answered_fps``,
    ``answered_ratio`` per round, and their medians. Ratios node / naive are per round (the
    two windows of a round are seconds apart), then the median: ``p50_ratio``,
    ``p99_ratio``, ``answered_ratio_node_over_naive``. ``stages_ms``: the node's stage means
    (medians over rounds).
    """
    per_rate = len(labels) * 2
    out = {'rates': list(labels), 'rounds': rounds, 'by_rate': {}}  # type: Dict[str, Any]
    for position, label in enumerate(labels):
        rows = {series: [] for series in SERIES}  # type: Dict[str, List[Dict[str, Any]]]
        for index in range(rounds):
            for window in windows[index * per_rate + 2 * position:
                                  index * per_rate + 2 * position + 2]:
                rows[SERIES[window['target']]].append(window)
        entry = {}  # type: Dict[str, Any]
        for series, series_rows in rows.items():
            entry[series] = {
                'latency_ms_p50': [r['latency_ms_p50'] for r in series_rows],
                'latency_ms_p99': [r['latency_ms_p99'] for r in series_rows],
                'answered_fps': [r['fps'] for r in series_rows],
                'sent_fps': [r['sent_fps'] for r in series_rows],
                'answered_ratio': [r['answered_ratio'] for r in series_rows]}
            for key in ('latency_ms_p50', 'latency_ms_p99', 'answered_fps', 'sent_fps'):
                entry[series][key + '_median'] = _median(entry[series][key])
        node, naive = entry['node'], entry['naive']
        entry['p50_ratio'] = _median([a / b for a, b in zip(node['latency_ms_p50'],
                                                             naive['latency_ms_p50'])])
        entry['p99_ratio'] = _median([a / b for a, b in zip(node['latency_ms_p99'],
                                                             naive['latency_ms_p99'])])
        entry['answered_fps_ratio'] = _median([a / b if b else float('nan') for a, b in zip(
            node['answered_fps'], naive['answered_fps'])])
        stages = [_stage_means(r) for r in rows['node']]
        entry['stages_ms'] = {name: _median([s[name] for s in stages])
                              for name in STAGES + ('out',)}
        entry['node_diagnostics'] = rows['node'][-1].get('diagnostics', {}) if rows['node'] \
            else {}
        out['by_rate'][label] = entry
    out['goals'] = goals(out)
    return out


def goals(result: Dict[str, Any]) -> Dict[str, Any]:
    """Return issue 15's goals with their figures: each ratio is a median of per-round ratios.

    At camera rates: node p50 <= naive p50, node p99 <= 1.1 x naive p99. Flood: frames
    answered >= 1.5 x naive, p99 <= naive.
    """
    rows = []
    for label, entry in result['by_rate'].items():
        if label == 'flood':
            rows += [('flood: answered/s node / naive >= 1.5', entry['answered_fps_ratio'],
                      entry['answered_fps_ratio'] >= 1.5),
                     ('flood: p99 node / naive <= 1', entry['p99_ratio'],
                      entry['p99_ratio'] <= 1.0)]
        else:
            rows += [('{} FPS: p50 node / naive <= 1'.format(label), entry['p50_ratio'],
                      entry['p50_ratio'] <= 1.0),
                     ('{} FPS: p99 node / naive <= 1.1'.format(label), entry['p99_ratio'],
                      entry['p99_ratio'] <= 1.1)]
    return {name: {'value': value, 'met': bool(met)} for name, value, met in rows}


def table(result: Dict[str, Any]) -> str:
    """Return the figures as Markdown tables: latency and throughput, then stage means."""
    lines = ['| input | node p50 (ms) | naive p50 (ms) | p50 node/naive | node p99 | naive p99 '
             '| p99 node/naive | node answered/s | naive answered/s | answered node/naive |',
             '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    for label, entry in result['by_rate'].items():
        node, naive = entry['node'], entry['naive']
        lines.append('| {} | {} | {} | {:.2f} | {} | {} | {:.2f} | {} | {} | {:.2f} |'.format(
            label if label == 'flood' else label + ' FPS', _rounds(node['latency_ms_p50']),
            _rounds(naive['latency_ms_p50']), entry['p50_ratio'],
            _rounds(node['latency_ms_p99']), _rounds(naive['latency_ms_p99']),
            entry['p99_ratio'], _rounds(node['answered_fps']),
            _rounds(naive['answered_fps']), entry['answered_fps_ratio']))
    lines += ['', 'Node stages, mean ms per frame (median over rounds):', '',
              '| input | ' + ' | '.join(STAGES + ('out',)) + ' |',
              '| --- |' + ' --- |' * (len(STAGES) + 1)]
    for label, entry in result['by_rate'].items():
        lines.append('| {} | {} |'.format(label, ' | '.join(
            '{:.2f}'.format(entry['stages_ms'][s]) for s in STAGES + ('out',))))
    if result.get('node_rss_mb'):
        lines += ['', 'Node resident memory after each of its windows (MB): ' + ', '.join(
            '{:.1f}'.format(v) for v in result['node_rss_mb'])]
    lines += ['', 'Goals: ' + '; '.join('{} {:.2f} ({})'.format(
        name, goal['value'], 'met' if goal['met'] else 'NOT met')
        for name, goal in result['goals'].items())]
    return '\n'.join(lines)


def _rounds(values: Sequence[float]) -> str:
    return ' / '.join('{:.1f}'.format(v) for v in values)


def _median(values: Sequence[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.median(finite)) if finite else float('nan')
