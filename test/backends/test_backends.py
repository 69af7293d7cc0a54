"""Backends on real models: ONNX Runtime (IOBinding into slot buffers), TFLite, open_backend."""

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from tiny_models import TFLITE_SCRIPT

from tx2_inference.backends import open_backend
from tx2_inference.backends.base import TensorInfo
from tx2_inference.backends.onnxruntime_backend import OnnxRuntimeBackend
from tx2_inference.backends.tensorrt.cuda import probe_gpu
from tx2_inference.errors import BackendUnavailableError, ConfigError, ModelError


def _filled(shape, seed):
    return np.random.RandomState(seed).uniform(-1, 1, shape).astype(np.float32)


def test_onnxruntime_describes_the_model(conv_onnx_model):
    with open_backend(conv_onnx_model, 'onnxruntime') as backend:
        assert backend.name == 'onnxruntime'
        assert backend.providers == ['CPUExecutionProvider']
        assert backend.inputs == [TensorInfo('x', (-1, 16, 64, 64), np.dtype(np.float32))]
        assert [(t.name, t.shape) for t in backend.outputs] == [
            ('heavy', (-1,)), ('total', (-1,)), ('doubled', (-1, 16, 64, 64))]


def test_onnxruntime_runs_into_the_slot_buffers_bound_once(conv_onnx_model):
    with open_backend(conv_onnx_model, 'onnxruntime', threads=1) as backend:
        slot = backend.create_slot(0)
        x = slot.inputs['x']
        assert x.shape == (1, 16, 64, 64)  # dynamic batch -> 1
        outputs = {name: (array, array.ctypes.data) for name, array in slot.outputs.items()}
        for seed in range(3):
            np.copyto(x, _filled(x.shape, seed))
            backend.run(slot)
            # Results land in the same preallocated arrays every frame.
            for name, (array, address) in outputs.items():
                assert slot.outputs[name] is array and array.ctypes.data == address
            np.testing.assert_allclose(slot.outputs['doubled'], 2 * x + 1, rtol=1e-6)
            np.testing.assert_allclose(slot.outputs['total'], [x.sum()], rtol=1e-4)
            assert slot.infer_ms > 0


def test_onnxruntime_outputs_whose_shape_follows_the_data_are_allocated_every_frame(tmp_path):
    # NonZero: the output's shape changes from frame to frame, as in-graph NMS does.
    import onnx
    from onnx import helper, TensorProto
    graph = helper.make_graph(
        [helper.make_node('NonZero', ['x'], ['y'])], 'g',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info('y', TensorProto.INT64, [2, None])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)])
    model.ir_version = 8
    path = str(tmp_path / 'nonzero.onnx')
    onnx.save(model, path)
    with open_backend(path, 'onnxruntime') as backend:
        slot = backend.create_slot(0)
        for count in (3, 5, 0, 2):
            slot.inputs['x'][:] = 0
            slot.inputs['x'][0, :count] = 1
            backend.run(slot)
            np.testing.assert_array_equal(slot.outputs['y'], [[0] * count, list(range(count))])


def test_onnxruntime_slots_are_independent(conv_onnx_model):
    with open_backend(conv_onnx_model, 'onnxruntime') as backend:
        a = backend.create_slot(0)
        b = backend.create_slot(1, {'x': (2, 16, 64, 64)})
        assert b.outputs['doubled'].shape == (2, 16, 64, 64)
        a.inputs['x'].fill(1.0)
        b.inputs['x'].fill(3.0)
        backend.launch(a)
        backend.launch(b)
        assert backend.wait(b, timeout=30) and backend.wait(a, timeout=30)
        assert backend.query(a) and backend.query(b)
        assert np.all(a.outputs['doubled'] == 3.0) and np.all(b.outputs['doubled'] == 7.0)
        with pytest.raises(RuntimeError, match='busy'):
            backend.launch(a)
            backend.launch(a)
        backend.wait(a)


def test_onnxruntime_thread_counts_are_applied(conv_onnx_model):
    backend = OnnxRuntimeBackend(conv_onnx_model, intra_op_threads=1, inter_op_threads=1)
    options = backend._session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    backend.close()
    backend.close()  # idempotent
    assert backend.closed


def test_onnxruntime_pool_spinning_is_a_choice_off_by_default(conv_onnx_model):
    """By default the pool spins at most ``ort_spin_us`` (ONNX Runtime 1.26+), else sleeps."""
    import onnxruntime

    from tx2_inference.backends.onnxruntime_backend import BOUNDED_SPIN_SINCE
    bounded = tuple(int(p) for p in onnxruntime.__version__.split('.')[:2]) >= BOUNDED_SPIN_SINCE
    key = 'session.intra_op.allow_spinning'
    with open_backend(conv_onnx_model, 'onnxruntime') as quiet, \
            open_backend(conv_onnx_model, 'onnxruntime', spin_us=0) as sleeping, \
            open_backend(conv_onnx_model, 'onnxruntime', spinning=True) as spinning:
        options = [b._session.get_session_options() for b in (quiet, sleeping, spinning)]
        assert [o.get_session_config_entry(key) for o in options] == [
            '1' if bounded else '0', '0', '1']
        assert [b.effective_spin_us for b in (quiet, sleeping, spinning)] == [
            50 if bounded else 0, 0, 0]
        if bounded:
            assert options[0].get_session_config_entry(
                'session.intra_op.spin_duration_us') == '50'
            assert options[0].get_session_config_entry('session.force_spinning_stop') == '1'
        slot = spinning.create_slot(0)
        slot.inputs['x'].fill(2.0)
        spinning.run(slot)
        assert np.all(slot.outputs['doubled'] == 5.0)


