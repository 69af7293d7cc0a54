"""Run to completion when idle (issue 23), with the real ONNX Runtime backend on a real model.

Frames that come far apart are run, decoded and delivered by the thread that submitted them
(no hand-off to the completion thread: the 15 FPS latency); frames that come close together
still go through the slots and the completion thread, so the next one is taken meanwhile.
Each frame is the input filled with its own number and the model returns its exact sum, so
every result is checked against its frame.
"""

import threading
import time

import pytest

from tx2_inference.backends import open_backend
from tx2_inference.backends.onnxruntime_backend import OnnxRuntimeBackend
from tx2_inference.executor import DoubleBufferedExecutor, INLINE_GAPS

ELEMENTS = 16 * 64 * 64


def _prepare(frame, slot):
    slot.inputs['x'].fill(frame)
    return frame


def _finish(slot, context):
    return int(round(float(slot.outputs['total'][0]) / ELEMENTS))


class _Recorder(object):
    def __init__(self):
        self.results = []  # (tag, decoded frame, the thread it was delivered in)
        self.errors = []

    def on_result(self, tag, result, timing):
        self.results.append((tag, result, threading.current_thread()))

    def on_error(self, tag, error):
        self.errors.append((tag, error, threading.current_thread()))


@pytest.fixture
def backend(conv_onnx_model):
    with open_backend(conv_onnx_model, 'onnxruntime') as b:
        yield b


def _spaced(ex, frames, gap_s):
    """Submit frames one at a time, each after the last was delivered and ``gap_s`` of quiet."""
    for frame in frames:
        ex.submit(frame, tag=frame, source='camera')
        assert ex.drain(30)
        time.sleep(gap_s)


def test_frames_far_apart_are_run_by_the_thread_that_submits_them(backend):
    rec = _Recorder()
    frames = list(range(1, 31))
    with DoubleBufferedExecutor(backend, _prepare, _finish, rec.on_result, rec.on_error) as ex:
        _spaced(ex, frames, 0.03)
        stats = ex.stats()
    assert [(tag, result) for tag, result, _ in rec.results] == [(f, f) for f in frames]
    here = [tag for tag, _, thread in rec.results if thread is threading.current_thread()]
    # Not before INLINE_GAPS gaps are known; after that, every frame whose gaps were at least
    # twice a frame's time (a loaded machine may stretch one: most, not all).
    assert here and min(here) > INLINE_GAPS
    assert len(here) >= (len(frames) - INLINE_GAPS - 1) // 2
    assert stats['inline_frames'] == len(here)
    assert stats['completed'] == len(frames) and stats['dropped'] == 0
    assert all(thread.name == 'executor-completion' for tag, _, thread in rec.results
               if tag not in here)


def test_frames_back_to_back_go_through_the_completion_thread(backend):
    rec = _Recorder()
    with DoubleBufferedExecutor(backend, _prepare, _finish, rec.on_result, rec.on_error) as ex:
        _spaced(ex, range(1, 11), 0.03)  # first learn that frames come far apart
        for frame in range(11, 61):
            ex.submit(frame, tag=frame, source='camera')  # then a flood
        assert ex.drain(30)
        stats = ex.stats()
    flood = [(tag, result, thread) for tag, result, thread in rec.results if tag > 10]
    tags = [tag for tag, _, _ in flood]
    assert tags == sorted(tags) and tags[-1] == 60  # in order, the newest never dropped
    assert all(tag == result for tag, result, _ in flood)
    # A flood frame ran inline only while the gaps before it were still the quiet ones.
    late = [tag for tag, _, thread in flood
            if tag > 10 + INLINE_GAPS and thread is threading.current_thread()]
    assert late == []
    assert stats['completed'] + stats['dropped_reasons']['superseded'] == 60


def test_without_run_inline_every_frame_goes_through_the_completion_thread(backend):
    rec = _Recorder()
    with DoubleBufferedExecutor(backend, _prepare, _finish, rec.on_result, rec.on_error,
                                run_inline=False) as ex:
        _spaced(ex, range(1, 21), 0.03)
        stats = ex.stats()
    assert [result for _, result, _ in rec.results] == list(range(1, 21))
    assert {thread.name for _, _, thread in rec.results} == {'executor-completion'}
    assert stats['inline_frames'] == 0


def test_process_runs_inline_when_nothing_else_is_in_flight(backend):
    with DoubleBufferedExecutor(backend, _prepare, _finish) as ex:
        assert [ex.process(frame, timeout=30) for frame in (4, 5, 6)] == [4, 5, 6]
        assert ex.stats()['inline_frames'] == 3


class _FailingOnce(OnnxRuntimeBackend):
    """The real backend; its run fails once when armed (a failure injected, nothing faked)."""

    armed = False

    def run(self, slot):
        if self.armed:
            self.armed = False
            raise RuntimeError('ONNX Runtime inference of the test model failed: injected')
        super(_FailingOnce, self).run(slot)


def test_an_inline_run_that_fails_is_reported_and_the_next_frames_run(conv_onnx_model):
    rec = _Recorder()
    with _FailingOnce(conv_onnx_model) as failing:
        with DoubleBufferedExecutor(failing, _prepare, _finish, rec.on_result,
                                    rec.on_error) as ex:
            _spaced(ex, range(1, INLINE_GAPS + 6), 0.03)
            inline_before = ex.stats()['inline_frames']
            failing.armed = True
            _spaced(ex, [100, 101, 102], 0.03)
            stats = ex.stats()
    assert inline_before > 0  # the failure below happened on the inline path
    assert [(tag, str(error)) for tag, error, _ in rec.errors] == [
        (100, 'ONNX Runtime inference of the test model failed: injected')]
    assert [tag for tag, _, _ in rec.results][-2:] == [101, 102]
    assert stats['dropped_reasons']['error'] == 1
    assert stats['in_flight'] == 0 and stats['pending'] == 0


def test_a_frame_from_another_thread_during_an_inline_run_is_not_lost(backend):
    """While one thread runs a frame inline, a frame of another source goes through a slot."""
    rec = _Recorder()
    started, release = threading.Event(), threading.Event()

    def finish(slot, context):
        if context == 500:  # the inline frame: held in its decoding until released
            started.set()
            assert release.wait(30)
        return _finish(slot, context)

    with DoubleBufferedExecutor(backend, _prepare, finish, rec.on_result, rec.on_error) as ex:
        _spaced(ex, range(1, INLINE_GAPS + 4), 0.03)
        if ex.stats()['inline_frames'] == 0:
            pytest.skip('no frame ran inline on this loaded machine: nothing to interleave')
        inline = threading.Thread(target=ex.submit, args=(500, 500, 'camera'))
        inline.start()
        assert started.wait(30)
        ex.submit(600, tag=600, source='other')  # from this thread, meanwhile
        release.set()
        inline.join(30)
        assert ex.drain(30)
    results = {tag: (result, thread) for tag, result, thread in rec.results}
    assert results[500][0] == 500 and results[600][0] == 600
    assert results[500][1] is inline
