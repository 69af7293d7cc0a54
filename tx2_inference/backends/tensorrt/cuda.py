"""CUDA for the TensorRT backend: a GPU probe, then streams, events, pinned and device memory.

``probe_gpu`` needs nothing but the driver library: it calls ``cuInit`` and
``cuDeviceGetCount`` through ctypes. Call it before touching TensorRT, which segfaults on a
machine without a usable GPU instead of raising (../shared/notes/ml-stack.md).
``gpu_name_and_capability`` reads a GPU's name and compute capability the same way (the engine
cache's device identity).

``open_cuda`` returns a ``CudaDevice`` backed by pycuda (what JetPack 4.6 ships; CUDA 10.2)
or, where pycuda is absent, by cuda-python's runtime bindings (``cuda.bindings.runtime`` in
cuda-python 12.6+, ``cuda.cudart`` before). Never ``pycuda.autoinit``: it makes a context
current in the importing thread only. pycuda work is wrapped in ``push()`` / ``pop()`` so the
context is current in whichever thread runs it (pycuda ``Context.push`` / ``Context.pop``).
Every call is checked; a failure raises ``CudaError`` naming the call.

**Waiting without burning a core.** ``event(blocking=True)`` makes the event a slot's ``done``
is recorded on: ``cudaEventBlockingSync`` (the waiting thread sleeps in the driver instead of
spinning, which on a TX2 is one of its cores) and ``cudaEventDisableTiming`` (the inference
time is measured on the timing events around ``execute``). pycuda releases the GIL in
``Event.synchronize``; cuda-python does in its calls from 12.9.1 on (before, every call held
it), so with an older cuda-python ``synchronize`` polls ``cudaEventQuery`` with a short sleep
(``releases_gil``). ``make gpu-check`` measures both on a real GPU.

**Lifetimes.** Everything is freed by ``free`` while the caller has the context pushed, never
left to the garbage collector of whichever thread drops the last reference. cuda-python's
pinned arrays are plain numpy arrays over ``cudaMallocHost`` memory that the device records by
address: ``free`` of one (or of a view of it) frees the allocation once; a copy or another array
is not freed, and a second ``free`` does nothing (no double free).
"""

import ctypes
import re
import threading
import time
from typing import Any, Dict, Optional, Tuple

import numpy as np

from tx2_inference.errors import BackendUnavailableError

_CUDA_SUCCESS = 0
_probe_lock = threading.Lock()
_probe_result = None  # type: Optional[Tuple[int, str]]


class CudaError(RuntimeError):
    """A CUDA call failed; the message names the call and the CUDA error."""


def probe_gpu(refresh: bool = False) -> Tuple[int, str]:
    """Count usable CUDA GPUs without importing TensorRT or pycuda.

    :returns: (number of devices, reason when there are none, else '').
    """
    global _probe_result
    with _probe_lock:
        if _probe_result is None or refresh:
            _probe_result = _probe()
        return _probe_result


def _probe() -> Tuple[int, str]:
    try:
        libcuda = ctypes.CDLL('libcuda.so.1')
    except OSError as error:
        return 0, 'no CUDA driver (libcuda.so.1 cannot be loaded: {})'.format(error)
    status = libcuda.cuInit(0)
    if status != _CUDA_SUCCESS:
        return 0, 'cuInit failed with CUDA error {} (no usable GPU or driver)'.format(status)
    count = ctypes.c_int(0)
    status = libcuda.cuDeviceGetCount(ctypes.byref(count))
    if status != _CUDA_SUCCESS:
        return 0, 'cuDeviceGetCount failed with CUDA error {}'.format(status)
    if count.value == 0:
        return 0, 'the CUDA driver reports no GPU'
    return count.value, ''


def require_gpu() -> int:
    """Return the number of GPUs, or raise ``BackendUnavailableError`` saying why none."""
    count, reason = probe_gpu()
    if count == 0:
        raise BackendUnavailableError(
            'no usable GPU: {}. Use backend onnxruntime or tflite on this machine'.format(
                reason))
    return count


