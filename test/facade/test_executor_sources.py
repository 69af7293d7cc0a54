"""Several sources (cameras) on one executor, with the real ONNX Runtime backend (issue 16).

The model (conftest ``conv_onnx_model``) returns the sum of each batch row exactly, so every
result is checked against the frame it claims to be: a frame is the input filled with its own
number. Sources are what ``submit``'s ``source`` names; each keeps its own pending frame.
"""

import collections
import os
import subprocess
import sys
import textwrap
import threading
import time

# prepare fills a row with its frame's number; finish reads the number back from the model's
# output for that row (the batch rows' own 'total'), with the frame's context.
import numpy as np
import pytest
from test_executor import _finish, _prepare
from test_executor import _Recorder as _BaseRecorder

from tx2_inference.backends import open_backend
from tx2_inference.executor import DoubleBufferedExecutor

CAMERAS = ('cam0', 'cam1', 'cam2', 'cam3')


class _Recorder(_BaseRecorder):
    def per_source(self):
        counts = collections.Counter(tag[0] for tag, _, _ in self.results)
        return [counts[camera] for camera in CAMERAS]


@pytest.fixture
def backend(conv_onnx_model):
    with open_backend(conv_onnx_model, 'onnxruntime', threads=1) as b:
        yield b


def _check_results(rec):
    """Every result is its own frame's, and each source's come in submission order."""
    last = {}
    for (camera, frame), (decoded, context), _ in rec.results:
        assert decoded == frame and context == frame
        assert frame > last.get(camera, -1), 'source {} out of order'.format(camera)
        last[camera] = frame


def test_each_source_keeps_its_own_pending_frame_served_round_robin(backend):
    rec = _Recorder()
    rec.gate = threading.Event()
    with DoubleBufferedExecutor(backend, _prepare, _finish, rec.on_result, depth=1) as ex:
        ex.submit(1, ('cam0', 1), 'cam0')   # the only slot; its delivery waits on the gate
        assert rec.entered.wait(30)
        for number, camera in enumerate(CAMERAS[1:], 2):  # cam1..cam3 wait, one frame each
            ex.submit(number, (camera, number), camera)
        ex.submit(5, ('cam0', 5), 'cam0')   # cam0 waits too
        ex.submit(6, ('cam1', 6), 'cam1')   # replaces cam1's frame 2: newest wins per source
        stats = ex.stats()
        assert stats['pending'] == 4 and stats['dropped_reasons']['superseded'] == 1
        rec.gate.set()
        assert ex.drain(30)
        stats = ex.stats()
    _check_results(rec)
    # cam1..cam3 were never served (cam1 first in line), cam0 was: it comes last.
    assert [tag for tag, _, _ in rec.results] == [
        ('cam0', 1), ('cam1', 6), ('cam2', 3), ('cam3', 4), ('cam0', 5)]
    sources = stats['sources']
    assert [sources[c]['received'] for c in CAMERAS] == [2, 2, 1, 1]
    assert [sources[c]['completed'] for c in CAMERAS] == [2, 1, 1, 1]
    assert sources['cam1']['dropped_reasons'] == {'superseded': 1, 'error': 0, 'closed': 0}
    assert all(sources[c]['dropped'] == 0 for c in ('cam0', 'cam2', 'cam3'))
    assert sources['cam0']['latency_ms_p50'] > 0


def _drained_rounds(ex, rounds):
    """Submit each round's cameras a frame (numbered on), then wait for their results."""
    number = 0
    for cameras in rounds:
        for camera in cameras:
            number += 1
            ex.submit(number, (camera, number), camera)
        assert ex.drain(30)


def _run_synchronised(ex, rounds, period_s):
    """Submit one frame per camera at the same instant, ``rounds`` times."""
    number = 0
    start = time.monotonic()
    for index in range(rounds):
        for camera in CAMERAS:
            number += 1
            ex.submit(number, (camera, number), camera)
        time.sleep(max(start + (index + 1) * period_s - time.monotonic(), 0.0))
    assert ex.drain(60)


def _inference_s(ex):
    """Warm up, then return the time one frame takes through the executor alone."""
    assert ex.process(0, timeout=30) == (0, 0)
    start = time.monotonic()
    for _ in range(5):
        ex.process(0, timeout=30)
    return (time.monotonic() - start) / 5


@pytest.mark.parametrize('depth', [1, 2])
def test_synchronised_sources_below_capacity_are_all_answered(backend, depth):
    # Rounds of four frames at the same instant, each round answered before the next: far
    # below capacity, yet a round leaves frames waiting, and with one pending frame for all
    # sources they superseded each other: the same camera lost every round (issue 16).
    rec = _Recorder()
    with DoubleBufferedExecutor(backend, _prepare, _finish, rec.on_result, depth=depth) as ex:
        _drained_rounds(ex, [CAMERAS] * 20)
        stats = ex.stats()
    _check_results(rec)
    answered = rec.per_source()
    print('below capacity, depth {}: answered per camera {} of 20'.format(depth, answered))
    assert answered == [20] * 4
    assert stats['dropped'] == 0


