"""
Hardening of the node against a peer on the DDS domain and against hostile frames (issue 22).

Each test runs a real ``inference_node`` process; this process is the peer: a separate ROS
node (`NodeClient`) calling the node's lifecycle and parameter services exactly as
``ros2 lifecycle set`` and ``ros2 param set`` from another machine would.
"""

import os
import resource
import socket

import cv2
import numpy as np
import pytest

from tx2_inference.ros.image import array_to_image_msg
from tx2_inference.tools import soak
from tx2_inference.tools.processes import ModuleProcess
from tx2_inference.tools.soak.graph import _ros_arg
from tx2_inference.tools.triton_server import free_port

SECRET = 's3cret-token-do-not-leak'


@pytest.fixture(scope='module')
def folder(tmp_path_factory) -> str:
    """Return a folder for this module's node logs and files."""
    return str(tmp_path_factory.mktemp('security'))


def start(name: str, folder: str, model: str, parameters: dict, env: dict = None):
    """Start a node process with ``-p`` parameters (and ``env``); return it and a Driver."""
    command = ['tx2_inference.ros.node', '--ros-args', '-r', '__node:=' + name,
               '-p', 'model_path:=' + model, '-p', 'image_topics:=[cam/image_raw]']
    for key, value in parameters.items():
        command += ['-p', '{}:={}'.format(key, _ros_arg(value))]
    node = ModuleProcess(command, os.path.join(folder, name + '.log'), env=env)
    driver = soak.Driver(name)
    try:
        driver.client.wait_for_node(timeout=30.0)
    except Exception as error:
        driver.close()
        node.stop()
        raise AssertionError(node.log()[-3000:]) from error
    return node, driver


def answered_with_person(driver) -> bool:
    """Publish the astronaut once and return whether the node found the person."""
    msg = array_to_image_msg(soak.astronaut(), 'rgb8')
    stamp = driver.stamp(msg)
    driver.publish(msg)
    answer = driver.answer(stamp)
    return answer is not None and soak.person_found(answer)


# --------------------------------------------------------------------------- item 1

def test_a_peer_cannot_re_point_the_node_at_its_own_server(folder, default_model):
    """The attack of issue 22: deactivate, cleanup, re-point at the peer's server, configure."""
    trap = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # the peer's "Triton server"
    trap.bind(('127.0.0.1', 0))
    trap.listen(4)
    trap.settimeout(0.0)
    port = trap.getsockname()[1]
    node, driver = soak.start_node('guarded_node', default_model, folder)
    client = driver.client  # the peer: another process, another ROS node
    try:
        soak.activate(driver)
        assert answered_with_person(driver)
        # The lifecycle services stay open (SROS2 permissions close them, README "Security").
        assert client.transition('deactivate') and client.transition('cleanup')
        hostile = {'backend': 'triton', 'triton_url': '127.0.0.1:{}'.format(port),
                   'model_path': '/tmp/peer.onnx', 'model_config': '/etc/passwd',
                   'engine_cache_dir': '/tmp/peer_engines', 'image_topics': ['peer/image_raw'],
                   'triton_model': 'peer', 'triton_root_cert': '/tmp/peer.pem',
                   'triton_auth_file': '/tmp/peer_token', 'decoder_modules': ['os'],
                   'allow_remote_reconfigure': True, 'max_frame_pixels': 2**31 - 1}
        before = client.get_parameters(*hostile)
        for name, value in hostile.items():
            [result] = client.set_parameters(**{name: value})
            assert not result.successful, name
            assert 'read-only' in result.reason, (name, result.reason)
        assert client.get_parameters(*hostile) == before
        # Configured again: the same model on the same runtime; nothing reached the trap.
        soak.activate(driver)
        assert answered_with_person(driver)
        with pytest.raises(OSError):
            trap.accept()
        log = node.log()
        assert 'on onnxruntime' in log and 'on triton' not in log
        # Each refused attempt is logged with who may have sent it (rclpy of Iron and newer).
        assert 'refused a request to set the launch-only parameter(s) triton_url ' \
               '(set_parameters clients: /guarded_node_driver)' in log, log[-3000:]
        # Every transition is logged with the nodes that hold a change_state client.
        for transition in ('deactivate', 'cleanup', 'configure', 'activate'):
            assert '{} requested through /guarded_node/change_state (its clients: ' \
                   '/guarded_node_driver)'.format(transition) in log, log[-3000:]
        assert node.alive() and 'Traceback' not in log
    finally:
        trap.close()
        driver.close()
        node.stop()


