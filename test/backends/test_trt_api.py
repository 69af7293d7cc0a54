"""The choice between TensorRT's API generations, against recorded API surfaces; GPU checks.

TensorRT cannot be installed or run here, so the version differences are tested against the
attribute names each version's Python classes have, recorded below from NVIDIA's Python API
reference for that version (docs.nvidia.com/deeplearning/tensorrt/archives/tensorrt-823,
-861, 10.x, 11.x ``infer/Core/{Engine,ExecutionContext,BuilderConfig}.html`` and the 8.x->10.x
and 10.x->11.x migration guides' "Removed Python APIs" tables). The surfaces are partial: the
attributes a runtime or builder could plausibly touch, not every member.
"""

import ast
import inspect
import sys

import numpy as np
import pytest

from tx2_inference.backends.tensorrt import api as trt_api
from tx2_inference.backends.tensorrt.cuda import probe_gpu
from tx2_inference.errors import BackendUnavailableError, ModelError

_ENGINE_COMMON = {'num_layers', 'max_workspace_size', 'refittable', 'name',
                  'num_optimization_profiles', 'engine_capability', 'error_recorder',
                  'create_execution_context', 'serialize', 'create_engine_inspector',
                  '__getitem__'}
_CONTEXT_COMMON = {'debug_sync', 'profiler', 'engine', 'name', 'error_recorder',
                   'set_optimization_profile_async', 'execute_v2', 'report_to_profiler',
                   'enqueue_emits_profile'}
_ENGINE_BINDINGS = {'num_bindings', 'max_batch_size', 'has_implicit_batch_dimension',
                    'get_binding_index', 'get_binding_name', 'binding_is_input',
                    'get_binding_shape', 'get_binding_dtype', 'get_binding_format',
                    'get_location', 'get_profile_shape', 'get_profile_shape_input',
                    'is_shape_binding', 'is_execution_binding', 'device_memory_size',
                    'create_execution_context_without_device_memory'}
_ENGINE_TENSORS = {'num_io_tensors', 'get_tensor_name', 'get_tensor_mode',
                   'get_tensor_shape', 'get_tensor_dtype', 'get_tensor_location',
                   'get_tensor_format', 'get_tensor_profile_shape', 'is_shape_inference_io'}
_CONTEXT_BINDINGS = {'execute', 'execute_async', 'execute_async_v2', 'set_binding_shape',
                     'get_binding_shape', 'all_binding_shapes_specified',
                     'all_shape_inputs_specified', 'active_optimization_profile',
                     'get_strides', 'set_shape_input', 'get_shape', 'device_memory'}
_CONTEXT_TENSORS = {'execute_async_v3', 'set_tensor_address', 'get_tensor_address',
                    'set_input_shape', 'get_tensor_shape', 'get_tensor_strides',
                    'infer_shapes', 'set_input_consumed_event', 'get_input_consumed_event',
                    'set_output_allocator', 'get_output_allocator', 'temporary_allocator',
                    'persistent_cache_limit', 'nvtx_verbosity', 'set_aux_streams'}
_CONFIG_COMMON = {'flags', 'set_flag', 'clear_flag', 'get_flag', 'add_optimization_profile',
                  'default_device_type', 'DLA_core', 'profiling_verbosity',
                  'create_timing_cache', 'set_timing_cache', 'get_timing_cache',
                  'set_tactic_sources', 'get_tactic_sources', 'avg_timing_iterations'}
_FLAGS_82 = {'FP16', 'INT8', 'DEBUG', 'GPU_FALLBACK', 'STRICT_TYPES', 'REFIT',
             'DISABLE_TIMING_CACHE', 'TF32', 'SPARSE_WEIGHTS', 'SAFETY_SCOPE',
             'OBEY_PRECISION_CONSTRAINTS', 'PREFER_PRECISION_CONSTRAINTS', 'DIRECT_IO',
             'REJECT_EMPTY_ALGORITHMS'}