def test_a_spinning_pool_stops_spinning_when_the_run_ends(default_model):
    """The pool spins during a run only: between frames the cores are the other threads'.

    A plain session (ONNX Runtime's default, the naive node) spins on after each run.
    ``session.force_spinning_stop`` came with ONNX Runtime 1.12 (microsoft/onnxruntime PR
    11841); older releases ignore it (measured with 1.10 in the Python 3.6 tier: 26 ms).
    """
    import resource

    import onnxruntime
    version = tuple(int(p) for p in onnxruntime.__version__.split('.')[:2])
    if version < (1, 12):
        pytest.skip('ONNX Runtime {} has no session.force_spinning_stop (1.12 and later): '
                    'its spinning pool spins on after a run'.format(onnxruntime.__version__))

    def idle_cpu_ms(run):
        spent = []
        for _ in range(3):
            run()
            before = resource.getrusage(resource.RUSAGE_SELF)
            time.sleep(0.2)
            after = resource.getrusage(resource.RUSAGE_SELF)
            spent.append((after.ru_utime + after.ru_stime - before.ru_utime -
                          before.ru_stime) * 1e3)
        return min(spent)

    with open_backend(default_model, 'onnxruntime', spinning=True, threads=2) as backend:
        slot = backend.create_slot(0)
        ours = idle_cpu_ms(lambda: backend.run(slot))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 2
    plain = onnxruntime.InferenceSession(default_model, options,
                                         providers=['CPUExecutionProvider'])
    feed = {plain.get_inputs()[0].name: np.zeros((1, 300, 300, 3), np.uint8)}
    theirs = idle_cpu_ms(lambda: plain.run(None, feed))
    assert ours < 3.0 < theirs, (ours, theirs)


def test_close_releases_slots(conv_onnx_model):
    backend = open_backend(conv_onnx_model, 'onnxruntime')
    slots = [backend.create_slot(i) for i in range(2)]
    backend.close()
    assert all(slot.handle is None for slot in slots)


def test_wrong_input_shape_names_the_input(conv_onnx_model):
    with open_backend(conv_onnx_model, 'onnxruntime') as backend:
        with pytest.raises(ConfigError, match="'x'"):
            backend.create_slot(0, {'x': (1, 3, 64, 64)})


def test_user_errors(conv_onnx_model, tmp_path):
    with pytest.raises(ModelError, match='does not exist'):
        open_backend(str(tmp_path / 'missing.onnx'))
    garbage = tmp_path / 'garbage.onnx'
    garbage.write_bytes(b'not a model')
    with pytest.raises(ModelError, match='cannot load'):
        open_backend(str(garbage), 'onnxruntime')
    with pytest.raises(ConfigError, match='unknown backend'):
        open_backend(conv_onnx_model, 'pytorch')
    with pytest.raises(ConfigError, match='.tflite'):
        open_backend(conv_onnx_model, 'tflite')
    import onnxruntime
    if 'CUDAExecutionProvider' not in onnxruntime.get_available_providers():
        with pytest.raises(BackendUnavailableError, match='CUDAExecutionProvider'):
            open_backend(conv_onnx_model, 'onnxruntime-cuda')


@pytest.mark.skipif(probe_gpu()[0] > 0, reason='a GPU is present: auto may pick TensorRT')
def test_auto_without_gpu_is_onnxruntime_cpu_and_tensorrt_is_refused(conv_onnx_model, tmp_path):
    with open_backend(conv_onnx_model) as backend:
        assert backend.name == 'onnxruntime'
    engine = tmp_path / 'model.engine'
    engine.write_bytes(b'\0' * 16)
    # Refused by the GPU probe, before TensorRT is imported (it would segfault here).
    with pytest.raises(BackendUnavailableError, match='no usable GPU'):
        open_backend(str(engine))


