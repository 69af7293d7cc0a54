"""A stand-in for the TensorRT Python module, for `make gpu-check` on a GPU without TensorRT.

TensorRT cannot be installed on the lent GPU machines, so this module replaces it, and only it:
the backend's CUDA code (cuda.py), slots, streams, pinned and device buffers, events, context
handling and the executor on top are the real ones. Its engine has one input ``x`` of shape
``(B, N)`` (``B`` dynamic, one optimisation profile per executor slot) and one output ``y`` of
the same shape. ``execute_async_v3`` (tensors API) / ``execute_async_v2`` (bindings API)
launch a real CUDA kernel (CuPy) on the stream the backend passes, reading the bound input
address and writing the bound output address: ``y = 2 x + 1``, after spinning the whole GPU for
``base_ms + item_ms * B`` (on ``%globaltimer``), so it stands for an engine of that length that
fills the GPU. It is not TensorRT: what it measures is the backend around TensorRT. The
engine counts its launches by batch size (``launches``), so a test sees the batch the backend
set: a partial batch runs at its real size, as TensorRT would run it.

``static=True`` makes a static-batch engine instead: ``x`` and ``y`` of shape
``(max_batch, N)``, one profile that no context selects, every context at that batch.

The stand-in's methods take the real TensorRT argument names (11.4 lean bindings; release/8.2
``pyCore.cpp`` for the bindings API) and raise where the real bindings raise:
``set_optimization_profile_async`` raises ``RuntimeError("Error in set optimization profile
async.")`` on failure, as every TensorRT from 8.0 to 11 does (a CPU test checks both against
the real signatures: test_trt_api.py).
"""

import collections
import json
import threading
import types

import numpy as np

KERNEL = r"""
extern "C" __global__ void standin(unsigned long long xp, unsigned long long yp, long long n,
                                   long long spin_ns) {
    const float* x = (const float*)xp;
    float* y = (float*)yp;
    unsigned long long t0, t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    do {
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    } while ((long long)(t - t0) < spin_ns);
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        y[i] = 2.0f * x[i] + 1.0f;
    }
}
"""

_kernel = None
_grid = None


def kernel():
    """Return the compiled kernel and a grid that fills every multiprocessor."""
    global _kernel, _grid
    if _kernel is None:
        import cupy
        _kernel = cupy.RawKernel(KERNEL, 'standin')
        attrs = cupy.cuda.Device().attributes
        _grid = attrs['MultiProcessorCount'] * max(attrs['MaxThreadsPerMultiProcessor'] // 256,
                                                   1)
    return _kernel, _grid


def launch(x_address, y_address, count, spin_ms, stream_handle):
    """Launch the kernel on the stream with handle ``stream_handle``; return at once."""
    import cupy
    fn, grid = kernel()
    with cupy.cuda.ExternalStream(int(stream_handle)):
        fn((grid,), (256,), (np.uint64(int(x_address)), np.uint64(int(y_address)), np.int64(count),
                             np.int64(int(spin_ms * 1e6))))


def engine_file(path, items, max_batch=4, profiles=4, base_ms=1.0, item_ms=1.0,
                generation='tensors', static=False):
    """Write the 'engine' the stand-in runtime deserialises."""
    with open(path, 'w') as f:
        json.dump({'items': items, 'max_batch': max_batch, 'profiles': 1 if static else profiles,
                   'base_ms': base_ms, 'item_ms': item_ms, 'generation': generation,
                   'static': bool(static)}, f)
    return path


class _Enum(object):
    def __init__(self, **values):
        self.__dict__.update(values)
        self.__members__ = dict(values)


DataType = _Enum(FLOAT='FLOAT')
TensorIOMode = _Enum(INPUT='INPUT', OUTPUT='OUTPUT')
TensorLocation = _Enum(DEVICE='DEVICE', HOST='HOST')


def nptype(dtype):
    """Return the numpy type of a stand-in data type."""
    assert dtype == DataType.FLOAT
    return np.float32


class Logger(object):
    """``trt.Logger``."""

    WARNING = 2

    def __init__(self, severity):
        """Keep the severity."""
        self.severity = severity


class _Engine(object):
    """What both API generations share."""

    def __init__(self, spec):
        self.spec = spec
        self.num_optimization_profiles = spec['profiles']
        self.names = ['x', 'y']
        self.range = ((1, spec['items']), (1, spec['items']), (spec['max_batch'], spec['items']))
        self.contexts = 0
        self.static = bool(spec.get('static'))
        self.has_implicit_batch_dimension = False  # 8.x and 10.x have the property
        self.launches = collections.Counter()  # batch size -> launches
        self._lock = threading.Lock()

    def count_launch(self, batch):
        with self._lock:
            self.launches[batch] += 1

    def spin_ms(self, batch):
        return self.spec['base_ms'] + self.spec['item_ms'] * batch

    def declared_shape(self):
        return (self.spec['max_batch'] if self.static else -1, self.spec['items'])

    def create_execution_context(self):
        self.contexts += 1
        return self.context_class(self)