_CALIBRATORS = {'IInt8EntropyCalibrator2', 'IInt8MinMaxCalibrator', 'IInt8EntropyCalibrator',
                'IInt8LegacyCalibrator'}
_MODULE_COMMON = {'Logger', 'Runtime', 'Builder', 'nptype', 'volume', 'init_libnvinfer_plugins',
                  'TensorIOMode', 'BuilderFlag', 'OnnxParser'}

# version -> class -> attribute names.
SURFACES = {
    '8.2': {  # JetPack 4.6, the last TensorRT for Tegra X2: bindings only.
        'ICudaEngine': _ENGINE_COMMON | _ENGINE_BINDINGS,
        'IExecutionContext': _CONTEXT_COMMON | _CONTEXT_BINDINGS,
        'IBuilderConfig': _CONFIG_COMMON | {'max_workspace_size', 'int8_calibrator',
                                            'set_calibration_profile'},
        'BuilderFlag': _FLAGS_82,
        'Builder': {'build_serialized_network', 'build_engine', 'create_network',
                    'create_builder_config', 'create_optimization_profile',
                    'platform_has_fast_fp16', 'platform_has_fast_int8', 'max_batch_size'},
        'module': (_MODULE_COMMON - {'TensorIOMode'}) | _CALIBRATORS,
    },
    '8.6': {  # both generations; bindings deprecated.
        'ICudaEngine': _ENGINE_COMMON | _ENGINE_BINDINGS | _ENGINE_TENSORS
        | {'hardware_compatibility_level', 'num_aux_streams'},
        'IExecutionContext': _CONTEXT_COMMON | _CONTEXT_BINDINGS | _CONTEXT_TENSORS,
        'IBuilderConfig': _CONFIG_COMMON | {'max_workspace_size', 'set_memory_pool_limit',
                                            'get_memory_pool_limit', 'int8_calibrator',
                                            'builder_optimization_level',
                                            'hardware_compatibility_level'},
        'BuilderFlag': _FLAGS_82 | {'FP8', 'VERSION_COMPATIBLE', 'EXCLUDE_LEAN_RUNTIME'},
        'Builder': {'build_serialized_network', 'build_engine', 'create_network',
                    'create_builder_config', 'create_optimization_profile',
                    'platform_has_fast_fp16', 'platform_has_fast_int8'},
        'module': _MODULE_COMMON | _CALIBRATORS,
    },
    '10.x': {  # bindings API removed (8.x -> 10.x migration guide).
        'ICudaEngine': _ENGINE_COMMON | _ENGINE_TENSORS
        | {'device_memory_size', 'device_memory_size_v2', 'streamable_weights_size',
           'weight_streaming_budget', 'is_debug_tensor', 'hardware_compatibility_level'},
        'IExecutionContext': _CONTEXT_COMMON | _CONTEXT_TENSORS
        | {'update_device_memory_size_for_shapes', 'set_debug_listener',
           'all_input_dimensions_specified', 'all_shape_inputs_specified', 'device_memory'},
        'IBuilderConfig': _CONFIG_COMMON | {'set_memory_pool_limit', 'get_memory_pool_limit',
                                            'int8_calibrator', 'builder_optimization_level'},
        'BuilderFlag': (_FLAGS_82 - {'STRICT_TYPES'}) | {'FP8', 'BF16', 'INT4',
                                                          'VERSION_COMPATIBLE', 'STRIP_PLAN'},
        'Builder': {'build_serialized_network', 'create_network', 'create_builder_config',
                    'create_optimization_profile', 'platform_has_fast_fp16',
                    'platform_has_fast_int8'},
        'module': _MODULE_COMMON | _CALIBRATORS,
    },
    '11.x': {  # strongly typed only: precision flags and calibration removed (10 -> 11 guide).
        'ICudaEngine': _ENGINE_COMMON | _ENGINE_TENSORS
        | {'device_memory_size_v2', 'streamable_weights_size', 'weight_streaming_budget',
           'is_debug_tensor', 'hardware_compatibility_level'},
        'IExecutionContext': _CONTEXT_COMMON | _CONTEXT_TENSORS
        | {'update_device_memory_size_for_shapes', 'set_debug_listener',
           'all_input_dimensions_specified', 'all_shape_inputs_specified'},
        'IBuilderConfig': _CONFIG_COMMON | {'set_memory_pool_limit', 'get_memory_pool_limit',
                                            'builder_optimization_level'},
        'BuilderFlag': {'DEBUG', 'GPU_FALLBACK', 'REFIT', 'DISABLE_TIMING_CACHE', 'TF32',
                        'SPARSE_WEIGHTS', 'SAFETY_SCOPE', 'REJECT_EMPTY_ALGORITHMS',
                        'VERSION_COMPATIBLE', 'STRIP_PLAN'},
        'Builder': {'build_serialized_network', 'create_network', 'create_builder_config',
                    'create_optimization_profile'},
        'module': _MODULE_COMMON,
    },
}

