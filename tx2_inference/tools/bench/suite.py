"""The benchmark's measurements in a real ROS graph, and the headline figures (issue 7).

``measure_graph`` runs, on the same model and the same 640x480 rgb8 frames as the in-process
rows of ``tx2_inference.tools.benchmark``:

1. the echo sweep per transport (transport floor and losses at each input rate);
2. the raw backend under load, paired with the node: windows in which the load generator
   sends frames to the echo node at the over-rate input while the raw loop runs here,
   alternating with windows of the same input to the inference node (its throughput);
3. the inference node at each input rate: with its default (best-effort) image QoS and with
   the reliable QoS override, per transport; the headline run then sends
   ``memory_frames`` more frames while its resident memory is sampled;
4. the naive node at each input rate.

``headline`` turns the sweeps into the issue's fields; every definition is in its docstring.
"""

import math
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from tx2_inference.core.stats import percentile
from tx2_inference.tools.bench import ros_bench

# Rates at most this fraction of the node's throughput queue nothing: their latency is the
# node's overhead, not waiting.
UNQUEUED_FRACTION = 0.8


def over_rate_for(raw_fps: float) -> float:
    """Return an input rate well above the model's throughput: 1.5 x raw, to 5 FPS."""
    return float(max(5, int(math.ceil(raw_fps * 1.5 / 5.0)) * 5))


def measure_graph(raw_until: Callable[[Any], Dict[str, float]], model: str,
                  config: Optional[str], backend: str, depth: int, threads: Optional[int],
                  rates: Sequence[float], over_rate: float, seconds: float, memory_frames: int,
                  transports: Sequence[str], pair_rounds: int, pair_seconds: float,
                  log_dir: str, log: Callable[[str], None]) -> Dict[str, Any]:
    """Run every ROS measurement; return ``sweeps``, ``paired`` and ``memory``.

    :param raw_until: ``raw_until(stop_event)``: the raw loop in this process until the event.
    :param transports: the first is the headline one (its sweeps have no suffix).
    """
    all_rates = sorted({float(r) for r in rates} | {float(over_rate)})
    sweeps = {}  # type: Dict[str, List[Dict[str, Any]]]
    out = {'sweeps': sweeps, 'rates_fps': all_rates, 'over_rate_fps': float(over_rate),
           'transport_headline': transports[0], 'transports': list(transports)}
    for index, transport in enumerate(transports):
        suffix = '' if index == 0 else '_' + transport
        env = ros_bench.transport_env(transport)
        start = time.time()
        sweeps['echo' + suffix] = ros_bench.echo_sweep(env, all_rates, seconds, log_dir,
                                                       'echo' + suffix)
        log('echo ({}): {} ({:.0f} s)'.format(transport, _brief(sweeps['echo' + suffix]),
                                              time.time() - start))
        if index == 0:
            start = time.time()
            paired = ros_bench.paired_over_rate(raw_until, env, model, config, backend, depth,
                                                threads, over_rate, pair_rounds, pair_seconds,
                                                log_dir)
            out['paired'] = paired
            log('paired at {:g} FPS in: raw under load {} FPS, node {} FPS ({:.0f} s)'.format(
                over_rate, ', '.join('{:.1f}'.format(p['raw']['fps']) for p in paired),
                ', '.join('{:.1f}'.format(p['node']['fps']) for p in paired),
                time.time() - start))
        for reliable in (False, True):
            name = 'node' + suffix + ('_reliable' if reliable else '')
            start = time.time()
            node = ros_bench.node_sweep(
                env, model, config, backend, depth, threads, all_rates, seconds, log_dir, name,
                reliable=reliable, memory_rate=over_rate if name == 'node' else None,
                memory_frames=memory_frames if name == 'node' else 0)
            sweeps[name] = node['rates']
            if 'memory' in node:
                out['memory'] = node['memory']
            log('{}: {} ({:.0f} s)'.format(name, _brief(node['rates']), time.time() - start))
        if index == 0:
            start = time.time()
            sweeps['naive'] = ros_bench.naive_sweep(env, model, config, backend, threads,
                                                    all_rates, seconds, log_dir, 'naive')
            log('naive: {} ({:.0f} s)'.format(_brief(sweeps['naive']), time.time() - start))
    return out


