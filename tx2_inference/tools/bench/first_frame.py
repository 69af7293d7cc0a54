"""
First-frame latency after activation, with and without the node's warm-up.

    python -m tx2_inference.tools.bench.first_frame [--runs 3] [--backend onnxruntime]

Each run is a fresh inference node process (a fresh session or engine): configure (timed),
activate, then one 640x480 photo; the time from publishing it to its detections arriving here
is the first frame's latency, and the next frames' (answered one at a time) are the steady
state. ``warmup:=true`` (the default) runs one synthetic inference per slot at configure;
``warmup:=false`` leaves the first inference to the first frame. Every process uses
config/fastdds_large_frames.xml. Prints one row per run and the medians, as Markdown.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

from tx2_inference.tools.bench.ros_bench import (
    IMAGE_TOPIC,
    isolate_graph,
    node_args,
    NODE_NAME,
    Process,
    profile_path,
    transport_env,
)

DETECTIONS_TOPIC = IMAGE_TOPIC.rpartition('/')[0] + '/detections'
STEADY_FRAMES = 5


def _one_run(warmup: bool, model: str, backend: str, log_dir: str, index: int,
             frame: Any) -> Dict[str, float]:
    """Start a node, configure and activate it, time its first and next frames."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    from tx2_inference.tools.client import NodeClient
    args = node_args(model, None, backend, 2, None) + ['-p', 'warmup:={}'.format(
        'true' if warmup else 'false')]
    name = '{}_warmup_{}_{}'.format(NODE_NAME, 'on' if warmup else 'off', index)
    with Process(args, transport_env('large_shm'), log_dir, name) as node:
        client = NodeClient('/' + NODE_NAME, name='tx2_first_frame_client')
        try:
            client.wait_for_node(60.0)
            client.collect(Detection2DArray, DETECTIONS_TOPIC, QoSProfile(depth=50))
            publisher = client.node.create_publisher(
                Image, IMAGE_TOPIC, QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
            start = time.perf_counter()
            if not client.transition('configure'):
                raise RuntimeError('configure failed: ' + node.tail())
            configure_ms = (time.perf_counter() - start) * 1e3
            if not client.transition('activate'):
                raise RuntimeError('activate failed: ' + node.tail())
            client.wait_until(lambda: publisher.get_subscription_count() > 0, timeout=30)
            latencies = []
            for count in range(1 + STEADY_FRAMES):
                sent = time.perf_counter()
                frame.header.stamp = client.node.get_clock().now().to_msg()
                publisher.publish(frame)
                if not client.wait_until(
                        lambda count=count: len(client.messages(DETECTIONS_TOPIC)) > count,
                        timeout=60,
                        period=0.001):
                    raise RuntimeError('no detections for frame {}: {}'.format(
                        count, node.tail()))
                latencies.append((time.perf_counter() - sent) * 1e3)
        finally:
            client.close()
    return {'configure_ms': configure_ms, 'first_ms': latencies[0],
            'next_ms': statistics.median(latencies[1:])}


def main(argv: Optional[List[str]] = None) -> int:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--runs', type=int, default=3, help='node processes per setting (3)')
    parser.add_argument('--backend', default='onnxruntime', help='node backend (onnxruntime)')
    parser.add_argument('--model', default=None, help='model (default: the bundled one)')
    args = parser.parse_args(argv)
    isolate_graph()
    os.environ['FASTDDS_DEFAULT_PROFILES_FILE'] = profile_path()  # this process's side too
    import cv2
    import skimage.data

    from tx2_inference.ros.image import array_to_image_msg
    from tx2_inference.ros.parameters import default_model_path
    model = args.model or default_model_path()
    frame = array_to_image_msg(cv2.resize(skimage.data.astronaut(), (640, 480)), 'rgb8')
    log_dir = tempfile.mkdtemp(prefix='tx2_first_frame_')
    rows = {True: [], False: []}  # type: Dict[bool, List[Dict[str, float]]]
    print('| warm-up | run | configure ms | first frame ms | next frames ms (median) |')
    print('|---|---:|---:|---:|---:|')
    for index in range(args.runs):
        for warmup in (False, True):  # interleaved: the machine's load drifts
            row = _one_run(warmup, model, args.backend, log_dir, index, frame)
            rows[warmup].append(row)
            print('| {} | {} | {:.0f} | {:.1f} | {:.1f} |'.format(
                'on' if warmup else 'off', index + 1, row['configure_ms'], row['first_ms'],
                row['next_ms']))
            sys.stdout.flush()
    for warmup in (False, True):
        medians = {key: statistics.median(r[key] for r in rows[warmup])
                   for key in ('configure_ms', 'first_ms', 'next_ms')}
        print('| {} | median | {:.0f} | {:.1f} | {:.1f} |'.format(
            'on' if warmup else 'off', medians['configure_ms'], medians['first_ms'],
            medians['next_ms']))
    print('logs: ' + log_dir)
    return 0


if __name__ == '__main__':
    sys.exit(main())