EXPECTED = {
    '8.2': ('bindings', trt_api.BuilderFeatures('max_workspace_size', True, True, True)),
    '8.6': ('tensors', trt_api.BuilderFeatures('set_memory_pool_limit', True, True, True)),
    '10.x': ('tensors', trt_api.BuilderFeatures('set_memory_pool_limit', True, True, True)),
    '11.x': ('tensors', trt_api.BuilderFeatures('set_memory_pool_limit', False, False, True)),
}


@pytest.mark.parametrize('version', sorted(SURFACES))
def test_runtime_api_generation_per_version(version):
    surface = SURFACES[version]
    generation = trt_api.select_runtime_api(surface['ICudaEngine'],
                                            surface['IExecutionContext'])
    assert generation == EXPECTED[version][0]


@pytest.mark.parametrize('version', sorted(SURFACES))
def test_builder_features_per_version(version):
    s = SURFACES[version]
    features = trt_api.builder_features(s['IBuilderConfig'], s['BuilderFlag'], s['module'],
                                        s['Builder'])
    assert features == EXPECTED[version][1]


@pytest.mark.parametrize('version, members, strongly_typed, expected', [
    ('8.2.1', {'EXPLICIT_BATCH', 'EXPLICIT_PRECISION'}, False, ['EXPLICIT_BATCH']),
    ('8.2.1', {'EXPLICIT_BATCH', 'EXPLICIT_PRECISION'}, True, ['EXPLICIT_BATCH']),
    ('10.3.0', {'EXPLICIT_BATCH', 'STRONGLY_TYPED'}, False, []),  # EXPLICIT_BATCH ignored
    ('10.3.0', {'EXPLICIT_BATCH', 'STRONGLY_TYPED'}, True, ['STRONGLY_TYPED']),
    ('11.4.0', {'STRONGLY_TYPED'}, True, []),  # always strongly typed
])
def test_network_flags_per_version(version, members, strongly_typed, expected):
    assert trt_api.network_flags(version, members, strongly_typed) == expected


def test_a_half_present_tensor_api_falls_back_or_fails_clearly():
    # 8.6 without execute_async_v3 still has the complete bindings API.
    s = SURFACES['8.6']
    assert trt_api.select_runtime_api(
        s['ICudaEngine'], s['IExecutionContext'] - {'execute_async_v3'}) == 'bindings'
    # 10.x without it has neither: a clear error, not an AttributeError at the first frame.
    s = SURFACES['10.x']
    with pytest.raises(BackendUnavailableError, match='execute_async_v3'):
        trt_api.select_runtime_api(s['ICudaEngine'],
                                   s['IExecutionContext'] - {'execute_async_v3'})


def _names_called_on(cls, receivers):
    """Return attribute names the class's methods use on the given receiver expressions."""
    tree = ast.parse(inspect.getsource(cls))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            receiver = ast.unparse(node.value)
            if receiver in receivers:
                names.add(node.attr)
    return names


