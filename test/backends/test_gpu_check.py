"""`make gpu-check`: the TensorRT backend on a real GPU, with TensorRT itself a stand-in.

TensorRT cannot be installed where these run (a lent GPU machine: CUDA, CuPy and cuda-python,
no TensorRT), so ``test/trt_standin.py`` replaces the TensorRT module, and only it: its
``execute_async_v3`` / ``execute_async_v2`` launch a real CUDA kernel (CuPy) on the slot's
stream, reading the bound input address and writing the bound output address. Everything else
is the package's own code on the GPU: cuda.py (cuda-python, and pycuda where installed), the
backend's slots, streams, pinned and device buffers, events and context handling, and the
executor on top, with batches (issue 16): a slot of batch B holds one frame per source
(camera) in its rows, each prepared and checked per row, a partial batch run at its real size.
Each test prints what it measured; the figures are the backend's, not TensorRT's. Skipped
(marker ``gpu``) without a GPU; ``make gpu-check`` says so in one line. On a GPU machine a
missing CuPy or cuda-python fails the tests instead of skipping them, and
``tools/gpu_check.py`` (what ``make gpu-check`` runs) fails on any skipped test.
"""

import importlib.util
import os
import sys
import threading
import time

import numpy as np
import pytest
import trt_standin

pytestmark = pytest.mark.gpu

STANDIN = ('TensorRT is a STAND-IN here (test/trt_standin.py: a CuPy kernel y = 2x + 1 that '
           'spins the whole GPU for base_ms + item_ms * B); CUDA, the backend and the executor '
           'are real')
ITEMS = 1 << 20  # floats per batch item (4 MB)


def _libraries():
    """Return the CUDA libraries installed here (cuda-python is required: its absence fails)."""
    found = ['cuda-python']
    if importlib.util.find_spec('pycuda') is not None:
        found.append('pycuda')
    return found


def report(line):
    """Print one line of the gpu-check report (pytest -s shows it)."""
    print('gpu-check: ' + line, flush=True)


@pytest.fixture(scope='module', autouse=True)
def _needs_cupy():
    from tx2_inference.backends.tensorrt.cuda import probe_gpu
    if not probe_gpu()[0]:
        pytest.skip('no GPU here')
    # On a GPU machine a missing library fails the check: it is not a reason to skip.
    for module, why in (('cupy', 'the TensorRT stand-in launches its kernel with CuPy'),
                        ('cuda.bindings', "cuda-python, the backend's CUDA library off the "
                                          'Jetson')):
        if importlib.util.find_spec(module.split('.')[0]) is None:
            pytest.fail('{} is missing on this GPU machine: {}'.format(module, why))
    report(STANDIN)


def _open(tmp_path, monkeypatch, library, generation='tensors', items=ITEMS, base_ms=1.0,
          item_ms=1.0, profiles=4, static=False, **options):
    from tx2_inference.backends.tensorrt import runtime
    monkeypatch.setattr(runtime, 'import_tensorrt', lambda: trt_standin.module(generation))
    path = trt_standin.engine_file(str(tmp_path / 'standin.engine'), items, max_batch=4,
                                   profiles=profiles, base_ms=base_ms, item_ms=item_ms,
                                   generation=generation, static=static)
    return runtime.TensorRTBackend(path, cuda_library=library, **options)


class _Frames(object):
    """A few random one-row frames, each with its expected output (y = 2x + 1)."""

    def __init__(self, count=8, items=ITEMS):
        rng = np.random.RandomState(count)
        self.inputs = [rng.standard_normal((1, items)).astype(np.float32)
                       for _ in range(count)]
        self.expected = [2 * x + 1 for x in self.inputs]

    def prepare(self, frame, row):
        """Write frame ``frame`` into its batch row (a ``SlotRow``: ``(1, N)`` views)."""
        np.copyto(row.inputs['x'], self.inputs[frame % len(self.inputs)])
        return frame

    def finish(self, row, frame):
        """Return (frame, its row's output is right, the row it ran in)."""
        return frame, bool(np.array_equal(row.outputs['y'],
                                          self.expected[frame % len(self.expected)])), row.row


class _Run(object):
    """What ``_run_executor`` measured."""

    def __init__(self, fps, results, launches, stats):
        self.fps = fps
        self.results = results  # (source, frame, correct, row) in delivery order
        self.launches = launches  # batch size the stand-in ran -> launches (measured part)
        self.stats = stats


