"""The node on ``backend: triton`` in a real ROS graph, against NVIDIA's real Triton server.

Three processes: ``tritonserver`` (from the nvidia-pytriton wheel, tools/setup_triton.sh; the
model runs in its Python backend with ONNX Runtime, tools/triton/model.py) serving the
default person model, the inference node configured for it, and this test publishing photos
and reading /detections and /diagnostics. The node must fail configure clearly on a wrong
setting, detect exactly what the local ONNX Runtime backend detects, and ride out the server
going away and coming back without a reconfigure.
"""

import os
import signal
import threading
import time

from certificates import make_ca, make_server_cert
from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
from project_files import ROOT
import pytest
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image
import skimage.data
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray
import yaml

from tx2_inference.detector import Detector
from tx2_inference.ros.image import array_to_image_msg
from tx2_inference.ros.messages import detections_to_msg
from tx2_inference.tools.client import detection_xyxy, NodeClient, write_reliable_overrides
from tx2_inference.tools.processes import ModuleProcess
from tx2_inference.tools.triton_server import free_port, TritonServer, unavailable

NODE = 'triton_inference_node'
TOPIC = 'cam0/image_raw'
PROFILE = os.path.join(ROOT, 'config', 'fastdds_large_frames.xml')
# Every process of the graph gets the large-frame Fast DDS profile: this one (read when its
# first participant is made; modules are imported before any test runs) and the node.
os.environ.setdefault('FASTDDS_DEFAULT_PROFILES_FILE', PROFILE)


class Graph(NodeClient):
    """NodeClient plus the camera publisher and the collected detections and diagnostics."""

    def __init__(self) -> None:
        """Create the publisher and the subscribers."""
        super().__init__('/' + NODE, name='triton_node_tester')
        self.image_pub = self.node.create_publisher(Image, TOPIC, 10)
        self.collect(Detection2DArray, 'cam0/detections', QoSProfile(depth=200))
        self.collect(DiagnosticArray, '/diagnostics', QoSProfile(depth=50))

    def configure(self) -> bool:
        """Ask for configure; return whether it succeeded."""
        return self.transition('configure')

    def detector_status(self, since: int = 0, timeout: float = 10.0):
        """Return the first detector status published after message ``since``."""
        def find():
            for array in self.messages('/diagnostics')[since:]:
                for status in array.status:
                    if status.name.endswith(': detector'):
                        return status
            return None
        return self.wait_until(find, timeout=timeout)

    def failure(self) -> str:
        """Configure (expecting FAILURE) and return the reason /diagnostics gives."""
        seen = len(self.messages('/diagnostics'))
        assert not self.configure()
        assert self.state() == 'unconfigured'
        status = self.detector_status(seen)
        assert status is not None and status.level == status.ERROR
        return status.message


def value(status, key):
    """Return a diagnostics value by key."""
    return {pair.key: pair.value for pair in status.values}.get(key)


@pytest.fixture(scope='module')
def server(default_model, tmp_path_factory):
    if unavailable():
        pytest.skip(unavailable())
    with TritonServer(str(tmp_path_factory.mktemp('triton')),
                      {'ssdlite_person': default_model}) as srv:
        yield srv


@pytest.fixture(scope='module')
def graph(default_model, server, tmp_path_factory):
    """Start the node process on backend triton with an unreachable URL."""
    overrides = write_reliable_overrides(
        str(tmp_path_factory.mktemp('qos') / 'overrides.yaml'), ['/' + TOPIC])
    command = ['tx2_inference.ros.node', '--ros-args', '-r', '__node:=' + NODE,
               '--params-file', os.path.join(ROOT, 'config', 'params.yaml'),
               '--params-file', overrides, '-p', 'model_path:=' + default_model,
               '-p', 'image_topics:=[{}]'.format(TOPIC), '-p', 'backend:=triton',
               '-p', 'triton_url:=127.0.0.1:{}'.format(free_port()),
               '-p', 'triton_timeout_s:=2.0',
               # The operator's opt-in: these tests re-point the node while unconfigured.
               '-p', 'allow_remote_reconfigure:=true']
    log = str(tmp_path_factory.mktemp('node') / 'node.log')
    env = dict(os.environ, FASTDDS_DEFAULT_PROFILES_FILE=PROFILE)
    with ModuleProcess(command, log, env=env) as node, Graph() as graph:
        graph.wait_for_node(timeout=30)
        graph.process = node
        yield graph
        assert node.stop(signal.SIGTERM) is not None, 'the node ignored SIGTERM'