def test_allow_remote_reconfigure_opens_the_launch_parameters_while_unconfigured(
        folder, default_model):
    node, driver = soak.start_node('open_node', default_model, folder,
                                   extra={'allow_remote_reconfigure': True})
    client = driver.client
    try:
        assert client.transition('configure')
        [result] = client.set_parameters(model_config='/tmp/other.yaml')
        assert not result.successful and 'read-only while the node is configured' in \
            result.reason
        assert client.transition('cleanup')
        [result] = client.set_parameters(engine_cache_dir=folder)
        assert result.successful, result.reason
        # Policies stay launch only, whatever allow_remote_reconfigure says.
        for name, value in (('allow_remote_reconfigure', False), ('max_frame_pixels', 10)):
            [result] = client.set_parameters(**{name: value})
            assert not result.successful and 'read-only' in result.reason, name
        log = node.log()
        assert 'allow_remote_reconfigure is true' in log
        assert "parameters set from outside: engine_cache_dir='{}' (set_parameters clients: " \
               '/open_node_driver)'.format(folder) in log, log[-2000:]
    finally:
        driver.close()
        node.stop()


# --------------------------------------------------------------------------- item 2

def test_credentials_never_sit_in_a_parameter_nor_travel_in_plain_text(folder, default_model):
    token_file = os.path.join(folder, 'token')
    with open(token_file, 'w') as f:
        f.write('# the Triton token\nauthorization: Bearer {}\n'.format(SECRET))
    os.chmod(token_file, 0o600)
    common = {'backend': 'triton', 'triton_timeout_s': 1.0}
    # A credential given as a parameter is refused at startup: no peer can read it back.
    node, driver = soak.start_node('token_node', default_model, folder, extra=dict(
        common, triton_url='gpu.example:8001',
        triton_headers=['x-request-source=robot1', 'authorization=Bearer ' + SECRET]))
    try:
        [headers] = driver.client.get_parameters('triton_headers')
        assert not headers or all(SECRET not in h for h in headers)
        assert not driver.client.transition('configure')
        log = node.log()
        assert 'triton_headers holds the credential header authorization' in log
        assert 'triton_auth_file' in log
    finally:
        driver.close()
        node.stop()
    assert SECRET not in node.log()
    # From a file: refused on a plain channel to another host, naming the header only.
    node, driver = start('file_token_node', folder, default_model, dict(
        common, triton_url='gpu.example:8001', triton_auth_file=token_file))
    try:
        assert not driver.client.transition('configure')
        log = node.log()
        assert 'credential header authorization would travel in plain text to ' \
               'gpu.example:8001' in log and 'grpcs://' in log, log[-2000:]
        values = driver.client.get_parameters('triton_auth_file', 'triton_headers')
        assert SECRET not in repr(values)
    finally:
        driver.close()
        node.stop()
    assert SECRET not in node.log()
    # From an environment variable, to a loopback server: allowed (it fails on reaching a
    # server that is not there, after the credential check).
    url = '127.0.0.1:{}'.format(free_port())
    node, driver = start('env_token_node', folder, default_model, dict(
        common, triton_url=url, triton_auth_env='TOKEN_VAR'),
        env=dict(os.environ, TOKEN_VAR='Bearer ' + SECRET))
    try:
        assert not driver.client.transition('configure')
        log = node.log()
        assert 'cannot reach the Triton server at ' + url in log, log[-2000:]
        assert 'plain text' not in log
    finally:
        driver.close()
        node.stop()
    assert SECRET not in node.log()


# --------------------------------------------------------------------------- item 3

def _vm_size_bytes(pid: int) -> int:
    with open('/proc/{}/status'.format(pid)) as f:
        for line in f:
            if line.startswith('VmSize:'):
                return int(line.split()[1]) * 1024
    raise AssertionError('no VmSize')


