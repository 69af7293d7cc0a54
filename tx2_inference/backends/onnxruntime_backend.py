"""ONNX Runtime backend: CPU execution provider, CUDA / TensorRT providers where present.

Each slot has its own IOBinding bound once to the slot's preallocated numpy buffers, and its
own worker thread (a ``ThreadStream``) that calls ``run_with_iobinding``. ONNX Runtime
releases the GIL while it runs, so pre- and post-processing of other frames go on meanwhile.

Each run is called from the CPUs ONNX Runtime left free: its default pool pins a thread to
every core but one and never pins the caller, which then often shares a pool thread's core
(``affinity``; issue 23: 8.5 against 6.0 ms per run here). ``caller_cpus`` says which.

A slot of batch ``B`` on a model with a free batch dimension has ``B`` bindings, one per batch
size ``1..B``, all on the same buffers (the first ``count`` rows of a C-contiguous buffer are
contiguous): ``launch`` picks the one for ``slot.count``, so a partial batch runs at its real
size and nothing is bound or allocated per frame. A fixed-batch model runs all its rows.
"""

import logging
import os
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from tx2_inference.backends.affinity import CallerAffinity, pinned_cpus_of_new_threads, thread_ids
from tx2_inference.backends.base import concrete_shape, Slot, TensorInfo, ThreadedBackend
from tx2_inference.errors import BackendUnavailableError, ModelError

_LOG = logging.getLogger(__name__)

# ONNX Runtime's type strings -> numpy dtypes.
_ORT_DTYPES = {
    'tensor(float)': np.float32, 'tensor(float16)': np.float16, 'tensor(double)': np.float64,
    'tensor(uint8)': np.uint8, 'tensor(int8)': np.int8, 'tensor(uint16)': np.uint16,
    'tensor(int16)': np.int16, 'tensor(int32)': np.int32, 'tensor(int64)': np.int64,
    'tensor(bool)': np.bool_,
}

# Short names accepted for ``providers``.
_PROVIDER_NAMES = {
    'cpu': 'CPUExecutionProvider',
    'cuda': 'CUDAExecutionProvider',
    'tensorrt': 'TensorrtExecutionProvider',
}


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as error:
        raise BackendUnavailableError(
            'ONNX Runtime is not installed ({}): pip install onnxruntime (or '
            'onnxruntime-gpu), or choose another backend'.format(error)) from error
    return onnxruntime


#: The bounded spin by default (us), and the ONNX Runtime release that first has it
#: (microsoft/onnxruntime PR 27916, merged 2026-04-14, in rel-1.26.0).
DEFAULT_SPIN_US = 50
BOUNDED_SPIN_SINCE = (1, 26)


def _version(text: str) -> Tuple[int, int]:
    """Return (major, minor) of a version string such as ``1.32.0`` (0, 0 if unreadable)."""
    parts = text.split('.')
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return 0, 0


def _dims(shape: Sequence[Any]) -> tuple:
    """ONNX Runtime shape (ints, names or None) -> tuple with -1 for dynamic dims."""
    return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in shape)


def _element_type(array: np.ndarray) -> np.dtype:
    """Return the dtype to bind ``array`` with: int64 as numpy's ``longlong``.

    ONNX Runtime before 1.11 (1.10 is the last for JetPack 4.6's Python 3.6) maps only
    ``NPY_LONGLONG`` to int64 and refuses numpy's default int64 (``NPY_LONG`` on Linux) with
    "No corresponding Numpy type for Tensor Type"; both name the same 8-byte layout.
    """
    if array.dtype == np.int64:
        return np.dtype(np.longlong)
    return array.dtype