def test_each_wrong_setting_is_a_clear_configure_failure(graph, server, default_model,
                                                        tmp_path):
    url = graph.get_parameters('triton_url')[0]
    message = graph.failure()
    assert url in message and 'start the server' in message and 'triton_url' in message

    _set(graph, triton_url=server.url, triton_model='ssdlite_persn')
    message = graph.failure()
    assert "'ssdlite_persn'" in message and 'triton_model' in message

    with open(os.path.splitext(default_model)[0] + '.yaml') as f:
        config = yaml.safe_load(f)
    config['input']['name'] = 'images'
    wrong = tmp_path / 'wrong_input.yaml'
    wrong.write_text(yaml.safe_dump(config))
    _set(graph, triton_model='', model_config=str(wrong))
    message = graph.failure()
    assert "'images'" in message and 'image_tensor:0' in message

    # A server (speaking TLS itself) whose certificate another CA signed.
    signer, other = make_ca(str(tmp_path), 'server-ca'), make_ca(str(tmp_path), 'other-ca')
    with TritonServer(str(tmp_path / 'tls'), {'ssdlite_person': default_model},
                      tls=make_server_cert(str(tmp_path), signer)) as secure:
        _set(graph, model_config='', triton_url=secure.url, triton_root_cert=other[0])
        message = graph.failure()
        assert secure.url in message and 'TLS' in message and 'triton_root_cert' in message

    _set(graph, triton_url=server.url, triton_root_cert='')
    assert graph.configure(), graph.process.log()[-3000:]
    assert graph.transition('activate')


def test_same_detections_as_the_local_onnxruntime_backend(graph, default_model):
    astronaut = skimage.data.astronaut()
    with Detector(default_model, backend='onnxruntime') as local:
        expected = local.detect(astronaut, 'rgb')
    expected = detections_to_msg(Header(), expected.boxes, expected.scores, expected.labels)
    msg = array_to_image_msg(astronaut, 'rgb8')
    answer = _detect(graph, msg)
    assert answer is not None, graph.process.log()[-3000:]
    assert len(answer.detections) == len(expected.detections) >= 1
    for have, want in zip(answer.detections, expected.detections):
        np.testing.assert_allclose(detection_xyxy(have), detection_xyxy(want), atol=1e-4)
        assert abs(have.results[0].hypothesis.score - want.results[0].hypothesis.score) < 1e-4
        assert have.results[0].hypothesis.class_id == 'person'
    status = graph.detector_status(len(graph.messages('/diagnostics')))
    assert status.level == status.OK and value(status, 'backend') == 'triton'


def test_server_killed_mid_stream_the_node_reports_and_resumes(graph, server):
    msg = array_to_image_msg(skimage.data.astronaut(), 'rgb8')
    stop = threading.Event()

    def feed():
        while not stop.is_set():
            msg.header.stamp = graph.node.get_clock().now().to_msg()
            graph.image_pub.publish(msg)
            time.sleep(0.1)
    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        start = len(graph.messages('cam0/detections'))
        assert graph.wait_until(lambda: len(graph.messages('cam0/detections')) > start + 3, 30)
        server.kill()
        seen = len(graph.messages('/diagnostics'))

        def erroring():
            for array in graph.messages('/diagnostics')[seen:]:
                for status in array.status:
                    if status.name.endswith(': detector') and status.level == status.ERROR:
                        return status
            return None
        status = graph.wait_until(erroring, 30)
        assert status is not None, graph.process.log()[-3000:]
        assert 'unavailable' in status.message and server.url in status.message
        assert value(status, 'state') == 'active'  # no transition: the node stays up
        camera = graph.wait_until(lambda: _camera_drops(graph, seen), 10)
        assert camera, 'no triton_unavailable_error drops on /diagnostics'
        assert graph.process.alive()
        assert 'failed' in graph.process.log()  # the throttled warning

        server.start()
        back = len(graph.messages('cam0/detections'))
        assert graph.wait_until(lambda: len(graph.messages('cam0/detections')) > back + 3, 60), \
            graph.process.log()[-3000:]
        seen = len(graph.messages('/diagnostics'))
        time.sleep(1.5)
        status = graph.detector_status(seen)
        assert status.level == status.OK, status.message
        assert graph.state() == 'active'
    finally:
        stop.set()
        feeder.join()


def _set(graph, **values):
    for result in graph.set_parameters(**values):
        assert result.successful, result.reason


def _camera_drops(graph, since):
    for array in graph.messages('/diagnostics')[since:]:
        for status in array.status:
            if status.name.endswith(TOPIC) and int(
                    value(status, 'dropped.triton_unavailable_error') or 0) > 0:
                return True
    return False


def _detect(graph, msg, timeout=20.0):
    """Publish a frame every 0.3 s until its detections come back."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg.header.stamp = graph.node.get_clock().now().to_msg()
        graph.image_pub.publish(msg)
        answer = graph.wait_until(lambda: [m for m in graph.messages('cam0/detections')
                                           if m.header.stamp == msg.header.stamp], timeout=0.3)
        if answer:
            return answer[0]
    return None