def test_a_small_compressed_bomb_is_counted_not_fatal_in_a_memory_capped_node(
        folder, default_model):
    """A 210 KB 16-bit PNG of 6000 x 6000 decodes to 216 MB, and today's float copy doubles it.

    The node's address space is capped (RLIMIT_AS, as a small robot's memory) at what it uses
    once active plus 600 MB: enough to decode the bomb, not to convert it through floats. On
    the tree before issue 22 the node died there (MemoryError out of the callback, status 1).
    """
    ok, png = cv2.imencode('.png', np.zeros((6000, 6000, 3), np.uint16))
    assert ok and png.size < 250000
    node, driver = soak.start_node('capped_node', default_model, folder,
                                   transport='compressed')
    try:
        soak.activate(driver)
        from tx2_inference.ros.image import array_to_compressed_msg
        good = array_to_compressed_msg(soak.astronaut(), 'rgb', 'jpeg')
        stamp = driver.stamp(good)
        driver.publish(good)
        assert driver.answer(stamp) is not None
        pid = node.process.pid
        limit = _vm_size_bytes(pid) + (600 << 20)
        resource.prlimit(pid, resource.RLIMIT_AS, (limit, limit))
        bomb = array_to_compressed_msg(soak.astronaut((64, 64)), 'rgb', 'png')
        bomb.data = png.tobytes()
        seen = len(driver.client.messages('/diagnostics'))
        for _ in range(3):
            driver.stamp(bomb)
            driver.publish(bomb)
        # Still alive and answering; the frames are counted, and /diagnostics warns.
        stamp = driver.stamp(good)
        driver.publish(good)
        answer = driver.answer(stamp)
        assert answer is not None and soak.person_found(answer), node.log()[-3000:]
        status = driver.settled_status(5)
        assert soak.dropped(status) == {'bad_frame_too_large': 3}, status

        def warned():
            for array in driver.client.messages('/diagnostics')[seen:]:
                for s in array.status:
                    if s.name.endswith(driver.status_name) and s.level == s.WARN and \
                            'bad_frame_too_large 3' in s.message:
                        return s
            return None
        assert driver.client.wait_until(warned, timeout=5.0), 'no WARN on /diagnostics'
        log = node.log()
        assert '6000x6000 = 36000000 pixels, above max_frame_pixels 25000000' in log
        assert node.alive() and 'Traceback' not in log
    finally:
        driver.close()
        code, _ = node.stop()
    assert code == 0


# --------------------------------------------------------------------------- item 7

def nan_model(folder: str, model: str) -> str:
    """Write the default model with NaN scores (an overflowing FP16 engine's symptom)."""
    import onnx
    from onnx import helper, TensorProto
    graph_model = onnx.load(model)
    scores = 'Postprocessor/convert_scores:0'
    for node in graph_model.graph.node:
        node.output[:] = [scores + '_raw' if o == scores else o for o in node.output]
    graph_model.graph.initializer.append(helper.make_tensor('nan', TensorProto.FLOAT, [],
                                                            [float('nan')]))
    graph_model.graph.node.append(helper.make_node('Mul', [scores + '_raw', 'nan'], [scores]))
    path = os.path.join(folder, 'nan_person.onnx')
    onnx.save(graph_model, path)
    with open(os.path.splitext(model)[0] + '.yaml') as f:
        config = f.read()
    with open(os.path.splitext(path)[0] + '.yaml', 'w') as f:
        f.write(config)
    return path


