"""The node with ``tiles``: two cameras, tiles as one batch, tracking, the cost in /diagnostics.

A real node process (ONNX Runtime, the default model's ``--batch dynamic`` twin), two camera
topics fed hand-labelled frames of vtest.avi (test/data/small_people) over DDS with the
large-frame profile, with tracking on (it runs on each frame's merged detections); the people
each camera's detections match are counted against what the same model finds untiled in this
process.
"""

import os
import signal
import time

from diagnostic_msgs.msg import DiagnosticArray
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from tx2_inference.detector import Detector
from tx2_inference.ros.image import array_to_image_msg
from tx2_inference.tools.bench.ros_bench import profile_path
from tx2_inference.tools.bench.tiles import load_labelled, match
from tx2_inference.tools.client import detection_xyxy, NodeClient, write_reliable_overrides
from tx2_inference.tools.processes import ModuleProcess

NODE = 'tiles_node'
CAMERAS = ('cam0', 'cam1')
FRAMES = (4, 10, 16, 22)  # of the 24 labelled frames: cam0 gets these, cam1 the next ones
TIMEOUT_S = 30.0


@pytest.fixture(scope='module')
def graph(batch_model, tmp_path_factory):
    """Start the node with tiles 3x3 and tracking on two cameras; yield a client."""
    overrides = write_reliable_overrides(
        str(tmp_path_factory.mktemp('qos') / 'overrides.yaml'),
        ['/{}/image_raw'.format(cam) for cam in CAMERAS])
    env = dict(os.environ, FASTDDS_DEFAULT_PROFILES_FILE=profile_path())
    server = ModuleProcess(
        ['tx2_inference.ros.node', '--ros-args', '-r', '__node:=' + NODE,
         '--params-file', overrides,
         '-p', 'image_topics:=[{}]'.format(','.join(c + '/image_raw' for c in CAMERAS)),
         '-p', 'model_path:=' + batch_model, '-p', 'backend:=onnxruntime',
         '-p', 'tiles:=3x3', '-p', 'tile_overlap:=0.25', '-p', 'batch_size:=2',
         '-p', 'batch_timeout_ms:=100.0', '-p', 'tracking:=true'],
        str(tmp_path_factory.mktemp('node') / 'node.log'), env)
    client = NodeClient('/' + NODE, name='tiles_tester')
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    client.pubs = [client.node.create_publisher(Image, cam + '/image_raw', reliable)
                   for cam in CAMERAS]
    for cam in CAMERAS:
        client.collect(Detection2DArray, cam + '/detections', QoSProfile(depth=50))
    client.collect(DiagnosticArray, '/diagnostics', QoSProfile(depth=20))
    try:
        client.wait_for_node(timeout=TIMEOUT_S)
        assert client.transition('configure'), server.log()[-3000:]
        assert client.transition('activate')
        assert client.wait_until(lambda: all(p.get_subscription_count() for p in client.pubs),
                                 TIMEOUT_S)
        time.sleep(0.5)
        client.server = server
        yield client
    finally:
        client.close()
        assert server.stop(signal.SIGTERM) is not None


def _detector_values(client, frames):
    """Return the newest detector diagnostics once they count ``frames`` tiled frames."""
    for array in reversed(client.messages('/diagnostics')):
        for status in array.status:
            if status.name.endswith(': detector'):
                values = {pair.key: pair.value for pair in status.values}
                return values if values.get('tiling.frames') == str(frames) else None
    return None


def test_two_tiled_cameras_find_more_people_and_report_the_cost(graph, default_model):
    labelled = load_labelled()
    feeds = [[labelled[i] for i in FRAMES], [labelled[i + 1] for i in FRAMES]]
    for round_ in range(len(FRAMES)):
        for cam, pub, feed in zip(CAMERAS, graph.pubs, feeds):
            name, frame, _ = feed[round_]
            msg = array_to_image_msg(frame, 'bgr8')
            msg.header.frame_id = '{}:{}'.format(cam, name)
            pub.publish(msg)
        assert graph.wait_until(lambda done=round_ + 1: all(
            len(graph.messages(cam + '/detections')) >= done for cam in CAMERAS), TIMEOUT_S), \
            graph.server.log()[-3000:]
    found = {'tiled': 0, 'untiled': 0}
    with Detector(default_model, backend='onnxruntime') as untiled:
        for cam, feed in zip(CAMERAS, feeds):
            answers = {m.header.frame_id: m for m in graph.messages(cam + '/detections')}
            assert len(answers) == len(FRAMES)  # one merged answer per frame, none lost
            for name, frame, labels in feed:
                msg = answers['{}:{}'.format(cam, name)]
                # Tracking runs on the merged detections: every published one has an ID.
                assert msg.detections and all(d.id for d in msg.detections)
                boxes = [detection_xyxy(d) for d in msg.detections]
                found['tiled'] += sum(hit >= 0 for hit in match(boxes, labels))
                plain = untiled.detect(frame, 'bgr').boxes.tolist()
                found['untiled'] += sum(hit >= 0 for hit in match(plain, labels))
    print('people found by the tiled node: {tiled}, untiled: {untiled}'.format(**found))
    assert found['tiled'] >= found['untiled'] + 5, found
    values = graph.wait_until(lambda: _detector_values(graph, 2 * len(FRAMES)), TIMEOUT_S)
    assert values is not None, 'no tiling figures in /diagnostics'
    assert values['tiling.grid'] == '3x3' and values['tiling.tiles_per_frame'] == '9'
    assert float(values['tiling.frame_ms_p50']) > 0
    # batch_size 2: both cameras' tiles in batches of 18 rows, under one inference a frame.
    assert float(values['tiling.inferences_per_frame_mean']) <= 1.0


def test_tile_cameras_picks_the_tiled_camera_and_names_unknown_ones(graph):
    assert graph.transition('deactivate') and graph.transition('cleanup')
    assert graph.set_parameters(tile_cameras=['cam7/image_raw'])[0].successful
    assert not graph.transition('configure')
    assert graph.wait_until(lambda: 'tile_cameras names topics that are not in '
                            'image_topics: cam7/image_raw' in graph.server.log(), TIMEOUT_S)
    assert graph.set_parameters(tile_cameras=['cam0/image_raw'])[0].successful
    assert graph.transition('configure') and graph.transition('activate')
    assert graph.wait_until(lambda: all(p.get_subscription_count() for p in graph.pubs),
                            TIMEOUT_S)
    time.sleep(0.5)
    frame = load_labelled()[3][1]
    before = [len(graph.messages(cam + '/detections')) for cam in CAMERAS]
    for pub in graph.pubs:
        pub.publish(array_to_image_msg(frame, 'bgr8'))
    assert graph.wait_until(lambda: all(
        len(graph.messages(cam + '/detections')) > count
        for cam, count in zip(CAMERAS, before)), TIMEOUT_S)
    # A new detector: one tiled frame (cam0's); cam1's ran whole.
    assert graph.wait_until(lambda: _detector_values(graph, 1), TIMEOUT_S)