@pytest.mark.parametrize('cls, versions', [
    (trt_api.BindingsApi, ['8.2', '8.6']),
    (trt_api.TensorsApi, ['8.6', '10.x', '11.x']),
])
def test_each_generation_calls_only_what_its_versions_have(cls, versions):
    engine_names = _names_called_on(cls, {'self.engine', 'engine'})
    context_names = _names_called_on(cls, {'context'})
    module_names = _names_called_on(cls, {'self.trt'})
    assert engine_names and context_names
    for version in versions:
        s = SURFACES[version]
        assert engine_names <= s['ICudaEngine'], (version, engine_names - s['ICudaEngine'])
        assert context_names <= s['IExecutionContext'], (
            version, context_names - s['IExecutionContext'])
        assert module_names <= s['module'], (version, module_names - s['module'])


def test_the_backend_calls_only_names_every_version_has():
    from tx2_inference.backends.tensorrt import runtime as tensorrt_backend
    source = inspect.getsource(tensorrt_backend)
    tree = ast.parse(source)
    on_engine, on_context = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            receiver = ast.unparse(node.value)
            if receiver == 'self._engine':
                on_engine.add(node.attr)
            elif receiver == 'h.context':
                on_context.add(node.attr)
    assert {'create_execution_context', 'num_optimization_profiles'} <= on_engine
    for version, s in SURFACES.items():
        assert on_engine <= s['ICudaEngine'], (version, on_engine - s['ICudaEngine'])
        assert on_context <= s['IExecutionContext'], (version, on_context)


def _installed_tensorrt():
    for name in ('tensorrt', 'tensorrt_lean'):
        try:
            return __import__(name)
        except ImportError:
            continue
    pytest.skip('TensorRT is not installed')


@pytest.mark.gpu
def test_installed_tensorrt_matches_its_generation():
    trt = _installed_tensorrt()
    major, minor = (int(v) for v in trt.__version__.split('.')[:2])
    generation = trt_api.select_runtime_api(dir(trt.ICudaEngine), dir(trt.IExecutionContext))
    assert generation == ('tensors' if (major, minor) >= (8, 5) else 'bindings')


@pytest.mark.gpu
def test_cuda_round_trip_through_pinned_memory_on_a_stream():
    """H2D, D2H copies and an event on a real GPU, with whichever CUDA library is here."""
    from tx2_inference.backends.tensorrt.cuda import open_cuda
    try:
        cuda = open_cuda(0)
    except BackendUnavailableError as error:
        pytest.skip(str(error))
    cuda.push()
    try:
        host_in = cuda.pagelocked_empty((4, 256), np.float32)
        host_out = cuda.pagelocked_empty((4, 256), np.float32)
        host_in[:] = np.arange(1024, dtype=np.float32).reshape(4, 256)
        device = cuda.mem_alloc(host_in.nbytes)
        stream, done = cuda.stream(), cuda.event()
        cuda.memcpy_htod_async(device, host_in, stream)
        cuda.memcpy_dtoh_async(host_out, device, stream)
        cuda.record(done, stream)
        cuda.synchronize(done)
        assert cuda.query(done)
        np.testing.assert_array_equal(host_out, host_in)
        cuda.free(device, host_in, host_out, done, stream)
    finally:
        cuda.pop()
        cuda.close()


def test_probe_without_gpu_gives_a_reason_and_keeps_tensorrt_unimported():
    count, reason = probe_gpu()
    if count:
        pytest.skip('a GPU is present')
    assert reason
    assert 'tensorrt' not in sys.modules


# --- Optimisation profiles: one per concurrent slot for dynamic shapes (NVIDIA/TensorRT #1590) ---

def test_binding_index_of_a_profile_follows_the_previous_profiles_bindings():
    # 8.2: 3 tensors in each of 2 profiles -> 6 bindings; profile 1's are 3, 4, 5.
    assert [trt_api.binding_index(i, 0, 6, 2) for i in range(3)] == [0, 1, 2]
    assert [trt_api.binding_index(i, 1, 6, 2) for i in range(3)] == [3, 4, 5]
    assert trt_api.binding_index(1, 3, 8, 4) == 7
    assert trt_api.binding_index(1, 0, 2, 0) == 1  # no profiles reported: one
    for args in ((3, 0, 6, 2), (0, 2, 6, 2), (0, 1, 7, 2), (-1, 0, 6, 2)):
        with pytest.raises(ModelError):
            trt_api.binding_index(*args)
    assert trt_api.profile_binding_name('images', 0) == 'images'
    assert trt_api.profile_binding_name('images', 2) == 'images [profile 2]'