def gpu_name_and_capability(index: int = 0) -> Tuple[str, str]:
    """Read GPU ``index``'s name and compute capability from the driver (ctypes, as the probe).

    :raises BackendUnavailableError: without a usable GPU.
    """
    require_gpu()
    libcuda = ctypes.CDLL('libcuda.so.1')
    device = ctypes.c_int(0)
    if libcuda.cuDeviceGet(ctypes.byref(device), index) != 0:
        raise BackendUnavailableError('cuDeviceGet({}) failed: no such GPU.'.format(index))
    name = ctypes.create_string_buffer(256)
    libcuda.cuDeviceGetName(name, 256, device)
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75, _MINOR = 76
    libcuda.cuDeviceGetAttribute(ctypes.byref(major), 75, device)
    libcuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, device)
    return name.value.decode('utf-8', 'replace'), '{}.{}'.format(major.value, minor.value)


def memory_info() -> Optional[Tuple[int, int]]:
    """Return the current context's GPU memory (free, total) in bytes, or None.

    The driver's ``cuMemGetInfo_v2`` (ctypes, as the probe): call it with a context current
    (``CudaDevice.push``); without one the driver refuses and this returns None, so it never
    creates a context of its own (one costs hundreds of MB on a Jetson).
    """
    try:
        libcuda = ctypes.CDLL('libcuda.so.1')
    except OSError:
        return None
    free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
    if libcuda.cuMemGetInfo_v2(ctypes.byref(free), ctypes.byref(total)) != _CUDA_SUCCESS:
        return None
    return free.value, total.value


class CudaDevice(object):
    """Streams, events and memory on one GPU; the methods both CUDA libraries provide.

    ``push()`` makes the device's context current in the calling thread and ``pop()`` undoes
    it; call them around any other method, in every thread that uses the device.
    """

    library = ''
    releases_gil = True  # whether ``synchronize`` lets other Python threads run

    def push(self) -> None:
        """Make this device's context current in the calling thread."""

    def pop(self) -> None:
        """Undo the matching ``push``."""

    def stream(self) -> Any:
        """Create a stream."""
        raise NotImplementedError

    def stream_handle(self, stream: Any) -> int:
        """Return the stream's handle as an int, as TensorRT's execute calls take it."""
        raise NotImplementedError

    def event(self, blocking: bool = False) -> Any:
        """Create an event: with timing, or ``blocking`` (blocking sync, no timing)."""
        raise NotImplementedError

    def pagelocked_empty(self, shape: Tuple[int, ...], dtype: Any) -> np.ndarray:
        """Allocate a pinned host array."""
        raise NotImplementedError

    def mem_alloc(self, nbytes: int) -> Any:
        """Allocate device memory; ``int()`` of the result is its address."""
        raise NotImplementedError

    def memcpy_htod_async(self, device: Any, host: np.ndarray, stream: Any) -> None:
        """Enqueue a copy of ``host`` to ``device`` on ``stream``."""
        raise NotImplementedError

    def memcpy_dtoh_async(self, host: np.ndarray, device: Any, stream: Any) -> None:
        """Enqueue a copy of ``device`` into ``host`` on ``stream``."""
        raise NotImplementedError

    def record(self, event: Any, stream: Any) -> None:
        """Record ``event`` on ``stream``."""
        raise NotImplementedError

    def query(self, event: Any) -> bool:
        """Return True when the work before ``event`` has completed."""
        raise NotImplementedError

    def synchronize(self, event: Any) -> None:
        """Block until ``event`` has completed."""
        raise NotImplementedError

    def synchronize_stream(self, stream: Any) -> None:
        """Block until all work enqueued on ``stream`` has completed."""
        raise NotImplementedError

    def elapsed_ms(self, start: Any, end: Any) -> float:
        """Return the time between two completed events, in milliseconds."""
        raise NotImplementedError

    def free(self, *objects: Any) -> None:
        """Free streams, events, pinned or device memory made by this device."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the context."""


def open_cuda(device: int = 0, library: Optional[str] = None) -> CudaDevice:
    """Open GPU ``device`` through pycuda, else cuda-python.

    :param library: ``pycuda`` or ``cuda-python`` to force one; None picks what is installed.
    :raises BackendUnavailableError: no GPU, or neither library is installed.
    """
    require_gpu()
    errors = []
    if library in (None, 'pycuda'):
        try:
            return _PycudaDevice(device)
        except ImportError as error:
            errors.append('pycuda: {}'.format(error))
    if library in (None, 'cuda-python'):
        try:
            return _CudaPythonDevice(device)
        except ImportError as error:
            errors.append('cuda-python: {}'.format(error))
    raise BackendUnavailableError(
        'no CUDA Python library ({}): install pycuda (JetPack) or cuda-python'.format(
            '; '.join(errors) or 'unknown library {!r}'.format(library)))