def test_silent_blindness_is_refused_or_counted(folder, default_model):
    """A config that would publish nothing fails configure; NaN outputs are counted as ERROR."""
    with open(os.path.splitext(default_model)[0] + '.yaml') as f:
        config = f.read()
    broken = {}
    for case, section in (('score50', 'score_threshold: 50'), ('nan', 'score_threshold: .nan'),
                          ('negative', 'max_detections: -3')):
        broken[case] = os.path.join(folder, case + '.yaml')
        with open(broken[case], 'w') as f:
            f.write(config + '\ndetection:\n  {}\n'.format(section))
    node, driver = soak.start_node('blind_node', default_model, folder,
                                   extra={'allow_remote_reconfigure': True})
    client = driver.client
    try:
        for case, words in (('score50', 'detection.score_threshold: 50 is not between 0.0 and'),
                            ('nan', 'detection.score_threshold: nan is not between'),
                            ('negative', 'detection.max_detections: -3 is not between 1 and')):
            assert client.set_parameters(model_config=broken[case])[0].successful
            assert not client.transition('configure'), case
            assert words in node.log(), (case, node.log()[-2000:])
        results = client.set_parameters(model_config='', model_path=nan_model(folder,
                                                                              default_model))
        assert all(r.successful for r in results)
        soak.activate(driver)
        seen = len(client.messages('/diagnostics'))
        msg = array_to_image_msg(soak.astronaut(), 'rgb8')
        for sent in range(1, 5):  # one at a time: none is superseded by the next
            driver.stamp(msg)
            driver.publish(msg)
            status = driver.settled_status(sent)
        assert soak.dropped(status) == {'nonfinite_output_error': 4}, status
        assert status['detector.nonfinite_frames'] == '4', status
        assert driver.detections() == []  # no all-clear published for a blind frame

        def error():
            for array in client.messages('/diagnostics')[seen:]:
                for s in array.status:
                    if s.name.endswith(': detector') and s.level == s.ERROR and \
                            '4 of the last 4 frames had NaN/Inf' in s.message:
                        return s
            return None
        assert client.wait_until(error, timeout=5.0), 'no ERROR on /diagnostics'
        assert 'Postprocessor/convert_scores:0 holds NaN or Inf' in node.log()
        assert node.alive() and 'Traceback' not in node.log()
    finally:
        driver.close()
        node.stop()


# --------------------------------------------------------------------------- SROS2

PROBE = """
import rclpy
rclpy.init()
try:
    rclpy.create_node('sros2_probe').destroy_node()
    print('SECURE')
except Exception as error:
    print('NO SECURITY:', str(error).splitlines()[0])
"""


def test_the_node_under_an_sros2_enclave(folder, default_model):
    """With DDS security, only a peer of the keystore reaches the node (README "Security")."""
    import shutil
    import subprocess
    import sys
    keystore = os.path.join(folder, 'keystore')
    os.makedirs(os.path.join(keystore, 'enclaves', 'robot', 'inference_node'), exist_ok=True)
    env = dict(os.environ, ROS_SECURITY_KEYSTORE=keystore, ROS_SECURITY_ENABLE='true',
               ROS_SECURITY_STRATEGY='Enforce',
               ROS_SECURITY_ENCLAVE_OVERRIDE='/robot/inference_node')
    # Does this DDS have its security plugins? Without them a secure node fails at once,
    # before reading any certificate.
    probe = subprocess.run([sys.executable, '-c', PROBE], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True, timeout=60)
    if "doesn't have the security libraries" in probe.stdout:
        pytest.skip("this Fast DDS was built without its security plugins (\"This Fast DDS "
                    "version doesn't have the security libraries\"): no enclave can run here; "
                    'README "Security" says how to set one up on the robot')
    ros2 = shutil.which('ros2')
    if ros2 is None or subprocess.run([ros2, 'security', '--help'], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL).returncode:
        pytest.skip('sros2 (ros2 security) is not installed: no keystore can be made here')
    shutil.rmtree(keystore)
    for verb in (['create_keystore', keystore],
                 ['create_enclave', keystore, '/robot/inference_node']):
        subprocess.run([ros2, 'security'] + verb, check=True, stdout=subprocess.DEVNULL)
    node = ModuleProcess(['tx2_inference.ros.node', '--ros-args', '-r',
                          '__node:=enclave_node', '--enclave', '/robot/inference_node',
                          '-p', 'model_path:=' + default_model], os.path.join(
                              folder, 'enclave_node.log'), env=env)
    try:
        # This process has no enclave: it cannot discover the node, let alone configure it.
        driver = soak.Driver('enclave_node')
        try:
            with pytest.raises(TimeoutError):
                driver.client.wait_for_node(timeout=10.0)
        finally:
            driver.close()
        assert node.alive(), node.log()[-2000:]
    finally:
        node.stop()