class _TensorsEngine(_Engine):
    """TensorRT 8.5+: named tensors."""

    num_io_tensors = 2

    def get_tensor_name(self, index):
        return self.names[index]

    def get_tensor_mode(self, name):
        return TensorIOMode.INPUT if name == 'x' else TensorIOMode.OUTPUT

    def get_tensor_shape(self, name):
        return self.declared_shape()

    def get_tensor_dtype(self, name):
        return DataType.FLOAT

    def get_tensor_location(self, name):
        return TensorLocation.DEVICE

    def get_tensor_profile_shape(self, name, profile_index):
        assert 0 <= profile_index < self.num_optimization_profiles
        return self.range


class _BindingsEngine(_Engine):
    """TensorRT <= 8.6: bindings, profile k's after profile k-1's, '<name> [profile k]'."""

    def __init__(self, spec):
        super(_BindingsEngine, self).__init__(spec)
        self.num_bindings = 2 * self.num_optimization_profiles

    def get_binding_name(self, index):
        profile, index = divmod(index, 2)
        name = self.names[index]
        return name if profile == 0 else '{} [profile {}]'.format(name, profile)

    def binding_is_input(self, index):
        return index % 2 == 0

    def get_binding_shape(self, index):
        return self.declared_shape()

    def get_binding_dtype(self, index):
        return DataType.FLOAT

    def get_location(self, index):
        return TensorLocation.DEVICE

    def get_profile_shape(self, profile_index, binding):
        assert binding // 2 == profile_index
        return self.range


class _Context(object):
    def __init__(self, engine):
        self.engine = engine
        self.profile = 0
        self.batch = engine.spec['max_batch'] if engine.static else None

    def set_optimization_profile_async(self, profile_index, stream_handle):
        if self.engine.static or not (
                0 <= profile_index < self.engine.num_optimization_profiles):
            raise RuntimeError('Error in set optimization profile async.')  # as pyCore.cpp
        self.profile = profile_index
        return True

    def _set(self, shape):
        if self.engine.static:  # a static engine takes its own shape only
            return tuple(shape) == self.engine.declared_shape()
        (low, _), _, (high, _) = self.engine.range
        if not low <= shape[0] <= high or shape[1] != self.engine.spec['items']:
            return False
        self.batch = int(shape[0])
        return True

    def _launch(self, x, y, stream_handle):
        if not (x and y and self.batch):
            return False
        launch(x, y, self.batch * self.engine.spec['items'], self.engine.spin_ms(self.batch),
               stream_handle)
        self.engine.count_launch(self.batch)
        return True


class TensorsContext(_Context):
    """``IExecutionContext`` of the tensors API (8.5+)."""

    def __init__(self, engine):
        """Start with no addresses bound."""
        super(TensorsContext, self).__init__(engine)
        self.addresses = {}

    def set_input_shape(self, name, shape):
        """Set the batch of input ``x``."""
        return self._set(shape)

    def get_tensor_shape(self, name):
        """Return the concrete shape."""
        return (self.batch, self.engine.spec['items'])

    def set_tensor_address(self, name, memory):
        """Bind a device address."""
        self.addresses[name] = int(memory)
        return True

    def execute_async_v3(self, stream_handle):
        """Launch the kernel on the stream; True when enqueued."""
        return self._launch(self.addresses.get('x'), self.addresses.get('y'), stream_handle)


class BindingsContext(_Context):
    """``IExecutionContext`` of the bindings API (<= 8.6)."""

    def set_binding_shape(self, binding, shape):
        """Set the batch of input ``x`` of the selected profile."""
        return binding // 2 == self.profile and self._set(shape)

    def get_binding_shape(self, binding):
        """Return the concrete shape."""
        return (self.batch, self.engine.spec['items'])

    def execute_async_v2(self, bindings, stream_handle):
        """Launch the kernel with the selected profile's bindings."""
        base = 2 * self.profile
        return self._launch(bindings[base], bindings[base + 1], stream_handle)


_TensorsEngine.context_class = TensorsContext
_BindingsEngine.context_class = BindingsContext


class Runtime(object):
    """``trt.Runtime``: 'deserialises' the JSON ``engine_file`` writes."""

    def __init__(self, logger):
        """Keep the logger."""
        self.logger = logger

    def deserialize_cuda_engine(self, data):
        """Return the engine the JSON describes."""
        spec = json.loads(bytes(data).decode('utf-8'))
        engine = _TensorsEngine if spec['generation'] == 'tensors' else _BindingsEngine
        return engine(spec)


def module(generation='tensors'):
    """Return a module object standing for TensorRT with the given runtime API generation."""
    trt = types.ModuleType('tensorrt_standin')
    trt.__version__ = '0.0-standin-' + generation
    trt.DataType, trt.TensorIOMode, trt.TensorLocation = DataType, TensorIOMode, TensorLocation
    trt.nptype, trt.Logger, trt.Runtime = nptype, Logger, Runtime
    trt.IExecutionContext = TensorsContext if generation == 'tensors' else BindingsContext
    return trt