def version_tuple(text: Any) -> Tuple[int, ...]:
    """Return ``(12, 9, 1)`` for ``'12.9.1'`` (leading numbers only; ``()`` if none)."""
    match = re.match(r'\s*(\d+(?:\.\d+)*)', str(text or ''))
    return tuple(int(p) for p in match.group(1).split('.')) if match else ()


def _error_text(value: Any) -> str:
    """Return a CUDA error name as text (cuda-python gives bytes)."""
    if isinstance(value, tuple):
        value = value[-1]
    if isinstance(value, bytes):
        return value.decode('ascii', 'replace')
    return str(value)


class _PycudaDevice(CudaDevice):
    """pycuda (JetPack 4.6's CUDA 10.2 and later): the device's primary context, pushed."""

    library = 'pycuda'

    def __init__(self, index: int) -> None:
        import pycuda
        import pycuda.driver as cuda
        self._cuda = cuda
        self._context = None  # type: Any
        self._call('cuInit', cuda.init)
        device = self._call('cuDeviceGet', cuda.Device, index)
        if not hasattr(device, 'retain_primary_context'):  # pycuda before 2020.1
            raise BackendUnavailableError(
                'pycuda {} has no Device.retain_primary_context (added in pycuda 2020.1; '
                'JetPack 4 recipes often pin 2019.1): install a newer one '
                "(pip3 install 'pycuda>=2020.1') or uninstall pycuda to use cuda-python.".format(
                    getattr(pycuda, 'VERSION_TEXT', '?')))
        # The primary context is the one the CUDA runtime, hence TensorRT, uses too.
        self._context = self._call('retain_primary_context', device.retain_primary_context)

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self._cuda_error() as error:
            raise CudaError('CUDA {} failed: {}'.format(what, error)) from error

    def _cuda_error(self) -> Any:
        return getattr(self._cuda, 'Error', Exception)

    def push(self) -> None:
        """Push the primary context onto this thread's stack (pycuda ``Context.push``)."""
        self._call('context push', self._context.push)

    def pop(self) -> None:
        """Pop it again (pycuda ``Context.pop``)."""
        self._call('context pop', self._context.pop)

    def stream(self) -> Any:
        """Create a ``pycuda.driver.Stream``."""
        return self._call('stream create', self._cuda.Stream)

    def stream_handle(self, stream: Any) -> int:
        """Return ``stream.handle``."""
        return int(stream.handle)

    def event(self, blocking: bool = False) -> Any:
        """Create a ``pycuda.driver.Event`` (``BLOCKING_SYNC | DISABLE_TIMING`` if blocking)."""
        flags = 0
        if blocking:
            flags = self._cuda.event_flags.BLOCKING_SYNC | self._cuda.event_flags.DISABLE_TIMING
        return self._call('event create', self._cuda.Event, flags)

    def pagelocked_empty(self, shape: Tuple[int, ...], dtype: Any) -> np.ndarray:
        """Allocate with ``pycuda.driver.pagelocked_empty``."""
        return self._call('pinned host alloc', self._cuda.pagelocked_empty, shape, dtype)

    def mem_alloc(self, nbytes: int) -> Any:
        """Allocate with ``pycuda.driver.mem_alloc``."""
        return self._call('device alloc ({} bytes)'.format(nbytes), self._cuda.mem_alloc,
                          max(int(nbytes), 1))

    def memcpy_htod_async(self, device: Any, host: np.ndarray, stream: Any) -> None:
        """Enqueue ``memcpy_htod_async(dest, src, stream)``."""
        self._call('memcpy_htod_async', self._cuda.memcpy_htod_async, device, host, stream)

    def memcpy_dtoh_async(self, host: np.ndarray, device: Any, stream: Any) -> None:
        """Enqueue ``memcpy_dtoh_async(dest, src, stream)``."""
        self._call('memcpy_dtoh_async', self._cuda.memcpy_dtoh_async, host, device, stream)

    def record(self, event: Any, stream: Any) -> None:
        """Call ``Event.record(stream)``."""
        self._call('event record', event.record, stream)

    def query(self, event: Any) -> bool:
        """Call ``Event.query()``."""
        return bool(self._call('event query', event.query))

    def synchronize(self, event: Any) -> None:
        """Call ``Event.synchronize()`` (pycuda releases the GIL while it waits)."""
        self._call('event synchronize', event.synchronize)

    def synchronize_stream(self, stream: Any) -> None:
        """Call ``Stream.synchronize()``."""
        self._call('stream synchronize', stream.synchronize)

    def elapsed_ms(self, start: Any, end: Any) -> float:
        """Call ``end.time_since(start)``."""
        return float(self._call('event elapsed time', end.time_since, start))

    def free(self, *objects: Any) -> None:
        """Free device and pinned allocations; streams and events go with their last ref.

        Only an allocation itself or the array pycuda returned for it is freed, never a view.
        """
        for obj in objects:
            if isinstance(obj, np.ndarray):
                if hasattr(obj.base, 'free'):
                    self._call('pinned host free', obj.base.free)
            elif hasattr(obj, 'free'):
                self._call('device free', obj.free)

    def close(self) -> None:
        """Release the primary context (pycuda ``Context.detach``)."""
        if self._context is not None:
            self._call('context detach', self._context.detach)
            self._context = None


