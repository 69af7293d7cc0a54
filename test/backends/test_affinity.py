"""An ONNX Runtime run is called from the CPUs its pool threads are not pinned to (issue 23).

Real ONNX Runtime sessions and the kernel's real affinity calls. The session's run is observed
through a thin wrapper that records the calling thread's CPUs and then runs the real session.
"""

import contextlib
import os
import threading

import numpy as np
import pytest

from tx2_inference.backends.affinity import (
    CallerAffinity,
    parse_cpu_list,
    pinned_cpus_of_new_threads,
    thread_cpus,
    thread_ids,
)
from tx2_inference.backends.onnxruntime_backend import OnnxRuntimeBackend

linux_smp = pytest.mark.skipif(
    not os.path.isdir('/proc/self/task') or len(os.sched_getaffinity(0)) < 2,
    reason='needs Linux /proc and at least two CPUs this process may use')


def test_kernel_cpu_lists_are_read_as_sets():
    assert parse_cpu_list('0-3,8,10-11\n') == {0, 1, 2, 3, 8, 10, 11}
    assert parse_cpu_list('1') == {1}


@linux_smp
def test_caller_affinity_moves_the_thread_off_the_cpus_and_back():
    allowed = os.sched_getaffinity(0)
    avoid = frozenset([max(allowed)])
    with CallerAffinity(avoid):
        assert os.sched_getaffinity(0) == allowed - avoid
    assert os.sched_getaffinity(0) == allowed
    with CallerAffinity(frozenset(allowed)):  # nothing left: stays where it may run
        assert os.sched_getaffinity(0) == allowed


@linux_smp
def test_a_thread_started_and_pinned_is_found():
    before = thread_ids()
    ready, done = threading.Event(), threading.Event()
    target = min(os.sched_getaffinity(0))
    ids = []

    def pinned():
        os.sched_setaffinity(0, {target})
        ids.append(os.readlink('/proc/thread-self').rsplit('/', 1)[1])  # its kernel id
        ready.set()
        done.wait(30)

    thread = threading.Thread(target=pinned)
    thread.start()
    try:
        assert ready.wait(30)
        assert pinned_cpus_of_new_threads(before) == {target}
        assert thread_cpus(ids[0]) == {target}
    finally:
        done.set()
        thread.join(30)


class _Observed(object):
    """The real session; records the calling thread's allowed CPUs at each bound run."""

    def __init__(self, session):
        self.session = session
        self.cpus = []

    def run_with_iobinding(self, binding):
        self.cpus.append(frozenset(os.sched_getaffinity(0)))
        self.session.run_with_iobinding(binding)

    def __getattr__(self, name):
        return getattr(self.session, name)


def _run_observed(backend):
    observed = _Observed(backend._session)
    backend._session = observed
    slot = backend.create_slot(0)
    slot.count = 1
    allowed = os.sched_getaffinity(0)
    backend.run(slot)
    assert os.sched_getaffinity(0) == allowed  # given back after the run
    backend.release_slot(slot)
    return observed.cpus


@contextlib.contextmanager
def _pinned_backend(model):
    """Yield the backend on ``model`` with ONNX Runtime's default pool; skip if it pins nothing."""
    import onnxruntime
    with OnnxRuntimeBackend(model) as backend:
        if not backend.pool_cpus:
            pytest.skip('ONNX Runtime {} pinned no pool thread here'.format(
                onnxruntime.__version__))
        yield backend


@linux_smp
def test_the_default_pool_is_pinned_and_runs_are_called_from_the_other_cpus(default_model):
    with _pinned_backend(default_model) as backend:
        allowed = frozenset(os.sched_getaffinity(0))
        assert backend.pool_cpus < allowed
        assert backend.caller_cpus == sorted(allowed - backend.pool_cpus)
        assert _run_observed(backend) == [allowed - backend.pool_cpus]


@linux_smp
def test_without_caller_affinity_or_with_explicit_threads_nothing_is_pinned(default_model):
    allowed = frozenset(os.sched_getaffinity(0))
    with OnnxRuntimeBackend(default_model, caller_affinity=False) as backend:
        assert backend.pool_cpus == frozenset() and backend.caller_cpus is None
        assert _run_observed(backend) == [allowed]
    # An explicit thread count: ONNX Runtime pins nothing, so neither do we.
    with OnnxRuntimeBackend(default_model, intra_op_threads=2) as backend:
        assert backend.pool_cpus == frozenset()
        assert _run_observed(backend) == [allowed]


@linux_smp
def test_the_outputs_are_those_of_a_plain_session(default_model):
    import onnxruntime
    with OnnxRuntimeBackend(default_model) as backend:
        slot = backend.create_slot(0)
        slot.count = 1
        name = backend.inputs[0].name
        image = np.random.RandomState(0).randint(0, 255, slot.inputs[name].shape)
        slot.inputs[name][...] = image
        backend.run(slot)
        plain = onnxruntime.InferenceSession(default_model, providers=['CPUExecutionProvider'])
        expected = plain.run(None, {name: slot.inputs[name]})
        for info, value in zip(backend.outputs, expected):
            np.testing.assert_allclose(slot.outputs[info.name], value, rtol=1e-5, atol=1e-5)
        backend.release_slot(slot)


@linux_smp
def test_a_run_that_overlaps_another_keeps_its_thread_where_it_was(default_model):
    """Frames back to back: two runs at once each keep a core rather than share the free one."""
    with _pinned_backend(default_model) as backend:
        allowed = frozenset(os.sched_getaffinity(0))
        first_in, second_done = threading.Event(), threading.Event()
        seen = {}

        class _Held(_Observed):
            def run_with_iobinding(self, binding):
                name = threading.current_thread().name
                seen[name] = frozenset(os.sched_getaffinity(0))
                if name == 'first':
                    first_in.set()
                    assert second_done.wait(30)
                self.session.run_with_iobinding(binding)

        backend._session = _Held(backend._session)
        slots = [backend.create_slot(i) for i in range(2)]
        for slot in slots:
            slot.count = 1

        def second():
            assert first_in.wait(30)
            backend.run(slots[1])
            second_done.set()

        threads = [threading.Thread(target=backend.run, args=(slots[0],), name='first'),
                   threading.Thread(target=second, name='second')]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert seen == {'first': allowed - backend.pool_cpus, 'second': allowed}
        for slot in slots:
            backend.release_slot(slot)


@linux_smp
def test_a_kernel_that_refuses_the_move_costs_no_frame(default_model, monkeypatch):
    """A sandbox may forbid sched_setaffinity: the run goes on where it is, and stops trying."""
    with _pinned_backend(default_model) as backend:

        def refuse(pid, cpus):
            raise PermissionError(1, 'Operation not permitted')  # what seccomp answers

        monkeypatch.setattr(os, 'sched_setaffinity', refuse)
        allowed = frozenset(os.sched_getaffinity(0))
        assert _run_observed(backend) == [allowed]
        assert _run_observed(backend) == [allowed]
