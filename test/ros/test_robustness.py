"""
Robustness of a node process: broken models, bad parameters, churn, flood and signals.

Broken models and configs, bad parameters, lifecycle churn, a flood above the model's
throughput, and SIGINT/SIGTERM: short versions of ``make soak``
(``tx2_inference.tools.soak``), which runs the same functions for longer.

Each test drives a real ``inference_node`` process through its lifecycle and parameter
services (`NodeClient`), as ``ros2 lifecycle set`` and ``ros2 param set`` do. The image
subscriptions are made reliable through the node's QoS override parameters, so that no frame is
lost between the processes and every count is exact. The engine cache's own faults (a corrupted
entry, two concurrent builders, a killed build) are tested in test_engine_builder.py.
"""

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from tx2_inference.backends.tensorrt.cuda import probe_gpu
from tx2_inference.core.fileio import file_sha256
from tx2_inference.core.stats import percentile
from tx2_inference.errors import ModelError
from tx2_inference.ros.image import array_to_image_msg
from tx2_inference.ros.parameters import PARAMETERS, POLICY, RECONFIGURE
from tx2_inference.tools import soak

CHURN_CYCLES = 20
FLOOD_FRAMES = 2000
FLOOD_FPS = 200.0
FLOOD_SIZE = (160, 120)  # small frames: a stall elsewhere cannot queue much memory


@pytest.fixture(scope='module')
def folder(tmp_path_factory) -> str:
    """Return a folder for this module's node logs and broken files."""
    return str(tmp_path_factory.mktemp('robustness'))


def detector_message(driver: soak.Driver, since: int) -> str:
    """Return the detector status message of a /diagnostics array after message ``since``."""
    def find():
        for array in driver.client.messages('/diagnostics')[since:]:
            for status in array.status:
                if status.name.endswith(': detector'):
                    return status.message
        return None
    return driver.client.wait_until(find, timeout=5.0) or ''


# --------------------------------------------------------------------------- broken models

