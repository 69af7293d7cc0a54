"""
Several cameras on one inference node, in a real ROS graph (issue 16).

One node process subscribes to four camera topics; this process publishes on all four at the
same instant, like a hardware-synchronised rig, and collects each camera's detections. With
``batch_size`` 1 every camera must be answered below capacity and get a fair share above it
(with one pending frame for all cameras, one camera lost every round). With ``batch_size`` 4
and a model converted with ``tx2-convert onnx --batch dynamic``, the four frames (of four
resolutions) run through the model together, and each camera still gets its own header and
boxes in its own pixels; a camera that stops publishing holds the others back by at most
``batch_timeout_ms`` and one inference.
"""

import os
import signal
import time

from boxes import iou, labelled_persons
import cv2
from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
from project_files import ROOT
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
import skimage.data
from vision_msgs.msg import Detection2DArray

from tx2_inference.detector import Detector
from tx2_inference.ros.image import array_to_image_msg
from tx2_inference.tools.bench.ros_bench import profile_path
from tx2_inference.tools.client import detection_xyxy, NodeClient, write_reliable_overrides
from tx2_inference.tools.processes import ModuleProcess

# Frames go between processes: every process (this one's participants too, made later) uses
# the large-frame Fast DDS profile, read when the first participant is made.
os.environ.setdefault('FASTDDS_DEFAULT_PROFILES_FILE', profile_path())
NODE = 'multi_camera_node'
CAMERAS = ('cam0', 'cam1', 'cam2', 'cam3')
# Each camera's resolution (width, height): the astronaut photo stretched to it.
RESOLUTIONS = ((512, 512), (640, 480), (320, 240), (400, 600))
ASTRONAUT_PERSON = labelled_persons('astronaut.jpg')[0]  # in the 512 x 512 photo
TIMEOUT_S = 20.0


class Cameras(NodeClient):
    """Four camera publishers (reliable, as a driver) and their detections, in this process."""

    def __init__(self) -> None:
        """Create the publishers and the collecting subscriptions."""
        super().__init__('/' + NODE, name='multi_camera_tester')
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pubs = [self.node.create_publisher(Image, cam + '/image_raw', reliable)
                     for cam in CAMERAS]
        for cam in CAMERAS:
            self.collect(Detection2DArray, cam + '/detections', QoSProfile(depth=200))
        self.collect(DiagnosticArray, '/diagnostics', QoSProfile(depth=20))
        photo = skimage.data.astronaut()
        self.frames = [np.ascontiguousarray(cv2.resize(photo, size)) for size in RESOLUTIONS]
        self.msgs = [array_to_image_msg(frame, 'rgb8') for frame in self.frames]
        self.round = 0
        self.published = {}  # (camera index, frame_id) -> wall-clock publish time

    def wait_for_subscribers(self) -> None:
        """Wait until the node subscribes to every camera."""
        assert self.wait_until(lambda: all(p.get_subscription_count() for p in self.pubs),
                               TIMEOUT_S), 'the node did not subscribe to the cameras'
        time.sleep(0.5)

    def publish(self, cameras=range(len(CAMERAS))) -> None:
        """Publish one frame on each of ``cameras`` at the same instant (one stamp)."""
        self.round += 1
        now = time.time()
        for index in cameras:
            msg = self.msgs[index]
            msg.header.stamp.sec, msg.header.stamp.nanosec = int(now), int((now % 1) * 1e9)
            msg.header.frame_id = '{}_optical:{}'.format(CAMERAS[index], self.round)
            self.published[(index, msg.header.frame_id)] = now
            self.pubs[index].publish(msg)

    def run(self, fps: float, seconds: float, cameras=range(len(CAMERAS))) -> int:
        """Publish synchronised rounds at ``fps`` for ``seconds``; return the rounds."""
        rounds = int(round(fps * seconds))
        start = time.monotonic()
        for tick in range(1, rounds + 1):
            self.publish(cameras)
            time.sleep(max(start + tick / fps - time.monotonic(), 0.0))
        return rounds

    def answered(self, first_round: int, last_round: int):
        """Return per camera the answers to rounds first..last: {round: (msg, receive time)}."""
        out = []
        for cam in CAMERAS:
            answers = {}
            for received, msg in self.timed_messages(cam + '/detections'):
                name, _, number = msg.header.frame_id.rpartition(':')
                assert name == cam + '_optical', 'camera {} got {}'.format(cam, name)
                if first_round <= int(number) <= last_round:
                    answers[int(number)] = (msg, received)
            out.append(answers)
        return out

    def camera_drops(self):
        """Return each camera's newest diagnostics drops: {reason: count} (node + executor)."""
        out = {}
        for array in reversed(self.messages('/diagnostics')):
            for status in array.status:
                cam = status.name.rpartition(': ')[2].partition('/')[0]
                if cam in CAMERAS and cam not in out:
                    out[cam] = {p.key: p.value for p in status.values
                                if p.key.startswith('dropped.') or p.key in (
                                    'frames_in', 'frames_out', 'answered', 'superseded')}
        return [out.get(cam) for cam in CAMERAS]

    def detector_value(self, key: str) -> str:
        """Return the newest value of ``key`` in the node's detector diagnostics."""
        for array in reversed(self.messages('/diagnostics')):
            for status in array.status:
                if status.name.endswith(': detector'):
                    for pair in status.values:
                        if pair.key == key:
                            return pair.value
        return ''