@pytest.fixture
def slow_backend(backend):
    """Return the real ONNX Runtime backend, each inference 6 ms longer on its worker thread.

    The conv model runs in about 1.3 ms, close to what the submitting thread itself spends on
    a round of four frames (more on Python 3.6): rounds meant to be above capacity were then
    at times below it, and whichever camera submits first in a round took the free slot
    directly (a flaky share, seen under CPython 3.6). With inference well above the
    submitter's overhead the over-capacity premise holds on any interpreter.
    """
    create_slot = backend.create_slot

    def slowed(*args, **kwargs):
        slot = create_slot(*args, **kwargs)
        runtime, stream, job = slot.handle

        def slow_job():
            time.sleep(0.006)  # releases the GIL, as a device's inference would
            job()
        slot.handle = (runtime, stream, slow_job)
        return slot
    backend.create_slot = slowed
    try:
        yield backend
    finally:
        backend.create_slot = create_slot


@pytest.mark.parametrize('depth', [1, 2])
def test_synchronised_sources_above_capacity_get_fair_shares(slow_backend, depth):
    rec = _Recorder()
    backend = slow_backend
    with DoubleBufferedExecutor(backend, _prepare, _finish, rec.on_result, depth=depth) as ex:
        _run_synchronised(ex, 60, period_s=_inference_s(ex) / 2)  # 8 frames per inference time
        stats = ex.stats()
    _check_results(rec)
    answered = rec.per_source()
    shares = [count / float(sum(answered)) for count in answered]
    print('above capacity, depth {}: answered per camera {} (shares {})'.format(
        depth, answered, ', '.join('{:.2f}'.format(s) for s in shares)))
    assert stats['dropped_reasons']['superseded'] > 0  # it really was over capacity
    assert min(shares) >= 0.8 * 0.25, shares
    for camera in CAMERAS:
        source = stats['sources'][camera]
        assert source['received'] == 60
        assert source['completed'] + source['dropped_reasons']['superseded'] == 60


def _batched(backend, rec, batch=4, **options):
    return DoubleBufferedExecutor(backend, _prepare, _finish, rec.on_result, depth=2,
                                  input_shapes={'x': (batch, 16, 64, 64)}, sources=CAMERAS,
                                  **options)


def test_a_batch_holds_one_frame_per_camera_and_runs_in_one_inference(backend):
    rec = _Recorder()
    with _batched(backend, rec, batch_timeout_ms=10000) as ex:
        assert ex.batch_size == 4 and all(slot.batch == 4 for slot in ex.slots)
        _drained_rounds(ex, [CAMERAS] * 10)  # the fourth camera completes each batch at once
        stats = ex.stats()
    _check_results(rec)
    assert rec.per_source() == [10] * 4
    assert stats['inferences'] == 10 and stats['frames_per_inference_mean'] == 4.0
    assert all(timing['batch_frames'] == 4 for _, _, timing in rec.results)


def _round_latencies(ex, rec, cameras, rounds, period_s):
    """Submit a frame per camera every ``period_s``; return each round's latency (ms)."""
    latencies = []
    for index in range(rounds):
        del rec.results[:]
        for camera in cameras:
            ex.submit(index, (camera, index), camera)
        time.sleep(period_s)
        assert ex.drain(30)
        latencies.append(max(timing['latency_ms'] for _, _, timing in rec.results))
    return latencies


def test_a_silent_camera_delays_a_batch_by_the_timeout_only_while_it_counts_as_active(backend):
    rec = _Recorder()
    with _batched(backend, rec, batch_timeout_ms=300, active_window_s=1.0) as ex:
        # cam3 never publishes. While it counts as active (1 s from the start), each batch
        # waits for it up to the timeout; then batches of three launch as soon as they fill.
        waited = _round_latencies(ex, rec, CAMERAS[:3], 2, 0.4)
        time.sleep(0.4)
        prompt = _round_latencies(ex, rec, CAMERAS[:3], 3, 0.05)
        stats = ex.stats()
    print('batch latency (ms) with cam3 active but silent {}, after it left {}'.format(
        ['{:.0f}'.format(v) for v in waited], ['{:.0f}'.format(v) for v in prompt]))
    assert stats['frames_per_inference_mean'] == 3.0
    assert stats['sources']['cam3']['received'] == 0
    # Bounds, not speed goals: it waited for the timeout (300 ms) and not for much longer.
    assert all(300 <= latency < 1000 for latency in waited), waited
    assert all(latency < 300 for latency in prompt), prompt