def test_slot_profile_dynamic_gets_its_own_static_shares_profile_zero():
    assert [trt_api.slot_profile(s, 3, True) for s in range(3)] == [0, 1, 2]
    assert [trt_api.slot_profile(s, 1, False) for s in range(4)] == [0, 0, 0, 0]
    with pytest.raises(ModelError) as err:
        trt_api.slot_profile(2, 2, True, 'yolo.engine')
    message = str(err.value)
    for part in ("'yolo.engine'", 'dynamic input shapes and 2 optimisation profile(s)',
                 'executor slot 2', 'one execution context', '--profiles N',
                 'executor_depth (at least 3)', 'executor_depth to at most 2'):
        assert part in message, (part, message)


@pytest.mark.parametrize('version', sorted(SURFACES))
def test_every_version_selects_a_profile_with_the_async_call(version):
    assert (trt_api.select_profile_call(SURFACES[version]['IExecutionContext'])
            == 'set_optimization_profile_async')
    # TensorRT 7.x contexts have only the attribute; a context with neither is refused.
    legacy = SURFACES['8.2']['IExecutionContext'] - {'set_optimization_profile_async'}
    assert trt_api.select_profile_call(legacy) == 'active_optimization_profile'
    with pytest.raises(BackendUnavailableError, match='optimisation profile'):
        trt_api.select_profile_call(legacy - {'active_optimization_profile'})


def test_the_shared_profile_selection_calls_only_what_every_version_has():
    context_names = _names_called_on(trt_api.RuntimeApi, {'context'})
    engine_names = _names_called_on(trt_api.RuntimeApi, {'self.engine'})
    assert context_names == {'set_optimization_profile_async'}
    for version, s in SURFACES.items():
        assert context_names <= s['IExecutionContext'], version
        assert engine_names <= s['ICudaEngine'], version


# Recording fakes of TensorRT's runtime objects. Only the TensorRT objects (module, engine,
# execution contexts) are replaced; each exposes nothing but the recorded attribute names of
# its version (SURFACES), so a call another version lacks fails here as it would there. They
# model what NVIDIA's API reference says of profiles: the first context of an engine has
# profile 0, a later one has none until it selects one, a profile serves one live context, and
# 8.2's bindings of profile k sit after profile k-1's, named '<name> [profile k]'.

_TENSORS = [('images', True, (-1, 3, 8, 8)), ('scores', False, (-1, 10))]
_STATIC = [('images', True, (1, 3, 8, 8)), ('scores', False, (1, 10))]
_RANGE = ((1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))


class _Surface(object):
    """Only the attribute names of one TensorRT version; the rest is an AttributeError."""

    def __init__(self, impl, names):
        object.__setattr__(self, '_impl', impl)
        object.__setattr__(self, '_names', frozenset(names))

    def __dir__(self):
        return sorted(self._names)

    def __getattr__(self, name):
        if name not in self._names:
            raise AttributeError('this TensorRT has no {!r}'.format(name))
        return getattr(self._impl, name)

    def __setattr__(self, name, value):
        if name not in self._names:
            raise AttributeError('this TensorRT has no {!r}'.format(name))
        setattr(self._impl, name, value)


