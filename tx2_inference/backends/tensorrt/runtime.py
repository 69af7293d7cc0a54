"""TensorRT backend: deserialise an engine and run it on CUDA streams, one per slot.

Call sequence, after NVIDIA's ``samples/python/common_runtime.py`` and the Python API
reference, with two changes the samples leave out: every status is checked, and device
addresses are bound once per slot instead of on every frame. Every call here exists from
TensorRT 8.0 (JetPack 4.6 ships 8.0.1; 4.6.1 and later ship 8.2.1) to 11.

- load: GPU probe (TensorRT segfaults without one) -> ``trt.Runtime(logger)`` ->
  ``deserialize_cuda_engine`` (None: another TensorRT version or GPU built it; with the
  runtime-only ``tensorrt_lean``, also an engine not built ``--version-compatible``).
- per slot: ``create_execution_context`` -> a stream -> optimisation profile (dynamic shapes
  only: slot ``i`` selects profile ``i`` on its stream; an engine with fewer profiles than
  slots is refused with a ``ModelError``, see ``api``) -> input shapes
  (``set_input_shape`` / ``set_binding_shape``) -> concrete output shapes -> pinned host and
  device buffers -> addresses bound (``set_tensor_address`` / the bindings list) -> events:
  ``start`` and ``end`` with timing, ``done`` with blocking sync (``cuda.py``). A slot that
  fails half-way frees what it made before the error goes on.
- per frame (``launch``): H2D copies -> start -> ``execute_async_v3`` / ``execute_async_v2`` ->
  end -> D2H copies -> done; ``done`` is recorded after whatever was enqueued, also when
  ``execute`` fails, so it always marks the last work on the stream. ``query`` / ``wait`` look
  at it.
- release (one slot): wait for its *stream*, then free buffers, events, stream and context
  inside push/pop, and empty ``slot.inputs`` / ``slot.outputs`` so no freed array stays
  reachable from the slot.
- close: the slots, then, inside push/pop, every reference to the engine (the API wrapper's
  too) and the runtime, in that order (contexts -> engine -> runtime), then the CUDA context.
  A slot whose work has not finished within ``close_timeout`` (a hung kernel, or an executor
  whose close timed out and still waits on it) is not freed: its buffers, the engine and the
  context are left allocated, with a warning, rather than freed under the GPU or a thread.

``outputs_from``: ``'pinned'`` (default) lets the decoder read the outputs straight from the
pinned buffers the D2H copies wrote; ``'copy'`` copies them into ordinary numpy arrays once a
frame is done, and the decoder reads those. On a TX2 (sm_62, no I/O coherency) pinned host
memory is not cached by the CPU, so a decoder that reads outputs many times may be faster on the
copy; on the robot compare the executor's ``decode_ms`` (its ``stats()``, the node's
diagnostics) with each before choosing.

``inputs_from``, its mirror for the inputs: ``'pinned'`` (default) lets the pre-processor write
each frame straight into the pinned buffers the H2D copies read; ``'copy'`` gives it ordinary
(CPU-cached) arrays, copied into the pinned buffers in one ``np.copyto`` per input at
``launch``. On a TX2 the pre-processor's many small writes to uncached pinned memory may cost
more than that one copy: compare the executor's ``prepare_ms`` with each on the robot.

Which TensorRT call is used for each step is decided in ``api`` only.
"""

import logging
import os
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from tx2_inference.backends import INPUTS_FROM, OUTPUTS_FROM
from tx2_inference.backends.base import Backend, concrete_shape, Slot, TensorInfo
from tx2_inference.backends.tensorrt import api as trt_api
from tx2_inference.backends.tensorrt.cache import engine_metadata
from tx2_inference.backends.tensorrt.cuda import CudaError, memory_info, open_cuda
from tx2_inference.backends.tensorrt.loader import (  # noqa: F401 (where callers find them)
    import_tensorrt,
    is_lean,
    tensorrt_logger,
    TENSORRT_MODULES,
)
from tx2_inference.errors import ConfigError, ModelError

LOG = logging.getLogger(__name__)


def _lean_refusal(engine_path: str, trt: Any) -> str:
    return ('{} (TensorRT {}) is the lean runtime: it runs only engines built with '
            '--version-compatible and without plugins (EfficientNMS, ...), and {!r} was not. '
            'Rebuild it where full TensorRT is installed: tx2-convert engine MODEL.onnx '
            '--version-compatible -o {}; or install full TensorRT here.'.format(
                trt.__name__, getattr(trt, '__version__', '?'), engine_path,
                os.path.basename(engine_path)))