def cuda_python_version() -> Tuple[int, ...]:
    """Return the installed cuda-python (``cuda.bindings``, else ``cuda``) version, or ()."""
    for name in ('cuda.bindings', 'cuda'):
        try:
            module = __import__(name, fromlist=['__version__'])
        except ImportError:
            continue
        version = version_tuple(getattr(module, '__version__', ''))
        if version:
            return version
    return ()


class _CudaPythonDevice(CudaDevice):
    """cuda-python's runtime bindings: every call returns (status, ...), each one checked."""

    library = 'cuda-python'
    GIL_RELEASED_FROM = (12, 9, 1)
    POLL_S = 0.0005

    def __init__(self, index: int) -> None:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart  # cuda-python before 12.6
        self._rt = cudart
        self._index = index
        self._local = threading.local()
        self._pinned: Dict[int, int] = {}
        self._lock = threading.Lock()
        self.releases_gil = cuda_python_version() >= self.GIL_RELEASED_FROM
        self.push()

    def _check(self, what: str, result: Any) -> Any:
        if isinstance(result, tuple):
            status, values = result[0], result[1:]
        else:
            status, values = result, ()
        if status != self._rt.cudaError_t.cudaSuccess:
            raise CudaError('CUDA {} failed: {} ({})'.format(
                what, _error_text(self._rt.cudaGetErrorName(status)), int(status)))
        if len(values) == 1:
            return values[0]
        return values or None

    def push(self) -> None:
        """Select the device in this thread (``cudaSetDevice``) the first time it is used."""
        if getattr(self._local, 'device', None) != self._index:
            self._check('cudaSetDevice', self._rt.cudaSetDevice(self._index))
            self._local.device = self._index

    def stream(self) -> Any:
        """Create a stream with ``cudaStreamCreate``."""
        return self._check('cudaStreamCreate', self._rt.cudaStreamCreate())

    def stream_handle(self, stream: Any) -> int:
        """Return the stream's handle: ``int(stream)``, the ``cudaStream_t`` value itself.

        Never ``stream.getPtr()``: that is the address of the Python wrapper's storage of the
        handle (cuda-bindings 13.0.3 ``driver.pyx``, ``CUstream``: ``__int__`` returns
        ``_pvt_ptr[0]``, ``getPtr`` returns ``_pvt_ptr``), which TensorRT would take for a
        stream. NVIDIA's ``samples/python/common_runtime.py`` hands TensorRT the stream object,
        which pybind11 turns into this same integer through ``__index__``.
        """
        return int(stream)

    def event(self, blocking: bool = False) -> Any:
        """Create an event (``cudaEventBlockingSync | cudaEventDisableTiming`` if blocking)."""
        rt = self._rt
        flags = rt.cudaEventDefault
        if blocking:
            flags = rt.cudaEventBlockingSync | rt.cudaEventDisableTiming
        return self._check('cudaEventCreateWithFlags', rt.cudaEventCreateWithFlags(flags))

    def pagelocked_empty(self, shape: Tuple[int, ...], dtype: Any) -> np.ndarray:
        """Allocate with ``cudaMallocHost``; a numpy array over it, recorded by address."""
        dtype = np.dtype(dtype)
        size = int(np.prod(shape)) * dtype.itemsize
        nbytes = max(size, 1)
        pointer = int(self._check('cudaMallocHost', self._rt.cudaMallocHost(nbytes)))
        raw = (ctypes.c_byte * nbytes).from_address(pointer)
        with self._lock:
            self._pinned[pointer] = nbytes
        return np.frombuffer(raw, np.uint8)[:size].view(dtype).reshape(shape)

    def mem_alloc(self, nbytes: int) -> Any:
        """Allocate with ``cudaMalloc``; returns the address."""
        return int(self._check('cudaMalloc ({} bytes)'.format(nbytes),
                               self._rt.cudaMalloc(max(int(nbytes), 1))))

    def memcpy_htod_async(self, device: Any, host: np.ndarray, stream: Any) -> None:
        """Enqueue ``cudaMemcpyAsync`` host to device."""
        self._check('cudaMemcpyAsync host->device', self._rt.cudaMemcpyAsync(
            int(device), host.ctypes.data, host.nbytes,
            self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream))

    def memcpy_dtoh_async(self, host: np.ndarray, device: Any, stream: Any) -> None:
        """Enqueue ``cudaMemcpyAsync`` device to host."""
        self._check('cudaMemcpyAsync device->host', self._rt.cudaMemcpyAsync(
            host.ctypes.data, int(device), host.nbytes,
            self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream))

    def record(self, event: Any, stream: Any) -> None:
        """Call ``cudaEventRecord``."""
        self._check('cudaEventRecord', self._rt.cudaEventRecord(event, stream))

    def query(self, event: Any) -> bool:
        """Call ``cudaEventQuery``: success is done, ``cudaErrorNotReady`` is not yet."""
        status = self._rt.cudaEventQuery(event)
        status = status[0] if isinstance(status, tuple) else status
        if status == self._rt.cudaError_t.cudaErrorNotReady:
            return False
        self._check('cudaEventQuery', status)
        return True

    def synchronize(self, event: Any) -> None:
        """``cudaEventSynchronize``; with a cuda-python that holds the GIL, poll and sleep."""
        if self.releases_gil:
            self._check('cudaEventSynchronize', self._rt.cudaEventSynchronize(event))
            return
        while not self.query(event):
            time.sleep(self.POLL_S)

    def synchronize_stream(self, stream: Any) -> None:
        """``cudaStreamSynchronize``; with a cuda-python that holds the GIL, poll and sleep."""
        if self.releases_gil:
            self._check('cudaStreamSynchronize', self._rt.cudaStreamSynchronize(stream))
            return
        while True:
            status = self._rt.cudaStreamQuery(stream)
            status = status[0] if isinstance(status, tuple) else status
            if status != self._rt.cudaError_t.cudaErrorNotReady:
                self._check('cudaStreamQuery', status)
                return
            time.sleep(self.POLL_S)

    def elapsed_ms(self, start: Any, end: Any) -> float:
        """Call ``cudaEventElapsedTime``."""
        return float(self._check('cudaEventElapsedTime',
                                 self._rt.cudaEventElapsedTime(start, end)))

    def _pinned_pointer(self, array: np.ndarray) -> Optional[int]:
        """Return the recorded allocation ``array`` views (its base chain's root), if any."""
        root = array
        while isinstance(root, np.ndarray) and root.base is not None:
            root = root.base
        if isinstance(root, ctypes.Array):
            return ctypes.addressof(root)
        return None

    def free(self, *objects: Any) -> None:
        """Free pinned arrays (once), device addresses, streams and events."""
        rt = self._rt
        for obj in objects:
            if isinstance(obj, np.ndarray):
                pointer = self._pinned_pointer(obj)
                with self._lock:
                    owned = self._pinned.pop(pointer, None) is not None
                if owned:
                    self._check('cudaFreeHost', rt.cudaFreeHost(pointer))
            elif isinstance(obj, int):
                self._check('cudaFree', rt.cudaFree(obj))
            elif isinstance(obj, rt.cudaStream_t):
                self._check('cudaStreamDestroy', rt.cudaStreamDestroy(obj))
            elif isinstance(obj, rt.cudaEvent_t):
                self._check('cudaEventDestroy', rt.cudaEventDestroy(obj))
