"""Robustness runs against a real ``inference_node`` process: faults, churn, flood and signals.

``python -m tx2_inference.tools.soak`` (``make soak``): run the phases, print the figures,
write ``soak-results.json`` and ``soak.png``.
"""

import argparse
import json
import os
import signal
import tempfile
import time
from typing import List, Optional

from tx2_inference.tools.soak.faults import astronaut
from tx2_inference.tools.soak.graph import activate, dropped, start_node
from tx2_inference.tools.soak.phases import churn, flood, fuzz, signal_exit
from tx2_inference.tools.soak.report import plot, summary


def main(argv: Optional[List[str]] = None) -> int:
    """Run every phase, print the figures, write the JSON and the plot."""
    parser = argparse.ArgumentParser(prog='python -m tx2_inference.tools.soak',
                                     description=__doc__.split('\n\n')[0])
    parser.add_argument('--output', default='output/soak')
    parser.add_argument('--model', default=os.path.join('models', 'ssdlite_person.onnx'))
    parser.add_argument('--cycles', type=int, default=200)
    parser.add_argument('--frames', type=int, default=20000)
    parser.add_argument('--fps', type=float, default=150.0)
    parser.add_argument('--fuzz-frames', type=int, default=5000)
    parser.add_argument('--frame-size', default='320x240',
                        help='flood frames, WIDTHxHEIGHT of the astronaut photo')
    parser.add_argument('--phases', default='fuzz,churn,flood,signals',
                        help='comma-separated subset of fuzz, churn, flood, signals')
    args = parser.parse_args(argv)
    phases = set(args.phases.split(','))
    size = tuple(int(v) for v in args.frame_size.lower().split('x'))
    os.makedirs(args.output, exist_ok=True)
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    os.environ.setdefault('ROS_DOMAIN_ID', str(100 + os.getpid() % 100))
    model = os.path.abspath(args.model)
    logs = tempfile.mkdtemp(prefix='soak_logs_', dir=os.path.abspath(args.output))
    results = {'started': time.strftime('%Y-%m-%dT%H:%M:%S%z'), 'model': model,
               'cpu_count': os.cpu_count(), 'arguments': vars(args)}  # type: Dict[str, Any]
    import rclpy
    rclpy.init()
    try:
        for transport in ('raw', 'compressed') if 'fuzz' in phases else ():
            name = 'soak_fuzz_' + transport
            node, driver = start_node(name, model, logs, transport)
            try:
                activate(driver)
                started = time.monotonic()
                r = fuzz(driver, args.fuzz_frames, transport == 'compressed', seed=1)
                r['node_rejected'] = {k: v for k, v in dropped(driver.settled_status(
                    r['faults_sent'] + r['valid_sent'])).items() if v}
                r['seconds'] = time.monotonic() - started
                r['traceback_in_log'] = 'Traceback' in node.log()
                r['alive'] = node.alive()
                results['fuzz_' + transport] = r
                print('fuzz {}: {}'.format(transport, json.dumps(summary(results).get(
                    'fuzz_' + transport))), flush=True)
            finally:
                driver.close()
                node.stop()
        # One inference thread: the model's throughput stays well below the input rate.
        node, driver = start_node('soak_churn', model, logs, extra={'cpu_threads': 1})
        try:
            if 'churn' in phases:
                results['churn'] = churn(node, driver, args.cycles)
                print('churn: {}'.format(json.dumps(summary(results)['churn'])), flush=True)
            if 'flood' in phases:
                activate(driver)
                results['flood'] = flood(node, driver, args.frames, args.fps, astronaut(size))
                print('flood: {}'.format(json.dumps(summary(results)['flood'])), flush=True)
            results['churn_flood_log_traceback'] = 'Traceback' in node.log()
        finally:
            driver.close()
            code, _ = node.stop()
            results['churn_flood_exit_code'] = code
        results['signals'] = []
        for sig in (signal.SIGINT, signal.SIGTERM) if 'signals' in phases else ():
            r = signal_exit(model, logs, sig)
            r['released_logged'] = 'model released' in r.pop('log')
            results['signals'].append(r)
        if results['signals']:
            print('signals: {}'.format(json.dumps(summary(results)['signals'])), flush=True)
    finally:
        rclpy.try_shutdown()
    results['summary'] = summary(results)
    with open(os.path.join(args.output, 'soak-results.json'), 'w') as f:
        json.dump(results, f, indent=1, sort_keys=True)
    if plot(results, os.path.join(args.output, 'soak.png')):
        print('plot: ' + os.path.join(args.output, 'soak.png'))
    print(json.dumps(results['summary'], indent=1, sort_keys=True))
    return 0

