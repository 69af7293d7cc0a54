"""ONNX Runtime's intra-op pool at camera rates: wake-ups, CPU and latency per configuration.

``python -m tx2_inference.tools.bench.ort_threads [--runs 40] [--gap-ms 66]`` (issue 23,
section 6). One process, the default model, one session per configuration, all run in turn
with ``--gap-ms`` of idle time before each run (15 FPS: 66 ms), the order reversed every round,
so load on a shared machine falls on all alike. Per configuration: the run's p50 and p90 wall
time, the process's CPU per run, its voluntary context switches per run (the pool's sleeps and
wake-ups: a sleeping pool parks and is woken at every parallel part of a run) and the CPU the
process burns in the idle gap after a run (a pool that spins on after the run).

The configurations: ``sleeping`` (``ort_spin_us: 0``, the node's default before issue 23 and
its pool on ONNX Runtime before 1.26), ``spin_in_run``
(``ort_spinning: true``: spin while a run is in progress, ``session.force_spinning_stop``),
``ort_default`` (a plain session, as the naive node has: spins, and on after the run),
``one_thread`` (``cpu_threads: 1``, no pool) and ``spin_<N>us`` (spin at most N us before
sleeping, ``session.intra_op.spin_duration_us``, ONNX Runtime 1.26 and later; ``spin_50us`` is
the node's default, ``ort_spin_us: 50``). Then the caller's
placement (issue 23, ``backends/affinity.py``): ``sleeping@free`` and ``sleeping@pool``, the
sleeping session called from the CPUs its pool threads are not pinned to (the node's way) and
from the pool thread's own CPU (where an unpinned caller often stays).
"""

import argparse
import os
import resource
import sys
import time
from typing import Any, Dict, List, Optional

import numpy as np

from tx2_inference.backends.affinity import pinned_cpus_of_new_threads, thread_ids

DEFAULT_MODEL = os.path.join('models', 'ssdlite_person.onnx')


def configurations(spin_us: List[int]) -> Dict[str, Dict[str, Any]]:
    """Return name -> (threads, session config entries) of each configuration measured."""
    out = {
        'sleeping': {'threads': 0, 'entries': {'session.intra_op.allow_spinning': '0'}},
        'spin_in_run': {'threads': 0, 'entries': {'session.intra_op.allow_spinning': '1',
                                                  'session.force_spinning_stop': '1'}},
        'ort_default': {'threads': 0, 'entries': {}},
        'one_thread': {'threads': 1, 'entries': {'session.intra_op.allow_spinning': '0'}},
    }  # type: Dict[str, Dict[str, Any]]
    for micros in spin_us:
        out['spin_{}us'.format(micros)] = {
            'threads': 0, 'entries': {'session.intra_op.allow_spinning': '1',
                                      'session.force_spinning_stop': '1',
                                      'session.intra_op.spin_duration_us': str(micros)}}
    return out


def _cpu_ms(usage: Any) -> float:
    return (usage.ru_utime + usage.ru_stime) * 1e3


def measure(model: str, runs: int, gap_s: float, spin_us: List[int],
            threads: Optional[int] = None) -> Dict[str, Dict[str, float]]:
    """Run every configuration ``runs`` times, interleaved; return the figures per name."""
    import onnxruntime
    sessions = {}
    places = {}  # name -> the CPUs the caller runs on (None: wherever it is)
    for name, config in configurations(spin_us).items():
        before = thread_ids()
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        count = config['threads'] or threads
        if count:
            options.intra_op_num_threads = int(count)
        for key, value in config['entries'].items():
            options.add_session_config_entry(key, value)
        sessions[name] = onnxruntime.InferenceSession(model, options,
                                                      providers=['CPUExecutionProvider'])
        pool = pinned_cpus_of_new_threads(before)
        allowed = set(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else set()
        if name == 'sleeping' and pool and allowed - pool:
            for place, cpus in (('@free', allowed - pool), ('@pool', set(pool))):
                sessions[name + place] = sessions[name]
                places[name + place] = cpus
    everywhere = set(os.sched_getaffinity(0)) if places else set()
    first = next(iter(sessions.values())).get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in first.shape]
    dtype = np.uint8 if 'uint8' in first.type else np.float32
    feed = {first.name: np.random.RandomState(0).randint(0, 255, shape).astype(dtype)}
    for session in sessions.values():
        session.run(None, feed)
    names = list(sessions)
    rows = {name: {'wall': [], 'cpu': [], 'switches': [], 'idle_cpu': []}
            for name in names}  # type: Dict[str, Dict[str, List[float]]]
    for index in range(runs):
        for name in (names if index % 2 == 0 else names[::-1]):
            if name in places:
                os.sched_setaffinity(0, places[name])
            time.sleep(gap_s)
            before = resource.getrusage(resource.RUSAGE_SELF)
            start = time.perf_counter()
            sessions[name].run(None, feed)
            wall = (time.perf_counter() - start) * 1e3
            after = resource.getrusage(resource.RUSAGE_SELF)
            if name in places:
                os.sched_setaffinity(0, everywhere)
            time.sleep(0.02)  # what the pool does once the run is over
            idle = resource.getrusage(resource.RUSAGE_SELF)
            row = rows[name]
            row['wall'].append(wall)
            row['cpu'].append(_cpu_ms(after) - _cpu_ms(before))
            row['switches'].append(float(after.ru_nvcsw - before.ru_nvcsw))
            row['idle_cpu'].append(_cpu_ms(idle) - _cpu_ms(after))
    return {name: {'p50_ms': float(np.median(r['wall'])),
                   'p90_ms': float(np.percentile(r['wall'], 90)),
                   'cpu_ms_per_run': float(np.median(r['cpu'])),
                   'voluntary_switches_per_run': float(np.median(r['switches'])),
                   'cpu_ms_in_20ms_after_run': float(np.median(r['idle_cpu']))}
            for name, r in rows.items()}


def table(result: Dict[str, Dict[str, float]]) -> str:
    """Return the figures as a Markdown table."""
    lines = ['| session | p50 (ms) | p90 (ms) | CPU per run (ms) | voluntary context switches '
             'per run | CPU in the 20 ms after a run (ms) |',
             '| --- | --- | --- | --- | --- | --- |']
    for name, row in result.items():
        lines.append('| {} | {:.1f} | {:.1f} | {:.1f} | {:.1f} | {:.1f} |'.format(
            name, row['p50_ms'], row['p90_ms'], row['cpu_ms_per_run'],
            row['voluntary_switches_per_run'], row['cpu_ms_in_20ms_after_run']))
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Print the table (and the load average before and after)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default=DEFAULT_MODEL)
    parser.add_argument('--runs', type=int, default=40, help='runs per configuration')
    parser.add_argument('--gap-ms', type=float, default=66.0,
                        help='idle time before each run (66: 15 FPS)')
    parser.add_argument('--spin-us', default='50,200',
                        help='bounded spin durations to measure (comma list; empty: none)')
    parser.add_argument('--threads', type=int, help='pool threads (default: one per core)')
    args = parser.parse_args(argv)
    spin_us = [int(v) for v in args.spin_us.split(',') if v.strip()]
    before = os.getloadavg()
    result = measure(args.model, args.runs, args.gap_ms / 1e3, spin_us, args.threads)
    print('load average {:.2f} before, {:.2f} after; {} runs each, {:g} ms apart, '
          'interleaved'.format(before[0], os.getloadavg()[0], args.runs, args.gap_ms))
    print(table(result))
    return 0


if __name__ == '__main__':
    sys.exit(main())
