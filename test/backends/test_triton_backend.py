"""backend: triton against NVIDIA's real Triton Inference Server process, started here.

``tritonserver`` 2.51.0 comes from the nvidia-pytriton wheel (tools/setup_triton.sh, run by
``make test``). Its build has no onnxruntime backend, so the server runs the default person model
through its Python backend with ONNX Runtime inside the model's ``execute``
(tools/triton/model.py); the repository, ``config.pbtxt`` parsing, dynamic batcher, gRPC (and
TLS) endpoint, model control and statistics are the server's own. Everything on the client side
is the real thing: tritonclient, gRPC over localhost, the Detector, its executor and decoders.
Not covered here (not in the wheel): Triton's onnxruntime and TensorRT backends themselves, that
is, how they run a ``tx2-convert triton-repo`` model (the repository and its config.pbtxt are
loaded by the real server, which names the missing backend), and ``KIND_GPU`` instances.
"""

import os
import shutil
import threading
import time

from certificates import make_ca, make_server_cert
import numpy as np
from project_files import ROOT
import pytest
import skimage.data
import yaml

from tx2_inference.backends.triton_backend import TIMEOUT, UNAVAILABLE
from tx2_inference.detector import Detector
from tx2_inference.errors import BackendUnavailableError, ConfigError, ModelError
from tx2_inference.tools.triton_server import free_port, TritonServer, unavailable

MODEL = 'ssdlite_person'


def _require_triton():
    """Skip, naming why, where tools/setup_triton.sh could not set the server up here."""
    why = unavailable()
    if why:
        pytest.skip(why)


@pytest.fixture(scope='module')
def astronaut():
    return skimage.data.astronaut()


@pytest.fixture(scope='module')
def server(default_model, tmp_path_factory):
    """One Triton server for the module: the person model and two twins.

    'slow_person' is slow on demand; 'batched_person' has dynamic batching in its config.pbtxt
    (up to 4 requests, 50 ms queue).
    """
    _require_triton()
    folder = tmp_path_factory.mktemp('triton')
    delay = str(folder / 'delay_s')
    srv = TritonServer(str(folder), {MODEL: default_model,
                                     'slow_person': {'path': default_model,
                                                     'delay_file': delay},
                                     'batched_person': {'path': default_model,
                                                        'max_batch_size': 4,
                                                        'queue_delay_us': 50000}})
    srv.delay_file = delay
    with srv:
        yield srv


def _triton(default_model, server, **options):
    options.setdefault('url', server.url)
    return Detector(default_model, backend='triton', backend_options=options)


def test_same_detections_as_local_onnxruntime(default_model, server, astronaut):
    photos = [astronaut, skimage.data.chelsea(), skimage.data.coffee()]
    with Detector(default_model, backend='onnxruntime') as local:
        expected = [local.detect(p, 'rgb') for p in photos]
    with _triton(default_model, server) as remote:
        assert remote.backend_name == 'triton' and remote.labels == ['person']
        got = [remote.detect(p, 'rgb') for p in photos]
        health = remote.stats()['backend_health']
    assert len(expected[0]) >= 1 and expected[0].labels[0] == 'person'
    for want, have in zip(expected, got):
        assert have.labels == want.labels
        np.testing.assert_allclose(have.boxes, want.boxes, atol=1e-4)
        np.testing.assert_allclose(have.scores, want.scores, atol=1e-4)
    assert health['level'] == 'ok' and health['errors'][UNAVAILABLE] == 0


def test_the_model_config_from_triton_repo_is_all_the_robot_needs(default_model, server,
                                                                  astronaut, tmp_path):
    from tx2_inference.convert.triton_repo import write_repository
    paths = write_repository(default_model, str(tmp_path / 'model_repository'))
    # On the robot: model_path names the model config; the server's model name is its stem.
    with Detector(paths['model_config'], backend='triton',
                  backend_options={'url': server.url}) as remote:
        assert remote.backend.model_name == MODEL
        assert remote.detect(astronaut, 'rgb').labels[:1] == ['person']


def test_inputs_and_outputs_come_from_the_server_metadata(default_model, server):
    from tx2_inference.backends import open_backend
    with open_backend(default_model, 'onnxruntime') as local, \
            open_backend(default_model, 'triton', url=server.url) as remote:
        assert [(t.name, t.dtype) for t in remote.inputs] == \
            [(t.name, t.dtype) for t in local.inputs]
        assert [t.name for t in remote.outputs] == [t.name for t in local.outputs]