@pytest.fixture(scope='module')
def cameras(default_model, tmp_path_factory):
    """Start the node on four camera topics (ONNX Runtime, the default model), active."""
    overrides = write_reliable_overrides(
        str(tmp_path_factory.mktemp('qos') / 'overrides.yaml'),
        ['/{}/image_raw'.format(cam) for cam in CAMERAS])
    env = dict(os.environ, FASTDDS_DEFAULT_PROFILES_FILE=profile_path())
    topics = ','.join(cam + '/image_raw' for cam in CAMERAS)
    server = ModuleProcess(
        ['tx2_inference.ros.node', '--ros-args', '-r', '__node:=' + NODE,
         '--params-file', os.path.join(ROOT, 'config', 'params.yaml'),
         '--params-file', overrides, '-p', 'image_topics:=[{}]'.format(topics),
         '-p', 'model_path:=' + default_model, '-p', 'backend:=onnxruntime',
         '-p', 'cpu_threads:=2', '-p', 'allow_remote_reconfigure:=true'],
        str(tmp_path_factory.mktemp('node') / 'node.log'), env)
    graph = Cameras()
    try:
        graph.wait_for_node(timeout=TIMEOUT_S)
        assert graph.transition('configure'), server.log()[-3000:]
        assert graph.transition('activate')
        graph.wait_for_subscribers()
        graph.server = server
        _warm_up(graph)
        yield graph
    finally:
        graph.close()
        assert server.stop(signal.SIGTERM) is not None, 'the node ignored SIGTERM for 10 s'


def _warm_up(graph) -> None:
    """Run a few rounds through the new model first: its first inferences are slow."""
    first = graph.round + 1
    graph.run(fps=1.0, seconds=3.0)
    _settle(graph, first, graph.round)


def _reconfigure(graph, **parameters) -> None:
    assert graph.transition('deactivate') and graph.transition('cleanup')
    results = graph.set_parameters(**parameters)
    assert all(r.successful for r in results), [r.reason for r in results]
    assert graph.transition('configure'), graph.server.log()[-3000:]
    assert graph.transition('activate')
    graph.wait_for_subscribers()
    _warm_up(graph)


def _settle(graph, first, last):
    """Wait until no answer to rounds first..last has come for 3 s (a busy machine is slow)."""
    counts, since = None, time.monotonic()
    while time.monotonic() - since < 3.0 and time.monotonic() - since < 30.0:
        time.sleep(0.5)
        now = [len(answers) for answers in graph.answered(first, last)]
        if now != counts:
            counts, since = now, time.monotonic()
    return graph.answered(first, last)


def _shares(graph, first, last):
    counts = [len(answers) for answers in _settle(graph, first, last)]
    print('drops per camera so far (diagnostics): {}'.format(graph.camera_drops()))
    return counts, [count / float(max(sum(counts), 1)) for count in counts]


def test_synchronised_cameras_are_each_answered_below_capacity_and_fairly_above(cameras):
    graph = cameras
    first = graph.round + 1
    rounds = graph.run(fps=1.0, seconds=20.0)  # 4 frames/s in all: below capacity here
    counts, _ = _shares(graph, first, graph.round)
    print('below capacity (1 FPS x 4 cameras): answered per camera {} of {}'.format(
        counts, rounds))
    assert min(counts) >= 0.95 * rounds, counts
    # Above capacity: 160 frames/s in all was about twice what 2 idle cores answered (80
    # frames/s was answered at 92 % on a quiet machine), but a quiet machine later answered
    # 94 % of 160 frames/s: where a rate is not above capacity, the next one is tried.
    for fps in (40.0, 100.0):
        first = graph.round + 1
        rounds = graph.run(fps=fps, seconds=6.0)
        counts, shares = _shares(graph, first, graph.round)
        print('above capacity? ({:.0f} FPS x 4 cameras): answered per camera {} of {} '
              '(shares {})'.format(fps, counts, rounds,
                                   ', '.join('{:.2f}'.format(s) for s in shares)))
        if sum(counts) < 0.9 * 4 * rounds:
            break
    assert sum(counts) < 0.9 * 4 * rounds  # it really was above capacity
    assert min(shares) >= 0.8 * 0.25, shares