class OnnxRuntimeBackend(ThreadedBackend):
    """Run an ONNX model with ONNX Runtime.

    :param model_path: the ``.onnx`` file.
    :param providers: execution providers in order of preference, by ONNX Runtime name or
        short name (``cpu``, ``cuda``, ``tensorrt``); default CPU only. A provider that is
        not available raises ``BackendUnavailableError``.
    :param intra_op_threads: threads inside one operator (None: ONNX Runtime's default,
        one per core).
    :param inter_op_threads: threads across operators (None: ONNX Runtime's default).
    :param serialize_runs: run one slot at a time. Off by default: concurrent runs share the
        session's thread pool and fill each other's serial gaps, and the hand-over from one
        run to the next happens inside ONNX Runtime, not through the GIL (measured here, 2
        cores: executor/raw 1.09 concurrent, 0.85 serialized).
    :param spinning: let ONNX Runtime's intra-op pool threads spin (busy-wait) between the
        parallel parts of a run instead of sleeping (``session.intra_op.allow_spinning``;
        spinning is ONNX Runtime's own default, what a plain ``InferenceSession`` does). Off
        by default: on this 2-core machine, shared, a spinning session took 1.5 x the CPU per
        inference (38 against 25 ms) and ran slower (p50 35 against 23 ms), and the node with
        spinning off answered at 0.1 to 0.5 x the naive node's p50 latency (docs/BENCHMARKS.md).
        On an idle machine spinning saves the pool's wake-ups (about 56 futex waits per
        inference here) and runs faster: turn it on for a robot whose cores are otherwise idle.
        The pool spins only while a run is in progress (``session.force_spinning_stop``,
        ONNX Runtime 1.12 and later; older releases ignore it): a plain session's pool spins on
        after each run, about 25 ms of a core per frame here. With the caller off the pool's
        cores, spinning through the run was still slower in the node at 15 FPS (7.0 ms per
        run, issue 23) than the bounded spin below (5.3 ms).
    :param spin_us: with ``spinning`` off, let the pool threads spin up to this many
        microseconds before they sleep (``session.intra_op.spin_duration_us``), and only while
        a run is in progress: the pool is woken a few times per run instead of about 80, for
        the same CPU (measured here, issue 23: the node's run 5.3 against 7.5-7.9 ms at 15 FPS;
        at load 8.7 in process, 20.1 ms either way). 0: sleep at once. ONNX Runtime before
        1.26 has no bounded spin: its pool then sleeps at once (``effective_spin_us`` 0).
    :param caller_affinity: run each inference from the CPUs the session's pool threads are
        not pinned to (``affinity.CallerAffinity``); True by default. Where ONNX Runtime
        pinned nothing (an explicit ``intra_op_threads``, older releases, not Linux), it does
        nothing.
    """

    name = 'onnxruntime'
    runtime_label = 'ONNX Runtime inference'

    def __init__(self, model_path: str, providers: Optional[Sequence[str]] = None,
                 intra_op_threads: Optional[int] = None,
                 inter_op_threads: Optional[int] = None,
                 serialize_runs: bool = False, spinning: bool = False,
                 spin_us: int = DEFAULT_SPIN_US, caller_affinity: bool = True) -> None:
        """Load the model into an ``InferenceSession``."""
        super(OnnxRuntimeBackend, self).__init__(model_path)
        ort = _import_ort()
        if not os.path.isfile(model_path):
            raise ModelError('ONNX model {!r} does not exist: check the model path'.format(
                model_path))
        wanted = [_PROVIDER_NAMES.get(p.lower(), p) for p in (providers or ['cpu'])]
        available = ort.get_available_providers()
        missing = [p for p in wanted if p not in available]
        if missing:
            raise BackendUnavailableError(
                'ONNX Runtime provider(s) {} not available here (available: {}): install '
                'onnxruntime-gpu with CUDA/TensorRT, or use the CPU provider'.format(
                    ', '.join(missing), ', '.join(available)))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if intra_op_threads is not None:
            options.intra_op_num_threads = int(intra_op_threads)
        if inter_op_threads is not None:
            options.inter_op_num_threads = int(inter_op_threads)
        options.log_severity_level = 3
        #: The bounded spin in force, in microseconds (0: none; see ``spin_us``).
        self.effective_spin_us = 0
        if not spinning and int(spin_us) > 0 and _version(ort.__version__) >= BOUNDED_SPIN_SINCE:
            self.effective_spin_us = int(spin_us)
            options.add_session_config_entry('session.intra_op.spin_duration_us',
                                             str(self.effective_spin_us))
        spin = spinning or self.effective_spin_us > 0
        options.add_session_config_entry('session.intra_op.allow_spinning', '1' if spin else '0')
        options.add_session_config_entry('session.inter_op.allow_spinning',
                                         '1' if spinning else '0')
        # Spinning only while a run is in progress: ONNX Runtime's default pool keeps spinning
        # after each run (about 25 ms of a core after every frame, measured), the time the
        # threads that take the next frame off the wire need.
        options.add_session_config_entry('session.force_spinning_stop', '1' if spin else '0')
        threads_before = thread_ids()
        try:
            self._session = ort.InferenceSession(model_path, sess_options=options,
                                                 providers=wanted)
        except Exception as error:
            raise ModelError('ONNX Runtime cannot load {!r}: {} (is it a valid ONNX '
                             'model?)'.format(model_path, error)) from error
        #: The CPUs the session's pool threads are pinned to; runs are called from the others.
        self.pool_cpus = pinned_cpus_of_new_threads(threads_before) if caller_affinity \
            else frozenset()
        self._active = _ActiveRuns()
        self.providers = list(self._session.get_providers())
        self._inputs = [self._info(a) for a in self._session.get_inputs()]
        self._outputs = [self._info(a) for a in self._session.get_outputs()]
        self._device_lock = threading.Lock() if serialize_runs else None

    @staticmethod
    def _info(arg: Any) -> TensorInfo:
        dtype = _ORT_DTYPES.get(arg.type)
        if dtype is None:
            raise ModelError('tensor {!r} has type {}, which this package does not '
                             'handle'.format(arg.name, arg.type))
        return TensorInfo(arg.name, _dims(arg.shape), np.dtype(dtype))

    def create_slot(self, index: int,
                    input_shapes: Optional[Dict[str, Sequence[int]]] = None) -> Slot:
        """Allocate the slot's buffers, learn the output shapes, bind both once (per batch)."""
        inputs = {}
        for info in self._inputs:
            shape = concrete_shape(info, (input_shapes or {}).get(info.name))
            inputs[info.name] = np.zeros(shape, info.dtype)
        # One run on zeros gives the output shapes for these input shapes. An output whose
        # shape then changes with the data (in-graph NMS) makes the bound run fail; the
        # slot then lets ONNX Runtime allocate its outputs (see _make_job).
        probe = self._session.run(None, inputs)
        outputs = {info.name: np.zeros(value.shape, info.dtype)
                   for info, value in zip(self._outputs, probe)}
        batch = int(next(iter(inputs.values())).shape[0]) if inputs else 1
        sizes = [batch]
        if batch > 1 and self.dynamic_batch:
            not_batched = [name for name, array in outputs.items() if array.shape[:1] != (batch,)]
            if not_batched:
                raise ModelError('{}: output(s) {} do not have the batch as their first '
                                 'dimension, so a batch of {} cannot be split into frames: '
                                 'use batch_size 1, or convert the model with a batch-first '
                                 'output (tx2-convert onnx --batch).'.format(
                                     self.model_path, ', '.join(not_batched), batch))
            sizes = list(range(1, batch + 1))
        bindings = _Bindings([self._bind(inputs, outputs, size) for size in sizes], batch)
        return self._add_slot(index, inputs, outputs, bindings,
                              self._make_job(bindings, outputs), self._device_lock)

    def _bind(self, inputs: Dict[str, np.ndarray], outputs: Dict[str, np.ndarray],
              rows: int) -> Any:
        """Bind the first ``rows`` rows of every buffer (all of a buffer without the batch)."""
        batch = int(next(iter(inputs.values())).shape[0]) if inputs else 1
        binding = self._session.io_binding()
        for name, array in inputs.items():
            shape = [rows] + list(array.shape[1:]) if array.shape[:1] == (batch,) else \
                list(array.shape)
            binding.bind_input(name, 'cpu', 0, _element_type(array), shape, array.ctypes.data)
        for name, array in outputs.items():
            shape = [rows] + list(array.shape[1:]) if array.shape[:1] == (batch,) else \
                list(array.shape)
            binding.bind_output(name, 'cpu', 0, _element_type(array), shape, array.ctypes.data)
        return binding

    def launch(self, slot: Slot) -> None:
        """Run the binding for ``slot.count`` rows (the full batch on a fixed batch)."""
        bindings = slot.handle[0]
        bindings.current = bindings.all[min(slot.count, len(bindings.all)) - 1]
        super(OnnxRuntimeBackend, self).launch(slot)

    @property
    def caller_cpus(self) -> Optional[List[int]]:
        """Return the CPUs runs are called from (None: wherever the calling thread is)."""
        if not self.pool_cpus:
            return None
        try:
            free = set(os.sched_getaffinity(0)) - self.pool_cpus
        except (AttributeError, OSError):
            return None
        return sorted(free) or None

    def _make_job(self, bindings: '_Bindings', outputs: Dict[str, np.ndarray]) -> Any:
        session = self._session
        names = [info.name for info in self._outputs]
        state = {'dynamic': False}
        caller = CallerAffinity(self.pool_cpus)  # one per slot: one run at a time
        active = self._active

        def job() -> None:
            # Only a run alone moves its caller: two runs at once (frames back to back) each
            # keep a core of their own rather than share the one the pool leaves free.
            alone = active.enter()
            try:
                if alone:
                    with caller:
                        run(bindings.current)
                else:
                    run(bindings.current)
            finally:
                active.leave()

        def run(binding: Any) -> None:
            if not state['dynamic']:
                try:
                    session.run_with_iobinding(binding)  # into the bound output buffers
                    return
                except Exception as error:
                    if 'shape' not in str(error).lower():
                        raise
                    # Output shapes depend on the data: let ONNX Runtime allocate them.
                    if bindings.batch > 1:
                        raise ModelError('{}: output shapes change with the input ({}), so a '
                                         'batch cannot be split into frames: use batch_size '
                                         '1'.format(self.model_path, error)) from error
                    _LOG.warning('%s: output shapes change with the input (%s); outputs are '
                                 'now allocated per frame', self.model_path, error)
                    state['dynamic'] = True
            # Rebound on every run: an output ONNX Runtime allocated stays bound with its shape,
            # and the next frame's other shape would fail. (Run here rather than call job(): a
            # closure that calls itself is a reference cycle, which would keep the session,
            # its memory and threads, alive after close.)
            binding.clear_binding_outputs()
            for name in names:
                binding.bind_output(name, 'cpu')
            session.run_with_iobinding(binding)
            outputs.update(zip(names, binding.copy_outputs_to_cpu()))
        return job

    def _release_slot(self, slot: Slot) -> None:
        super(OnnxRuntimeBackend, self)._release_slot(slot)
        for binding in slot.handle[0].all:
            binding.clear_binding_inputs()
            binding.clear_binding_outputs()

    def _close(self) -> None:
        super(OnnxRuntimeBackend, self)._close()
        self._session = None


class _ActiveRuns(object):
    """How many runs of a session are in progress (slots run concurrently)."""

    __slots__ = ('count', 'lock')

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    def enter(self) -> bool:
        """Count a run in; return True when it is the only one."""
        with self.lock:
            self.count += 1
            return self.count == 1

    def leave(self) -> None:
        """Count a run out."""
        with self.lock:
            self.count -= 1


class _Bindings(object):
    """A slot's IOBindings, one per batch size it runs (one on a fixed batch); ``current``."""

    __slots__ = ('all', 'current', 'batch')

    def __init__(self, bindings: List[Any], batch: int) -> None:
        self.all = bindings
        self.current = bindings[-1]
        self.batch = batch
