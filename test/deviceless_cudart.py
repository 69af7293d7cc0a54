"""The real cuda-python runtime bindings, with only the calls that need a GPU stood in.

``cuda-bindings`` (13.0.3, requirements/test.txt) installs and imports without a GPU or driver:
its types (``cudaStream_t``, ``cudaEvent_t``, ``cudaError_t``, the flags) are the real ones
here. Its calls need a driver; each stood-in call below first makes the *real* call with the
same arguments, so the bindings convert and check every argument as on a GPU (a wrong type is
their ``TypeError``), and without a driver they answer ``cudaErrorInsufficientDriver`` (anything
else fails the test). Only then is the device's answer made up, of the real types: a stream is
``cudaStream_t(init_value=<handle>)``, pinned and device memory are host buffers at real
addresses (so copies really move bytes), and every call is recorded with its arguments.
"""

import ctypes
import itertools
import threading

from cuda.bindings import runtime as real

NO_DRIVER = real.cudaError_t.cudaErrorInsufficientDriver
SUCCESS = real.cudaError_t.cudaSuccess


class DevicelessCudart(object):
    """Stands in for ``cuda.bindings.runtime`` as a GPU machine would answer."""

    STOOD_IN = ('cudaSetDevice', 'cudaStreamCreate', 'cudaEventCreateWithFlags',
                'cudaMallocHost', 'cudaMalloc', 'cudaFreeHost', 'cudaFree', 'cudaMemcpyAsync',
                'cudaEventRecord', 'cudaEventQuery', 'cudaEventSynchronize',
                'cudaStreamSynchronize', 'cudaStreamQuery', 'cudaEventElapsedTime',
                'cudaStreamDestroy', 'cudaEventDestroy')

    def __init__(self):
        """Start with nothing made; ``fail`` maps a call's name to the error it returns."""
        self.calls = []
        self.fail = {}
        self.not_ready = 0  # how many cudaEventQuery calls answer cudaErrorNotReady first
        self.buffers = {}  # address -> ctypes buffer (pinned and device memory)
        self.streams = []  # the cudaStream_t objects handed out
        self._handles = itertools.count(0x5000, 0x10)
        self._lock = threading.Lock()

    def __getattr__(self, name):
        """Everything else (types, enums, flags, cudaGetErrorName) is the real module's."""
        return getattr(real, name)

    def _real(self, name, *args):
        """Make the real call: it checks the arguments; without a driver it must refuse."""
        status = getattr(real, name)(*args)
        status = status[0] if isinstance(status, tuple) else status
        assert status == NO_DRIVER, (name, status)
        with self._lock:
            self.calls.append((name,) + args)
        return self.fail.get(name)

    def _memory(self, nbytes):
        buffer = ctypes.create_string_buffer(int(nbytes))
        self.buffers[ctypes.addressof(buffer)] = buffer
        return ctypes.addressof(buffer)

    def cudaSetDevice(self, device):  # noqa: N802, D102 (cuda-python's names)
        return (self._real('cudaSetDevice', device) or SUCCESS,)

    def cudaStreamCreate(self):  # noqa: N802, D102
        failure = self._real('cudaStreamCreate')
        if failure:
            return (failure, None)
        stream = real.cudaStream_t(init_value=next(self._handles))
        self.streams.append(stream)
        return (SUCCESS, stream)

    def cudaEventCreateWithFlags(self, flags):  # noqa: N802, D102
        failure = self._real('cudaEventCreateWithFlags', flags)
        return (failure, None) if failure else (
            SUCCESS, real.cudaEvent_t(init_value=next(self._handles)))

    def cudaMallocHost(self, nbytes):  # noqa: N802, D102
        failure = self._real('cudaMallocHost', nbytes)
        return (failure, None) if failure else (SUCCESS, self._memory(nbytes))

    def cudaMalloc(self, nbytes):  # noqa: N802, D102
        failure = self._real('cudaMalloc', nbytes)
        return (failure, None) if failure else (SUCCESS, self._memory(nbytes))

    def cudaFreeHost(self, pointer):  # noqa: N802, D102
        failure = self._real('cudaFreeHost', pointer)
        if not failure:
            assert self.buffers.pop(int(pointer), None) is not None, 'double or foreign free'
        return (failure or SUCCESS,)

    def cudaFree(self, pointer):  # noqa: N802, D102
        failure = self._real('cudaFree', pointer)
        if not failure:
            assert self.buffers.pop(int(pointer), None) is not None, 'double or foreign free'
        return (failure or SUCCESS,)

    def cudaMemcpyAsync(self, dst, src, count, kind, stream):  # noqa: N802, D102
        failure = self._real('cudaMemcpyAsync', dst, src, count, kind, stream)
        if not failure:
            ctypes.memmove(int(dst), int(src), int(count))
        return (failure or SUCCESS,)

    def cudaEventRecord(self, event, stream):  # noqa: N802, D102
        return (self._real('cudaEventRecord', event, stream) or SUCCESS,)

    def cudaEventQuery(self, event):  # noqa: N802, D102
        failure = self._real('cudaEventQuery', event)
        if failure:
            return (failure,)
        with self._lock:
            if self.not_ready > 0:
                self.not_ready -= 1
                return (real.cudaError_t.cudaErrorNotReady,)
        return (SUCCESS,)

    def cudaEventSynchronize(self, event):  # noqa: N802, D102
        return (self._real('cudaEventSynchronize', event) or SUCCESS,)

    def cudaStreamSynchronize(self, stream):  # noqa: N802, D102
        return (self._real('cudaStreamSynchronize', stream) or SUCCESS,)

    def cudaStreamQuery(self, stream):  # noqa: N802, D102
        return (self._real('cudaStreamQuery', stream) or SUCCESS,)

    def cudaEventElapsedTime(self, start, end):  # noqa: N802, D102
        failure = self._real('cudaEventElapsedTime', start, end)
        return (failure, None) if failure else (SUCCESS, 1.5)

    def cudaStreamDestroy(self, stream):  # noqa: N802, D102
        return (self._real('cudaStreamDestroy', stream) or SUCCESS,)

    def cudaEventDestroy(self, event):  # noqa: N802, D102
        return (self._real('cudaEventDestroy', event) or SUCCESS,)

    def made(self, name):
        """Return the recorded calls of one name."""
        return [c for c in self.calls if c[0] == name]


def install(monkeypatch):
    """Make ``from cuda.bindings import runtime`` give a ``DevicelessCudart``; return it."""
    import cuda.bindings
    cudart = DevicelessCudart()
    monkeypatch.setattr(cuda.bindings, 'runtime', cudart)
    return cudart
