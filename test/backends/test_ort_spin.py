"""ONNX Runtime's pool spins a bounded time, only during a run (issue 23): real sessions.

A sleeping pool parks its thread after each parallel part of a run and is woken for the next
(dozens of voluntary context switches per run here); a bounded spin keeps it awake across
them for the same CPU, and lets it sleep when the run ends.
"""

import resource
import time

import numpy as np
import pytest

from tx2_inference.backends.onnxruntime_backend import BOUNDED_SPIN_SINCE, OnnxRuntimeBackend


def _ort_version():
    import onnxruntime
    return tuple(int(part) for part in onnxruntime.__version__.split('.')[:2])


def _switches_per_run(backend, runs=12):
    slot = backend.create_slot(0)
    slot.count = 1
    name = backend.inputs[0].name
    slot.inputs[name][...] = np.random.RandomState(0).randint(0, 255, slot.inputs[name].shape)
    counts, after_run = [], []
    for _ in range(runs):
        time.sleep(0.03)  # idle between frames, as at a camera rate
        before = resource.getrusage(resource.RUSAGE_SELF)
        backend.run(slot)
        after = resource.getrusage(resource.RUSAGE_SELF)
        time.sleep(0.02)
        idle = resource.getrusage(resource.RUSAGE_SELF)
        counts.append(after.ru_nvcsw - before.ru_nvcsw)
        after_run.append((idle.ru_utime + idle.ru_stime - after.ru_utime - after.ru_stime) * 1e3)
    backend.release_slot(slot)
    return float(np.median(counts)), float(np.median(after_run))


@pytest.mark.skipif(_ort_version() < BOUNDED_SPIN_SINCE,
                    reason='ONNX Runtime before 1.26 has no bounded spin')
def test_a_bounded_spin_wakes_the_pool_less_and_stops_with_the_run(default_model):
    with OnnxRuntimeBackend(default_model, spin_us=0) as sleeping:
        assert sleeping.effective_spin_us == 0
        parked, _ = _switches_per_run(sleeping)
    with OnnxRuntimeBackend(default_model) as bounded:  # the default
        assert bounded.effective_spin_us == 50
        woken, burnt_after = _switches_per_run(bounded)
    if parked < 8:
        pytest.skip('the sleeping pool parked only {:g} times per run here: nothing to '
                    'compare'.format(parked))
    assert woken <= parked / 2
    assert burnt_after < 2.0  # ms of CPU in the 20 ms after a run: no spinning on


@pytest.mark.skipif(_ort_version() >= BOUNDED_SPIN_SINCE,
                    reason='this ONNX Runtime has the bounded spin (the test above)')
def test_an_onnx_runtime_without_the_bounded_spin_sleeps_at_once(default_model):
    with OnnxRuntimeBackend(default_model, spin_us=50) as backend:
        assert backend.effective_spin_us == 0
        _, burnt_after = _switches_per_run(backend)
    assert burnt_after < 2.0
