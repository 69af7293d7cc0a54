"""TensorRT backend: deserialise an engine and run it on CUDA streams, one per slot.

Call sequence, after NVIDIA's ``samples/python/common_runtime.py`` and the Python API
reference, with two changes the samples leave out: every status is checked, and device
addresses are bound once per slot instead of on every frame.

- load: GPU probe (TensorRT segfaults without one) -> ``trt.Runtime(logger)`` ->
  ``deserialize_cuda_engine`` (None means another TensorRT version or GPU built it).
- per slot: ``create_execution_context`` -> a stream -> optimisation profile (dynamic shapes
  only: slot ``i`` selects profile ``i`` on its stream; an engine with fewer profiles than
  slots is refused with a ``ModelError``, see ``trt_api``) -> input shapes
  (``set_input_shape`` / ``set_binding_shape``) -> concrete output shapes -> pinned host and
  device buffers -> addresses bound (``set_tensor_address`` / the bindings list) -> three
  events.
- per frame (``launch``): H2D copies -> event -> ``execute_async_v3`` / ``execute_async_v2`` ->
  event -> D2H copies -> event. ``query`` / ``wait`` look at the last event.

Which TensorRT call is used for each step is decided in ``trt_api`` only.
"""

import os
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from tx2_inference.backends.base import Backend, concrete_shape, Slot, TensorInfo
from tx2_inference.backends.tensorrt import api as trt_api
from tx2_inference.backends.tensorrt.cuda import CudaError, open_cuda, require_gpu
from tx2_inference.errors import BackendUnavailableError, ModelError


def import_tensorrt() -> Any:
    """Import TensorRT (full, else the runtime-only ``tensorrt_lean``), after the GPU probe."""
    require_gpu()
    try:
        import tensorrt
        return tensorrt
    except ImportError as error:
        try:
            import tensorrt_lean
            return tensorrt_lean
        except ImportError:
            raise BackendUnavailableError(
                'TensorRT is not installed ({}): on a Jetson it comes with JetPack '
                '(python3-libnvinfer); elsewhere use backend onnxruntime'.format(error)
            ) from error


def tensorrt_logger(trt: Any) -> Any:
    """Return a WARNING ``trt.Logger``, with TensorRT's plugins (EfficientNMS, ...) registered.

    The plugins are registered where the module has ``init_libnvinfer_plugins``.
    """
    logger = trt.Logger(trt.Logger.WARNING)
    if hasattr(trt, 'init_libnvinfer_plugins'):
        trt.init_libnvinfer_plugins(logger, '')
    return logger


class _SlotHandle(object):
    """What a TensorRT slot owns beside its host buffers."""

    __slots__ = ('context', 'profile', 'stream', 'stream_handle', 'device', 'bound',
                 'copies_in', 'copies_out', 'start', 'end', 'done', 'rows', 'batch_inputs')


