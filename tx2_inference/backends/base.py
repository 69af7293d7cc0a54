"""The one small interface every inference backend implements, and the CPU "stream".

A backend loads one model and runs it on *slots*. A slot owns one set of host buffers (the
input the pre-processor writes into, the outputs the decoder reads from) and whatever the
runtime needs beside them (device buffers, a CUDA stream and event, or a worker thread on
CPU). Buffers are allocated when the slot is created and bound to the runtime once, so running
a frame allocates nothing.

The life of a frame in a slot: the caller fills ``slot.inputs``, calls ``launch(slot)`` (which
returns at once), then ``wait(slot)`` or polls ``query(slot)``; when the slot is done,
``slot.outputs`` hold the results, ``slot.infer_ms`` the inference time and, where the
backend knows it, ``slot.infer_end`` when it ended (``time.perf_counter`` seconds).


Batches (issue 16). A slot whose input buffers have a leading batch dimension ``B`` > 1 holds up
to ``B`` frames, one per *row*: ``slot.rows[i]`` is a :class:`SlotRow` whose ``inputs`` and
``outputs`` are views of row ``i`` of the slot's buffers (shape ``(1, ...)``, made once when the
slot is created), so pre-processing writes one frame into its row and a decoder reads one
frame's outputs as if the batch were 1. Before ``launch`` the caller sets ``slot.count``, the
number of rows in use (1..B, rows ``0..count-1``). A backend runs the batch in **one** launch:
at its real size ``count`` where the model's batch dimension is dynamic, else the full ``B``
rows (the unused rows are padding; their outputs are ignored). A slot of batch 1 has one row
whose ``inputs``/``outputs`` are the slot's own dicts, so nothing changes for unbatched models.
``Backend.max_batch`` says how large a batch the model accepts.
"""

import threading
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from tx2_inference.errors import ConfigError

TensorInfo = NamedTuple('TensorInfo', [('name', str), ('shape', Tuple[int, ...]),
                                       ('dtype', np.dtype)])
TensorInfo.__doc__ = """A model input or output: name, shape (-1 where dynamic) and numpy dtype."""


class SlotRow(object):
    """One frame's row of a slot: views of row ``row`` of the slot's inputs and outputs.

    ``inputs``/``outputs`` map tensor names to ``(1, ...)`` views; a tensor without the batch
    as its first dimension is shared whole by every row. ``slot`` is the slot it belongs to.
    """

    __slots__ = ('slot', 'row', 'inputs', 'outputs')

    def __init__(self, slot: 'Slot', row: int, inputs: Dict[str, np.ndarray],
                 outputs: Dict[str, np.ndarray]) -> None:
        """Hold the row's views."""
        self.slot = slot
        self.row = row
        self.inputs = inputs
        self.outputs = outputs


def _row_views(arrays: Dict[str, np.ndarray], batch: int, row: int) -> Dict[str, np.ndarray]:
    return {name: array[row:row + 1] if array.ndim and array.shape[0] == batch else array
            for name, array in arrays.items()}


class Slot(object):
    """One set of buffers a backend runs a frame (or a batch of frames) in; see the module.

    ``batch``: how many frames the slot holds (the leading dimension of its first input);
    ``count``: how many rows the next ``launch`` runs (set by the caller; default ``batch``);
    ``rows``: one :class:`SlotRow` per frame.
    """

    __slots__ = ('index', 'inputs', 'outputs', 'handle', 'infer_ms', 'infer_end', 'batch',
                 'count', 'rows')

    def __init__(self, index: int, inputs: Dict[str, np.ndarray],
                 outputs: Dict[str, np.ndarray], handle: Any = None) -> None:
        """Hold the host buffers of slot ``index`` and the backend's private ``handle``."""
        self.index = index
        self.inputs = inputs
        self.outputs = outputs
        self.handle = handle
        self.infer_ms = float('nan')
        self.infer_end = float('nan')  # perf_counter seconds; NaN where the backend cannot tell
        first = next(iter(inputs.values()), None)
        self.batch = int(first.shape[0]) if first is not None and first.ndim else 1
        self.count = self.batch
        self.rows = []  # type: List[SlotRow]
        self.make_rows()

    def make_rows(self) -> None:
        """(Re)make the row views; a backend that replaces its output arrays calls this."""
        if self.batch == 1:
            self.rows = [SlotRow(self, 0, self.inputs, self.outputs)]
        else:
            self.rows = [SlotRow(self, row, _row_views(self.inputs, self.batch, row),
                                 _row_views(self.outputs, self.batch, row))
                         for row in range(self.batch)]