def test_a_newer_frame_replaces_its_cameras_frame_in_the_batch_being_filled(backend):
    rec = _Recorder()
    with _batched(backend, rec, batch_timeout_ms=10000) as ex:
        ex.submit(10, ('cam0', 10), 'cam0')
        ex.submit(11, ('cam0', 11), 'cam0')  # replaces 10 in its row
        ex.submit(12, ('cam1', 12), 'cam1')
        ex.submit(13, ('cam2', 13), 'cam2')
        stats = ex.stats()
        assert stats['sources']['cam0']['dropped_reasons']['superseded'] == 1
        assert stats['in_flight'] == 3 and stats['inferences'] == 0  # waits for cam3
        ex.submit(14, ('cam3', 14), 'cam3')
        assert ex.drain(30)
        stats = ex.stats()
    _check_results(rec)
    assert [tag for tag, _, _ in rec.results] == [
        ('cam0', 11), ('cam1', 12), ('cam2', 13), ('cam3', 14)]
    assert stats['inferences'] == 1 and stats['frames_per_inference_mean'] == 4.0


def test_a_freed_slot_takes_every_cameras_waiting_frame_into_one_batch(backend):
    # Above capacity the waiting frames are older than the batch timeout; the freed slot must
    # still take all of them before the batch launches, not launch with the first alone.
    rec = _Recorder()
    rec.gate = threading.Event()
    with DoubleBufferedExecutor(backend, _prepare, _finish, rec.on_result, depth=1,
                                input_shapes={'x': (4, 16, 64, 64)}, sources=CAMERAS,
                                batch_timeout_ms=20) as ex:
        for number, camera in enumerate(CAMERAS):  # the only slot; delivery waits on the gate
            ex.submit(number, (camera, number), camera)
        assert rec.entered.wait(30)
        for number, camera in enumerate(CAMERAS, 10):  # all four wait
            ex.submit(number, (camera, number), camera)
        time.sleep(0.2)  # ten timeouts
        rec.gate.set()
        assert ex.drain(30)
        stats = ex.stats()
    _check_results(rec)
    assert stats['inferences'] == 2 and stats['frames_per_inference_mean'] == 4.0
    assert [timing['batch_frames'] for _, _, timing in rec.results] == [4.0] * 8


def test_batched_and_unbatched_results_are_the_same(backend):
    frames = list(range(1, 9))

    def heavy(row, context):  # the model's convolution output for this row's frame
        return context, float(row.outputs['heavy'][0])

    results = {1: [], 4: []}
    for batch, got in results.items():
        with DoubleBufferedExecutor(backend, _prepare, heavy, lambda t, r, _, got=got:
                                    got.append(r), input_shapes={'x': (batch, 16, 64, 64)},
                                    batch_timeout_ms=10000, sources=CAMERAS) as ex:
            for frame in frames:
                ex.submit(frame, frame, CAMERAS[frame % 4])
                if frame % 4 == 0:
                    assert ex.drain(30)
            assert ex.stats()['frames_per_inference_mean'] == batch
        got.sort()
    assert [f for f, _ in results[1]] == frames == [f for f, _ in results[4]]
    np.testing.assert_allclose([v for _, v in results[4]], [v for _, v in results[1]],
                               rtol=1e-4, atol=1e-4)


_TFLITE_BATCH_SCRIPT = textwrap.dedent("""
    import sys
    import tensorflow as tf
    @tf.function(input_signature=[tf.TensorSpec([None, 16, 64, 64], tf.float32, name='x')])
    def f(x):
        return {'total': tf.reduce_sum(x, axis=[1, 2, 3])}
    converter = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    open(sys.argv[1], 'wb').write(converter.convert())
""")


def test_tflite_runs_a_batch_of_cameras_in_one_invoke(tmp_path):
    """A .tflite with a free batch: the slot holds 4 rows; partial batches run padded."""
    pytest.importorskip('ai_edge_litert', reason='ai-edge-litert is not installed')
    path = str(tmp_path / 'batch.tflite')
    proc = subprocess.run([sys.executable, '-c', _TFLITE_BATCH_SCRIPT, path],
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    assert proc.returncode == 0, proc.stdout.decode()[-2000:]
    rec = _Recorder()
    with open_backend(path, 'tflite') as backend:
        assert backend.max_batch is None and backend.dynamic_batch
        total, = backend.outputs  # TFLite names it, not the function

        def finish(row, context):
            return _finish(row.__class__(row.slot, row.row, row.inputs,
                                         {'total': row.outputs[total.name]}), context)

        with DoubleBufferedExecutor(backend, _prepare, finish, rec.on_result,
                                    input_shapes={'x': (4, 16, 64, 64)}, sources=CAMERAS,
                                    batch_timeout_ms=10000) as ex:
            _drained_rounds(ex, (CAMERAS, CAMERAS[:3], CAMERAS))  # full, partial, full
            stats = ex.stats()
    _check_results(rec)
    assert len(rec.results) == 11 and stats['inferences'] == 3