class TensorRTBackend(Backend):
    """Run a serialised TensorRT engine (``.engine`` / ``.plan``).

    :param engine_path: the engine file, built for this GPU and TensorRT version.
    :param device: CUDA device number.
    :param cuda_library: ``pycuda`` or ``cuda-python`` to force one.
    """

    name = 'tensorrt'

    def __init__(self, engine_path: str, device: int = 0,
                 cuda_library: Optional[str] = None) -> None:
        """Probe the GPU, then deserialise the engine."""
        super(TensorRTBackend, self).__init__(engine_path)
        if not os.path.isfile(engine_path):
            raise ModelError('TensorRT engine {!r} does not exist: build it from the ONNX '
                             'model first'.format(engine_path))
        trt = import_tensorrt()
        self._trt = trt
        self._cuda = open_cuda(device, cuda_library)
        self._cuda.push()
        try:
            self._logger = tensorrt_logger(trt)  # with the plugins the engine may use
            self._runtime = trt.Runtime(self._logger)
            with open(engine_path, 'rb') as f:
                data = f.read()
            self._engine = self._runtime.deserialize_cuda_engine(data)
            if self._engine is None:
                raise ModelError(
                    'TensorRT {} cannot deserialise {!r}: it was built by another TensorRT '
                    'version or for another GPU (see the TensorRT log above); rebuild it '
                    'on this machine'.format(getattr(trt, '__version__', '?'), engine_path))
            self._api = trt_api.runtime_api(trt, self._engine)
        finally:
            self._cuda.pop()
        self._io = self._api.io_tensors()
        self._infos = [self._info(t.name) for t in self._io]
        self.api_generation = self._api.generation
        self.cuda_library = self._cuda.library

    def _info(self, name: str) -> TensorInfo:
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
        """Create the slot's context, buffers, stream and events; bind addresses once."""
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
        cuda.push()
        try:
            h = _SlotHandle()
            h.profile = profile
            h.context = self._engine.create_execution_context()
            if h.context is None:
                raise CudaError('TensorRT create_execution_context failed (out of GPU '
                                'memory?)')
            h.stream = cuda.stream()
            h.stream_handle = cuda.stream_handle(h.stream)
            if dynamic:  # before any input shape; static engines share profile 0
                api.select_profile(h.context, profile, h.stream_handle)
            host = {}  # type: Dict[str, np.ndarray]
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
                host[info.name] = cuda.pagelocked_empty(shape, info.dtype)
            for info in self.outputs:
                shape = api.context_shape(h.context, info.name, profile)
                if -1 in shape:
                    raise ModelError('output {!r} has a data-dependent shape {}: this backend '
                                     'needs fixed output shapes'.format(info.name, shape))
                host[info.name] = cuda.pagelocked_empty(shape, info.dtype)
            h.device = {name: cuda.mem_alloc(array.nbytes) for name, array in host.items()}
            h.bound = api.bind(h.context, [(n, int(d)) for n, d in h.device.items()], profile)
            inputs = {i.name: host[i.name] for i in self.inputs}
            outputs = {i.name: host[i.name] for i in self.outputs}
            h.copies_in = [(h.device[n], a) for n, a in inputs.items()]
            h.copies_out = [(a, h.device[n]) for n, a in outputs.items()]
            h.start, h.end, h.done = cuda.event(), cuda.event(), cuda.event()
            # Inputs with a free batch: launch sets their first dimension to the batch's rows.
            h.rows = int(inputs[self.inputs[0].name].shape[0]) if self.inputs else 1
            h.batch_inputs = [(i.name, tuple(inputs[i.name].shape[1:])) for i in self.inputs
                              if i.shape and i.shape[0] < 0]
        finally:
            cuda.pop()
        slot = Slot(index, inputs, outputs, h)
        self._slots.append(slot)
        return slot

    def launch(self, slot: Slot) -> None:
        """Enqueue H2D copies, inference and D2H copies on the slot's stream."""
        h, cuda = slot.handle, self._cuda
        cuda.push()
        try:
            if h.batch_inputs and slot.count != h.rows:  # a partial batch at its real size
                for name, rest in h.batch_inputs:
                    self._api.set_input_shape(h.context, name, (slot.count,) + rest, h.profile)
                h.rows = slot.count
            for device, array in h.copies_in:
                cuda.memcpy_htod_async(device, array, h.stream)
            cuda.record(h.start, h.stream)
            if not self._api.execute(h.context, h.bound, h.stream_handle):
                raise CudaError('TensorRT {} inference failed for {!r} (see the TensorRT '
                                'log above)'.format(self._api.execute_call, self.model_path))
            cuda.record(h.end, h.stream)
            for array, device in h.copies_out:
                cuda.memcpy_dtoh_async(array, device, h.stream)
            cuda.record(h.done, h.stream)
        finally:
            cuda.pop()

    def query(self, slot: Slot) -> bool:
        """Return True when the slot's D2H copies have completed."""
        self._cuda.push()
        try:
            return self._cuda.query(slot.handle.done)
        finally:
            self._cuda.pop()

    def wait(self, slot: Slot, timeout: Optional[float] = None) -> bool:
        """Wait for the slot's last event; record the inference time between events."""
        h, cuda = slot.handle, self._cuda
        cuda.push()
        try:
            if timeout is None:
                cuda.synchronize(h.done)
            else:
                deadline = time.monotonic() + timeout
                while not cuda.query(h.done):
                    if time.monotonic() >= deadline:
                        return False
                    time.sleep(0.0002)
            slot.infer_ms = cuda.elapsed_ms(h.start, h.end)
            return True
        finally:
            cuda.pop()

    def _release_slot(self, slot: Slot) -> None:
        """Free the slot's device and pinned buffers, stream, events and context."""
        h, cuda = slot.handle, self._cuda
        cuda.push()
        try:
            cuda.synchronize(h.done)
            cuda.free(*h.device.values())
            cuda.free(*slot.inputs.values())
            cuda.free(*slot.outputs.values())
            cuda.free(h.start, h.end, h.done, h.stream)
            h.context = None
        finally:
            cuda.pop()

    def _close(self) -> None:
        super(TensorRTBackend, self)._close()
        self._cuda.push()
        try:
            self._engine = None
            self._runtime = None
        finally:
            self._cuda.pop()
        self._cuda.close()