def test_submitted_frames_arrive_in_order_one_request_per_slot(default_model, server, astronaut):
    results = []
    with Detector(default_model, backend='triton', depth=2,
                  on_result=lambda tag, dets, timing: results.append((tag, len(dets))),
                  backend_options={'url': server.url}) as det:
        for tag in range(12):
            det.submit(astronaut, 'rgb', tag)
            assert det.stats()['in_flight'] <= 2
        assert det.drain(30)
        stats = det.stats()
    tags = [tag for tag, _ in results]
    assert tags == sorted(tags) and tags[-1] == 11
    assert all(n >= 1 for _, n in results)
    assert stats['completed'] + stats['dropped_reasons']['superseded'] == 12


def test_batch_size_above_one_is_refused_with_the_servers_batching_named(default_model, server):
    """One frame per request: the server batches several cameras' requests, not the slot."""
    with pytest.raises(ConfigError) as error:
        Detector(default_model, backend='triton', batch_size=4,
                 backend_options={'url': server.url})
    assert 'batch_size 1' in str(error.value) and 'dynamic_batching' in str(error.value)


def test_wrong_model_name_fails_naming_it(default_model, server):
    with pytest.raises(ModelError) as error:
        _triton(default_model, server, model_name='ssdlite_persn')
    message = str(error.value)
    assert "'ssdlite_persn'" in message and server.url in message and 'triton_model' in message


def test_wrong_input_name_fails_naming_both(default_model, server, tmp_path):
    with open(os.path.splitext(default_model)[0] + '.yaml') as f:
        config = yaml.safe_load(f)
    config['input']['name'] = 'images'
    path = tmp_path / 'wrong.yaml'
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError) as error:
        Detector(default_model, config_path=str(path), backend='triton',
                 backend_options={'url': server.url})
    message = str(error.value)
    assert "'images'" in message and 'image_tensor:0' in message


def test_unreachable_url_fails_fast_naming_url_and_fix(default_model):
    url = '127.0.0.1:{}'.format(free_port())
    start = time.monotonic()
    with pytest.raises(BackendUnavailableError) as error:
        Detector(default_model, backend='triton', backend_options={'url': url,
                                                                   'timeout_s': 1.0})
    message = str(error.value)
    assert url in message and 'start the server' in message and 'triton_url' in message
    assert time.monotonic() - start < 15


def test_http_url_and_bad_options_are_config_errors(default_model, tmp_path):
    for options, words in (({'url': 'http://gpu:8000'}, ['gRPC', '8001']),
                           ({'url': 'gpu-server'}, ['no port']),
                           ({'compression': 'zstd'}, ['zstd', 'gzip']),
                           ({'root_cert': str(tmp_path / 'none.pem')}, ['none.pem']),
                           ({'client_cert': str(tmp_path / 'c.pem')}, ['c.pem'])):
        with pytest.raises(ConfigError) as error:
            Detector(default_model, backend='triton', backend_options=options)
        assert all(w in str(error.value) for w in words), str(error.value)


def test_tls_with_the_right_ca_works_and_a_bad_certificate_fails(default_model, server,
                                                                  astronaut, tmp_path):
    # A real TLS handshake: the server itself speaks TLS (--grpc-use-ssl) with a certificate
    # signed by a test CA.
    ca = make_ca(str(tmp_path), 'robot-ca')
    other = make_ca(str(tmp_path), 'other-ca')
    cert = make_server_cert(str(tmp_path), ca)
    with TritonServer(str(tmp_path / 'tls'), {MODEL: default_model}, tls=cert) as secure:
        with _triton(default_model, secure, root_cert=ca[0]) as remote:
            assert remote.backend.tls
            assert remote.detect(astronaut, 'rgb').labels[:1] == ['person']
        with pytest.raises(BackendUnavailableError) as error:
            _triton(default_model, secure, root_cert=other[0], timeout_s=2.0)
        message = str(error.value)
        assert secure.url in message and 'TLS' in message and 'triton_root_cert' in message
    # TLS to a plain-text port fails the handshake, naming TLS as well.
    with pytest.raises(BackendUnavailableError) as error:
        _triton(default_model, server, root_cert=ca[0], timeout_s=2.0)
    assert server.url in str(error.value) and 'TLS' in str(error.value)


def test_malformed_urls_are_config_errors_not_host_names(default_model):
    for url in ('grpcs:/gpu:8001', 'grpcs//gpu:8001', 'grpc:gpu:8001', 'gpu :8001',
                'user@gpu:8001', 'gpu:0', 'gpu:70000', '[::1:8001'):
        with pytest.raises(ConfigError) as error:
            Detector(default_model, backend='triton', backend_options={'url': url})
        assert repr(url) in str(error.value), (url, str(error.value))