class Backend(object):
    """Load a model, describe its tensors, and run it asynchronously on slots.

    Subclasses set ``name`` and implement ``inputs``, ``outputs``, ``create_slot``, ``launch``,
    ``query``, ``wait``, ``release_slot`` and ``_close``. ``close`` is idempotent, and the
    backend is a context manager.
    """

    name = 'base'

    def __init__(self, model_path: str) -> None:
        """Remember the model path; subclasses load the model."""
        self.model_path = model_path
        self.precision = 'fp32'
        self._closed = False
        self._slots = []  # type: List[Slot]

    @property
    def inputs(self) -> List[TensorInfo]:
        """Return the model's inputs, in the model's order."""
        raise NotImplementedError

    @property
    def outputs(self) -> List[TensorInfo]:
        """Return the model's outputs, in the model's order."""
        raise NotImplementedError

    @property
    def max_batch(self) -> Optional[int]:
        """Return the largest batch the model runs in one launch; None: no limit (dynamic).

        Default: the first input's leading dimension (1 for an unbatched model, -1 -> None).
        A backend with a bounded dynamic batch (a TensorRT profile) overrides it.
        """
        shape = self.inputs[0].shape if self.inputs else ()
        if not shape:
            return 1
        return None if shape[0] < 0 else int(shape[0])

    #: Why this backend runs no batch of several frames (None: it does, within ``max_batch``).
    batch_refusal = None  # type: Optional[str]

    #: True where ``run`` computes in the calling thread and returns when done (a CPU runtime):
    #: the executor may then run a frame in the thread that submitted it, when idle. False
    #: where a run waits on a device or a server (the caller would only block).
    runs_inline = False

    @property
    def dynamic_batch(self) -> bool:
        """Return True when the batch dimension is free: a launch runs ``slot.count`` rows."""
        return bool(self.inputs) and bool(self.inputs[0].shape) and self.inputs[0].shape[0] < 0

    def create_slot(self, index: int,
                    input_shapes: Optional[Dict[str, Sequence[int]]] = None) -> Slot:
        """Allocate a slot's buffers (and stream) and bind them to the runtime once.

        :param index: the slot's number, for names and messages.
        :param input_shapes: concrete shapes for inputs with dynamic dimensions.
        :raises ConfigError: an input has a dynamic dimension and no shape was given.
        """
        raise NotImplementedError

    def launch(self, slot: Slot) -> None:
        """Start inference on ``slot.inputs``; return without waiting for it.

        Runs rows ``0..slot.count-1`` in one launch: at that size on a dynamic batch,
        else all ``slot.batch`` rows (padding rows' outputs are ignored).
        """
        raise NotImplementedError

    def query(self, slot: Slot) -> bool:
        """Return True when the slot's last launch has completed (never blocks)."""
        raise NotImplementedError

    def wait(self, slot: Slot, timeout: Optional[float] = None) -> bool:
        """Wait for the slot's last launch; True when done, False on timeout.

        :raises RuntimeError: inference failed; the message says what failed.
        """
        raise NotImplementedError

    def release_slot(self, slot: Slot) -> None:
        """Free the slot's buffers and stream after its last launch; idempotent."""
        if slot.handle is None:
            return
        self._release_slot(slot)
        slot.handle = None
        if slot in self._slots:
            self._slots.remove(slot)

    def _release_slot(self, slot: Slot) -> None:
        raise NotImplementedError

    def run(self, slot: Slot) -> None:
        """Run one inference synchronously: launch, then wait."""
        self.launch(slot)
        self.wait(slot)

    def close(self) -> None:
        """Release the model and everything the runtime holds; idempotent."""
        if not self._closed:
            self._closed = True
            self._close()

    def _close(self) -> None:
        for slot in list(self._slots):
            self.release_slot(slot)

    @property
    def closed(self) -> bool:
        """Return True once ``close`` has been called."""
        return self._closed

    def __enter__(self) -> 'Backend':
        """Use the backend in a ``with`` block; it closes at the end."""
        return self

    def __exit__(self, *exc_info: Any) -> None:
        """Close the backend."""
        self.close()


