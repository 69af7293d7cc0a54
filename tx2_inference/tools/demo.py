"""The README demo: the bundled person detector, served by the node, on real photographs.

`make demo` (or `python -m tx2_inference.tools.demo`) runs a real ROS graph on this machine:

1. `inference_node` (ONNX Runtime on the CPU) in its own process, driven to active through its
   lifecycle services, as `ros2 lifecycle set` would;
2. `camera_player` in another process, publishing the photos as `sensor_msgs/Image`;
3. this process, collecting the `Detection2DArray` answers, pairing them with the images by
   header stamp, and writing annotated images, a summary table and a latency plot.
"""

import argparse
import collections
import hashlib
import json
import os
import shutil
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from tx2_inference.core.stats import percentile
from tx2_inference.errors import UserError
from tx2_inference.tools.processes import ModuleProcess
from tx2_inference.tools.requires import pyplot, require

DEFAULT_MODEL = 'ssdlite_person.onnx'
NODE = 'inference_node'
CAMERA = 'camera'
SKIMAGE_PHOTOS = ('astronaut.png', 'coffee.png', 'chelsea.png', 'motorcycle_left.png')
#: OpenCV's sample photos with people (Debian opencv-doc), carried in test/data/persons.
OPENCV_PHOTOS = ('messi5.jpg', 'basketball1.png')


def log(text: str) -> None:
    """Print a progress line."""
    print('[demo %s] %s' % (time.strftime('%H:%M:%S'), text), flush=True)


def repo_root() -> str:
    """Return the source tree's root (the demo runs from a checkout)."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def collect_photos(folder: str) -> Dict[str, np.ndarray]:
    """Copy the demo photos into `folder` as PNG; return {name: RGB array}."""
    skimage = require('skimage', "the demo's photos")
    os.makedirs(folder, exist_ok=True)
    sources = [os.path.join(os.path.dirname(skimage.__file__), 'data', n) for n in SKIMAGE_PHOTOS]
    carried = os.path.join(repo_root(), 'test', 'data', 'persons')
    sources += [os.path.join(carried, n) for n in OPENCV_PHOTOS
                if os.path.isfile(os.path.join(carried, n))]
    photos = collections.OrderedDict()
    for path in sources:
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None:
            raise RuntimeError('cannot read demo photo %s' % path)
        name = os.path.splitext(os.path.basename(path))[0]
        cv2.imwrite(os.path.join(folder, name + '.png'), bgr)
        photos[name] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return photos


def fingerprint(rgb: np.ndarray) -> str:
    """Return a content hash of an RGB image, to recognise a photo in a received message."""
    return hashlib.sha1(np.ascontiguousarray(rgb).tobytes()).hexdigest()


def stamp_key(header: Any) -> Tuple[int, int]:
    """Return a hashable key of a header's stamp."""
    return header.stamp.sec, header.stamp.nanosec