def _run_executor(backend, depth, batch, frames, warmup=None):
    """Run ``warmup + frames`` frames from ``batch`` sources (frame i from source i % batch).

    At most ``depth * batch`` frames are in flight, so each batch fills with one frame of
    every source (frames of a source never replace each other; every source stays active
    through a slow first kernel load); after the warm-up is drained, ``frames`` are timed.
    Return a ``_Run``.
    """
    from tx2_inference.executor import DoubleBufferedExecutor
    warmup = 2 * depth * batch if warmup is None else warmup
    data = _Frames()
    results, errors = [], []
    free = threading.Semaphore(depth * batch)

    def on_result(tag, result, timing):
        results.append((tag % batch,) + result)
        free.release()

    def on_error(tag, error):
        errors.append(error)
        free.release()

    engine = backend._engine  # the stand-in's, counting its launches by batch size
    executor = DoubleBufferedExecutor(backend, data.prepare, data.finish, on_result, on_error,
                                      depth=depth, input_shapes={'x': (batch, ITEMS)},
                                      batch_size=batch, batch_timeout_ms=1000.0,
                                      active_window_s=60.0, sources=range(batch))
    try:
        assert [s.batch for s in executor.slots] == [batch] * depth
        start, before = None, None
        for frame in range(warmup + frames):
            if frame == warmup:
                assert executor.drain(30)
                start, before = time.perf_counter(), engine.launches.copy()
            free.acquire()
            executor.submit(frame, frame, source=frame % batch)
        assert executor.drain(60)
        elapsed = time.perf_counter() - start
        stats = executor.stats()
    finally:
        executor.close()
    assert not errors, errors[:3]
    return _Run(frames / elapsed, results, engine.launches - before, stats)


@pytest.mark.parametrize('generation', ['tensors', 'bindings'])
@pytest.mark.parametrize('library', _libraries())
def test_outputs_are_correct_for_every_frame(library, generation, tmp_path, monkeypatch):
    # 46 frames of 2 sources in batches of 2 on 2 slots: frame 0 alone (the warm-up, launched
    # by drain() as a partial batch: the backend sets the dynamic input's batch to 1), then 22
    # full batches (slot 0's input back to batch 2), then frame 45 alone, partial again.
    with _open(tmp_path, monkeypatch, library, generation) as backend:
        run = _run_executor(backend, depth=2, batch=2, frames=45, warmup=1)
    for source in (0, 1):  # in submission order per source, none dropped
        assert [f for s, f, _, _ in run.results if s == source] == list(range(source, 46, 2))
    wrong = [(f, r) for _, f, ok, r in run.results if not ok]
    assert not wrong, wrong  # (frame, row) pairs
    assert {r for _, _, _, r in run.results} == {0, 1}
    assert run.stats['dropped'] == 0 and run.stats['completed'] == 46
    assert dict(run.launches) == {2: 22, 1: 1}, run.launches  # after the warm-up
    report('{} / {} API (execute_async_{}): 46 of 46 frames of 2 sources correct, in order per '
           'source, in rows 0 and 1 of 22 full batches of 2 and 2 partial batches run at batch '
           '1'.format(library, generation, 'v3' if generation == 'tensors' else 'v2'))


@pytest.mark.parametrize('generation', ['tensors', 'bindings'])
@pytest.mark.parametrize('library', _libraries())
def test_a_static_batch_engine_with_inputs_and_outputs_copied(library, generation, tmp_path,
                                                              monkeypatch):
    # A static batch-4 engine (no profile selected: the stand-in raises if one is), the inputs
    # prepared in CPU-cached arrays and the outputs read from a copy (the TX2's switches).
    with _open(tmp_path, monkeypatch, library, generation, static=True, outputs_from='copy',
               inputs_from='copy') as backend:
        assert [i.shape for i in backend.inputs] == [(4, ITEMS)]
        slot = backend.create_slot(0)
        h = slot.handle
        assert not np.shares_memory(slot.inputs['x'], h.pinned['x'])
        assert not np.shares_memory(slot.outputs['y'], h.pinned['y'])
        data = _Frames(count=4)
        np.copyto(slot.inputs['x'], np.concatenate(data.inputs))
        backend.run(slot)
        np.testing.assert_array_equal(slot.outputs['y'], np.concatenate(data.expected))
        backend.release_slot(slot)
        run = _run_executor(backend, depth=2, batch=4, frames=24, warmup=1)
    wrong = [(f, r) for _, f, ok, r in run.results if not ok]
    assert not wrong, wrong
    assert run.stats['completed'] == 25 and dict(run.launches) == {4: 6}, run.launches
    report('{} / {} API, static batch-4 engine, inputs_from and outputs_from copy: 25 of 25 '
           'frames correct (6 full batches, the warm-up frame alone in a padded one)'.format(
               library, generation))


