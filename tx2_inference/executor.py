"""The double-buffered executor: one scheduler for every backend and every camera (docs/DESIGN.md).

``depth`` slots (default 2), each with its own buffers and stream. A slot holds a *batch* of up
to ``batch_size`` frames (default 1), one per row (``backends.base.SlotRow``). ``submit``
prepares a frame into a row of the slot being filled and launches the slot when it is full,
when it holds one frame from every *active* source (a source that submitted within
``active_window_s``), or ``batch_timeout_ms`` after its first frame, whichever comes first; with
``batch_size`` 1 every frame launches at once. One completion thread waits for the slots in
launch order, decodes each row (``finish``) and delivers it (``on_result``), then reuses the slot.

Run to completion when idle (issue 23). Handing a frame to another thread costs a thread
wake-up (0.3 to 0.5 ms on an idle core, measured), which pipelining repays only when frames
come close together. So where the backend computes in the caller's thread anyway (a CPU
backend: ``Backend.runs_inline``) and ``batch_size`` is 1, a frame that finds nothing else in
flight or pending is run, decoded and delivered by the thread that submitted it, when frames
come far apart: the shortest of the last ``INLINE_GAPS`` gaps between submits is at least
``INLINE_MARGIN`` times what a frame takes. Frames closer together (a faster camera, two
cameras in step, a flood) go through the slots and the completion thread as before, so the
next frame is taken and prepared while one runs. ``process`` (one frame, its caller waiting)
runs inline whenever nothing else is in flight. ``stats()['inline_frames']`` counts them.

Sources (cameras). ``submit(frame, tag, source)`` names the frame's source. When no slot can
take a frame, it waits as its source's **pending** frame: a newer frame of the same source
replaces it (the older one is dropped and counted as ``superseded`` for that source), a frame of
another source never does. A freed slot takes the pending frames of the sources served least
recently first (round robin), so no source starves however the sources' clocks line up
(issue 16). A source
with a frame in the slot being filled replaces that frame in place (``superseded`` too). A batch
holds at most one frame per source, and results come out in submission order per source.
Frames submitted without a source share the source ``None`` (one pending frame, as before).

The executor knows nothing of images or models: ``prepare(frame, row)`` writes a frame into
``row.inputs`` (a ``SlotRow``) and returns what ``finish(row, context)`` needs to decode
``row.outputs`` later (for example the frame's geometric transform).
"""

import collections
import logging
import threading
import time
from typing import Any, Callable, Dict, Hashable, List, Optional, Sequence, Tuple

from tx2_inference.backends.base import Backend, Slot, SlotRow
from tx2_inference.core.stats import RecentValues

_LOG = logging.getLogger(__name__)

# Slot states: free; filling (takes frames); sealed (takes no more, launches once its rows are
# prepared); launching; running; failed (launch failed, or every row failed to prepare); inline
# (the submitting thread runs it through itself: the completion thread leaves it alone).
_FREE, _FILLING, _SEALED, _LAUNCHING, _RUNNING, _FAILED, _INLINE = 0, 1, 2, 3, 4, 5, 6

# Run-to-completion when idle: the submitting thread runs a frame through itself when the
# shortest of the last INLINE_GAPS intervals between submitted frames is at least INLINE_MARGIN
# times what a frame takes (submit to delivery, a moving average of weight INLINE_WEIGHT).
INLINE_GAPS = 8
INLINE_MARGIN = 2.0
INLINE_WEIGHT = 0.1

_TIMING_KEYS = ('prepare_ms', 'infer_ms', 'decode_ms', 'latency_ms')
DROP_REASONS = ('superseded', 'error', 'closed')


class _Source(object):
    """One source's (camera's) pending frame and counts."""

    __slots__ = ('key', 'received', 'completed', 'dropped', 'pending', 'served', 'last_seen',
                 'latency')

    def __init__(self, key: Any) -> None:
        self.key = key
        self.received = 0
        self.completed = 0
        self.dropped = dict.fromkeys(DROP_REASONS, 0)
        self.pending = None  # type: Optional[Tuple[Any, Any, float]]  frame, tag, submitted
        self.served = 0.0  # when a frame of it last went into a slot
        self.last_seen = 0.0
        self.latency = RecentValues()


class _Row(object):
    """The frame in one row of a slot."""

    __slots__ = ('source', 'tag', 'submitted', 'context', 'error', 'prepare_ms', 'ready')

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.source = None  # type: Optional[_Source]
        self.tag = None  # type: Any
        self.submitted = 0.0
        self.context = None  # type: Any
        self.error = None  # type: Optional[BaseException]
        self.prepare_ms = 0.0
        self.ready = False