class _SlotHandle(object):
    """What a TensorRT slot owns beside its host buffers."""

    __slots__ = ('context', 'profile', 'stream', 'stream_handle', 'device', 'bound',
                 'copies_in', 'copies_out', 'start', 'end', 'done', 'pinned', 'copied',
                 'launched', 'waiting', 'rows', 'batch_inputs', 'staged')

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, None)
        self.device = {}  # type: Dict[str, Any]
        self.pinned = {}  # type: Dict[str, np.ndarray]
        self.launched = False
        self.copied = True
        self.waiting = 0
        self.staged = []  # type: List[Any]  # (pinned, prepared) pairs, inputs_from copy


class TensorRTBackend(Backend):
    """Run a serialised TensorRT engine (``.engine`` / ``.plan``).

    :param engine_path: the engine file, built for this GPU and TensorRT version.
    :param device: CUDA device number.
    :param cuda_library: ``pycuda`` or ``cuda-python`` to force one.
    :param outputs_from: ``pinned`` or ``copy`` (see the module docstring).
    :param inputs_from: ``pinned`` or ``copy`` (see the module docstring).
    :param close_timeout: seconds ``close`` waits for a slot's unfinished work.
    """

    name = 'tensorrt'

    def __init__(self, engine_path: str, device: int = 0,
                 cuda_library: Optional[str] = None, outputs_from: str = 'pinned',
                 inputs_from: str = 'pinned',
                 close_timeout: float = 2.0) -> None:
        """Probe the GPU, then deserialise the engine."""
        super(TensorRTBackend, self).__init__(engine_path)
        if outputs_from not in OUTPUTS_FROM:
            raise ConfigError('outputs_from {!r} is not one of {}'.format(
                outputs_from, ', '.join(OUTPUTS_FROM)))
        if inputs_from not in INPUTS_FROM:
            raise ConfigError('inputs_from {!r} is not one of {}'.format(
                inputs_from, ', '.join(INPUTS_FROM)))
        if not os.path.isfile(engine_path):
            raise ModelError('TensorRT engine {!r} does not exist: build it from the ONNX '
                             'model first'.format(engine_path))
        trt = import_tensorrt()
        if is_lean(trt):
            meta = engine_metadata(engine_path)
            if meta is not None and not (meta.get('options') or {}).get('version_compatible'):
                raise ModelError(_lean_refusal(engine_path, trt))
        self.outputs_from = outputs_from
        self.inputs_from = inputs_from
        self.close_timeout = float(close_timeout)
        self._trt = trt
        self._lock = threading.Lock()
        self._cuda = open_cuda(device, cuda_library)
        self._cuda.push()
        try:
            self._logger = tensorrt_logger(trt)  # with the plugins the engine may use
            self._runtime = trt.Runtime(self._logger)
            with open(engine_path, 'rb') as f:
                data = f.read()
            self._engine = self._runtime.deserialize_cuda_engine(data)
            if self._engine is None:
                if is_lean(trt):
                    raise ModelError(_lean_refusal(engine_path, trt))
                raise ModelError(
                    'TensorRT {} cannot deserialise {!r}: it was built by another TensorRT '
                    'version or for another GPU (see the TensorRT log above); rebuild it '
                    'on this machine'.format(getattr(trt, '__version__', '?'), engine_path))
            trt_api.refuse_implicit_batch(self._engine, engine_path)
            self._api = trt_api.runtime_api(trt, self._engine)  # type: Any
            self._io = self._api.io_tensors()
            self._infos = [self._info(t.name) for t in self._io]
        except BaseException:
            self._api = self._engine = self._runtime = None
            self._cuda.pop()
            self._cuda.close()
            raise
        self._cuda.pop()
        self.api_generation = self._api.generation
        self.cuda_library = self._cuda.library

    def _info(self, name: str) -> TensorInfo:
        if self._api.is_host_tensor(name):
            raise ModelError('engine tensor {!r} lives in host memory (a shape tensor): this '
                             'backend binds device buffers only; export the model with fixed '
                             'shapes'.format(name))
        try:
            dtype = np.dtype(self._api.dtype(name))
        except TypeError as error:  # BF16, FP8, INT4: no numpy type
            raise ModelError('engine tensor {!r} has a type numpy cannot hold ({}): export '
                             'the model with float32/float16 inputs and outputs'.format(
                                 name, error)) from error
        return TensorInfo(name, self._api.shape(name), dtype)

    @property
    def inputs(self) -> List[TensorInfo]:
        """Return the engine's inputs."""
        return [i for i, t in zip(self._infos, self._io) if t.is_input]

    @property
    def outputs(self) -> List[TensorInfo]:
        """Return the engine's outputs."""
        return [i for i, t in zip(self._infos, self._io) if not t.is_input]

    @property
    def max_batch(self) -> Optional[int]:
        """Return the engine's largest batch: its fixed one, or profile 0's maximum."""
        first = self.inputs[0]
        if first.shape and first.shape[0] < 0:
            return int(self._api.profile_shapes(first.name, 0)[2][0])
        return int(first.shape[0]) if first.shape else 1

    def create_slot(self, index: int,
                    input_shapes: Optional[Dict[str, Sequence[int]]] = None) -> Slot:
        """Create the slot's context, buffers, stream and events; bind addresses once.

        Whatever was made before a failure is freed before the error is raised.
        """
        cuda, api = self._cuda, self._api
        # Dynamic shapes: slot i uses optimisation profile i, never one another live slot
        # uses (TensorRT allows one context per profile); refused before anything is made.
        dynamic = any(-1 in i.shape for i in self.inputs)
        profile = trt_api.slot_profile(index, self._engine.num_optimization_profiles, dynamic,
                                       self.model_path)
        if dynamic and any(s.handle.profile == profile for s in self._slots):
            raise ModelError('executor slot {} of {!r} is already in use (optimisation '
                             'profile {}): release it first'.format(index, self.model_path,
                                                                    profile))
        h = _SlotHandle()
        h.profile = profile
        cuda.push()
        try:
            h.context = self._engine.create_execution_context()
            if h.context is None:
                raise CudaError('TensorRT create_execution_context failed (out of GPU '
                                'memory?)')
            h.stream = cuda.stream()
            h.stream_handle = cuda.stream_handle(h.stream)
            if dynamic:  # before any input shape; static engines share profile 0
                api.select_profile(h.context, profile, h.stream_handle)
            for info in self.inputs:
                shape = concrete_shape(info, (input_shapes or {}).get(info.name))
                if -1 in info.shape:
                    low, _, high = api.profile_shapes(info.name, profile)
                    if any(s < lo or s > hi for s, lo, hi in zip(shape, low, high)):
                        raise ModelError(
                            "input {!r}: shape {} is outside the engine's optimisation "
                            'profile {}..{}: rebuild the engine for it'.format(
                                info.name, list(shape), list(low), list(high)))
                    api.set_input_shape(h.context, info.name, shape, profile)
                h.pinned[info.name] = cuda.pagelocked_empty(shape, info.dtype)
            for info in self.outputs:
                shape = api.context_shape(h.context, info.name, profile)
                if -1 in shape:
                    raise ModelError('output {!r} has a data-dependent shape {}: this backend '
                                     'needs fixed output shapes'.format(info.name, shape))
                h.pinned[info.name] = cuda.pagelocked_empty(shape, info.dtype)
            for name, array in h.pinned.items():
                h.device[name] = cuda.mem_alloc(array.nbytes)
            h.bound = api.bind(h.context, [(n, int(d)) for n, d in h.device.items()], profile)
            inputs = {i.name: h.pinned[i.name] for i in self.inputs}
            outputs = {i.name: h.pinned[i.name] for i in self.outputs}
            h.copies_in = [(h.device[n], a) for n, a in inputs.items()]
            h.copies_out = [(a, h.device[n]) for n, a in outputs.items()]
            if self.inputs_from == 'copy':  # ordinary (CPU-cached) arrays to prepare into
                inputs = {n: np.empty_like(a) for n, a in inputs.items()}
                h.staged = [(h.pinned[n], a) for n, a in inputs.items()]
            if self.outputs_from == 'copy':  # ordinary (CPU-cached) arrays for the decoder
                outputs = {n: np.empty_like(a) for n, a in outputs.items()}
            h.start = cuda.event()
            h.end = cuda.event()
            h.done = cuda.event(blocking=True)
            # Inputs with a free batch: launch sets their first dimension to the batch's rows.
            h.rows = int(inputs[self.inputs[0].name].shape[0]) if self.inputs else 1
            h.batch_inputs = [(i.name, tuple(inputs[i.name].shape[1:])) for i in self.inputs
                              if i.shape and i.shape[0] < 0]
        except BaseException:
            try:
                self._free_handle(h)
            finally:
                cuda.pop()
            raise
        cuda.pop()
        slot = Slot(index, inputs, outputs, h)
        self._slots.append(slot)
        return slot

    def launch(self, slot: Slot) -> None:
        """Enqueue H2D copies, inference and D2H copies on the slot's stream."""
        h, cuda = slot.handle, self._cuda
        cuda.push()
        try:
            h.launched, h.copied = True, False
            if h.batch_inputs and slot.count != h.rows:  # a partial batch at its real size
                for name, rest in h.batch_inputs:
                    self._api.set_input_shape(h.context, name, (slot.count,) + rest, h.profile)
                h.rows = slot.count
            for pinned, prepared in h.staged:  # inputs_from copy: into the pinned buffers
                np.copyto(pinned, prepared)
            for device, array in h.copies_in:
                cuda.memcpy_htod_async(device, array, h.stream)
            cuda.record(h.start, h.stream)
            if not self._api.execute(h.context, h.bound, h.stream_handle):
                raise CudaError('TensorRT {} inference failed for {!r} (see the TensorRT '
                                'log above)'.format(self._api.execute_call, self.model_path))
            cuda.record(h.end, h.stream)
            for array, device in h.copies_out:
                cuda.memcpy_dtoh_async(array, device, h.stream)
        finally:
            try:
                cuda.record(h.done, h.stream)  # after whatever was enqueued
            finally:
                cuda.pop()

    def _copy_outputs(self, slot: Slot) -> None:
        h = slot.handle
        if not h.copied:
            h.copied = True
            if self.outputs_from == 'copy':
                for name, array in slot.outputs.items():
                    np.copyto(array, h.pinned[name])

    def query(self, slot: Slot) -> bool:
        """Return True when the slot's D2H copies have completed."""
        self._cuda.push()
        try:
            done = self._cuda.query(slot.handle.done)
        finally:
            self._cuda.pop()
        if done:
            self._copy_outputs(slot)
        return done

    def wait(self, slot: Slot, timeout: Optional[float] = None) -> bool:
        """Wait for the slot's last event; record the inference time between events."""
        h, cuda = slot.handle, self._cuda
        with self._lock:
            h.waiting += 1
        cuda.push()
        try:
            if timeout is None:
                cuda.synchronize(h.done)
            else:
                deadline = time.monotonic() + timeout
                while not cuda.query(h.done):
                    if time.monotonic() >= deadline:
                        return False
                    time.sleep(0.0005)
            slot.infer_ms = cuda.elapsed_ms(h.start, h.end)
        finally:
            cuda.pop()
            with self._lock:
                h.waiting -= 1
        self._copy_outputs(slot)
        return True

    def _free_handle(self, h: _SlotHandle) -> None:
        """Free what ``h`` holds, whatever was made (context pushed by the caller)."""
        cuda = self._cuda
        made = list(h.device.values()) + list(h.pinned.values())
        made += [e for e in (h.start, h.end, h.done, h.stream) if e is not None]
        h.device, h.pinned, h.copies_in, h.copies_out, h.staged = {}, {}, [], [], []
        h.start = h.end = h.done = h.bound = None
        h.context = None  # the execution context is destroyed here, with the context pushed
        try:
            cuda.free(*made)
        finally:
            h.stream = None

    def _release_slot(self, slot: Slot) -> None:
        """Wait for the slot's stream; free its buffers, events, stream and context."""
        h, cuda = slot.handle, self._cuda
        cuda.push()
        try:
            if h.stream is not None:
                cuda.synchronize_stream(h.stream)  # all its work, not the last event only
            self._free_handle(h)
        finally:
            cuda.pop()
        slot.inputs.clear()  # no freed pinned array stays reachable from the slot
        slot.outputs.clear()
        for row in slot.rows:  # nor from its batch rows' views
            row.inputs.clear()
            row.outputs.clear()

    def _settled(self, slot: Slot) -> bool:
        """Return True when no thread waits on the slot and its work is done (bounded)."""
        h, cuda = slot.handle, self._cuda
        deadline = time.monotonic() + self.close_timeout
        while True:
            with self._lock:
                waiting = h.waiting
            if not waiting:
                if not h.launched or h.done is None:
                    return True
                cuda.push()
                try:
                    if cuda.query(h.done):
                        return True
                finally:
                    cuda.pop()
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.001)

    def device_memory(self) -> Optional[Dict[str, float]]:
        """Return the GPU's memory in MB (used_mb, free_mb, total_mb), or None if closed.

        Read in this backend's own context (a Jetson's GPU shares the RAM: total is the
        board's, free what CUDA can still allocate), for the node's /diagnostics.
        """
        if self._engine is None:
            return None
        self._cuda.push()
        try:
            info = memory_info()
        finally:
            self._cuda.pop()
        if info is None:
            return None
        free, total = info[0] / 2.0**20, info[1] / 2.0**20
        return {'used_mb': total - free, 'free_mb': free, 'total_mb': total}

    def _close(self) -> None:
        busy = [s for s in self._slots if not self._settled(s)]
        if busy:
            # Freeing these under the GPU or a waiting thread would crash the process: leave
            # them, the engine and the CUDA context allocated, and say so.
            LOG.warning(
                'TensorRT backend %s closed with %d slot(s) still running or waited on: '
                'their buffers, the engine and the CUDA context are left allocated',
                self.model_path, len(busy))
            for slot in list(self._slots):
                if slot not in busy:
                    self.release_slot(slot)
            return
        super(TensorRTBackend, self)._close()  # each slot's context, inside push/pop
        self._cuda.push()
        try:
            if self._api is not None:
                self._api.engine = None  # the API wrapper holds the engine too
            self._api = None
            self._engine = None
            self._runtime = None
        finally:
            self._cuda.pop()
        self._cuda.close()