@pytest.fixture(scope='module')
def tiny_tflite(tmp_path_factory):
    """Convert a tiny TensorFlow function to .tflite (in a subprocess: TF stays out of here)."""
    pytest.importorskip('ai_edge_litert', reason='ai-edge-litert is not installed')
    path = str(tmp_path_factory.mktemp('tflite') / 'tiny.tflite')
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
    proc = subprocess.run([sys.executable, '-c', TFLITE_SCRIPT, path], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    assert proc.returncode == 0, proc.stdout.decode()[-2000:]
    return path


def test_outputs_from_reaches_the_tensorrt_backend_only(conv_onnx_model, tmp_path, monkeypatch):
    """The node's trt_outputs_from goes to TensorRT; ONNX Runtime and the rest ignore it.

    TensorRTBackend is replaced by a recorder (no GPU here); open_backend is the real one.
    """
    from tx2_inference.backends.tensorrt import runtime
    seen = []

    class Recorder(object):
        def __init__(self, path, device=0, **options):
            seen.append((path, options))

    monkeypatch.setattr(runtime, 'TensorRTBackend', Recorder)
    engine = tmp_path / 'model.engine'
    engine.write_bytes(b'not inspected: no metadata beside it')
    open_backend(str(engine), 'tensorrt', outputs_from='copy')
    assert seen == [(str(engine), {'outputs_from': 'copy'})]
    open_backend(str(engine), 'tensorrt', inputs_from='copy')  # its mirror, trt_inputs_from
    assert seen[-1] == (str(engine), {'inputs_from': 'copy'})
    open_backend(str(engine), 'tensorrt')
    assert seen[-1] == (str(engine), {})  # unset: the backend's own default
    with open_backend(conv_onnx_model, 'onnxruntime', outputs_from='copy',
                      inputs_from='copy') as backend:
        assert isinstance(backend, OnnxRuntimeBackend)


def test_tflite_runs_into_the_slot_buffers(tiny_tflite):
    with open_backend(tiny_tflite) as backend:
        assert backend.name == 'tflite'
        assert [t.name for t in backend.inputs] == ['x']
        slots = [backend.create_slot(i) for i in range(2)]
        arrays = [dict(s.outputs) for s in slots]
        for seed in range(3):
            for offset, slot in enumerate(slots):
                np.copyto(slot.inputs['x'], _filled((1, 8, 8, 3), seed) + offset)
                backend.launch(slot)
            for slot, before in zip(slots, arrays):
                assert backend.wait(slot, timeout=30)
                x = slot.inputs['x']
                doubled = [a for a in slot.outputs.values() if a.shape == (1, 8, 8, 3)][0]
                total = [a for a in slot.outputs.values() if a.shape == (1,)][0]
                np.testing.assert_allclose(doubled, 2 * x + 1, rtol=1e-6)
                np.testing.assert_allclose(total, [x.sum()], rtol=1e-4)
                assert all(slot.outputs[k] is v for k, v in before.items())


def test_tflite_user_errors(tiny_tflite, tmp_path):
    garbage = tmp_path / 'garbage.tflite'
    garbage.write_bytes(b'not a model')
    with pytest.raises(ModelError, match='cannot load'):
        open_backend(str(garbage))
    with pytest.raises(ConfigError, match='.onnx'):
        open_backend(tiny_tflite, 'onnxruntime')


@pytest.mark.gpu
def test_tensorrt_matches_onnxruntime_on_the_default_model(default_model, tmp_path):
    """On a GPU with TensorRT: build (or load) the engine and compare it with ONNX Runtime."""
    from tx2_inference.backends.tensorrt.runtime import import_tensorrt
    try:
        trt = import_tensorrt()
    except BackendUnavailableError as error:
        pytest.skip(str(error))
    if not (hasattr(trt, 'Builder') and hasattr(trt, 'OnnxParser')):
        pytest.skip('only the runtime-only TensorRT ({} {}) is installed: it runs engines but '
                    'cannot build one from the ONNX model; this test needs full TensorRT '
                    '(Builder, OnnxParser)'.format(trt.__name__, getattr(trt, '__version__', '?')))
    image = np.random.RandomState(0).randint(0, 255, (1, 300, 300, 3)).astype(np.uint8)
    outputs = {}
    for name in ('onnxruntime', 'tensorrt'):
        with open_backend(default_model, name, precision='fp32',
                          engine_cache_dir=str(tmp_path)) as backend:
            slots = [backend.create_slot(i) for i in range(2)]
            for slot in slots:
                np.copyto(slot.inputs['image_tensor:0'], image)
                backend.launch(slot)
            for slot in slots:
                assert backend.wait(slot, timeout=60)
            outputs[name] = {k: v.copy() for k, v in slots[1].outputs.items()}
    for key, expected in outputs['onnxruntime'].items():
        np.testing.assert_allclose(outputs['tensorrt'][key], expected, atol=2e-3)


def test_every_backend_module_imports_without_its_runtime():
    code = textwrap.dedent("""
        import sys
        import tx2_inference.backends
        import tx2_inference.backends.tensorrt.cuda
        import tx2_inference.backends.onnxruntime_backend
        import tx2_inference.backends.tensorrt.runtime
        import tx2_inference.backends.tflite_backend
        import tx2_inference.backends.tensorrt.api
        import tx2_inference.detector
        import tx2_inference.executor
        heavy = ('tensorrt', 'tensorrt_lean', 'tensorrt_lean_bindings', 'pycuda', 'cuda',
                 'tensorflow', 'ai_edge_litert', 'tflite_runtime', 'onnxruntime')
        print(sorted(m for m in heavy if m in sys.modules))
    """)
    proc = subprocess.run([sys.executable, '-c', code], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=120)
    assert proc.returncode == 0, proc.stdout.decode()
    assert proc.stdout.decode().strip().splitlines()[-1] == '[]'