class ThreadedBackend(Backend):
    """A CPU backend: each slot's handle is ``(runtime object, ThreadStream, job)``.

    Subclasses build the slot's job (a callable running one inference on the slot's buffers)
    in ``create_slot`` and register the slot with ``_add_slot``.
    """

    runtime_label = 'inference'
    runs_inline = True
    _inputs = []  # type: List[TensorInfo]
    _outputs = []  # type: List[TensorInfo]

    @property
    def inputs(self) -> List[TensorInfo]:
        """Return the model's inputs (set ``_inputs`` when loading)."""
        return list(self._inputs)

    @property
    def outputs(self) -> List[TensorInfo]:
        """Return the model's outputs (set ``_outputs``)."""
        return list(self._outputs)

    def _add_slot(self, index: int, inputs: Dict[str, np.ndarray],
                  outputs: Dict[str, np.ndarray], runtime_object: Any,
                  job: Callable[[], None], device_lock: Optional[Any]) -> Slot:
        stream = ThreadStream('{}-slot-{}'.format(self.name, index), device_lock)
        slot = Slot(index, inputs, outputs, (runtime_object, stream, job))
        self._slots.append(slot)
        return slot

    def launch(self, slot: Slot) -> None:
        """Start the slot's job on its worker thread."""
        _, stream, job = slot.handle
        stream.launch(job)

    def query(self, slot: Slot) -> bool:
        """Return True when the slot's job has finished."""
        return slot.handle[1].query()

    def wait(self, slot: Slot, timeout: Optional[float] = None) -> bool:
        """Wait for the slot's job; raise RuntimeError naming the model if it failed."""
        stream = slot.handle[1]
        try:
            done = stream.wait(timeout)
        except Exception as error:
            raise RuntimeError('{} of {!r} failed: {}'.format(
                self.runtime_label, self.model_path, error)) from error
        if done:
            slot.infer_ms, slot.infer_end = stream.elapsed_ms, stream.ended
        return done

    def run(self, slot: Slot) -> None:
        """Run one inference synchronously in the calling thread (no worker hand-off).

        :raises RuntimeError: inference failed, naming the model (as ``wait`` does).
        """
        _, stream, job = slot.handle
        try:
            stream.run_inline(job)
        except Exception as error:
            raise RuntimeError('{} of {!r} failed: {}'.format(
                self.runtime_label, self.model_path, error)) from error
        slot.infer_ms, slot.infer_end = stream.elapsed_ms, stream.ended

    def _release_slot(self, slot: Slot) -> None:
        slot.handle[1].close()