@pytest.mark.parametrize('library', _libraries())
def test_device_memory_is_read_in_the_backends_context(library, tmp_path, monkeypatch):
    """The node's /diagnostics figure: the driver's free and total, from another thread."""
    import threading
    with _open(tmp_path, monkeypatch, library) as backend:
        answers = []
        thread = threading.Thread(target=lambda: answers.append(backend.device_memory()))
        thread.start()
        thread.join()
        memory = answers[0]
        assert memory is not None, 'cuMemGetInfo failed in the backend context'
        assert 0 < memory['free_mb'] <= memory['total_mb']
        assert memory['used_mb'] == pytest.approx(memory['total_mb'] - memory['free_mb'])
    assert backend.device_memory() is None  # closed
    report('{}: device memory {:.0f} of {:.0f} MB used'.format(
        library, memory['used_mb'], memory['total_mb']))


@pytest.mark.parametrize('library', _libraries())
def test_launch_returns_before_the_kernel_ends(library, tmp_path, monkeypatch):
    with _open(tmp_path, monkeypatch, library, base_ms=100.0, item_ms=0.0) as backend:
        slot = backend.create_slot(0, {'x': (1, ITEMS)})
        backend.run(slot)  # warm-up: the kernel's first launch compiles and loads it
        started = time.perf_counter()
        backend.launch(slot)
        launch_ms = (time.perf_counter() - started) * 1e3
        running = not backend.query(slot)
        assert backend.wait(slot, timeout=10.0)
        wall_ms = (time.perf_counter() - started) * 1e3
    report('{}: launch() returned in {:.2f} ms of a {:.1f} ms frame (kernel {:.1f} ms); '
           'query() right after: {}'.format(library, launch_ms, wall_ms, slot.infer_ms,
                                            'running' if running else 'DONE (wrong)'))
    assert running and launch_ms < 20.0 and slot.infer_ms >= 90.0


def _host_ms_per_item(repeats=10):
    """Return the host's prepare + check time for one frame (ms), as the executor runs it."""
    import types
    data = _Frames(count=1)
    row = types.SimpleNamespace(inputs={'x': np.empty((1, ITEMS), np.float32)},
                                outputs={'y': data.expected[0].copy()}, row=0)
    started = time.perf_counter()
    for _ in range(repeats):
        assert data.finish(row, data.prepare(0, row))[1]
    return (time.perf_counter() - started) * 1e3 / repeats


BATCHES = (1, 2, 4)
DEPTHS = (1, 2, 3)


@pytest.mark.parametrize('library', _libraries())
def test_depth_by_batch_throughput_and_the_double_buffering_gain(library, tmp_path,
                                                                  monkeypatch):
    # The stand-in engine is as long as the host's work per frame: the case double buffering
    # is for (GPU and CPU busy alike); depth 1 runs them one after the other. Batch B: frames
    # of B sources (cameras), one per row, B frames per launch.
    item_ms = max(_host_ms_per_item(), 0.5)
    table = {}
    with _open(tmp_path, monkeypatch, library, base_ms=0.2, item_ms=item_ms) as backend:
        for batch in BATCHES:
            for depth in DEPTHS:
                run = _run_executor(backend, depth, batch, frames=40 * batch)
                wrong = [(f, r) for _, f, ok, r in run.results if not ok]
                assert not wrong, (depth, batch, wrong[:5])
                assert dict(run.launches) == {batch: 40}, (depth, batch, run.launches)
                table[depth, batch] = run.fps
    report('{}: frames/s (launches/s) by executor depth x batch B, frames of B sources, '
           'every batch full (B rows, one frame per source); stand-in kernel 0.2 ms + {:.2f} '
           'ms x B (the host prepare + check time per frame), copies 4 MB x B each '
           'way'.format(library, item_ms))
    report('  depth | ' + ' | '.join('B={:<13d}'.format(b) for b in BATCHES))
    for depth in DEPTHS:
        report('  {:5d} | '.format(depth) + ' | '.join(
            '{:6.1f} ({:6.1f})'.format(table[depth, b], table[depth, b] / b) for b in BATCHES))
    ratio = table[2, 1] / table[1, 1]
    report('{}: double-buffering gain, depth 2 / depth 1 at B=1: {:.2f}x; batching, B=4 / B=1 '
           'at depth 2: {:.2f}x'.format(library, ratio, table[2, 4] / table[2, 1]))
    assert ratio > 1.2