def test_credentials_go_only_over_tls_or_to_loopback_and_are_never_echoed(default_model,
                                                                          server):
    secret = {'authorization': 'Bearer s3cret'}
    with pytest.raises(ConfigError) as error:
        Detector(default_model, backend='triton', backend_options={
            'url': 'gpu.example:8001', 'headers': secret})
    assert 'authorization would travel in plain text' in str(error.value)
    assert 's3cret' not in str(error.value)
    with _triton(default_model, server, headers=secret) as remote:  # 127.0.0.1: allowed
        assert remote.backend.headers == secret
    from tx2_inference.ros.parameters import parse_headers, read_secret_headers
    with pytest.raises(ConfigError) as error:
        parse_headers(['authorization Bearer s3cret'])
    assert 's3cret' not in str(error.value)
    with pytest.raises(ConfigError) as error:
        read_secret_headers('', 'NO_SUCH_VARIABLE_HERE', environ={})
    assert 'NO_SUCH_VARIABLE_HERE' in str(error.value)


def test_answers_are_capped_near_the_outputs_size_and_their_shapes_checked(default_model,
                                                                          server, astronaut):
    """A redirected server may not answer gigabytes, nor shapes the metadata did not give."""
    from tx2_inference.backends.base import TensorInfo
    from tx2_inference.backends.triton_backend import MAX_RECEIVE_BYTES, RemoteInferenceError
    errors = []
    with _triton(default_model, server) as remote:
        backend = remote.backend
        outputs = sum(int(np.prod([max(d, 1) for d in t.shape])) * t.dtype.itemsize
                      for t in backend.outputs)
        assert outputs < backend.receive_limit <= max(1 << 20, 4 * outputs + 65536)
        assert backend.receive_limit < MAX_RECEIVE_BYTES
        # An answer larger than the channel takes is refused by gRPC, and counted.
        backend._client.close()
        backend._client = backend._connect(1024)
        remote.on_error = None
        with pytest.raises(Exception) as error:
            remote.detect(astronaut, 'rgb')
        assert 'received message larger than max' in str(error.value).lower() or \
            'resource' in str(error.value).lower(), str(error.value)
    with _triton(default_model, server) as remote:
        backend = remote.backend
        info = backend._outputs[0]
        backend._outputs[0] = TensorInfo(info.name, (1, 7, 4), info.dtype)  # what it "said"
        slot = backend._slots[0]
        backend.launch(slot)
        with pytest.raises(RemoteInferenceError) as error:
            backend.wait(slot)
        assert 'has shape' in str(error.value) and '[1, 7, 4]' in str(error.value)
    assert not errors