def run_graph(model: str, photos_dir: str, out_dir: str, rate: float, loops: int,
              timeout: float) -> Tuple[List[Tuple[Any, Any, float]], Dict[str, Any]]:
    """Run node + camera player; return [(image msg, detections msg, latency s)] and info."""
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    from tx2_inference.tools.client import NodeClient

    info: Dict[str, Any] = {}
    node = ModuleProcess([
        'tx2_inference.ros.node', '--ros-args', '-r', '__node:=' + NODE,
        '-p', 'model_path:=' + model, '-p', 'backend:=onnxruntime',
        '-p', 'image_topics:=[%s/image_raw]' % CAMERA,
        # The player publishes reliably; a reliable subscription loses no large frame on a busy
        # machine (best effort, the default for cameras, drops many 0.8 MB frames here).
        '-p', 'qos_overrides./%s/image_raw.subscription.reliability:=reliable' % CAMERA],
        os.path.join(out_dir, 'node.log'))
    player = None
    client = NodeClient(NODE, name='demo_client')
    try:
        client.collect(Detection2DArray, CAMERA + '/detections')
        # Reliable, like the player's publisher: the demo must see every image it pairs.
        client.collect(Image, CAMERA + '/image_raw')
        client.wait_for_node(timeout=60.0)
        for transition in ('configure', 'activate'):
            t0 = time.monotonic()
            if not client.transition(transition):
                raise RuntimeError('%s failed: see %s' % (
                    transition, os.path.join(out_dir, 'node.log')))
            info[transition + '_s'] = time.monotonic() - t0
            log('%s: %s in %.2f s' % (NODE, transition, info[transition + '_s']))
        log('camera_player: publishing %d photos at %.1f FPS, %d times each'
            % (len(os.listdir(photos_dir)), rate, loops))
        player = ModuleProcess([
            'tx2_inference.tools.camera_player', photos_dir, '--topic', CAMERA + '/image_raw',
            '--rate', '%g' % rate, '--loop', '--count', str(loops * len(os.listdir(photos_dir))),
            '--frame-id', 'demo_camera', '--wait-for-subscribers', '2'],
            os.path.join(out_dir, 'camera_player.log'))
        deadline = time.monotonic() + timeout
        while player.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # let the last answers arrive
        info['player_exit'] = player.process.returncode
        client.transition('deactivate')
        images = {stamp_key(m.header): m for m in client.messages(CAMERA + '/image_raw')}
        pairs = []
        for received, det in client.timed_messages(CAMERA + '/detections'):
            image = images.get(stamp_key(det.header))
            latency = received - (det.header.stamp.sec + det.header.stamp.nanosec * 1e-9)
            pairs.append((image, det, latency))
        info['answered'] = len(pairs)
        info['images_seen_by_demo'] = len(images)
        return pairs, info
    finally:
        if player is not None:
            player.stop(timeout=5.0)
        client.close()
        node.stop(timeout=5.0)
        info['node_exit'] = node.process.returncode


def summarise(photos: Dict[str, np.ndarray], pairs: List[Tuple[Any, Any, float]],
              out_dir: str, threshold: float) -> Dict[str, Any]:
    """Write annotated images, summary.md/json and latency.png; return the summary."""
    from tx2_inference.core.visualize import draw_detections
    from tx2_inference.ros.image import image_to_array
    from tx2_inference.tools.client import detection_xyxy

    names = {fingerprint(rgb): name for name, rgb in photos.items()}
    per_photo = collections.OrderedDict((name, {'answers': 0, 'latency_ms': [],
                                                'detections': None}) for name in photos)
    latencies = []
    for image_msg, det, latency in pairs:
        latencies.append(latency * 1e3)
        if image_msg is None:
            continue  # the demo's own subscription lost this image (best effort)
        array, color = image_to_array(image_msg)
        rgb = array if color == 'rgb' else cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
        name = names.get(fingerprint(rgb))
        if name is None:
            continue
        entry = per_photo[name]
        entry['answers'] += 1
        entry['latency_ms'].append(latency * 1e3)
        entry['detections'] = [{
            'label': d.results[0].hypothesis.class_id,
            'score': round(float(d.results[0].hypothesis.score), 3),
            'box_xyxy': [round(v, 1) for v in detection_xyxy(d)],
        } for d in det.detections]
    for name, entry in per_photo.items():
        dets = entry['detections'] or []
        boxes = np.array([d['box_xyxy'] for d in dets], np.float32).reshape(-1, 4)
        scores = np.array([d['score'] for d in dets], np.float32)
        canvas, _ = draw_detections(photos[name], 'rgb', boxes, scores, [d['label'] for d in dets])
        cv2.imwrite(os.path.join(out_dir, name + '_detections.png'),
                    cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
        entry['latency_ms_p50'] = round(percentile(entry.pop('latency_ms'), 50), 1)
    summary = {
        'threshold': threshold,
        'photos': per_photo,
        'latency_ms_p50': round(percentile(latencies, 50), 1),
        'latency_ms_p99': round(percentile(latencies, 99), 1),
        'answers': len(pairs),
    }
    with open(os.path.join(out_dir, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(out_dir, 'summary.md'), 'w') as f:
        f.write(table(summary) + '\n')
    plot_latency(latencies, os.path.join(out_dir, 'latency.png'))
    return summary


def table(summary: Dict[str, Any]) -> str:
    """Return the per-photo summary as a Markdown table."""
    lines = ['| photo | answers | detections | best score | labels | latency p50 (ms) |',
             '| --- | --- | --- | --- | --- | --- |']
    for name, entry in summary['photos'].items():
        dets = entry['detections']
        if dets is None:
            lines.append('| %s | 0 | no answer | | | |' % name)
            continue
        best = max([d['score'] for d in dets], default=0.0)
        labels = ', '.join(sorted({d['label'] for d in dets})) or '-'
        lines.append('| %s | %d | %d | %s | %s | %.1f |' % (
            name, entry['answers'], len(dets), '%.2f' % best if dets else '-', labels,
            entry['latency_ms_p50']))
    return '\n'.join(lines)


def plot_latency(latencies_ms: Sequence[float], path: str) -> None:
    """Plot end-to-end latency per frame and its histogram."""
    plt = pyplot("the demo's latency plot")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax1.plot(latencies_ms, '.-')
    ax1.set_xlabel('frame')
    ax1.set_ylabel('image stamp -> detections received (ms)')
    ax1.set_title('End-to-end latency per frame')
    ax2.hist(latencies_ms, bins=20)
    ax2.set_xlabel('latency (ms)')
    ax2.set_ylabel('frames')
    ax2.set_title('p50 %.1f ms, p99 %.1f ms' % (percentile(latencies_ms, 50),
                                                percentile(latencies_ms, 99)))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


MARKER = '.tx2_inference_demo'


def default_output() -> str:
    """Return the demo's own output folder, ``output/demo`` of the source tree."""
    return os.path.join(repo_root(), 'output', 'demo')


def prepare_output(folder: str) -> None:
    """Empty ``folder`` for a new run: only a folder the demo made (its marker file) is emptied.

    A missing or empty folder is created and marked; any other folder (a home, a project) is
    refused, never deleted. The default ``output/demo`` counts as the demo's (runs before the
    marker existed left it unmarked).

    :raises UserError: ``folder`` is a file, a link, or a non-empty folder without the marker.
    """
    if os.path.islink(folder) or (os.path.exists(folder) and not os.path.isdir(folder)):
        raise UserError('--output {} is not a folder the demo made: give a new or empty '
                        'folder.'.format(folder))
    if os.path.isdir(folder) and os.listdir(folder):
        own = os.path.realpath(folder) == os.path.realpath(default_output())
        if not own and not os.path.isfile(os.path.join(folder, MARKER)):
            raise UserError('--output {} is not empty and was not made by the demo (no {} '
                            'file in it): nothing was deleted. Give a new or empty folder.'
                            .format(folder, MARKER))
        shutil.rmtree(folder)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, MARKER), 'w') as f:
        f.write('Made by python -m tx2_inference.tools.demo; emptied by its next run.\n')