def _count_for(seconds):
    end = time.perf_counter() + seconds
    count = 0
    while time.perf_counter() < end:
        count += 1
    return count


@pytest.mark.parametrize('library', _libraries())
def test_waiting_sleeps_and_releases_the_gil(library, tmp_path, monkeypatch):
    with _open(tmp_path, monkeypatch, library, base_ms=400.0, item_ms=0.0) as backend:
        slot = backend.create_slot(0, {'x': (1, ITEMS)})
        backend.run(slot)  # warm-up
        baseline = _count_for(0.2)
        measured = {}

        def waiter(wait):
            cpu, wall = time.thread_time(), time.perf_counter()
            wait()
            measured['cpu_s'] = time.thread_time() - cpu
            measured['wall_s'] = time.perf_counter() - wall

        backend.launch(slot)
        thread = threading.Thread(target=waiter, args=(lambda: backend.wait(slot),))
        thread.start()
        time.sleep(0.02)
        during = _count_for(0.2)  # this thread runs Python while the other waits
        thread.join(10)
        cpu_share = measured['cpu_s'] / measured['wall_s']
        gil_share = during / float(baseline)
        # For comparison: the same wait on an event with default flags (what `done` was).
        cuda, h = backend._cuda, slot.handle
        cuda.push()
        try:
            spin = cuda.event()
            trt_standin.launch(h.device['x'], h.device['y'], ITEMS, 400.0, h.stream_handle)
            cuda.record(spin, h.stream)
            thread = threading.Thread(target=waiter, args=(lambda: cuda.synchronize(spin),))
            thread.start()
            thread.join(10)
            cuda.free(spin)
        finally:
            cuda.pop()
        default_share = measured['cpu_s'] / measured['wall_s']
    report('{} (GIL released by its calls: {}): waiting thread used {:.1%} of a CPU during a '
           '400 ms kernel ({:.1%} on a default-flag event); another Python thread ran at '
           '{:.0%} of its idle speed meanwhile'.format(
               library, backend._cuda.releases_gil, cpu_share, default_share, gil_share))
    assert cpu_share < 0.2 and gil_share > 0.5


@pytest.mark.parametrize('library', _libraries())
def test_device_memory_returns_after_50_create_close_cycles(library, tmp_path, monkeypatch):
    import cupy

    def cycle():
        with _open(tmp_path, monkeypatch, library, items=1 << 16, base_ms=0.1,
                   item_ms=0.0) as backend:
            slots = [backend.create_slot(i, {'x': (2, 1 << 16)}) for i in range(2)]
            for slot in slots:
                backend.launch(slot)
            for slot in slots:
                assert backend.wait(slot, timeout=10.0)

    cycle()  # the kernel's module and the context are loaded once, before the baseline
    start = cupy.cuda.runtime.memGetInfo()[0]
    started = time.perf_counter()
    for _ in range(50):
        cycle()
    end = cupy.cuda.runtime.memGetInfo()[0]
    report('{}: free device memory {:.1f} MiB before and {:.1f} MiB after 50 create/run/close '
           'cycles of 2 slots ({:+.2f} MiB, {:.2f} s)'.format(
               library, start / 2.0 ** 20, end / 2.0 ** 20, (end - start) / 2.0 ** 20,
               time.perf_counter() - started))
    assert abs(end - start) <= 2 << 20


def test_report_names_the_machine():
    import cupy

    from tx2_inference.backends.tensorrt.cuda import cuda_python_version
    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props['name'].decode() if isinstance(props['name'], bytes) else props['name']
    report('GPU {} (sm_{}{}), CUDA runtime {}, CuPy {}, cuda-python {}, pycuda {}, Python {}; '
           'pid {}'.format(name, props['major'], props['minor'],
                           cupy.cuda.runtime.runtimeGetVersion(), cupy.__version__,
                           '.'.join(map(str, cuda_python_version())) or 'MISSING',
                           'installed' if importlib.util.find_spec('pycuda') else
                           'not installed (its path stays unrun)',
                           '.'.join(map(str, sys.version_info[:3])), os.getpid()))