def test_the_servers_dynamic_batching_joins_several_cameras_requests(default_model, server):
    """config.pbtxt's dynamic_batching: the server runs 4 cameras' frames in fewer executions."""
    photos = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee(),
              skimage.data.astronaut()[::-1].copy()]
    with Detector(default_model, backend='onnxruntime') as local:
        expected = [local.detect(p, 'rgb') for p in photos]
    cameras = [_triton(default_model, server, model_name='batched_person') for _ in photos]
    before = server.statistics('batched_person')  # after each camera's probe requests
    got = [None] * len(photos)
    try:
        start = threading.Barrier(len(photos))

        def camera(i):
            start.wait()
            for _ in range(3):
                got[i] = cameras[i].detect(photos[i], 'rgb')
        threads = [threading.Thread(target=camera, args=(i,)) for i in range(len(photos))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        for det in cameras:
            det.close()
    after = server.statistics('batched_person')
    inferences = after.inference_count - before.inference_count
    executions = after.execution_count - before.execution_count
    assert inferences == 4 * 3
    assert executions < inferences, 'the server did not batch any requests'
    assert any(b.batch_size > 1 for b in after.batch_stats)
    for want, have in zip(expected, got):
        assert have.labels == want.labels
        np.testing.assert_allclose(have.boxes, want.boxes, atol=1e-4)
        np.testing.assert_allclose(have.scores, want.scores, atol=1e-4)


def test_the_real_server_loads_a_triton_repo_repository(default_model, astronaut, tmp_path):
    """tx2-convert triton-repo's output in the real server: its config.pbtxt is parsed there.

    The wheel's server has no onnxruntime backend: loading the repository as written fails
    naming that backend (not the config). The same folder with the platform line swapped for
    the Python backend (ONNX Runtime in tools/triton/model.py, reading the written
    1/model.onnx) loads and serves with the written inputs, outputs and instance group.
    """
    from tx2_inference.convert.triton_repo import write_repository
    _require_triton()
    repository = str(tmp_path / 'model_repository')
    paths = write_repository(default_model, repository, kind='cpu')
    with TritonServer(str(tmp_path / 'server'), {}, repositories=[repository]) as srv:
        with pytest.raises(Exception) as error:
            srv.load(MODEL)
        message = str(error.value)
        assert 'onnxruntime' in message and 'backend' in message, message
        with open(paths['config']) as f:
            text = f.read()
        assert 'platform: "onnxruntime_onnx"' in text
        with open(paths['config'], 'w') as f:
            f.write(text.replace('platform: "onnxruntime_onnx"', 'backend: "python"'))
        shutil.copyfile(os.path.join(ROOT, 'tools', 'triton', 'model.py'),
                        os.path.join(os.path.dirname(paths['model']), 'model.py'))
        srv.load(MODEL)
        client = srv.client()
        try:
            config = client.get_model_config(MODEL).config
        finally:
            client.close()
        assert [(i.name, list(i.dims)) for i in config.input] == \
            [('image_tensor:0', [1, 300, 300, 3])]
        assert config.max_batch_size == 0 and len(config.output) == 2
        with Detector(default_model, backend='onnxruntime') as local:
            want = local.detect(astronaut, 'rgb')
        # On the robot: model_path names the written model config; the name is its stem.
        with Detector(paths['model_config'], backend='triton',
                      backend_options={'url': srv.url}) as remote:
            have = remote.detect(astronaut, 'rgb')
    assert have.labels == want.labels and len(want) >= 1
    np.testing.assert_allclose(have.boxes, want.boxes, atol=1e-4)


def test_a_request_past_its_timeout_is_dropped_and_counted(default_model, server, astronaut):
    errors = []
    with Detector(default_model, backend='triton', on_error=lambda t, e: errors.append(e),
                  backend_options={'url': server.url, 'model_name': 'slow_person',
                                   'timeout_s': 0.5}) as det:
        with open(server.delay_file, 'w') as f:
            f.write('5')
        try:
            start = time.monotonic()
            for tag in range(3):
                det.submit(astronaut, 'rgb', tag)
            assert det.drain(20)
            elapsed = time.monotonic() - start
            health = det.stats()['backend_health']
        finally:
            os.remove(server.delay_file)
        assert len(errors) >= 2 and all(getattr(e, 'reason', '') == TIMEOUT for e in errors)
        assert health['errors'][TIMEOUT] == len(errors) and health['level'] == 'warn'
        assert elapsed < 4.0  # cut at the deadline, not when the server would have answered
        assert len(det.detect(astronaut, 'rgb')) >= 1  # the next one is on time again
        assert det.stats()['backend_health']['level'] == 'ok'


def test_server_killed_mid_stream_then_back(default_model, astronaut, tmp_path):
    """Frames fail by reason while the server is away; it resumes by itself when back."""
    _require_triton()
    server = TritonServer(str(tmp_path), {MODEL: default_model}).start()
    results, errors = [], []
    stop = threading.Event()
    try:
        det = Detector(default_model, backend='triton',
                       on_result=lambda t, d, timing: results.append((time.monotonic(), len(d))),
                       on_error=lambda t, e: errors.append(e),
                       backend_options={'url': server.url, 'timeout_s': 1.0,
                                        'reconnect_max_s': 0.5})

        def feed():
            while not stop.is_set():
                det.submit(astronaut, 'rgb')
                time.sleep(0.05)
        feeder = threading.Thread(target=feed)
        feeder.start()
        _until(lambda: len(results) >= 5, 30, 'no results before the kill')
        server.kill()
        killed = time.monotonic()
        _until(lambda: len(errors) >= 5, 30, 'no failed frames after the kill')
        health = det.stats()['backend_health']
        assert health['level'] == 'error' and health['state'] == 'unavailable'
        assert health['errors'][UNAVAILABLE] >= 5
        assert all(getattr(e, 'reason', '') in (UNAVAILABLE, TIMEOUT) for e in errors)
        assert det.stats()['in_flight'] <= det.depth  # nothing piles up
        server.start()
        back = time.monotonic()
        _until(lambda: any(t > back and n >= 1 for t, n in results), 30,
               'no result after the server came back')
        stop.set()
        feeder.join()
        health = det.stats()['backend_health']
        assert health['level'] == 'ok' and health['recoveries'] >= 1
        assert any(t < killed for t, _ in results)
        det.close()
    finally:
        stop.set()
        server.stop()


def _until(predicate, timeout, message):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, message
        time.sleep(0.05)
