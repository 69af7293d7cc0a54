"""
Tracking IDs on real video through a real node process, and a picture of them over time.

Frames of OpenCV's ``vtest.avi`` (people walking in a square, 768x576, 10 FPS; see
``tools/get_footage.py``) are published at their own rate, stamped 0.1 s apart, to an
``inference_node`` process with ``tracking: true`` (ONNX Runtime, the bundled person model;
every process with the large-frame Fast DDS profile). ``--drop N`` leaves out every N-th
frame: the node predicts over the gap from the stamps. The detections that come back are
written as JSON, with two pictures: the last frame with each ID's path drawn beside each ID's
frames against time, and crops of the longest tracks (one row per ID) to check by eye that an
ID stays with one person.

Usage: ``python -m tx2_inference.tools.track_video [--frames 200] [--drop 0]
[--output output/tracking]``.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from tx2_inference.core.tracking import iou_matrix
from tx2_inference.tools.bench.ros_bench import isolate_graph, profile_path
from tx2_inference.tools.requires import pyplot

FRAME_PERIOD_S = 0.1  # vtest.avi: 10 FPS
NODE_NAME = 'tx2_track_video_node'
CAMERA = 'track_cam'
# A pair of detections in successive answers is unmistakably one person when each is the
# other's best overlap and they overlap this much (people walk < 1/5 of their width in 0.2 s).
SAME_PERSON_IOU = 0.5


def footage_path() -> str:
    """Return the checked ``vtest.avi`` (tools/get_footage.py, run from the source tree).

    :raises RuntimeError: with the script's own message on how to get the video.
    """
    import subprocess
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), 'tools', 'get_footage.py')
    proc = subprocess.Popen([sys.executable, script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(err.strip() or 'tools/get_footage.py failed')
    return out.strip().splitlines()[-1]


def read_frames(path: str, count: int, start: int = 0) -> List[np.ndarray]:
    """Return ``count`` BGR frames of a video from frame ``start``."""
    import cv2
    capture = cv2.VideoCapture(path)
    frames = []  # type: List[np.ndarray]
    try:
        capture.set(cv2.CAP_PROP_POS_FRAMES, start)
        while len(frames) < count:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        capture.release()
    if not frames:
        raise ValueError('no frames could be read from {}'.format(path))
    return frames


def large_frame_environment() -> None:
    """Give this process (and the node it starts) the large-frame DDS profile; isolated graph.

    Call before this process creates its first ROS participant.
    """
    isolate_graph()
    os.environ.setdefault('FASTDDS_DEFAULT_PROFILES_FILE', profile_path())


def start_tracking_node(model: str, folder: str, name: str = NODE_NAME,
                        extra: Optional[Dict[str, Any]] = None) -> Tuple[Any, Any]:
    """Start and activate an ``inference_node`` process with tracking on; return (node, driver)."""
    from tx2_inference.tools.soak.graph import activate, QUEUE_DEPTH, start_node
    # Every answer is read: the detections publisher keeps as many as the image queue (its
    # default 10 lose answers to a reader stalled for a second on a loaded machine).
    parameters = {'tracking': True, 'qos_overrides./{}/detections.publisher.depth'.format(
        CAMERA): QUEUE_DEPTH}  # type: Dict[str, Any]
    parameters.update(extra or {})
    node, driver = start_node(name, model, folder, camera=CAMERA, extra=parameters)
    try:
        activate(driver)
    except Exception:
        driver.close()
        node.stop()
        raise
    return node, driver


def reactivate(driver: Any) -> None:
    """Deactivate and activate the node (its tracks reset); wait until it hears the camera again.

    A frame published before the new subscription is matched would be lost.
    """
    client, topic = driver.client, driver.image_topic
    for transition, subscribed in (('deactivate', False), ('activate', True)):
        if not client.transition(transition):
            raise RuntimeError('{} failed'.format(transition))
        if not client.wait_until(
                lambda want=subscribed: (client.node.count_subscribers(topic) > 0) == want,
                timeout=10.0):
            raise TimeoutError('after {}, the node is {}subscribed to {}'.format(
                transition, '' if not subscribed else 'not ', topic))
    time.sleep(0.3)  # let the reliable writer match the new reader (as soak.graph.activate)


def play(driver: Any, frames: Sequence[np.ndarray], drop: int = 0,
         period_s: float = FRAME_PERIOD_S, timeout: float = 30.0) -> List[Dict[str, Any]]:
    """Publish the frames at their rate (every ``drop``-th left out); return the answers.

    Waits until the node has accounted for every frame (``driver.sent`` counts the frames
    published through it): a frame a newer one superseded while the node was busy (tiles on a
    slow machine) has no answer, and is left out.

    :returns: per answered frame, in order: ``frame`` (its index), ``time_s`` (its stamp
        from the first frame) and ``detections`` (``id``, ``score``, ``box`` x1 y1 x2 y2).
    """
    from tx2_inference.ros.image import array_to_image_msg
    from tx2_inference.tools.client import detection_xyxy
    base_ns = int(time.time() * 1e9)
    start = time.monotonic()
    sent = []  # type: List[Tuple[int, int]]
    for index, frame in enumerate(frames):
        if drop and index % drop == drop - 1:
            continue
        delay = start + index * period_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        msg = array_to_image_msg(frame, 'bgr8')
        msg.header.frame_id = CAMERA
        stamp_ns = base_ns + int(round(index * period_s * 1e9))
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
        driver.publish(msg)
        sent.append((index, stamp_ns))
    driver.sent = getattr(driver, 'sent', 0) + len(sent)
    if driver.client.wait_until(lambda: _accounted(driver.status()) >= driver.sent,
                                timeout=timeout, period=0.2) is None:
        raise TimeoutError('the node accounted for {} of {} frames: {}'.format(
            _accounted(driver.status()), driver.sent, driver.status()))
    results = []
    for index, stamp_ns in sent:
        answer = driver.answer(stamp_ns, timeout=1.0)
        if answer is None:
            continue
        results.append({'frame': index, 'time_s': (stamp_ns - base_ns) / 1e9, 'detections': [
            {'id': d.id, 'score': d.results[0].hypothesis.score if d.results else 0.0,
             'box': list(detection_xyxy(d))} for d in answer.detections]})
    return results


def _accounted(status: Optional[Dict[str, str]]) -> int:
    """Return the frames a camera status accounts for: answered, dropped or superseded."""
    if not status:
        return 0
    return sum(int(status.get(key, 0)) for key in ('frames_out', 'dropped', 'superseded'))


def same_person_pairs(results: List[Dict[str, Any]]) -> List[Tuple[str, str]]:
    """Return the IDs of each unmistakable same-person pair in successive answers.

    A pair: each detection the other's best overlap in the other answer, IoU >=
    ``SAME_PERSON_IOU``. A tracker that keeps IDs gives both the same ID.
    """
    pairs = []
    for before, after in zip(results, results[1:]):
        old, new = before['detections'], after['detections']
        if not old or not new:
            continue
        overlap = iou_matrix([d['box'] for d in old], [d['box'] for d in new])
        for i, j in enumerate(overlap.argmax(axis=1)):
            if overlap[i, j] >= SAME_PERSON_IOU and overlap[:, j].argmax() == i:
                pairs.append((old[i]['id'], new[j]['id']))
    return pairs


def track_spans(results: List[Dict[str, Any]]) -> Dict[str, List[int]]:
    """Return each ID's frames."""
    spans = {}  # type: Dict[str, List[int]]
    for result in results:
        for detection in result['detections']:
            if detection['id']:
                spans.setdefault(detection['id'], []).append(result['frame'])
    return spans


