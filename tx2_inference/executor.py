"""The double-buffered executor: one scheduler for every backend (docs/DESIGN.md).

``depth`` slots (default 2), each with its own buffers and stream. ``submit`` prepares a frame
into a free slot's input buffer and launches it without waiting. When every slot is busy the
frame waits as the single *pending* frame; a newer submit replaces it and the older one is
dropped and counted (``superseded``): the newest frame wins, the backlog is at most
``depth + 1`` frames. One completion thread waits for the slots in submission order, decodes
each result (``finish``) and delivers it (``on_result``), then reuses the slot for the pending
frame, if any.

The executor knows nothing of images or models: ``prepare(frame, slot)`` writes a frame into
``slot.inputs`` and returns what ``finish(slot, context)`` needs to decode ``slot.outputs``
later (for example the frame's geometric transform).
"""

import collections
import logging
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from tx2_inference.backends.base import Backend, Slot
from tx2_inference.core.stats import percentile

_LOG = logging.getLogger(__name__)

# Slot states.
_FREE, _PREPARING, _RUNNING, _FAILED = 0, 1, 2, 3

_TIMING_KEYS = ('prepare_ms', 'infer_ms', 'decode_ms', 'latency_ms')


class _Entry(object):
    """A slot and the frame it holds."""

    __slots__ = ('slot', 'state', 'tag', 'context', 'error', 'submitted', 'prepare_ms',
                 'sync')

    def __init__(self, slot: Slot) -> None:
        self.slot = slot
        self.state = _FREE
        self.tag = None  # type: Any
        self.context = None  # type: Any
        self.error = None  # type: Optional[BaseException]
        self.submitted = 0.0
        self.prepare_ms = 0.0
        self.sync = None  # type: Optional[_SyncRequest]


class _SyncRequest(object):
    """A ``process`` call waiting for its own result."""

    __slots__ = ('done', 'result', 'error')

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result = None  # type: Any
        self.error = None  # type: Optional[BaseException]


class _Ring(object):
    """The last ``size`` values of a measurement, for percentiles (no per-frame allocation)."""

    def __init__(self, size: int = 512) -> None:
        self.values = np.full(size, np.nan)
        self.count = 0

    def add(self, value: float) -> None:
        self.values[self.count % self.values.shape[0]] = value
        self.count += 1

    def percentile(self, q: float) -> float:
        valid = self.values[:min(self.count, self.values.shape[0])]
        valid = valid[~np.isnan(valid)]
        return percentile(valid, q)