class _Engine(object):
    def __init__(self, version, log, tensors, profiles):
        import weakref
        self.version, self.log, self.tensors = version, log, tensors
        self.num_optimization_profiles = profiles
        self.per = len(tensors)
        self.num_bindings = self.per * profiles
        self.num_io_tensors = self.per
        self.dynamic = any(-1 in shape for _, _, shape in tensors)
        self.contexts = weakref.WeakSet()

    # bindings API (8.2)
    def _split(self, binding):
        profile, index = divmod(binding, self.per)
        return profile, self.tensors[index]

    def get_binding_name(self, binding):
        profile, (name, _, _) = self._split(binding)
        return trt_api.profile_binding_name(name, profile)

    def binding_is_input(self, binding):
        return self._split(binding)[1][1]

    def get_binding_shape(self, binding):
        return self._split(binding)[1][2]

    def get_binding_dtype(self, binding):
        return 'float32'

    def get_profile_shape(self, profile, binding):
        assert self._split(binding)[0] == profile, 'binding of another profile'
        return _RANGE

    # tensors API (8.5+)
    def _tensor(self, name):
        return [t for t in self.tensors if t[0] == name][0]

    def get_tensor_name(self, index):
        return self.tensors[index][0]

    def get_tensor_mode(self, name):
        return 'INPUT' if self._tensor(name)[1] else 'OUTPUT'

    def get_tensor_shape(self, name):
        return self._tensor(name)[2]

    def get_tensor_dtype(self, name):
        return 'float32'

    def get_tensor_profile_shape(self, name, profile):
        assert 0 <= profile < self.num_optimization_profiles
        return _RANGE

    def create_execution_context(self):
        # Profile 0 for the first context, or for all of a static engine; else none yet.
        context = _Context(self, 0 if not (self.contexts and self.dynamic) else None)
        self.contexts.add(context)
        self.log.append(('engine', 'create_execution_context', context.number))
        return _Surface(context, SURFACES[self.version]['IExecutionContext'])


class _Context(object):
    count = 0

    def __init__(self, engine, profile):
        _Context.count += 1
        self.number = _Context.count
        self.engine, self.profile = engine, profile
        self.shape = None if engine.dynamic else engine.tensors[0][2]
        self.addresses = {}

    def _record(self, *call):
        self.engine.log.append((self.number,) + call)

    def set_optimization_profile_async(self, profile, stream_handle):
        self._record('set_optimization_profile_async', profile, stream_handle)
        taken = {c.profile for c in self.engine.contexts if c is not self}
        if not 0 <= profile < self.engine.num_optimization_profiles or profile in taken:
            return False
        self.profile, self.shape = profile, None
        return True

    @property
    def active_optimization_profile(self):
        return self.profile

    @active_optimization_profile.setter
    def active_optimization_profile(self, profile):
        self._record('active_optimization_profile =', profile)
        self.profile, self.shape = profile, None

    def _set_shape(self, name, shape, profile):
        assert profile == self.profile
        lo, _, hi = _RANGE
        if self.profile is None or any(s < a or s > b for s, a, b in zip(shape, lo, hi)):
            return False
        self.shape = tuple(shape)
        return True

    def set_binding_shape(self, binding, shape):
        self._record('set_binding_shape', binding, tuple(shape))
        profile, (name, _, _) = self.engine._split(binding)
        return self._set_shape(name, shape, profile)

    def get_binding_shape(self, binding):
        profile, (name, _, declared) = self.engine._split(binding)
        assert profile == self.profile
        return (self.shape[0],) + declared[1:]

    def execute_async_v2(self, bindings, stream_handle):
        self._record('execute_async_v2', list(bindings), stream_handle)
        per = self.engine.per
        mine = range(self.profile * per, (self.profile + 1) * per)
        return (len(bindings) == self.engine.num_bindings and self.shape is not None
                and all(bool(b) == (i in mine) for i, b in enumerate(bindings)))

    def set_input_shape(self, name, shape):
        self._record('set_input_shape', name, tuple(shape))
        return self._set_shape(name, shape, self.profile)

    def get_tensor_shape(self, name):
        return (self.shape[0],) + self.engine._tensor(name)[2][1:]

    def set_tensor_address(self, name, address):
        self._record('set_tensor_address', name, address)
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream_handle):
        self._record('execute_async_v3', stream_handle)
        return (self.profile is not None and self.shape is not None
                and len(self.addresses) == self.engine.per)