def summary(results: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Return the figures: answers, detections, IDs, same-person pairs kept, longest tracks."""
    pairs = same_person_pairs(results)
    kept = sum(1 for a, b in pairs if a and a == b)
    spans = track_spans(results)
    lengths = sorted((len(frames) for frames in spans.values()), reverse=True)
    return {'answers': len(results),
            'detections': sum(len(r['detections']) for r in results),
            'with_id': sum(1 for r in results for d in r['detections'] if d['id']),
            'ids': len(spans), 'same_person_pairs': len(pairs), 'pairs_same_id': kept,
            'longest_tracks': lengths[:5]}


def draw(frame: np.ndarray, results: List[Dict[str, Any]], path: str, title: str) -> None:
    """Write the picture: each ID's path over the last frame, and each ID's frames in time."""
    plt = pyplot('the tracking picture')
    spans = track_spans(results)
    order = sorted(spans, key=lambda i: (spans[i][0], int(i)))
    colours = plt.get_cmap('tab20')
    figure, (left, right) = plt.subplots(1, 2, figsize=(16, 6.2),
                                         gridspec_kw={'width_ratios': [1.35, 1]})
    left.imshow(frame[:, :, ::-1])
    last = results[-1]
    for rank, track_id in enumerate(order):
        colour = colours(rank % 20)
        points = [((d['box'][0] + d['box'][2]) / 2, d['box'][3]) for r in results
                  for d in r['detections'] if d['id'] == track_id]
        xs, ys = zip(*points)
        left.plot(xs, ys, '-', color=colour, linewidth=2)
        for d in last['detections']:
            if d['id'] == track_id:
                x1, y1, x2, y2 = d['box']
                left.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False,
                                             color=colour, linewidth=2))
                left.text(x1, y1 - 4, '#' + track_id, color='white', fontsize=9,
                          bbox={'facecolor': colour, 'pad': 1, 'linewidth': 0})
        frames = spans[track_id]
        right.scatter(frames, [rank] * len(frames), s=6, color=colour)
    left.set_title('frame {}: boxes of the last frame, the path of each ID (feet)'.format(
        last['frame']))
    left.axis('off')
    right.set_yticks(range(len(order)))
    right.set_yticklabels(['#' + i for i in order], fontsize=7)
    right.set_xlabel('frame (10 FPS)')
    right.set_title('frames in which each ID was published')
    right.invert_yaxis()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=72, pil_kwargs={'quality': 85})
    plt.close(figure)


def draw_gallery(frames: Sequence[np.ndarray], results: List[Dict[str, Any]], path: str,
                 tracks: int = 10, crops: int = 8, size: Tuple[int, int] = (48, 96)) -> None:
    """Write crops of the longest tracks: one row per ID, its box at evenly spaced frames.

    The way to check by eye that an ID stays with one person.
    """
    import cv2
    spans = track_spans(results)
    longest = sorted(spans, key=lambda i: -len(spans[i]))[:tracks]
    boxes = {(r['frame'], d['id']): d['box'] for r in results for d in r['detections']}
    rows = []
    for track_id in longest:
        frames_seen = spans[track_id]
        picks = [frames_seen[int(k)] for k in np.linspace(0, len(frames_seen) - 1, crops)]
        row = []
        for index in picks:
            x1, y1, x2, y2 = [int(round(v)) for v in boxes[(index, track_id)]]
            height, width = frames[index].shape[:2]
            crop = frames[index][max(y1, 0):min(y2, height), max(x1, 0):min(x2, width)]
            tile = cv2.resize(crop, size) if crop.size else np.zeros(size[::-1] + (3,), np.uint8)
            cv2.putText(tile, str(index), (2, size[1] - 4), cv2.FONT_HERSHEY_PLAIN, 0.8,
                        (255, 255, 255), 1)
            row.append(tile)
        label = np.zeros((size[1], 40, 3), np.uint8)
        cv2.putText(label, '#' + track_id, (2, size[1] // 2), cv2.FONT_HERSHEY_PLAIN, 1.0,
                    (255, 255, 255), 1)
        rows.append(np.concatenate([label] + row, axis=1))
    if rows:
        cv2.imwrite(path, np.concatenate(rows, axis=0), [cv2.IMWRITE_JPEG_QUALITY, 85])


def _parameter(item: str) -> Tuple[str, Any]:
    """Return (name, value) of ``NAME=VALUE``: a bool, int or float where it reads as one."""
    name, sep, text = item.partition('=')
    if not sep or not name:
        raise argparse.ArgumentTypeError('--set takes NAME=VALUE, got {!r}'.format(item))
    if text.lower() in ('true', 'false'):
        return name, text.lower() == 'true'
    for kind in (int, float):
        try:
            return name, kind(text)
        except ValueError:
            pass
    return name, text


def main(argv: Optional[List[str]] = None) -> int:
    """Run the node on the video and write the picture and the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--frames', type=int, default=200, help='frames to play (200)')
    parser.add_argument('--start', type=int, default=0, help='first frame (0)')
    parser.add_argument('--drop', type=int, default=0,
                        help='leave out every N-th frame (0: none)')
    parser.add_argument('--appearance-gate', type=float, default=None,
                        help="the node's tracking_appearance_gate (default: its default; "
                             '1.0: motion only)')
    parser.add_argument('--set', action='append', default=[], metavar='NAME=VALUE',
                        help='another node parameter, e.g. --set tiles=2x2 (repeatable)')
    parser.add_argument('--model', default=None, help='model (default: the bundled one)')
    parser.add_argument('--output', default=os.path.join('output', 'tracking'))
    args = parser.parse_args(argv)
    large_frame_environment()
    from tx2_inference.ros.parameters import default_model_path
    video = footage_path()
    frames = read_frames(video, args.frames, args.start)
    os.makedirs(args.output, exist_ok=True)
    extra = dict(_parameter(item) for item in args.set)  # type: Dict[str, Any]
    if args.appearance_gate is not None:
        extra['tracking_appearance_gate'] = args.appearance_gate
    node, driver = start_tracking_node(args.model or default_model_path(),
                                       tempfile.mkdtemp(prefix='tx2_track_video_'), extra=extra)
    try:
        print('playing {} frames of {} at 10 FPS{}'.format(
            len(frames), video, ', every {}th left out'.format(args.drop) if args.drop else ''))
        results = play(driver, frames, args.drop)
        status = driver.status() or {}
    finally:
        driver.close()
        node.stop()
    figures = summary(results)
    figures['tracking_ms_mean'] = status.get('tracking_ms_mean')
    stem = os.path.join(args.output, 'vtest_tracks{}{}'.format(
        '_drop{}'.format(args.drop) if args.drop else '',
        '' if args.appearance_gate is None else '_gate{}'.format(args.appearance_gate)) +
        ''.join('_{}{}'.format(k, v) for k, v in sorted(extra.items())
                if k != 'tracking_appearance_gate'))
    with open(stem + '.json', 'w') as stream:
        json.dump({'summary': figures, 'frames': results}, stream)
    draw(frames[results[-1]['frame']], results, stem + '.jpg',
         'vtest.avi frames {}-{} through inference_node (tracking: true){}'.format(
             args.start, args.start + len(frames) - 1,
             ', every {}th frame left out'.format(args.drop) if args.drop else ''))
    draw_gallery(frames, results, stem + '_ids.jpg')
    print(json.dumps(figures))
    print('wrote {0}.jpg, {0}_ids.jpg and {0}.json'.format(stem))
    return 0


if __name__ == '__main__':
    sys.exit(main())