class ThreadStream(object):
    """A CPU "stream": one worker thread that runs one job at a time for one slot.

    ONNX Runtime and TFLite release the GIL while they run, so work launched here overlaps the
    caller's pre- and post-processing. An optional ``device_lock``, shared by all streams of
    a backend, makes launches run one after the other. Each ``launch`` reuses the same thread
    and events: nothing is allocated per job.

    A thread that calls ``wait()`` before the worker has taken the job runs it itself: the
    executor's completion thread, waiting for the oldest frame while nothing else runs (camera
    rates), then decodes it at once instead of being woken by the worker (one thread hand-off
    less per frame; ``inline_runs`` counts them). A job launched while the waiter is busy with
    another slot still runs on the worker, concurrently.
    """

    def __init__(self, name: str, device_lock: Optional[Any] = None) -> None:
        """Start the worker thread, named ``name``."""
        self._lock = device_lock
        self._go = threading.Event()
        self._done = threading.Event()
        self._done.set()
        self._job = None  # type: Optional[Callable[[], None]]
        self._error = None  # type: Optional[BaseException]
        self._stop = False
        # Whoever takes the launched job (the worker or a waiter) sets this, under the lock.
        self._claim = threading.Lock()
        self._claimed = True
        self.inline_runs = 0  # jobs run by a waiting thread instead of the worker
        self.elapsed_ms = float('nan')
        self.ended = float('nan')  # perf_counter seconds at the end of the last job
        self._thread = threading.Thread(target=self._loop, name=name)
        self._thread.daemon = True
        self._thread.start()

    def launch(self, job: Callable[[], None]) -> None:
        """Run ``job`` on the worker thread; the previous job must have completed."""
        if self._stop:
            raise RuntimeError('launch on a closed stream')
        if not self._done.is_set():
            raise RuntimeError('launch on a busy stream: wait for the previous job first')
        self._error = None
        self._job = job
        self._claimed = False
        self._done.clear()
        self._go.set()

    def _take(self) -> bool:
        """Claim the launched job for the calling thread; False if it was taken already."""
        with self._claim:
            if self._claimed:
                return False
            self._claimed = True
            return True

    def _run_claimed(self) -> None:
        try:
            self._timed(self._job)
        except BaseException as error:  # noqa: B036 - handed to the waiting thread
            self._error = error
        self._done.set()

    def run_inline(self, job: Callable[[], None]) -> None:
        """Run ``job`` in the calling thread, under the device lock; the stream must be idle."""
        if not self._done.is_set():
            raise RuntimeError('run on a busy stream: wait for the previous job first')
        self._timed(job)

    def _timed(self, job: Callable[[], None]) -> None:
        if self._lock is not None:
            with self._lock:
                start = time.perf_counter()
                job()
                self.ended = time.perf_counter()
        else:
            start = time.perf_counter()
            job()
            self.ended = time.perf_counter()
        self.elapsed_ms = (self.ended - start) * 1e3

    def query(self) -> bool:
        """Return True when the last job has completed."""
        return self._done.is_set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait for the last job; re-raise its error in the caller's thread.

        Without a ``timeout``, a job no worker has taken yet runs here, in the caller's thread.
        """
        if timeout is None and not self._done.is_set() and self._take():
            self.inline_runs += 1
            self._run_claimed()
        if not self._done.wait(timeout):
            return False
        error = self._error
        if error is not None:
            self._error = None
            raise error
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker after its current job; idempotent."""
        if self._stop:
            return
        self._stop = True
        self._go.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            self._go.wait()
            self._go.clear()
            if self._stop:
                self._done.set()
                return
            # Let a thread already waiting for the job (and for the GIL) take it first.
            time.sleep(0)
            if self._take():
                self._run_claimed()


def concrete_shape(info: TensorInfo, requested: Optional[Sequence[int]]) -> tuple:
    """Pick a concrete shape for an input: the requested one, else the model's, batch 1."""
    if requested is not None:
        shape = tuple(int(d) for d in requested)
        if len(shape) != len(info.shape) or any(
                m >= 0 and m != s for m, s in zip(info.shape, shape)):
            raise ConfigError("input {!r}: shape {} does not fit the model's {} (-1 is "
                              'free): fix input.size / layout in the model config'.format(
                                  info.name, list(shape), list(info.shape)))
        return shape
    shape = tuple(info.shape)
    if shape and shape[0] == -1:
        shape = (1,) + shape[1:]
    if any(d < 0 for d in shape):
        raise ConfigError('input {!r} has dynamic dimensions {}: set input.size in the '
                          'model config'.format(info.name, list(info.shape)))
    return shape