class _Entry(object):
    """A slot and the batch it holds."""

    __slots__ = ('slot', 'state', 'rows', 'count', 'preparing', 'opened', 'error', 'sync')

    def __init__(self, slot: Slot) -> None:
        self.slot = slot
        self.state = _FREE
        self.rows = [_Row() for _ in range(slot.batch)]
        self.count = 0
        self.preparing = 0
        self.opened = 0.0  # submit time of the batch's oldest frame
        self.error = None  # type: Optional[BaseException]
        self.sync = None  # type: Optional[_SyncRequest]

    def runnable(self) -> bool:
        """Return True when at least one of the batch's frames was prepared without error."""
        return any(self.rows[i].error is None for i in range(self.count))

    def row_of(self, source: _Source) -> int:
        for index in range(self.count):
            if self.rows[index].source is source:
                return index
        return -1


class _SyncRequest(object):
    """A ``process`` call waiting for its own result."""

    __slots__ = ('done', 'result', 'error')

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result = None  # type: Any
        self.error = None  # type: Optional[BaseException]


_Job = Tuple[_Entry, int, Any]  # prepare this frame into this row of this slot


class DoubleBufferedExecutor(object):
    """Run frames through a backend on ``depth`` slots of ``batch_size`` rows; see the module.

    :param backend: an opened backend; the executor creates its slots, the caller keeps
        ownership of the backend (close it after the executor).
    :param prepare: ``prepare(frame, row) -> context``: write the frame into ``row.inputs``.
        Runs in the submitting thread (or the completion or batch-timer thread, for a pending
        frame); different rows may be prepared at once.
    :param finish: ``finish(row, context) -> result``: decode ``row.outputs``; runs in the
        completion thread. The result must not reference slot buffers (they are reused).
    :param on_result: ``on_result(tag, result, timing)`` in the completion thread, in
        submission order per source. ``timing``: prepare_ms, infer_ms (the whole batch),
        decode_ms, latency_ms (submit to delivery), batch_frames (frames in its batch), and
        the frame's stage stamps in ``time.perf_counter`` seconds: ``submitted``,
        ``infer_end`` (the backend's, else when the wait returned), ``collected`` (decoding
        starts) and ``decoded``.
    :param on_error: ``on_error(tag, error)`` when preparing, running or decoding a frame
        failed (the frame is counted in ``dropped_reasons['error']``); default: logged.
    :param depth: number of slots (>= 1).
    :param input_shapes: concrete input shapes (the batch first), passed to ``create_slot``.
    :param batch_size: the most frames one launch runs (default and at most: the slots'
        batch, the leading dimension of ``input_shapes``).
    :param batch_timeout_ms: launch a partial batch this long after its first frame; live
        (``batch_timeout_ms`` attribute). Unused when ``batch_size`` is 1.
    :param active_window_s: a source that submitted within this many seconds is *active*: a
        batch waits (up to the timeout) for a frame from each active source.
    :param sources: the sources expected (e.g. the cameras' topics): counted as active from
        the start, so the first batches wait for them too.
    :param run_inline: let the submitting thread run a frame through itself when idle (see
        the module; only where ``backend.runs_inline``). ``on_result`` is then called in that
        thread, still in submission order per source and never at once with another call.
    """

    def __init__(self, backend: Backend, prepare: Callable[[Any, SlotRow], Any],
                 finish: Callable[[SlotRow, Any], Any],
                 on_result: Optional[Callable[[Any, Any, Dict[str, float]], None]] = None,
                 on_error: Optional[Callable[[Any, BaseException], None]] = None,
                 depth: int = 2,
                 input_shapes: Optional[Dict[str, Sequence[int]]] = None,
                 batch_size: Optional[int] = None, batch_timeout_ms: float = 10.0,
                 active_window_s: float = 1.0, sources: Sequence[Hashable] = (),
                 run_inline: bool = True) -> None:
        """Create the slots and start the completion (and batch timer) thread."""
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
        self.batch_size = min(int(batch_size or self.slots[0].batch), self.slots[0].batch)
        self._batch_timeout_s = max(float(batch_timeout_ms), 0.0) / 1e3
        self.active_window_s = float(active_window_s)
        self._free = collections.deque(self._entries)
        self._inflight = collections.deque()  # type: collections.deque  (launch order)
        self._filling = None  # type: Optional[_Entry]
        self._sources = collections.OrderedDict()  # type: Dict[Any, _Source]
        for key in sources:
            self._sources[key] = _Source(key)
            self._sources[key].last_seen = time.perf_counter()
        self._flushing = 0  # drain() callers waiting: launch partial batches at once
        self._closing = False
        self._closed = False
        self._submitted = 0
        self._completed = 0
        self._dropped = dict.fromkeys(DROP_REASONS, 0)
        self._launches = 0
        self._launched_frames = 0
        self._inline = bool(run_inline) and bool(getattr(backend, 'runs_inline', False))
        self._inline_frames = 0
        self._gaps = collections.deque(maxlen=INLINE_GAPS)  # type: collections.deque
        self._last_submit = float('nan')
        self._frame_ms = float('nan')  # moving average: submit to delivery
        self._timing = {key: RecentValues() for key in _TIMING_KEYS}
        self._thread = threading.Thread(target=self._complete_loop,
                                        name='executor-completion')
        self._thread.daemon = True
        self._thread.start()
        self._timer = None  # type: Optional[threading.Thread]
        if self.batch_size > 1:
            self._timer = threading.Thread(target=self._timer_loop, name='executor-batcher')
            self._timer.daemon = True
            self._timer.start()

    @property
    def depth(self) -> int:
        """Return the number of slots."""
        return len(self._entries)

    @property
    def batch_timeout_ms(self) -> float:
        """Return how long a partial batch waits for the other sources' frames (ms)."""
        return self._batch_timeout_s * 1e3

    @batch_timeout_ms.setter
    def batch_timeout_ms(self, value: float) -> None:
        with self._cv:
            self._batch_timeout_s = max(float(value), 0.0) / 1e3
            self._cv.notify_all()

    # --- submitting -------------------------------------------------------------------------

    def submit(self, frame: Any, tag: Any = None, source: Hashable = None) -> None:
        """Prepare ``frame`` into the slot being filled, or keep it as its source's pending frame.

        Never waits for inference. A pending (or batched, not yet launched) frame of the same
        ``source`` it replaces is dropped (``superseded``).

        :raises RuntimeError: the executor is closed.
        """
        now = time.perf_counter()
        with self._cv:
            if self._closing:
                raise RuntimeError('submit on a closed executor')
            self._submitted += 1
            src = self._sources.get(source)
            if src is None:
                src = self._sources[source] = _Source(source)
            src.received += 1
            src.last_seen = now
            if now > self._last_submit:
                self._gaps.append(now - self._last_submit)
            self._last_submit = now
            job = self._place(src, frame, tag, now)
            jobs = [job] if job is not None else self._refill()
        if jobs:
            self._run(jobs, inline=True)

    def submit_many(self, items: Sequence[Tuple[Any, Any, Hashable]]) -> None:
        """Submit ``(frame, tag, source)`` items together, each as ``submit`` would.

        Their sources count as active first and they are placed under one lock, so a batch
        being filled takes them all (up to its size) before it can launch: the tiler
        (``tx2_inference.tiling``) submits a frame's tiles this way, one source per tile.

        :raises RuntimeError: the executor is closed.
        """
        now = time.perf_counter()
        jobs = []  # type: List[_Job]
        with self._cv:
            if self._closing:
                raise RuntimeError('submit on a closed executor')
            sources = []
            for _, _, source in items:
                src = self._sources.get(source)
                if src is None:
                    src = self._sources[source] = _Source(source)
                src.last_seen = now
                sources.append(src)
            for (frame, tag, _), src in zip(items, sources):
                self._submitted += 1
                src.received += 1
                job = self._place(src, frame, tag, now)
                if job is not None:
                    jobs.append(job)
            jobs += self._refill()  # those that waited, where a row is free (as submit does)
        if jobs:
            self._run(jobs)

    def _place(self, src: _Source, frame: Any, tag: Any, submitted: float) -> Optional[_Job]:
        """Put a submitted frame into a row, or make it its source's pending frame (lock held)."""
        entry = self._filling
        if entry is not None:
            index = entry.row_of(src)
            if index >= 0:
                row = entry.rows[index]
                if row.ready:  # replace the source's older frame in place: newest wins
                    self._drop(src, 'superseded')
                    row.tag, row.submitted, row.ready, row.error = tag, submitted, False, None
                    entry.preparing += 1
                    return entry, index, frame
            else:
                return self._add_row(entry, src, frame, tag, submitted)
        elif self._free and not self._has_pending():
            return self._add_row(self._open(), src, frame, tag, submitted)
        if src.pending is not None:
            self._drop(src, 'superseded')
        src.pending = (frame, tag, submitted)
        return None

    def _has_pending(self) -> bool:
        return any(s.pending is not None for s in self._sources.values())

    def _open(self) -> _Entry:
        """Take a free slot as the slot being filled (lock held)."""
        entry = self._free.popleft()
        entry.state = _FILLING
        entry.count = 0
        entry.preparing = 0
        entry.error = None
        entry.sync = None
        self._filling = entry
        self._inflight.append(entry)
        return entry

    def _add_row(self, entry: _Entry, src: Optional[_Source], frame: Any, tag: Any,
                 submitted: float) -> _Job:
        """Give the frame the entry's next row; seal the entry once complete (lock held)."""
        index = entry.count
        row = entry.rows[index]
        row.clear()
        row.source, row.tag, row.submitted = src, tag, submitted
        if src is not None:
            src.served = time.perf_counter()
        entry.count += 1
        entry.preparing += 1
        entry.opened = submitted if index == 0 else min(entry.opened, submitted)
        # Not by the timeout (or a drain) here: a freed slot takes every pending frame first
        # (they may all be older than the timeout); the batch timer launches the rest.
        if self._complete(entry, time.perf_counter(), timed=False):
            self._seal(entry)
        else:
            self._cv.notify_all()  # the batch timer learns of the new batch
        return entry, index, frame

    def _complete(self, entry: _Entry, now: float, timed: bool = True) -> bool:
        """Return True when the batch should launch: full, every active source in, timed out."""
        if entry.count >= self.batch_size:
            return True
        if timed and (self._flushing or self._closing or
                      now - entry.opened >= self._batch_timeout_s):
            return True
        horizon = now - self.active_window_s
        for src in self._sources.values():
            if src.last_seen >= horizon and entry.row_of(src) < 0:
                return False
        return True

    def _seal(self, entry: _Entry) -> None:
        if entry.state == _FILLING:
            entry.state = _SEALED
            if self._filling is entry:
                self._filling = None

    def _launchable(self, entry: _Entry) -> bool:
        """Claim a sealed entry whose rows are all prepared for launching (lock held)."""
        if entry.state == _SEALED and entry.preparing == 0:
            entry.state = _LAUNCHING
            return True
        return False

    def _refill(self) -> List[_Job]:
        """Move pending frames, least recently served source first, into free rows (lock held)."""
        jobs = []  # type: List[_Job]
        while not self._closing:
            if self._filling is None and not self._free:
                break
            entry = self._filling
            best = None  # type: Optional[_Source]
            for src in self._sources.values():
                if src.pending is not None and (entry is None or entry.row_of(src) < 0) and (
                        best is None or src.served < best.served):
                    best = src
            if best is None:
                break
            frame, tag, submitted = best.pending
            best.pending = None
            jobs.append(self._add_row(entry or self._open(), best, frame, tag, submitted))
        return jobs

    def _run(self, jobs: List[_Job], inline: bool = False) -> None:
        """Prepare frames into their rows, then launch every batch that is ready (no lock).

        With ``inline`` (the submitting thread, from ``submit`` or ``process``), a batch that
        may run inline (``_runs_inline``) is run, decoded and delivered here instead.
        """
        while jobs:
            for entry, index, frame in jobs:
                row = entry.rows[index]
                start = time.perf_counter()
                try:
                    row.context = self._prepare(frame, entry.slot.rows[index])
                    row.error = None
                except Exception as error:
                    row.context, row.error = None, error
                row.prepare_ms = (time.perf_counter() - start) * 1e3
                with self._cv:
                    row.ready = True
                    entry.preparing -= 1
                    ready = self._launchable(entry)
                    here = ready and inline and self._runs_inline(entry)
                if here:
                    self._run_inline(entry)
                elif ready:
                    self._launch(entry)
            with self._cv:
                jobs = self._refill()

    def _runs_inline(self, entry: _Entry) -> bool:
        """Claim a launching batch for its submitting thread when the executor is idle (lock held).

        Idle: this is the only batch in flight, no frame is pending, and either its caller waits
        for it (``process``) or frames come far enough apart (see the module).
        """
        if not (self._inline and self.batch_size == 1 and not self._closing and
                len(self._inflight) == 1 and self._inflight[0] is entry and
                not self._has_pending() and entry.runnable()):
            return False
        if entry.sync is None and not (
                len(self._gaps) == INLINE_GAPS and
                min(self._gaps) * 1e3 >= INLINE_MARGIN * self._frame_ms):  # NaN: not yet
            return False
        entry.state = _INLINE
        return True

    def _run_inline(self, entry: _Entry) -> None:
        """Run a batch in this thread, then decode, deliver and free it (no lock)."""
        slot = entry.slot
        slot.count = entry.count
        try:
            self._backend.run(slot)
        except Exception as error:
            entry.error = error
        with self._cv:
            self._launches += 1
            self._launched_frames += entry.count
            self._inline_frames += entry.count
        self._collect(entry)
        jobs = self._retire(entry)
        if jobs:  # frames that came meanwhile from other threads: through the slots
            self._run(jobs)

    def _launch(self, entry: _Entry) -> None:
        """Launch a batch (no lock); a batch whose every frame failed is not run."""
        slot = entry.slot
        slot.count = entry.count
        state = _FAILED
        if entry.runnable():
            try:
                self._backend.launch(slot)
                state = _RUNNING
            except Exception as error:
                entry.error = error
        with self._cv:
            entry.state = state
            self._launches += 1
            self._launched_frames += entry.count
            self._cv.notify_all()

    # --- the batch timer (batch_size > 1) ----------------------------------------------------

    def _timer_loop(self) -> None:
        while True:
            with self._cv:
                entry = None
                while entry is None:
                    if self._closed:
                        return
                    filling = self._filling
                    if filling is None:
                        self._cv.wait()
                        continue
                    remaining = filling.opened + self._batch_timeout_s - time.perf_counter()
                    if remaining > 0 and not self._complete(filling, time.perf_counter()):
                        self._cv.wait(remaining)
                        continue
                    self._seal(filling)
                    if self._launchable(filling):
                        entry = filling
            self._launch(entry)
            with self._cv:
                jobs = self._refill()
            self._run(jobs)

    # --- the synchronous path ------------------------------------------------------------------

    def process(self, frame: Any, timeout: Optional[float] = None) -> Any:
        """Run one frame synchronously and return ``finish``'s result (never dropped).

        Waits for a free slot, then for the result (a batch of one); ``on_result`` is not
        called for it, and it belongs to no source.

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
            entry = self._free.popleft()
            entry.state, entry.count, entry.preparing, entry.error = _SEALED, 0, 0, None
            entry.sync = request
            self._inflight.append(entry)
            job = self._add_row(entry, None, frame, None, time.perf_counter())
        self._run([job], inline=True)
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        if not request.done.wait(remaining):
            raise TimeoutError('no result within {} s'.format(timeout))
        if request.error is not None:
            raise request.error
        return request.result

    # --- completion ----------------------------------------------------------------------------

    def _complete_loop(self) -> None:
        while True:
            with self._cv:
                while not (self._inflight and self._inflight[0].state in (_RUNNING, _FAILED)):
                    if not self._inflight and self._closing:
                        return
                    self._cv.wait()
                entry = self._inflight[0]
            self._collect(entry)
            self._run(self._retire(entry))

    def _retire(self, entry: _Entry) -> List[_Job]:
        """Free a delivered batch (the oldest in flight); return the pending frames it takes."""
        with self._cv:
            self._inflight.remove(entry)
            for index in range(entry.count):
                entry.rows[index].clear()
            entry.count = 0
            entry.sync = None
            entry.state = _FREE
            self._free.append(entry)
            jobs = self._refill()
            self._cv.notify_all()
        return jobs

    def _collect(self, entry: _Entry) -> None:
        """Wait for a batch, decode and deliver each row in order (completion thread)."""
        error, waited = entry.error, time.perf_counter()
        if error is None and entry.state == _RUNNING:
            try:
                self._backend.wait(entry.slot)
                waited = time.perf_counter()
            except Exception as failure:
                error = failure
        infer_ms, ended = entry.slot.infer_ms, entry.slot.infer_end
        if entry.state in (_RUNNING, _INLINE) and error is None:
            with self._cv:
                self._timing['infer_ms'].add(infer_ms)
        for index in range(entry.count):
            row = entry.rows[index]
            result, row_error, timing = None, row.error or error, None
            if row_error is None:
                try:
                    start = time.perf_counter()
                    result = self._finish(entry.slot.rows[index], row.context)
                    done = time.perf_counter()
                    timing = {'prepare_ms': row.prepare_ms, 'infer_ms': infer_ms,
                              'decode_ms': (done - start) * 1e3,
                              'latency_ms': (done - row.submitted) * 1e3,
                              'batch_frames': float(entry.count),
                              'submitted': row.submitted,
                              'infer_end': ended if ended == ended else waited,  # NaN: unknown
                              'collected': start, 'decoded': done}
                except Exception as failure:
                    row_error = failure
            self._deliver(entry, row, result, row_error, timing)

    def _deliver(self, entry: _Entry, row: _Row, result: Any, error: Optional[BaseException],
                 timing: Optional[Dict[str, float]]) -> None:
        src = row.source
        with self._cv:
            if error is None:
                self._completed += 1
                for key in ('prepare_ms', 'decode_ms', 'latency_ms'):
                    self._timing[key].add(timing[key])
                latency = timing['latency_ms']
                self._frame_ms = latency if self._frame_ms != self._frame_ms else (
                    self._frame_ms + INLINE_WEIGHT * (latency - self._frame_ms))
                if src is not None:
                    src.completed += 1
                    src.latency.add(timing['latency_ms'])
            else:
                self._drop(src, 'error')
        if entry.sync is not None:
            entry.sync.result, entry.sync.error = result, error
            entry.sync.done.set()
            return
        try:
            if error is not None:
                if self._on_error is not None:
                    self._on_error(row.tag, error)
                else:
                    _LOG.error('frame %r failed: %s', row.tag, error)
            elif self._on_result is not None:
                self._on_result(row.tag, result, timing)
        except Exception:
            _LOG.exception('result callback failed for frame %r', row.tag)

    def _drop(self, src: Optional[_Source], reason: str) -> None:
        """Count a dropped frame, for its source too (lock held)."""
        self._dropped[reason] += 1
        if src is not None:
            src.dropped[reason] += 1

    # --- draining, statistics, closing ---------------------------------------------------------

    def drain(self, timeout: Optional[float] = None) -> bool:
        """Wait until every accepted frame (pending included) has been delivered.

        Partial batches launch at once while a drain waits.

        :returns: True when drained, False on timeout.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            self._flushing += 1
            try:
                self._cv.notify_all()
                while self._inflight or self._has_pending():
                    if self._closed or not self._thread.is_alive():
                        return False
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cv.wait(remaining)
            finally:
                self._flushing -= 1
        return True

    def stats(self) -> Dict[str, Any]:
        """Return counts, timing percentiles (p50, p99 in ms) and per-source counts.

        ``sources``: source -> received, completed, dropped, dropped_reasons, pending,
        latency_ms_p50/p99; ``frames_per_inference_mean``: how full the launched batches were.
        """
        with self._cv:
            result = {
                'depth': self.depth,
                'batch_size': self.batch_size,
                'submitted': self._submitted,
                'completed': self._completed,
                'dropped': sum(self._dropped.values()),
                'dropped_reasons': dict(self._dropped),
                'in_flight': sum(e.count for e in self._inflight),
                'pending': sum(s.pending is not None for s in self._sources.values()),
                'inferences': self._launches,
                'inline_frames': self._inline_frames,
                'frames_per_inference_mean': (self._launched_frames / self._launches
                                              if self._launches else float('nan')),
            }  # type: Dict[str, Any]
            for key in _TIMING_KEYS:
                name = key[:-3]
                result[name + '_ms_p50'] = self._timing[key].percentile(50)
                result[name + '_ms_p99'] = self._timing[key].percentile(99)
            result['sources'] = {key: {
                'received': s.received, 'completed': s.completed,
                'dropped': sum(s.dropped.values()), 'dropped_reasons': dict(s.dropped),
                'pending': int(s.pending is not None),
                'latency_ms_p50': s.latency.percentile(50),
                'latency_ms_p99': s.latency.percentile(99)} for key, s in self._sources.items()}
        return result

    def close(self, drain_timeout: Optional[float] = 10.0) -> None:
        """Finish the frames in slots, drop the pending ones, release the slots; idempotent."""
        launch = None
        with self._cv:
            if self._closed:
                return
            self._closing = True
            for src in self._sources.values():
                if src.pending is not None:
                    src.pending = None
                    self._drop(src, 'closed')
            if self._filling is not None:  # its frames were accepted: run them
                filling = self._filling
                self._seal(filling)
                if self._launchable(filling):
                    launch = filling
            self._cv.notify_all()
        if launch is not None:
            self._launch(launch)
        if self._thread is not threading.current_thread():
            self._thread.join(drain_timeout)
        with self._cv:
            self._closed = True
            busy = self._thread.is_alive()
            self._cv.notify_all()
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.join(drain_timeout)
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