def _brief(rows: List[Dict[str, Any]]) -> str:
    return '; '.join('{:g} in: {:.1f} out, {:.0f}% answered, p50 {:.1f} ms'.format(
        r['rate_fps'], r['fps'], 100 * r['answered_ratio'], r['latency_ms_p50']) for r in rows)


def _rate_key(rate: float) -> str:
    return '{:g}'.format(rate)


def _by_rate(rows: List[Dict[str, Any]], key: str) -> Dict[str, float]:
    return {_rate_key(r['rate_fps']): r[key] for r in rows}


def _at(rows: List[Dict[str, Any]], rate: float) -> Dict[str, Any]:
    for row in rows:
        if abs(row['rate_fps'] - rate) < 1e-6:
            return row
    raise KeyError('no row at {} FPS'.format(rate))


def _diagnostic(row: Dict[str, Any], key: str) -> float:
    try:
        return float(row.get('diagnostics', {})['detector.' + key])
    except (KeyError, ValueError):
        return float('nan')


def headline(results: Dict[str, Any]) -> Dict[str, Any]:
    """Return the issue's fields from the in-process rows and the sweeps.

    - ``raw_fps``, ``executor_fps``: in-process, medians over rounds.
    - ``raw_under_load_fps``, ``node_fps``: medians over the paired windows at the over-rate
      input (the headline transport, the node's default best-effort image QoS) of the raw
      loop's FPS and of the node's answered FPS.
    - ``node_over_raw``: the median of the per-pair ratios node / raw (paired windows are
      seconds apart, so drifting load cancels out; close to node_fps / raw_under_load_fps).
    - ``naive_fps``: answered FPS of the naive node at the over-rate input (its sweep);
      ``node_over_naive``: the node's answered FPS in its own sweep's over-rate window over
      naive_fps (the same protocol: one window each, minutes apart, not paired).
    - ``transport_floor_ms_p50/p99``: the echo round trip, pooled over the unqueued rates
      (at most 0.8 x node_fps) of the headline transport.
    - ``added_latency_ms_p50/p99`` per unqueued rate: the node's end-to-end latency
      percentile minus its own inference time percentile (its /diagnostics at the end of
      that rate's window) minus the echo's percentile at that rate; the headline is the
      largest over the unqueued rates. ``node_minus_naive_latency_ms_p50``: a cross-check
      that needs no inference time, the node's p50 minus the naive node's (which does the same
      work in one thread), largest over the unqueued rates.
    - ``latency_ms_p50/p99`` and ``answered_ratio``: per series, per input rate.
    - ``rss_growth_mb_per_10k_frames``: the slope of the node's resident memory over the
      memory run, per 10,000 frames sent.
    """
    sweeps = results['sweeps']
    over = results['over_rate_fps']
    paired = results['paired']
    node_fps = float(np.median([p['node']['fps'] for p in paired]))
    naive_fps = _at(sweeps['naive'], over)['fps']
    raw_under = float(np.median([p['raw']['fps'] for p in paired]))
    under_load_floor = [v for p in paired for v in p['echo']['latency_ms']]
    unqueued = [r for r in results['rates_fps'] if r <= UNQUEUED_FRACTION * node_fps]
    floor = []  # type: List[float]
    added = {}  # type: Dict[str, Dict[str, float]]
    for rate in unqueued:
        echo, node = _at(sweeps['echo'], rate), _at(sweeps['node'], rate)
        floor += echo['latency_ms']
        added[_rate_key(rate)] = {
            'p50': node['latency_ms_p50'] - _diagnostic(node, 'infer_ms_p50') -
            echo['latency_ms_p50'],
            'p99': node['latency_ms_p99'] - _diagnostic(node, 'infer_ms_p99') -
            echo['latency_ms_p99'],
            'node_latency_ms_p50': node['latency_ms_p50'],
            'infer_ms_p50': _diagnostic(node, 'infer_ms_p50'),
            'infer_ms_p99': _diagnostic(node, 'infer_ms_p99'),
            'prepare_ms_p50': _diagnostic(node, 'prepare_ms_p50'),
            'decode_ms_p50': _diagnostic(node, 'decode_ms_p50'),
            'floor_ms_p50': echo['latency_ms_p50'], 'floor_ms_p99': echo['latency_ms_p99'],
            'naive_latency_ms_p50': _at(sweeps['naive'], rate)['latency_ms_p50']}
    nan = float('nan')
    out = {
        'raw_under_load_fps': raw_under,
        'node_fps': node_fps, 'naive_fps': naive_fps,
        'node_over_raw': float(np.median([p['node']['fps'] / p['raw']['fps'] for p in paired])),
        'raw_under_load_fps_rounds': [round(p['raw']['fps'], 2) for p in paired],
        'node_fps_rounds': [round(p['node']['fps'], 2) for p in paired],
        'node_over_naive': (_at(sweeps['node'], over)['fps'] / naive_fps if naive_fps
                            else nan),
        'transport_floor_ms_p50': percentile(floor, 50),
        'transport_floor_ms_p99': percentile(floor, 99),
        'transport_floor_under_load_ms_p50': percentile(under_load_floor, 50),
        'added_latency_ms_p50': max([a['p50'] for a in added.values()] or [nan]),
        'added_latency_ms_p99': max([a['p99'] for a in added.values()] or [nan]),
        'added_latency_by_rate': added,
        'node_minus_naive_latency_ms_p50': max(
            [a['node_latency_ms_p50'] - a['naive_latency_ms_p50'] for a in added.values()] or
            [nan]),
        'unqueued_rates_fps': unqueued,
        'latency_ms_p50': {}, 'latency_ms_p99': {}, 'answered_ratio': {}, 'answered_fps': {},
    }  # type: Dict[str, Any]
    for name, rows in sweeps.items():
        out['latency_ms_p50'][name] = _by_rate(rows, 'latency_ms_p50')
        out['latency_ms_p99'][name] = _by_rate(rows, 'latency_ms_p99')
        out['answered_ratio'][name] = _by_rate(rows, 'answered_ratio')
        out['answered_fps'][name] = _by_rate(rows, 'fps')
    for name in sweeps:
        if name.startswith('node') and name != 'node':
            out[name + '_fps'] = _at(sweeps[name], over)['fps']
    memory = results.get('memory')
    out['rss_growth_mb_per_10k_frames'] = (memory['rss_growth_mb_per_10k_frames']
                                           if memory else nan)
    return out