class DoubleBufferedExecutor(object):
    """Run frames through a backend on ``depth`` slots; deliver results in submission order.

    :param backend: an opened backend; the executor creates its slots, the caller keeps
        ownership of the backend (close it after the executor).
    :param prepare: ``prepare(frame, slot) -> context``: write the frame into ``slot.inputs``.
        Runs in the submitting thread (or the completion thread, for a pending frame).
    :param finish: ``finish(slot, context) -> result``: decode ``slot.outputs``; runs in the
        completion thread. The result must not reference slot buffers (they are reused).
    :param on_result: ``on_result(tag, result, timing)`` in the completion thread, in
        submission order. ``timing``: prepare_ms, infer_ms, decode_ms, latency_ms (submit to
        delivery), and the frame's stage stamps in ``time.perf_counter`` seconds:
        ``submitted``, ``infer_end`` (the backend's, else when the wait returned),
        ``collected`` (decoding starts) and ``decoded``.
    :param on_error: ``on_error(tag, error)`` when preparing, running or decoding a frame
        failed (the frame is counted in ``dropped_reasons['error']``); default: logged.
    :param depth: number of slots (>= 1).
    :param input_shapes: concrete shapes of dynamic inputs, passed to ``create_slot``.
    """

    def __init__(self, backend: Backend, prepare: Callable[[Any, Slot], Any],
                 finish: Callable[[Slot, Any], Any],
                 on_result: Optional[Callable[[Any, Any, Dict[str, float]], None]] = None,
                 on_error: Optional[Callable[[Any, BaseException], None]] = None,
                 depth: int = 2,
                 input_shapes: Optional[Dict[str, Sequence[int]]] = None) -> None:
        """Create the slots and start the completion thread."""
        if int(depth) < 1:
            raise ValueError('depth must be at least 1, got {}'.format(depth))
        self._backend = backend
        self._prepare = prepare
        self._finish = finish
        self._on_result = on_result
        self._on_error = on_error
        self._cv = threading.Condition(threading.Lock())
        self._entries: List[_Entry] = []
        try:
            for index in range(int(depth)):
                self._entries.append(_Entry(backend.create_slot(index, input_shapes)))
        except BaseException:
            for entry in self._entries:
                backend.release_slot(entry.slot)
            raise
        self.slots = [e.slot for e in self._entries]
        self._free = collections.deque(self._entries)
        self._inflight = collections.deque()  # type: collections.deque
        self._pending = None  # type: Optional[tuple]
        self._closing = False
        self._closed = False
        self._submitted = 0
        self._completed = 0
        self._dropped = {'superseded': 0, 'error': 0, 'closed': 0}
        self._timing = {key: _Ring() for key in _TIMING_KEYS}
        self._thread = threading.Thread(target=self._complete_loop,
                                        name='executor-completion')
        self._thread.daemon = True
        self._thread.start()

    @property
    def depth(self) -> int:
        """Return the number of slots."""
        return len(self._entries)

    def submit(self, frame: Any, tag: Any = None) -> None:
        """Prepare and launch ``frame`` in a free slot, or keep it as the pending frame.

        Never waits for inference. A pending frame it replaces is dropped (``superseded``).

        :raises RuntimeError: the executor is closed.
        """
        now = time.perf_counter()
        with self._cv:
            if self._closing:
                raise RuntimeError('submit on a closed executor')
            self._submitted += 1
            if not self._free:
                if self._pending is not None:
                    self._dropped['superseded'] += 1
                self._pending = (frame, tag, now)
                return
            entry = self._reserve(tag, now, None)
        self._start(entry, frame)

    def process(self, frame: Any, timeout: Optional[float] = None) -> Any:
        """Run one frame synchronously and return ``finish``'s result (never dropped).

        Waits for a free slot, then for the result; ``on_result`` is not called for it.

        :raises TimeoutError: no result within ``timeout`` seconds.
        :raises Exception: whatever preparing, running or decoding the frame raised.
        """
        request = _SyncRequest()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while not self._free and not self._closing:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError('no free slot within {} s'.format(timeout))
                self._cv.wait(remaining)
            if self._closing:
                raise RuntimeError('process on a closed executor')
            self._submitted += 1
            entry = self._reserve(None, time.perf_counter(), request)
        self._start(entry, frame)
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        if not request.done.wait(remaining):
            raise TimeoutError('no result within {} s'.format(timeout))
        if request.error is not None:
            raise request.error
        return request.result

    def _reserve(self, tag: Any, submitted: float, sync: Optional[_SyncRequest]) -> _Entry:
        """Take a free slot and queue it in submission order (lock held)."""
        entry = self._free.popleft()
        entry.state = _PREPARING
        entry.tag = tag
        entry.submitted = submitted
        entry.sync = sync
        entry.error = None
        self._inflight.append(entry)
        return entry

    def _start(self, entry: _Entry, frame: Any) -> None:
        """Prepare the frame into the slot and launch it (lock not held)."""
        start = time.perf_counter()
        try:
            entry.context = self._prepare(frame, entry.slot)
            entry.prepare_ms = (time.perf_counter() - start) * 1e3
            self._backend.launch(entry.slot)
            state = _RUNNING
        except Exception as error:
            entry.error = error
            state = _FAILED
        with self._cv:
            entry.state = state
            self._cv.notify_all()

    def _complete_loop(self) -> None:
        while True:
            with self._cv:
                while not self._inflight and not self._closing:
                    self._cv.wait()
                if not self._inflight:
                    return
                entry = self._inflight[0]
                while entry.state == _PREPARING:
                    self._cv.wait()
            result, error, timing = self._collect(entry)
            self._deliver(entry, result, error, timing)
            with self._cv:
                self._inflight.popleft()
                entry.context = None
                entry.sync = None
                entry.tag = None
                entry.state = _FREE
                self._free.append(entry)
                # The pending frame takes the slot just freed. close() clears it, and submit
                # refuses new frames once closing, so there is none after close().
                pending = self._pending
                self._pending = None
                if pending is not None:
                    frame, tag, submitted = pending
                    entry = self._reserve(tag, submitted, None)
                self._cv.notify_all()
            if pending is not None:
                self._start(entry, frame)

    def _collect(self, entry: _Entry) -> tuple:
        """Wait for a slot's inference and decode it (completion thread, lock not held)."""
        error = entry.error
        result = None
        timing = None
        if error is None:
            try:
                self._backend.wait(entry.slot)
                start = time.perf_counter()
                result = self._finish(entry.slot, entry.context)
                done = time.perf_counter()
                ended = entry.slot.infer_end
                timing = {'prepare_ms': entry.prepare_ms, 'infer_ms': entry.slot.infer_ms,
                          'decode_ms': (done - start) * 1e3,
                          'latency_ms': (done - entry.submitted) * 1e3,
                          'submitted': entry.submitted,
                          'infer_end': ended if ended == ended else start,  # NaN: unknown
                          'collected': start, 'decoded': done}
            except Exception as failure:
                error = failure
        return result, error, timing

    def _deliver(self, entry: _Entry, result: Any, error: Optional[BaseException],
                 timing: Optional[Dict[str, float]]) -> None:
        with self._cv:
            if error is None:
                self._completed += 1
                for key in _TIMING_KEYS:
                    self._timing[key].add(timing[key])
            else:
                self._dropped['error'] += 1
        if entry.sync is not None:
            entry.sync.result, entry.sync.error = result, error
            entry.sync.done.set()
            return
        try:
            if error is not None:
                if self._on_error is not None:
                    self._on_error(entry.tag, error)
                else:
                    _LOG.error('frame %r failed: %s', entry.tag, error)
            elif self._on_result is not None:
                self._on_result(entry.tag, result, timing)
        except Exception:
            _LOG.exception('result callback failed for frame %r', entry.tag)

    def drain(self, timeout: Optional[float] = None) -> bool:
        """Wait until every accepted frame (pending included) has been delivered.

        :returns: True when drained, False on timeout.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while self._inflight or self._pending is not None:
                if self._closed or not self._thread.is_alive():
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cv.wait(remaining)
        return True

    def stats(self) -> Dict[str, Any]:
        """Return counts and timing percentiles (p50, p99 in ms) of recent frames."""
        with self._cv:
            result = {
                'depth': self.depth,
                'submitted': self._submitted,
                'completed': self._completed,
                'dropped': sum(self._dropped.values()),
                'dropped_reasons': dict(self._dropped),
                'in_flight': len(self._inflight),
                'pending': int(self._pending is not None),
            }
            for key in _TIMING_KEYS:
                name = key[:-3]
                result[name + '_ms_p50'] = self._timing[key].percentile(50)
                result[name + '_ms_p99'] = self._timing[key].percentile(99)
        return result

    def close(self, drain_timeout: Optional[float] = 10.0) -> None:
        """Finish the frames in flight, drop the pending one, release the slots; idempotent."""
        with self._cv:
            if self._closed:
                return
            self._closing = True
            if self._pending is not None:
                self._pending = None
                self._dropped['closed'] += 1
            self._cv.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(drain_timeout)
        with self._cv:
            self._closed = True
            busy = self._thread.is_alive()
        if busy:
            _LOG.warning('executor: inference did not finish within %s s; slots are not '
                         'released', drain_timeout)
            return
        for entry in self._entries:
            self._backend.release_slot(entry.slot)
        # The callbacks are usually bound methods of the owner (the Detector), which holds
        # this executor: drop them, so the owner, its model and the runtime's threads are
        # freed when it is dropped, not at some later garbage collection.
        self._prepare = self._finish = None  # type: ignore[assignment]
        self._on_result = self._on_error = None

    def __enter__(self) -> 'DoubleBufferedExecutor':
        """Use in a ``with`` block; closes at the end."""
        return self

    def __exit__(self, *exc_info: Any) -> None:
        """Close the executor."""
        self.close()
