"""The benchmark's figures: a latency histogram, and throughput and latency against input rate.

Both read the results dict the benchmark writes (``benchmark-results.json``), so they can be
drawn again from a saved run: ``python -m tx2_inference.tools.bench.plots results.json out_dir``.
matplotlib is imported here only (`tools.requires.pyplot`: the Agg backend, no display needed).
"""

import json
import os
import sys
from typing import Any, Dict, List, Optional

from tx2_inference.tools.requires import pyplot

LATENCY_HISTOGRAM = 'latency_histogram.png'
RATE_SWEEP = 'rate_sweep.png'
_COLORS = {'node': 'tab:blue', 'naive': 'tab:red', 'echo': 'tab:gray'}


def _pyplot() -> Any:
    return pyplot("the benchmark's plots")


def _rows(results: Dict[str, Any], series: str) -> List[Dict[str, Any]]:
    return results.get('sweeps', {}).get(series, [])


def _at(rows: List[Dict[str, Any]], rate: float) -> Optional[Dict[str, Any]]:
    for row in rows:
        if abs(row['rate_fps'] - rate) < 1e-6:
            return row
    return None


def plot_latency_histogram(results: Dict[str, Any], path: str, dpi: int = 80) -> str:
    """Draw end-to-end latency histograms: the echo floor, the node and the naive node.

    One panel at the lowest input rate (nothing queues), one at the over-rate input.
    """
    plt = _pyplot()
    rates = [results['rates_fps'][0], results['over_rate_fps']]
    figure, axes = plt.subplots(1, len(rates), figsize=(10, 3.6))
    for axis, rate in zip(axes, rates):
        series = [('echo', 'echo (transport floor)'),
                  ('node', 'inference node'), ('naive', 'naive node')]
        top = 1.0
        for key, _ in series:
            row = _at(_rows(results, key), rate)
            if row and row['latency_ms']:
                top = max(top, max(row['latency_ms']))
        # Log-spaced bins from 0.3 ms: the floor, the node and a queue's staleness all show.
        bins = [0.3 * (min(top, 2000.0) / 0.3) ** (i / 60.0) for i in range(61)]
        bins[-1] *= 1.01
        for key, label in series:
            row = _at(_rows(results, key), rate)
            if not row or not row['latency_ms']:
                continue
            axis.hist(row['latency_ms'], bins=bins, alpha=0.6, color=_COLORS[key],
                      label='{} (p50 {:.1f} ms)'.format(label, row['latency_ms_p50']))
        axis.set_xlabel('end-to-end latency, ms (image stamp to detections received)')
        axis.set_ylabel('frames')
        axis.set_xscale('log')
        axis.set_title('{:g} FPS in'.format(rate))
        axis.legend(fontsize=8)
    figure.suptitle('Latency, 640x480 rgb8 frames, {}'.format(results.get('transport_headline',
                                                                           '')))
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    return path


def plot_rate_sweep(results: Dict[str, Any], path: str, dpi: int = 80) -> str:
    """Draw answered FPS and latency (p50, p99) against input FPS for node and naive."""
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    rates = results['rates_fps']
    left.plot(rates, rates, ':', color='black', label='input rate')
    if results.get('raw_under_load_fps'):
        left.axhline(results['raw_under_load_fps'], color='tab:green', linestyle='--',
                     label='raw backend under load')
    for key, label in (('node', 'inference node'), ('node_reliable', 'node, reliable QoS'),
                       ('naive', 'naive node')):
        rows = _rows(results, key)
        if not rows:
            continue
        color = _COLORS.get(key, 'tab:cyan')
        left.plot([r['rate_fps'] for r in rows], [r['fps'] for r in rows], 'o-', color=color,
                  label=label)
        right.plot([r['rate_fps'] for r in rows], [r['latency_ms_p50'] for r in rows], 'o-',
                   color=color, label=label + ' p50')
        right.plot([r['rate_fps'] for r in rows], [r['latency_ms_p99'] for r in rows], 'o--',
                   color=color, alpha=0.6, label=label + ' p99')
    left.set_xlabel('input rate, FPS')
    left.set_ylabel('answered, FPS')
    left.legend(fontsize=8)
    right.set_xlabel('input rate, FPS')
    right.set_ylabel('end-to-end latency, ms')
    right.set_yscale('log')
    right.legend(fontsize=7)
    figure.suptitle('Throughput and latency against input rate')
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    return path


def plot_all(results: Dict[str, Any], folder: str, dpi: int = 80) -> List[str]:
    """Draw every figure into ``folder``; return their paths."""
    if not os.path.isdir(folder):
        os.makedirs(folder)
    return [plot_latency_histogram(results, os.path.join(folder, LATENCY_HISTOGRAM), dpi),
            plot_rate_sweep(results, os.path.join(folder, RATE_SWEEP), dpi)]


def main(argv: Optional[List[str]] = None) -> int:
    """Draw the figures of a saved results file."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print('usage: python -m tx2_inference.tools.bench.plots results.json out_dir',
              file=sys.stderr)
        return 2
    with open(args[0]) as f:
        results = json.load(f)
    for path in plot_all(results, args[1]):
        print(path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