@pytest.fixture(scope='module')
def tflite_file(folder) -> str:
    """Convert a tiny TensorFlow function to a real .tflite (in a subprocess)."""
    pytest.importorskip('tensorflow', reason='TensorFlow is not installed (workstation only)')
    from tiny_models import TFLITE_SCRIPT
    path = os.path.join(folder, 'tiny.tflite')
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
    proc = subprocess.run([sys.executable, '-c', TFLITE_SCRIPT, path], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    assert proc.returncode == 0, proc.stdout.decode()[-2000:]
    return path


def broken_models(folder: str, model: str, tflite: str):
    """Yield (case, parameters, words the failure must name) for each broken model or config."""
    with open(model, 'rb') as f:
        onnx = f.read()
    with open(os.path.splitext(model)[0] + '.yaml') as f:
        config = f.read()

    def write(name: str, data: bytes) -> str:
        path = os.path.join(folder, name)
        with open(path, 'wb') as f:
            f.write(data)
        return path
    missing = os.path.join(folder, 'missing', 'person.onnx')
    yield 'missing file', {'model_path': missing}, [missing, 'does not exist', 'model_path']
    empty = write('empty.onnx', b'')
    yield 'empty file', {'model_path': empty}, [empty, 'empty', 'Copy the model again']
    truncated = write('truncated.onnx', onnx[:len(onnx) // 2])
    yield 'truncated ONNX', {'model_path': truncated}, [truncated, 'truncated',
                                                        'Copy it again']
    with open(tflite, 'rb') as f:
        renamed = write('tiny_model.onnx', f.read())
    yield '.tflite named .onnx', {'model_path': renamed}, [renamed, 'TFLite',
                                                         'rename it to tiny_model.tflite']
    wrong_input = write('wrong_input.yaml', config.replace(
        'name: image_tensor:0', 'name: images:0').encode())
    yield 'config: wrong input name', {'model_path': model, 'model_config': wrong_input}, [
        wrong_input, 'input.name', "'images:0'", "'image_tensor:0'", 'write one of them']
    wrong_output = write('wrong_output.yaml', config.replace(
        'scores: Postprocessor/convert_scores:0', 'scores: detection_scores:0').encode())
    yield 'config: wrong decoder output', {'model_path': model, 'model_config': wrong_output}, [
        wrong_output, 'decoder.scores', "'detection_scores:0'",
        "'Postprocessor/convert_scores:0'", 'write the right one']
    # An engine whose metadata names another TensorRT and GPU, its ONNX not at hand.
    engine = write('stale.engine', b'serialized engine of another device')
    meta = {'trt_version': '7.1.3', 'gpu_name': 'Xavier', 'compute_capability': '7.2',
            'engine_sha256': file_sha256(engine), 'onnx_path': missing}
    write('stale.json', json.dumps(meta).encode())
    # Without a GPU (here) it cannot be checked nor run; with one, it is refused as stale.
    why = ['another device', 'Copy the .onnx file'] if probe_gpu()[0] else [
        'no usable GPU', 'onnxruntime']
    yield 'stale engine, no ONNX', {'model_path': engine, 'backend': 'tensorrt'}, [engine] + why


def test_broken_models_fail_configure_naming_the_file_and_fix_then_the_same_node_recovers(
        folder, default_model, tflite_file):
    # The operator's opt-in: launch-only parameters are settable while unconfigured.
    node, driver = soak.start_node('broken_models_node', default_model, folder,
                                   extra={'allow_remote_reconfigure': True})
    client = driver.client
    try:
        tried = []
        for case, parameters, words in broken_models(folder, default_model, tflite_file):
            parameters = dict({'model_config': '', 'backend': 'onnxruntime'}, **parameters)
            results = client.set_parameters(**parameters)
            assert all(r.successful for r in results), [r.reason for r in results]
            seen_log, seen_diag = len(node.log()), len(client.messages('/diagnostics'))
            assert not client.transition('configure'), case
            assert client.state() == 'unconfigured', case
            log = node.log()[seen_log:]
            assert 'configure failed' in log, (case, log)
            for word in words + ['configure again']:
                assert word in log, (case, word, log)
            message = detector_message(driver, seen_diag)
            assert words[0] in message and 'configure failed' in message, (case, message)
            tried.append(case)
        assert node.alive() and 'Traceback' not in node.log()
        # Fixed: the same process configures, activates and finds the person.
        results = client.set_parameters(model_path=default_model, model_config='',
                                        backend='onnxruntime')
        assert all(r.successful for r in results), [r.reason for r in results]
        soak.activate(driver)
        msg = array_to_image_msg(soak.astronaut(), 'rgb8')
        stamp = driver.stamp(msg)
        driver.publish(msg)
        answer = driver.answer(stamp)
        assert answer is not None and soak.person_found(answer)
        assert len(tried) == 7
    finally:
        driver.close()
        node.stop()


def test_open_backend_checks_an_engine_against_this_device(tmp_path, monkeypatch):
    """The node's path to TensorRT checks engine metadata (device identity and TensorRT faked).

    Only the device identity, the TensorRT build and the TensorRT runtime are replaced; the
    metadata check, the rebuild into the cache and the error are the real code.
    """
    from tx2_inference import backends
    from tx2_inference.backends.tensorrt import builder as engine_builder
    from tx2_inference.backends.tensorrt import runtime as tensorrt_backend
    here = engine_builder.DeviceIdentity('8.2.1', 'NVIDIA Tegra X2', '6.2')
    opened = []

    class Runtime(object):
        def __init__(self, path, device=0, **options):
            opened.append(path)

    monkeypatch.setattr(engine_builder, 'device_identity', lambda: here)
    monkeypatch.setattr(engine_builder, 'build_engine_bytes',
                        lambda onnx, options: b'ENGINE for ' + open(onnx, 'rb').read())
    monkeypatch.setattr(tensorrt_backend, 'TensorRTBackend', Runtime)
    onnx = tmp_path / 'model.onnx'
    onnx.write_bytes(b'onnx bytes')
    cache = engine_builder.EngineCache(str(tmp_path / 'xavier'))
    xavier = engine_builder.DeviceIdentity('8.5.2', 'Xavier', '7.2')
    stale = cache.get_or_build(str(onnx), engine_builder.BuildOptions('fp16'), xavier,
                               lambda p, o: b'xavier engine')
    backends.open_backend(stale, 'tensorrt')
    rebuilt = opened[-1]
    assert rebuilt != stale
    with open(os.path.splitext(rebuilt)[0] + '.json') as f:
        assert json.load(f)['gpu_name'] == 'NVIDIA Tegra X2'
    # Built on this device: used as it is. Stale and its ONNX gone: refused, saying what to do.
    backends.open_backend(rebuilt, 'tensorrt')
    assert opened[-1] == rebuilt
    os.unlink(str(onnx))
    with pytest.raises(ModelError) as error:
        backends.open_backend(stale, 'tensorrt')
    assert 'another device' in str(error.value) and 'Copy the .onnx file' in str(error.value)


@pytest.mark.gpu
def test_stale_engine_rebuilt_on_the_gpu(tmp_path, default_model):
    from tx2_inference import backends
    from tx2_inference.backends.tensorrt import builder as engine_builder
    onnx = str(tmp_path / 'person.onnx')
    shutil.copy(default_model, onnx)
    shutil.copy(os.path.splitext(default_model)[0] + '.yaml', str(tmp_path / 'person.yaml'))
    engine = engine_builder.build_or_load(onnx, engine_builder.BuildOptions('fp16'),
                                          output=str(tmp_path / 'person.engine'))
    meta_path = os.path.splitext(engine)[0] + '.json'
    with open(meta_path) as f:
        meta = json.load(f)
    meta['trt_version'] = '7.1.3'  # built by another TensorRT, per its metadata
    with open(meta_path, 'w') as f:
        json.dump(meta, f)
    backend = backends.open_backend(engine, 'tensorrt')
    try:
        assert backend.model_path != engine
    finally:
        backend.close()


# --------------------------------------------------------------------------- parameters

# name -> (a value of the wrong type, out-of-range values (or why there are none), a valid
# value of the right type used for the read-only check).
BAD_VALUES = {
    'model_path': (5, 'any path: a missing or broken file fails configure (tested above)',
                   '/tmp/other.onnx'),
    'model_config': (1.5, 'any path: a missing or unfitting config fails configure',
                     '/tmp/other.yaml'),
    'backend': (1, ['cuda', ''], 'onnxruntime'),
    'precision': (16, ['int4', 'FP16'], 'fp32'),
    'engine_cache_dir': (True, 'any folder: created when an engine is first written',
                         '/tmp/engines'),
    'image_topics': ('cam0/image_raw', [[], ['cam 0/image'], ['a/image', 'a/image']],
                     ['cam9/image_raw']),
    'input_transport': (0, ['h264', 'theora'], 'compressed'),
    'executor_depth': (2.5, [0, 9], 3),
    'batch_size': ('4', [0, 17], 2),
    'batch_timeout_ms': (True, [-1.0, 1000.5], 50.0),
    'cpu_threads': ('four', [-1, 65], 2),
    'tiles': (3, ['3', '9x2', 'two by two'], '2x2'),
    'tile_cameras': ('cam0/image_raw', [['cam 0/image'], ['']], ['cam9/image_raw']),
    'tile_overlap': ('wide', [-0.1, 0.95], 0.3),
    'tile_whole_frame': ('yes', 'a boolean has no range', True),
    'ort_spinning': ('on', 'a boolean has no range', True),
    'ort_spin_us': (0.5, [-1, 10001], 200),
    'score_threshold': ('high', [-0.1, 1.5], 0.6),
    'nms_iou_threshold': ([0.5], [-0.01, 1.01], 0.5),
    'max_detections': (10.0, [0, 10001], 10),
    'class_allowlist': (7, [['dog'], ['person', 'cat']], ['person']),
    'class_agnostic_nms': ('yes', 'a boolean has no range', True),
    'publish_debug_image': ('yes', 'a boolean has no range', False),
    'trt_outputs_from': (1, ['host', 'PINNED'], 'copy'),
    'trt_inputs_from': (2, ['cached', 'Copy'], 'copy'),
    'triton_url': (8001, 'any address: an unreachable server fails configure (test_triton_node)',
                   'otherhost:8001'),
    'triton_model': (3, 'any name: a wrong one fails configure (test_triton_node)', 'other'),
    'triton_model_version': (1, 'any version: the server refuses a wrong one at configure', '2'),
    'triton_timeout_s': ('1 s', [0.0, 601.0], 2.0),
    'triton_root_cert': (False, 'any file: a wrong CA fails configure (test_triton_node)',
                         '/tmp/ca.pem'),
    'triton_client_cert': (False, 'any file: read at configure', '/tmp/client.pem'),
    'triton_client_key': (False, 'any file: read at configure', '/tmp/client.key'),
    'triton_headers': ('x-a=1', [['no-value'], ['=x'], ['authorization=Bearer x']],
                       ['x-source=1']),
    'triton_auth_file': (1, 'any file: read at configure (test_security)', '/tmp/token'),
    'triton_auth_env': (2, ['NOT A NAME', 'A=B'], 'TOKEN'),
    'triton_allow_plaintext_auth': ('yes', 'launch only (policy): read-only', True),
    'allow_remote_reconfigure': ('yes', 'launch only (policy): read-only', False),
    'max_frame_pixels': (1.5, [0, -1], 1000),
    'decoder_modules': (3, 'any module: checked at configure (test_decoder_plugin)',
                        ['my_decoders']),
    'triton_compression': (1, ['zip', 'GZIP'], 'gzip'),
    'warmup': ('yes', 'a boolean has no range', False),
    'silence_timeout_s': ('long', [0.1, 3601.0], 10.0),
    'max_frame_age_s': ('old', [-1.0, 3601.0], 5.0),
    'tracking': ('on', 'a boolean has no range', True),
    'tracking_low_threshold': ('low', [-0.1, 1.1], 0.2),
    'tracking_iou_gate': (True, [-0.01, 1.01], 0.3),
    'tracking_lost_s': ('1 s', [-1.0, 60.5], 2.0),
    'tracking_appearance_gate': ('red', [-0.5, 1.5], 0.6),
}


POLICIES = tuple(name for name, spec in PARAMETERS.items() if spec.kind == POLICY)


def test_every_parameter_has_bad_values_here():
    assert set(BAD_VALUES) == set(PARAMETERS), 'a declared parameter has no robustness case'


def check_rejected(client, name, value, old, words):
    """Set a bad value: rejected with a reason naming ``words``; the old value stays."""
    [result] = client.set_parameters(**{name: value})
    assert not result.successful, (name, value)
    reason = result.reason
    assert reason and any(w in reason for w in words), (name, value, reason)
    [now] = client.get_parameters(name)
    assert now == old, (name, value, now, old)


def test_bad_parameters_are_rejected_with_a_reason_and_the_old_value_stays(folder,
                                                                           default_model):
    # allow_remote_reconfigure: the launch-only parameters' own checks are reached too
    # (without it rclpy refuses them as read-only first: test_security.py).
    node, driver = soak.start_node('params_node', default_model, folder,
                                   extra={'allow_remote_reconfigure': True})
    client = driver.client
    try:
        # Unconfigured: wrong types and out-of-range values (a policy's are refused as
        # read-only here, whatever they are: test_bad_policy_values_given_at_launch_...).
        olds = dict(zip(BAD_VALUES, client.get_parameters(*BAD_VALUES)))
        # Unset: the model config's own default applies (its detection section, else 0.5).
        assert olds['score_threshold'] is None and olds['model_path'] == default_model
        for name, (wrong_type, out_of_range, _) in BAD_VALUES.items():
            check_rejected(client, name, wrong_type, olds[name], ['type', name])
            if name == 'class_allowlist' or isinstance(out_of_range, str):
                continue  # labels are known once a model is loaded: checked below
            for value in out_of_range:
                check_rejected(client, name, value, olds[name], [name])
        # Configured: reconfigure parameters are read-only; labels are checked against the
        # model; live ones still take a good value.
        assert client.transition('configure')
        for name in RECONFIGURE:  # policies: read-only always (rclpy's reason)
            check_rejected(client, name, BAD_VALUES[name][2], olds[name],
                           ['read-only while the node is configured'] if name not in POLICIES
                           else ['read-only parameter'])
        assert client.set_parameters(class_allowlist=['person'])[0].successful
        for value in BAD_VALUES['class_allowlist'][1]:
            check_rejected(client, 'class_allowlist', value, ['person'], ['dog', 'cat'])
        for name in ('score_threshold', 'nms_iou_threshold', 'max_detections',
                     'class_agnostic_nms', 'publish_debug_image', 'silence_timeout_s',
                     'max_frame_age_s', 'tracking', 'tracking_low_threshold',
                     'tracking_iou_gate', 'tracking_lost_s', 'tracking_appearance_gate'):
            good = BAD_VALUES[name][2]
            assert client.set_parameters(**{name: good})[0].successful, name
            assert client.get_parameters(name) == [good]
        assert node.alive() and 'Traceback' not in node.log()
    finally:
        driver.close()
        node.stop()


def test_bad_policy_values_given_at_launch_fail_configure_naming_them(default_model):
    """A policy's bad values, given at launch: named at startup, the default stands.

    A policy is read-only from the start, so rclpy refuses a remote set before its type or
    range is looked at (above: 'read-only parameter'). Its bad values can only come at launch:
    tried there, each is named at startup, the default stands (the limit stays in force) and
    configure fails naming it, until the node is restarted with a valid value.
    """
    import rclpy
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from tx2_inference.ros.node import InferenceNode
    context = rclpy.Context()
    rclpy.init(context=context)
    tried = 0
    try:
        for name in POLICIES:
            wrong_type, out_of_range, _ = BAD_VALUES[name]
            values = [wrong_type] + ([] if isinstance(out_of_range, str) else out_of_range)
            for value in values:
                node = InferenceNode('policy_node', context=context, parameter_overrides=[
                    Parameter(name, value=value), Parameter('model_path', value=default_model),
                    Parameter('backend', value='onnxruntime')])
                try:
                    assert name in node._params.startup_errors, (name, value)
                    default = PARAMETERS[name].default_value()
                    assert node.get_parameter(name).value == default, (name, value)
                    assert node.describe_parameter(name).read_only, name
                    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
                    assert 'parameters rejected at startup: {} ('.format(name) in \
                        node._last_error and 'at launch' in node._last_error, node._last_error
                    tried += 1
                finally:
                    node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    assert tried == 5  # allow_remote_reconfigure, triton_allow_plaintext_auth, 3 pixel limits


def test_a_missing_file_says_how_to_set_its_parameter_read_only_or_not(folder, default_model):
    """A missing model or config names the fix rclpy will accept: -p, or ros2 param set.

    model_path and model_config are launch only (issue 22): the fix is a restart with -p;
    with allow_remote_reconfigure, ros2 param set. Never a set that rclpy would refuse.
    """
    import rclpy
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from tx2_inference.ros.node import InferenceNode
    missing = os.path.join(folder, 'missing', 'person')
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        for remote in (False, True):
            for name, value in (('model_path', missing + '.onnx'),
                                ('model_config', missing + '.yaml')):
                node = InferenceNode('hint_node', context=context, parameter_overrides=[
                    Parameter('model_path', value=default_model), Parameter(name, value=value),
                    Parameter('backend', value='onnxruntime'),
                    Parameter('allow_remote_reconfigure', value=remote)])
                try:
                    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
                    error = node._last_error
                    assert value in error and 'does not exist' in error, error
                    hint = ('ros2 param set /hint_node {} '.format(name) if remote else
                            'read-only (launch only): restart the node with -p {}:='.format(name))
                    assert hint in error, (remote, error)
                finally:
                    node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


# --------------------------------------------------------------------------- churn and flood

def test_a_closed_detector_frees_its_model_without_waiting_for_the_garbage_collector(
        default_model):
    """No reference cycle keeps a closed model alive (its memory and runtime threads)."""
    import gc
    import weakref

    from tx2_inference.detector import Detector
    gc.collect()
    gc.disable()
    try:
        detector = Detector(default_model, backend='onnxruntime', precision='fp32')
        detector.detect(soak.astronaut((320, 240)), 'rgb')
        backend = weakref.ref(detector.backend)
        session = weakref.ref(detector.backend._session)
        detector.close()
        del detector
        assert backend() is None and session() is None
    finally:
        gc.enable()


@pytest.fixture(scope='module')
def churn_node(folder, default_model):
    """Start a node for the churn and the flood; stop it with SIGINT."""
    # One inference thread: the model's throughput stays well below the flood's input rate.
    node, driver = soak.start_node('churn_node', default_model, folder,
                                   extra={'cpu_threads': 1})
    yield node, driver
    driver.close()
    node.stop()


def test_lifecycle_churn_with_frames_flowing_leaks_nothing(churn_node):
    node, driver = churn_node
    result = soak.churn(node, driver, CHURN_CYCLES)
    assert result['failures'] == []
    assert result['cycles_answered'] == CHURN_CYCLES  # detections in every active period
    first, last = result['samples'][0], result['samples'][-1]
    # Measured unconfigured after each cycle: the model's threads and files are all gone.
    assert last['threads'] <= first['threads'], result['samples']
    assert last['fds'] <= first['fds'], result['samples']
    assert soak.rss_growth(result['samples']) < 20.0, result['samples']
    assert node.alive() and 'Traceback' not in node.log()


def test_flood_above_throughput_bounded_latency_flat_memory_drops_counted(churn_node):
    node, driver = churn_node
    soak.activate(driver)
    result = soak.flood(node, driver, FLOOD_FRAMES, FLOOD_FPS, soak.astronaut(FLOOD_SIZE))
    # Every frame arrived (reliable queue) and is accounted for: published or superseded.
    assert result['node_frames_in'] == FLOOD_FRAMES
    drops = result['node_dropped']
    assert {k for k, v in drops.items() if v} <= {'superseded'}, drops
    assert result['node_frames_out'] + drops['superseded'] == FLOOD_FRAMES
    assert result['answered'] == result['node_frames_out']
    assert result['answered_with_person'] == result['answered']
    # The input was above what the model keeps up with: the newest frame wins.
    assert drops['superseded'] > 0 and result['output_fps'] < result['input_fps']
    latencies = sorted(result['latency_ms'])
    p99 = latencies[int(0.99 * (len(latencies) - 1))]
    assert p99 < 500.0, (p99, percentile(latencies, 50))
    # Memory flat: no growth after the first quarter beyond allocator noise.
    memory = [mb for _, mb in result['memory_mb']]
    assert memory[-1] - memory[len(memory) // 4] < 20.0, memory
    assert node.alive() and 'Traceback' not in node.log()


# --------------------------------------------------------------------------- signals

@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_signal_while_processing_exits_cleanly_within_2_s(folder, default_model, sig):
    result = soak.signal_exit(default_model, folder, sig)
    assert result['answered_before'], 'the node was not processing when signalled'
    assert result['exit_code'] == 0, result['log'][-2000:]
    assert result['seconds'] < 2.0, result['seconds']
    assert 'shutting down: model released' in result['log'], result['log'][-2000:]
    assert 'Traceback' not in result['log']