def _fake_runtime_trt(version, log, tensors, profiles):
    import types
    trt = types.ModuleType('tensorrt')
    trt.__version__ = version
    trt.TensorIOMode = type('TensorIOMode', (), {'INPUT': 'INPUT', 'OUTPUT': 'OUTPUT'})
    trt.IExecutionContext = type('IExecutionContext', (), dict.fromkeys(
        SURFACES[version]['IExecutionContext']))
    trt.nptype = lambda dtype: np.float32
    trt.Logger = type('Logger', (), {'WARNING': 2, '__init__': lambda self, s: None})
    engine = _Surface(_Engine(version, log, tensors, profiles), SURFACES[version]['ICudaEngine'])
    trt.Runtime = lambda logger: types.SimpleNamespace(
        deserialize_cuda_engine=lambda data: engine)
    return trt


class _HostCuda(object):
    """Stand-in for cuda.py's CudaDevice (no GPU here): host arrays, integer addresses."""

    library = 'fake'

    def __init__(self):
        self.next = 0x1000

    def push(self):
        pass

    pop = close = push

    def stream(self):
        self.next += 1
        return self.next

    def stream_handle(self, stream):
        return stream

    def event(self):
        return object()

    def pagelocked_empty(self, shape, dtype):
        return np.zeros(shape, dtype)

    def mem_alloc(self, nbytes):
        self.next += 0x1000
        return self.next

    def memcpy_htod_async(self, device, host, stream):
        pass

    memcpy_dtoh_async = memcpy_htod_async

    def record(self, event, stream):
        pass

    def query(self, event):
        return True

    def synchronize(self, event):
        pass

    def elapsed_ms(self, start, end):
        return 0.0

    def free(self, *objects):
        pass


def _fake_backend(monkeypatch, tmp_path, version, tensors=_TENSORS, profiles=2):
    from tx2_inference.backends.tensorrt import runtime as tensorrt_backend
    log = []
    trt = _fake_runtime_trt(version, log, tensors, profiles)
    monkeypatch.setattr(tensorrt_backend, 'import_tensorrt', lambda: trt)
    monkeypatch.setattr(tensorrt_backend, 'open_cuda', lambda device, library: _HostCuda())
    path = tmp_path / 'model.engine'
    path.write_bytes(b'serialized engine')
    return tensorrt_backend.TensorRTBackend(str(path)), log


def _calls(log, name):
    return [e for e in log if len(e) > 1 and e[1] == name]


@pytest.mark.parametrize('version', ['8.2', '8.6', '10.x', '11.x'])
def test_each_slot_of_a_dynamic_engine_selects_its_own_profile(version, monkeypatch, tmp_path):
    backend, log = _fake_backend(monkeypatch, tmp_path, version, profiles=2)
    assert backend.api_generation == EXPECTED[version][0]
    shapes = {'images': (2, 3, 8, 8)}
    slots = [backend.create_slot(i, shapes) for i in range(2)]
    for slot in slots:
        backend.run(slot)  # the fake's execute returns False unless the calls were right
        assert slot.outputs['scores'].shape == (2, 10)
    first, second = (s.handle.stream_handle for s in slots)
    # Slot i selects profile i on its own stream, before its input shape is set.
    assert [(e[2], e[3]) for e in _calls(log, 'set_optimization_profile_async')] == [
        (0, first), (1, second)]
    for number in [e[2] for e in _calls(log, 'create_execution_context')]:
        calls = [e[1] for e in log if e[0] == number]
        assert calls.index('set_optimization_profile_async') < calls.index(
            'set_binding_shape' if version == '8.2' else 'set_input_shape')
    if version == '8.2':
        # Profile 1's input is binding 0 + 1 * (4 bindings // 2 profiles) = 2.
        assert [e[2] for e in _calls(log, 'set_binding_shape')] == [0, 2]
        bindings = [e[2] for e in _calls(log, 'execute_async_v2')]
        assert len(bindings[0]) == len(bindings[1]) == 4
        assert bindings[0][2:] == [0, 0] and all(bindings[0][:2])
        assert bindings[1][:2] == [0, 0] and all(bindings[1][2:])
    else:  # the same tensor names in every profile
        assert [e[2] for e in _calls(log, 'set_input_shape')] == ['images', 'images']
        assert len(_calls(log, 'execute_async_v3')) == 2
    backend.close()