def test_four_cameras_of_four_resolutions_share_batches_and_keep_their_own_results(
        cameras, batch_model):
    graph = cameras
    _reconfigure(graph, model_path=batch_model, batch_size=4, batch_timeout_ms=200.0)
    first = graph.round + 1
    rounds = graph.run(fps=2.0, seconds=5.0)
    answered = _settle(graph, first, graph.round)
    for index, answers in enumerate(answered):
        assert len(answers) >= 0.95 * rounds, [len(a) for a in answered]
        width, height = RESOLUTIONS[index]
        scale = np.array([width / 512.0, height / 512.0] * 2)
        expected = np.array(ASTRONAUT_PERSON) * scale
        for msg, _ in answers.values():
            # Its own header: the stamp and frame id it was published with.
            sent = graph.published[(index, msg.header.frame_id)]
            assert abs(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9 - sent) < 1e-6
            # Its own pixels: the person where it is in this camera's resolution.
            best = max((iou(detection_xyxy(d), expected) for d in msg.detections), default=0)
            assert best >= 0.5, (CAMERAS[index], [detection_xyxy(d) for d in msg.detections])
    assert graph.wait_until(lambda: graph.detector_value('frames_per_inference_mean'), 5)
    mean = float(graph.detector_value('frames_per_inference_mean'))
    print('batched: frames per inference {:.2f}, inference per batch p50 {} ms'.format(
        mean, graph.detector_value('infer_ms_p50')))
    assert mean > 3.0


def test_a_camera_that_stops_delays_the_others_by_the_batch_timeout_at_most(cameras):
    graph = cameras  # still batch_size 4 (the test before), batch_timeout_ms 200
    assert graph.get_parameters('batch_size') == [4]
    infer_ms = float(graph.detector_value('infer_ms_p99') or 'nan')
    first = graph.round + 1
    graph.run(fps=2.0, seconds=3.0, cameras=range(3))  # cam3 stops
    latencies = []
    for index, answers in enumerate(_settle(graph, first, graph.round)[:3]):
        assert len(answers) >= 5, (CAMERAS[index], len(answers))
        latencies += [(received - graph.published[(index, msg.header.frame_id)]) * 1e3
                      for msg, received in answers.values()]
    print('cam3 silent: the others answered after {:.0f} ms at most (timeout 200 ms, one '
          'batch {:.0f} ms)'.format(max(latencies), infer_ms))
    # A bound, not a speed goal: the timeout, one inference, and transport on a busy machine.
    assert max(latencies) < 200 + infer_ms + 500, latencies


def test_batched_and_unbatched_detections_are_the_same(batch_model):
    frames = [np.ascontiguousarray(cv2.resize(photo, size)) for photo, size in zip(
        (skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee(),
         skimage.data.astronaut()[::-1]), RESOLUTIONS)]
    results = {}
    for batch in (1, 4):
        got = {}
        with Detector(batch_model, backend='onnxruntime', batch_size=batch,
                      batch_timeout_ms=10000, sources=CAMERAS,
                      on_result=lambda tag, det, _, got=got: got.__setitem__(tag, det)) as det:
            for index, frame in enumerate(frames):
                det.submit(frame, 'rgb', index, CAMERAS[index])
            assert det.drain(60)
            assert det.stats()['frames_per_inference_mean'] == batch
        results[batch] = got
    for index in range(len(frames)):
        one, four = results[1][index], results[4][index]
        assert one.labels == four.labels
        np.testing.assert_allclose(four.boxes, one.boxes, atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(four.scores, one.scores, atol=1e-4, rtol=1e-4)
    assert sum(len(r) for r in results[1].values()) > 0  # the photos do have detections


def test_a_model_that_cannot_batch_is_refused_with_how_to_convert_it(default_model):
    from tx2_inference.errors import UserError
    with pytest.raises(UserError, match='tx2-convert onnx MODEL --batch 4'):
        Detector(default_model, backend='onnxruntime', batch_size=4)