def goals(results: Dict[str, Any]) -> Dict[str, Any]:
    """Return each CPU goal of issue 7 with its figure and whether it is met."""
    over = results['over_rate_fps']
    node_over = results['latency_ms_p50']['node'][_rate_key(over)]
    bound = (results['added_latency_by_rate'] and
             max(a['infer_ms_p50'] for a in results['added_latency_by_rate'].values()))
    bound = (bound or float('nan')) * 2 + results['transport_floor_ms_p50']
    rows = [
        ('node_over_raw >= 0.95', results['node_over_raw'], results['node_over_raw'] >= 0.95),
        ('added_latency_ms_p50 <= 2', results['added_latency_ms_p50'],
         results['added_latency_ms_p50'] <= 2.0),
        ('added_latency_ms_p99 <= 6', results['added_latency_ms_p99'],
         results['added_latency_ms_p99'] <= 6.0),
        # No growth: within a few RSS pages of flat (0.5 MB is 50 bytes a frame).
        ('rss_growth_mb_per_10k_frames < 0.5', results['rss_growth_mb_per_10k_frames'],
         abs(results['rss_growth_mb_per_10k_frames']) < 0.5),
        ('over-rate latency p50 <= 2 inferences + floor ({:.1f} ms)'.format(bound), node_over,
         node_over <= bound),
    ]
    return {name: {'value': value, 'met': bool(met)} for name, value, met in rows}


def write_plots(results: Dict[str, Any], folder: str) -> List[str]:
    """Draw the figures into ``folder`` (see ``tx2_inference.tools.bench.plots``)."""
    from tx2_inference.tools.bench import plots
    return plots.plot_all(results, folder)


def log_dir_for(output: str) -> str:
    """Return (and make) the folder for the processes' logs beside the results."""
    folder = os.path.join(output, 'logs')
    if not os.path.isdir(folder):
        os.makedirs(folder)
    return folder