def main(argv: Optional[List[str]] = None) -> int:
    """Run the demo; return 0 when every photo got an answer."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', default=os.path.join(repo_root(), 'models', DEFAULT_MODEL))
    parser.add_argument('--output', default=default_output(),
                        help='a new or empty folder, or one a previous run made')
    parser.add_argument('--rate', type=float, default=4.0, help='photos published per second')
    parser.add_argument('--loops', type=int, default=3, help='times each photo is published')
    parser.add_argument('--timeout', type=float, default=120.0)
    args = parser.parse_args(argv)
    if not os.path.isfile(args.model):
        print('demo: no model at %s. Run `make models` (or `make demo`, which does it).'
              % args.model, file=sys.stderr)
        return 2
    os.environ.setdefault('ROS_LOG_DIR', os.path.join(args.output, 'ros_log'))
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    try:
        prepare_output(args.output)
    except UserError as error:
        print('demo: {}'.format(error), file=sys.stderr)
        return 2
    photos = collect_photos(os.path.join(args.output, 'photos'))
    t0 = time.monotonic()
    pairs, info = run_graph(args.model, os.path.join(args.output, 'photos'), args.output,
                            args.rate, args.loops, args.timeout)
    summary = summarise(photos, pairs, args.output, threshold=0.5)
    summary['graph'] = info
    summary['graph_s'] = round(time.monotonic() - t0, 1)
    with open(os.path.join(args.output, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    print()
    print(table(summary))
    print()
    print('End-to-end latency (image stamp -> detections received): p50 %.1f ms, p99 %.1f ms'
          % (summary['latency_ms_p50'], summary['latency_ms_p99']))
    print('Annotated photos, summary.md/json and latency.png are in %s' % args.output)
    missing = [n for n, e in summary['photos'].items() if not e['answers']]
    if missing:
        print('No answer for: %s (see %s/node.log)' % (', '.join(missing), args.output))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