@pytest.mark.parametrize('version', ['8.2', '10.x'])
def test_too_few_profiles_for_the_slots_is_refused_before_a_context_is_made(
        version, monkeypatch, tmp_path):
    backend, log = _fake_backend(monkeypatch, tmp_path, version, profiles=2)
    slots = [backend.create_slot(i, {'images': (1, 3, 8, 8)}) for i in range(2)]
    contexts = len(_calls(log, 'create_execution_context'))
    with pytest.raises(ModelError) as err:
        backend.create_slot(2, {'images': (1, 3, 8, 8)})
    assert '2 optimisation profile(s)' in str(err.value)
    assert '--profiles N' in str(err.value) and 'executor_depth' in str(err.value)
    assert len(_calls(log, 'create_execution_context')) == contexts
    # A slot index already live is refused too: its profile is taken.
    with pytest.raises(ModelError, match='already in use'):
        backend.create_slot(1, {'images': (1, 3, 8, 8)})
    # Released, its profile is free again for a new context.
    backend.release_slot(slots[1])
    backend.run(backend.create_slot(1, {'images': (1, 3, 8, 8)}))
    backend.close()


def test_through_the_executor_depth_three_on_two_profiles_fails_at_load(monkeypatch, tmp_path):
    from tx2_inference.executor import DoubleBufferedExecutor
    backend, log = _fake_backend(monkeypatch, tmp_path, '8.2', profiles=2)
    with pytest.raises(ModelError, match='executor_depth to at most 2'):
        DoubleBufferedExecutor(backend, lambda frame, slot: None, lambda slot, c: None,
                               depth=3, input_shapes={'images': (1, 3, 8, 8)})
    assert backend._slots == []  # the two slots made before were released
    backend.close()


def test_bindings_generation_checks_profile_names_and_falls_back_to_the_attribute():
    log = []
    engine = _Engine('8.2', log, _TENSORS, 2)
    api = trt_api.BindingsApi(None, _Surface(engine, SURFACES['8.2']['ICudaEngine']))
    assert [api._binding(n, 1) for n in ('images', 'scores')] == [2, 3]
    # TensorRT 7.x: no set_optimization_profile_async, the attribute is set instead.
    legacy = SURFACES['8.2']['IExecutionContext'] - {'set_optimization_profile_async'}
    engine.create_execution_context()
    context = _Context(engine, None)
    api.select_profile(_Surface(context, legacy), 1, 0)
    assert log[-1] == (context.number, 'active_optimization_profile =', 1)
    # An engine whose profile-1 bindings are not named as documented is refused, not run.
    engine.get_binding_name = lambda b: 'other' if b >= 2 else _TENSORS[b][0]
    api = trt_api.BindingsApi(None, _Surface(engine, SURFACES['8.2']['ICudaEngine']))
    with pytest.raises(ModelError, match="expected 'images \\[profile 1\\]'"):
        api._binding('images', 1)


@pytest.mark.parametrize('version', ['8.2', '10.x'])
def test_a_static_engine_shares_profile_zero_and_selects_nothing(version, monkeypatch,
                                                                  tmp_path):
    backend, log = _fake_backend(monkeypatch, tmp_path, version, tensors=_STATIC, profiles=1)
    slots = [backend.create_slot(i) for i in range(3)]
    for slot in slots:
        backend.run(slot)
    assert _calls(log, 'set_optimization_profile_async') == []
    assert all(s.handle.profile == 0 for s in slots)
    if version == '8.2':
        assert all(len(e[2]) == 2 for e in _calls(log, 'execute_async_v2'))
    backend.close()
