"""The choice between TensorRT's API generations, against NVIDIA's own API surfaces; the runtime.

TensorRT cannot run here, so the version differences are tested against the attribute names each
version's Python classes have, taken from NVIDIA's sources, not from memory:

- 8.0 (JetPack 4.6), 8.2 (JetPack 4.6.1+, the last for Tegra X2), 8.6 and 10.x (10.3, JetPack
  6.1): ``test/data/trt_api_surfaces.json``, extracted by ``test/extract_trt_surfaces.py`` from
  the pybind11 bindings ``python/src/infer/pyCore.cpp`` (module names also from the other
  ``python/src/**.cpp`` and ``python/packaging/tensorrt/__init__.py``) of the release branches
  ``release/8.0``, ``release/8.2``, ``release/8.6`` and ``release/10.3`` of github.com/NVIDIA/
  TensorRT; each entry records its branch, commit and source file.
- 11.x: the runtime classes (``ICudaEngine``, ``IExecutionContext``, ``Runtime``, enums) are
  read from the real TensorRT 11.4 lean bindings (``tensorrt-lean-cu13-bindings`` 11.4.0.106,
  module ``tensorrt_lean_bindings``; requirements/test.txt), which import without a GPU. The
  builder-side classes, absent from the lean runtime, come from ``release/11.1``'s pyCore.cpp.

Only what a GPU alone can do is replaced below (an engine, its execution contexts, CUDA): the
module's enums and ``nptype`` are the real 11.4 objects. Never ``Runtime.deserialize_cuda_engine``
here: without a GPU it segfaults.
"""

import ast
import inspect
import json
import os
import sys
import threading
import types

import cuda.bindings as cuda_bindings
import deviceless_cudart
import numpy as np
from project_files import ROOT
import pytest
import tensorrt_lean_bindings as lean
from trt_signatures import follows

from tx2_inference.backends.tensorrt import api as trt_api
from tx2_inference.backends.tensorrt.cuda import probe_gpu
from tx2_inference.errors import BackendUnavailableError, ConfigError, ModelError

_DATA = os.path.join(ROOT, 'test', 'data', 'trt_api_surfaces.json')
with open(_DATA) as _f:
    SOURCES = json.load(_f)


def _public(obj):
    return {n for n in dir(obj) if not n.startswith('_')}


def _from_sources(version):
    s = SOURCES[version]
    surface = {c: set(s[c]) for c in ('ICudaEngine', 'IExecutionContext', 'IBuilderConfig',
                                       'Builder', 'BuilderFlag', 'NetworkDefinitionCreationFlag',
                                       'Runtime')}
    surface['module'] = set(s['module'])
    return surface


def _real_11x():
    """11.x: the runtime from the real 11.4 lean bindings, the builder from release/11.1."""
    built = _from_sources('11.1')
    surface = {c: _public(getattr(lean, c)) for c in ('ICudaEngine', 'IExecutionContext',
                                                       'Runtime')}
    surface['BuilderFlag'] = set(lean.BuilderFlag.__members__)
    for c in ('IBuilderConfig', 'Builder', 'NetworkDefinitionCreationFlag'):
        surface[c] = built[c]
    surface['module'] = _public(lean) | built['module']
    return surface


# version -> class -> attribute names.
SURFACES = {v: _from_sources(v) for v in ('8.0', '8.2', '8.6', '10.x')}
SURFACES['11.x'] = _real_11x()

EXPECTED = {
    '8.0': ('bindings', trt_api.BuilderFeatures('max_workspace_size', True, True, True)),
    '8.2': ('bindings', trt_api.BuilderFeatures('max_workspace_size', True, True, True)),
    '8.6': ('tensors', trt_api.BuilderFeatures('set_memory_pool_limit', True, True, True)),
    '10.x': ('tensors', trt_api.BuilderFeatures('set_memory_pool_limit', True, True, True)),
    '11.x': ('tensors', trt_api.BuilderFeatures('set_memory_pool_limit', False, False, True)),
}


def test_the_surfaces_are_nvidias_and_say_where_they_come_from():
    for version in ('8.0', '8.2', '8.6', '10.x', '11.1'):
        entry = SOURCES[version]
        assert entry['branch'].startswith('release/') and len(entry['commit']) == 40
        assert entry['source']['ICudaEngine'] == 'python/src/infer/pyCore.cpp'
    # Names the old hand-written lists claimed and NVIDIA's sources do not have:
    assert 'all_input_dimensions_specified' not in SURFACES['10.x']['IExecutionContext']
    assert 'max_workspace_size' not in SURFACES['8.2']['ICudaEngine']
    assert 'weight_streaming_budget' not in SURFACES['11.x']['ICudaEngine']
    assert 'weight_streaming_budget_v2' in SURFACES['11.x']['ICudaEngine']
    assert 'REJECT_EMPTY_ALGORITHMS' not in SURFACES['11.x']['BuilderFlag']
    assert lean.__version__.startswith('11.4')
    # The lean runtime has no builder: what auto and the build check for.
    assert not hasattr(lean, 'Builder') and not hasattr(lean, 'OnnxParser')


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
    on_runtime = {n for r in ('self._runtime',) for n in _attributes_on(tree, {r})}
    on_module = _attributes_on(tree, {'trt'}) - {'__name__', '__version__'}
    assert on_runtime == {'deserialize_cuda_engine'}
    for version, s in SURFACES.items():
        assert on_engine <= s['ICudaEngine'], (version, on_engine - s['ICudaEngine'])
        assert on_context <= s['IExecutionContext'], (version, on_context)
        assert on_runtime <= s['Runtime'], version
        # init_libnvinfer_plugins is looked up with hasattr (the lean runtime has none).
        assert on_module - {'init_libnvinfer_plugins'} <= s['module'], (
            version, on_module - s['module'])


def _attributes_on(tree, receivers):
    return {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
            and ast.unparse(node.value) in receivers}


# Builder calls guarded by a feature check (api.builder_features, hasattr) or made only on the
# versions that have them; every other call on the config must exist in every version <= 10.x.
_GUARDED_CONFIG = {'max_workspace_size', 'set_memory_pool_limit', 'progress_monitor',
                   'int8_calibrator', 'set_calibration_profile'}


@pytest.mark.parametrize('version', ['8.0', '8.2', '8.6', '10.x', '11.x'])
def test_the_builder_calls_only_names_its_versions_have(version):
    from tx2_inference.backends.tensorrt import builder
    tree = ast.parse(inspect.getsource(builder))
    s = SURFACES[version]
    on_config = _attributes_on(tree, {'config'}) - _GUARDED_CONFIG
    on_builder = _attributes_on(tree, {'builder'}) - {'platform_has_fast_fp16',
                                                      'platform_has_fast_int8',
                                                      'num_DLA_cores'}  # getattr, default
    assert on_config <= s['IBuilderConfig'], on_config - s['IBuilderConfig']
    assert on_builder <= s['Builder'], on_builder - s['Builder']
    has = s['IBuilderConfig']
    if version != '11.x':  # INT8 calibration exists up to 10.x, with its calibration profile
        assert {'int8_calibrator', 'set_calibration_profile'} <= has
    assert ('progress_monitor' in has) == (version in ('10.x', '11.x'))
    feats = trt_api.builder_features(has, s['BuilderFlag'], s['module'], s['Builder'])
    assert feats.workspace in has
    # --version-compatible: both flags from 8.6 on.
    assert ({'VERSION_COMPATIBLE', 'EXCLUDE_LEAN_RUNTIME'} <= s['BuilderFlag']) == (
        version not in ('8.0', '8.2'))


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
        self.host = set()  # names of tensors in host memory (shape tensors)
        self.has_implicit_batch_dimension = False  # 8.0 to 10.x have the property
        self.probe = lambda: None  # what to note when destroyed

    def __del__(self):
        self.log.append(('engine', '__del__', self.probe()))

    # bindings API (8.2)
    def _split(self, binding):
        profile, index = divmod(binding, self.per)
        return profile, self.tensors[index]

    @follows('ICudaEngine')
    def get_binding_name(self, index):
        profile, (name, _, _) = self._split(index)
        return trt_api.profile_binding_name(name, profile)

    @follows('ICudaEngine')
    def binding_is_input(self, index):
        return self._split(index)[1][1]

    @follows('ICudaEngine')
    def get_binding_shape(self, index):
        return self._split(index)[1][2]

    @follows('ICudaEngine')
    def get_binding_dtype(self, index):
        return lean.DataType.FLOAT

    @follows('ICudaEngine')
    def get_profile_shape(self, profile_index, binding):
        assert self._split(binding)[0] == profile_index, 'binding of another profile'
        return _RANGE

    # tensors API (8.5+)
    def _tensor(self, name):
        return [t for t in self.tensors if t[0] == name][0]

    @follows('ICudaEngine')
    def get_tensor_name(self, index):
        return self.tensors[index][0]

    @follows('ICudaEngine')
    def get_tensor_mode(self, name):
        return lean.TensorIOMode.INPUT if self._tensor(name)[1] else lean.TensorIOMode.OUTPUT

    @follows('ICudaEngine')
    def get_tensor_location(self, name):
        return lean.TensorLocation.HOST if name in self.host else lean.TensorLocation.DEVICE

    @follows('ICudaEngine')
    def get_location(self, index):  # bindings API
        return self.get_tensor_location(self._split(index)[1][0])

    @follows('ICudaEngine')
    def get_tensor_shape(self, name):
        return self._tensor(name)[2]

    @follows('ICudaEngine')
    def get_tensor_dtype(self, name):
        return lean.DataType.FLOAT

    @follows('ICudaEngine')
    def get_tensor_profile_shape(self, name, profile_index):
        assert 0 <= profile_index < self.num_optimization_profiles
        return _RANGE

    @follows('ICudaEngine')
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

    @follows('IExecutionContext')
    def set_optimization_profile_async(self, profile_index, stream_handle):
        self._record('set_optimization_profile_async', profile_index, stream_handle)
        taken = {c.profile for c in self.engine.contexts if c is not self}
        if not 0 <= profile_index < self.engine.num_optimization_profiles or (
                profile_index in taken):
            # What every TensorRT 8.0 to 11 does on failure (pyCore.cpp): raise, not False.
            raise RuntimeError('Error in set optimization profile async.')
        self.profile, self.shape = profile_index, None
        return True

    @property
    def active_optimization_profile(self):
        return self.profile

    @active_optimization_profile.setter
    def active_optimization_profile(self, profile):
        self._record('active_optimization_profile =', profile)
        if not 0 <= profile < self.engine.num_optimization_profiles:
            raise RuntimeError('Error in set optimization profile.')  # pyCore.cpp 8.0, 8.2
        self.profile, self.shape = profile, None

    def _set_shape(self, name, shape, profile):
        assert profile == self.profile
        lo, _, hi = _RANGE
        if self.profile is None or any(s < a or s > b for s, a, b in zip(shape, lo, hi)):
            return False
        self.shape = tuple(shape)
        return True

    @follows('IExecutionContext')
    def set_binding_shape(self, binding, shape):
        self._record('set_binding_shape', binding, tuple(shape))
        profile, (name, _, _) = self.engine._split(binding)
        return self._set_shape(name, shape, profile)

    @follows('IExecutionContext')
    def get_binding_shape(self, binding):
        profile, (name, _, declared) = self.engine._split(binding)
        assert profile == self.profile
        return (self.shape[0],) + declared[1:]

    @follows('IExecutionContext')
    def execute_async_v2(self, bindings, stream_handle):
        self._record('execute_async_v2', list(bindings), stream_handle)
        per = self.engine.per
        mine = range(self.profile * per, (self.profile + 1) * per)
        return (len(bindings) == self.engine.num_bindings and self.shape is not None
                and all(bool(b) == (i in mine) for i, b in enumerate(bindings)))

    @follows('IExecutionContext')
    def set_input_shape(self, name, shape):
        self._record('set_input_shape', name, tuple(shape))
        return self._set_shape(name, shape, self.profile)

    @follows('IExecutionContext')
    def get_tensor_shape(self, name):
        return (self.shape[0],) + self.engine._tensor(name)[2][1:]

    @follows('IExecutionContext')
    def set_tensor_address(self, name, memory):
        self._record('set_tensor_address', name, memory)
        self.addresses[name] = memory
        return True

    @follows('IExecutionContext')
    def execute_async_v3(self, stream_handle):
        self._record('execute_async_v3', stream_handle)
        return (self.profile is not None and self.shape is not None
                and len(self.addresses) == self.engine.per)


def _fake_runtime_trt(version, log, tensors, profiles, name='tensorrt'):
    """Return a TensorRT module: the real 11.4 enums and nptype, engine and runtime stand-ins."""
    trt = types.ModuleType(name)
    trt.__version__ = version
    trt.TensorIOMode, trt.TensorLocation, trt.nptype = (lean.TensorIOMode, lean.TensorLocation,
                                                        lean.nptype)
    trt.IExecutionContext = type('IExecutionContext', (), dict.fromkeys(
        SURFACES[version]['IExecutionContext']))
    trt.Logger = type('Logger', (), {'WARNING': 2, '__init__': lambda self, s: None})
    impl = _Engine(version, log, tensors, profiles)
    trt.probe = lambda: None  # called when the engine or runtime is destroyed
    impl.probe = lambda: trt.probe()
    engine = _Surface(impl, SURFACES[version]['ICudaEngine'])
    trt.engine = engine

    class Runtime(object):
        def __init__(self, logger):
            log.append(('runtime', '__init__'))

        def deserialize_cuda_engine(self, data):
            found, trt.engine = trt.engine, None  # only the backend holds it from here on
            return found

        def __del__(self):
            log.append(('runtime', '__del__', trt.probe()))

    trt.Runtime = Runtime
    return trt


class _HostCuda(object):
    """Stand-in for cuda.py's CudaDevice (no GPU here): host arrays, integer addresses.

    It records what a GPU run would show: the push depth, what is allocated and freed, the
    flags of each event, and which stream a wait was for.
    """

    library = 'fake'

    def __init__(self, log=None):
        self.next = 0x1000
        self.depth = 0
        self.live = {}  # id -> kind, of everything allocated and not yet freed
        self.log = log if log is not None else []
        self.fail_alloc_at = None
        self.allocs = 0
        self.closed = False

    def _make(self, kind, obj):
        self.allocs += 1
        if self.fail_alloc_at is not None and self.allocs >= self.fail_alloc_at:
            from tx2_inference.backends.tensorrt.cuda import CudaError
            raise CudaError('CUDA cudaMalloc failed: cudaErrorMemoryAllocation (2)')
        self.live[id(obj)] = kind
        return obj

    def push(self):
        self.depth += 1

    def pop(self):
        assert self.depth > 0, 'pop without push'
        self.depth -= 1

    def close(self):
        self.log.append(('cuda', 'close', self.depth))
        self.closed = True

    def stream(self):
        self.next += 1
        return self._make('stream', types.SimpleNamespace(handle=self.next))

    def stream_handle(self, stream):
        return stream.handle

    def event(self, blocking=False):
        return self._make('event', types.SimpleNamespace(blocking=blocking))

    def pagelocked_empty(self, shape, dtype):
        return self._make('pinned', np.zeros(shape, dtype))

    def mem_alloc(self, nbytes):
        self.next += 0x1000
        return self._make('device', _Address(self.next))

    def memcpy_htod_async(self, device, host, stream):
        pass

    memcpy_dtoh_async = memcpy_htod_async

    def record(self, event, stream):
        self.log.append(('cuda', 'record', id(event)))

    def query(self, event):
        return True

    def synchronize(self, event):
        self.log.append(('cuda', 'synchronize', id(event)))

    def synchronize_stream(self, stream):
        self.log.append(('cuda', 'synchronize_stream', stream.handle))

    def elapsed_ms(self, start, end):
        return 0.0

    def free(self, *objects):
        assert self.depth > 0, 'freed outside push/pop'
        for obj in objects:
            assert self.live.pop(id(obj), None) is not None, 'double or foreign free'


class _Address(object):
    """A device allocation stand-in; ``int()`` gives its address, as pycuda's does."""

    def __init__(self, address):
        self.address = address

    def __int__(self):
        return self.address


def _fake_backend(monkeypatch, tmp_path, version, tensors=_TENSORS, profiles=2, cuda=None,
                  trt=None, **options):
    from tx2_inference.backends.tensorrt import runtime as tensorrt_backend
    log = []
    trt = trt or _fake_runtime_trt(version, log, tensors, profiles)
    cuda = cuda or _HostCuda(log)
    monkeypatch.setattr(tensorrt_backend, 'import_tensorrt', lambda: trt)
    monkeypatch.setattr(tensorrt_backend, 'open_cuda', lambda device, library: cuda)
    path = tmp_path / 'model.engine'
    path.write_bytes(b'serialized engine')
    backend = tensorrt_backend.TensorRTBackend(str(path), **options)
    backend.fake_cuda = cuda
    return backend, log


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


def test_a_profile_tensorrt_refuses_is_the_explanatory_error_not_a_bare_runtimeerror(
        monkeypatch, tmp_path):
    """Bug 8: set_optimization_profile_async raises RuntimeError on failure (8.0 to 11)."""
    for version in ('8.2', '10.x', '11.x'):
        backend, log = _fake_backend(monkeypatch, tmp_path, version, profiles=2)
        backend.create_slot(0, {'images': (1, 3, 8, 8)})
        other = backend._engine.create_execution_context()  # e.g. another process's context
        other.set_optimization_profile_async(1, 0)  # takes profile 1
        with pytest.raises(RuntimeError, match='^Error in set optimization profile async.$'):
            other.set_optimization_profile_async(7, 0)  # the fake raises as pyCore.cpp does
        with pytest.raises(ModelError) as err:
            backend.create_slot(1, {'images': (1, 3, 8, 8)})
        message = str(err.value)
        assert 'could not select optimisation profile 1' in message, version
        assert 'Error in set optimization profile async.' in message
        assert '--profiles N' in message and 'executor_depth' in message
        assert len(backend._slots) == 1  # nothing of the failed slot is left
        del other
        backend.close()


def test_the_legacy_profile_attribute_raising_is_explained_too():
    log = []
    engine = _Engine('8.2', log, _TENSORS, 2)
    api = trt_api.BindingsApi(None, _Surface(engine, SURFACES['8.2']['ICudaEngine']))
    legacy = SURFACES['8.2']['IExecutionContext'] - {'set_optimization_profile_async'}
    with pytest.raises(ModelError, match='Error in set optimization profile[.]'):
        api.select_profile(_Surface(_Context(engine, None), legacy), 3, 0)


@pytest.mark.parametrize('version', ['8.2', '8.6', '10.x'])
def test_an_implicit_batch_engine_is_refused_at_load_with_what_to_do(
        version, monkeypatch, tmp_path):
    """Bug 7: a UFF/Caffe-era engine is refused when loaded, not failed on every frame."""
    log = []
    trt = _fake_runtime_trt(version, log, _STATIC, 1)
    trt.engine._impl.has_implicit_batch_dimension = True
    with pytest.raises(ModelError) as err:
        _fake_backend(monkeypatch, tmp_path, version, trt=trt)
    message = str(err.value)
    assert 'implicit batch dimension' in message and 'tx2-convert onnx' in message
    assert 'model.engine' in message
    assert _calls(log, 'create_execution_context') == []


def test_the_fakes_take_the_real_tensorrt_signatures():
    """Each fake method is called as pybind11 calls the real one (trt_signatures.follows)."""
    checked = {name for cls in (_Engine, _Context) for name, fn in vars(cls).items()
               if hasattr(fn, 'real_overloads')}
    used = (_names_called_on(trt_api.TensorsApi, {'self.engine', 'engine', 'context'})
            | _names_called_on(trt_api.BindingsApi, {'self.engine', 'engine', 'context'})
            | _names_called_on(trt_api.RuntimeApi, {'context'}))
    methods = {n for n in used if n not in ('num_io_tensors', 'num_bindings',
                                            'num_optimization_profiles',
                                            'active_optimization_profile')}
    assert methods <= checked | {'set_optimization_profile_async'}, methods - checked
    context = _Context(_Engine('10.x', [], _TENSORS, 2), None)
    with pytest.raises(TypeError, match='incompatible function arguments'):
        context.execute_async_v3('0x5000')  # not an integer: pybind11 refuses it
    with pytest.raises(TypeError, match='incompatible function arguments'):
        context.set_tensor_address('images', memory=None)
    assert context.set_optimization_profile_async(profile_index=0, stream_handle=0x5000)


@pytest.mark.parametrize('version', ['8.2', '10.x', '11.x'])
def test_the_cuda_python_stream_reaches_tensorrt_as_its_handle(version, monkeypatch,
                                                                  tmp_path):
    """The backend on cuda.py's cuda-python device over the real cuda-bindings (bug 3)."""
    device, cudart = _cuda_python_device(monkeypatch)
    backend, log = _fake_backend(monkeypatch, tmp_path, version, profiles=2, cuda=device)
    assert backend.cuda_library == 'cuda-python'
    slots = [backend.create_slot(i, {'images': (2, 3, 8, 8)}) for i in range(2)]
    streams = [int(s) for s in cudart.streams]
    assert len(streams) == 2 and [s.handle.stream_handle for s in slots] == streams
    for slot in slots:
        slot.inputs['images'][:] = 1.5
        backend.run(slot)
    selected = [e[3] for e in _calls(log, 'set_optimization_profile_async')]
    executed = [e[-1] for e in _calls(log, 'execute_async_v2' if version == '8.2'
                                      else 'execute_async_v3')]
    assert selected == streams and executed == streams
    assert not {s.getPtr() for s in cudart.streams} & set(selected + executed)
    # The copies and events went on the same cudaStream_t objects.
    copies = cudart.made('cudaMemcpyAsync')
    assert {int(c[-1]) for c in copies} == set(streams) and len(copies) == 4
    backend.close()
    assert cudart.buffers == {}


# --- The runtime's lifetimes and CUDA use (issue 11), on the fakes above: TensorRT's engine and
# contexts and the CUDA device are stand-ins (no GPU here); what a GPU alone can show is
# measured by `make gpu-check` (test/backends/test_gpu_check.py).

def test_close_frees_contexts_then_engine_then_runtime_inside_push_pop(monkeypatch, tmp_path):
    log = []
    trt = _fake_runtime_trt('10.x', log, _STATIC, 1)
    cuda = _HostCuda(log)
    trt.probe = lambda: (cuda.depth, cuda.closed)
    backend, _ = _fake_backend(monkeypatch, tmp_path, '10.x', trt=trt, cuda=cuda)
    backend.run(backend.create_slot(0))
    backend.close()
    # Gone once close() returns (the API wrapper held the engine too), destroyed with the CUDA
    # context pushed and not yet released, in the order contexts -> engine -> runtime.
    freed = [e for e in log if e[1] == '__del__']
    assert freed == [('engine', '__del__', (1, False)), ('runtime', '__del__', (1, False))]
    assert log.index(freed[0]) < log.index(('cuda', 'close', 0))
    assert cuda.closed and cuda.depth == 0 and cuda.live == {}


def test_events_done_blocks_timing_events_time(monkeypatch, tmp_path):
    backend, log = _fake_backend(monkeypatch, tmp_path, '10.x', tensors=_STATIC, profiles=1)
    slot = backend.create_slot(0)
    h = slot.handle
    # done: blocking sync, no timing (the waiting thread sleeps); start/end: timing.
    assert h.done.blocking and not h.start.blocking and not h.end.blocking
    backend.close()


def test_a_failed_create_slot_frees_what_it_made(monkeypatch, tmp_path):
    cuda = _HostCuda()
    backend, log = _fake_backend(monkeypatch, tmp_path, '10.x', tensors=_STATIC, profiles=1,
                                 cuda=cuda)
    for fail_at in range(1, 8):  # stream, 2 pinned, 2 device, 3 events: fail at each
        cuda.allocs, cuda.fail_alloc_at = 0, fail_at
        with pytest.raises(Exception, match='cudaErrorMemoryAllocation'):
            backend.create_slot(0)
        assert cuda.live == {} and cuda.depth == 0, fail_at
        assert backend._slots == []
    cuda.fail_alloc_at = None
    backend.run(backend.create_slot(0))
    backend.close()
    assert cuda.live == {}


def test_release_empties_the_batch_rows_views_too(monkeypatch, tmp_path):
    """A batch-4 slot's rows hold views of its pinned buffers: none stays reachable."""
    batched = [('images', True, (4, 3, 8, 8)), ('scores', False, (4, 10))]
    backend, _ = _fake_backend(monkeypatch, tmp_path, '10.x', tensors=batched, profiles=1)
    slot = backend.create_slot(0)
    rows = list(slot.rows)
    assert len(rows) == 4 and rows[1].inputs['images'].shape == (1, 3, 8, 8)
    backend.release_slot(slot)
    assert all(row.inputs == {} and row.outputs == {} for row in rows)
    backend.close()


def test_release_waits_for_the_stream_even_after_a_failed_launch(monkeypatch, tmp_path):
    from tx2_inference.backends.tensorrt.cuda import CudaError
    backend, log = _fake_backend(monkeypatch, tmp_path, '10.x', tensors=_STATIC, profiles=1)
    slot = backend.create_slot(0)
    h = slot.handle
    stream = h.stream.handle
    h.context._impl.execute_async_v3 = lambda handle: False  # TensorRT refuses the frame
    with pytest.raises(CudaError, match='execute_async_v3'):
        backend.launch(slot)
    # done is still recorded after the copies already enqueued, so it marks the last work.
    assert log[-1] == ('cuda', 'record', id(h.done))
    inputs = slot.inputs
    backend.release_slot(slot)
    waits = [e for e in log if e[1] in ('synchronize', 'synchronize_stream')]
    assert waits[-1] == ('cuda', 'synchronize_stream', stream)
    assert inputs == {} and slot.outputs == {}  # no freed pinned array reachable
    backend.close()


def test_close_leaves_a_slot_a_thread_still_waits_on(monkeypatch, tmp_path, caplog):
    # As after an executor close that timed out: its completion thread still waits.
    cuda = _HostCuda()
    release = threading.Event()
    cuda.synchronize = lambda event: release.wait(10)
    backend, log = _fake_backend(monkeypatch, tmp_path, '10.x', tensors=_STATIC, profiles=1,
                                 cuda=cuda, close_timeout=0.2)
    slot = backend.create_slot(0)
    backend.launch(slot)
    waiter = threading.Thread(target=backend.wait, args=(slot,))
    waiter.start()
    closer = threading.Thread(target=backend.close)
    closer.start()
    closer.join(5)
    assert not closer.is_alive(), 'close() blocked on the busy slot'
    assert len(cuda.live) == 8 and not cuda.closed  # nothing freed under the waiting thread
    assert 'still running or waited on' in caplog.text
    release.set()
    waiter.join(5)
    assert slot.outputs['scores'].shape == (1, 10)  # still valid memory for the thread


@pytest.mark.parametrize('outputs_from', ['pinned', 'copy'])
def test_outputs_from_pinned_or_a_copy(outputs_from, monkeypatch, tmp_path):
    backend, log = _fake_backend(monkeypatch, tmp_path, '10.x', tensors=_STATIC, profiles=1,
                                 outputs_from=outputs_from)
    slot = backend.create_slot(0)
    pinned = slot.handle.pinned['scores']
    assert (slot.outputs['scores'] is pinned) == (outputs_from == 'pinned')
    backend.launch(slot)
    pinned[:] = 7  # what the D2H copy writes
    assert backend.wait(slot)
    np.testing.assert_array_equal(slot.outputs['scores'], np.full((1, 10), 7, np.float32))
    backend.close()
    with pytest.raises(ConfigError, match='outputs_from'):
        _fake_backend(monkeypatch, tmp_path, '10.x', outputs_from='uncached')


@pytest.mark.parametrize('inputs_from', ['pinned', 'copy'])
def test_inputs_from_pinned_or_a_cached_array_copied_at_launch(inputs_from, monkeypatch,
                                                               tmp_path):
    """The TX2's switch for the inputs; the H2D copy really moves bytes (real cuda-bindings)."""
    import ctypes
    device, cudart = _cuda_python_device(monkeypatch)
    backend, log = _fake_backend(monkeypatch, tmp_path, '10.x', tensors=_STATIC, profiles=1,
                                 cuda=device, inputs_from=inputs_from)
    slot = backend.create_slot(0)
    pinned = slot.handle.pinned['images']
    assert (slot.inputs['images'] is pinned) == (inputs_from == 'pinned')
    assert np.shares_memory(slot.rows[0].inputs['images'], slot.inputs['images'])
    slot.inputs['images'][:] = 4.25  # what the pre-processor writes
    backend.launch(slot)
    assert backend.wait(slot)
    np.testing.assert_array_equal(pinned, np.full((1, 3, 8, 8), 4.25, np.float32))
    address = int(slot.handle.device['images'])
    on_device = np.frombuffer(ctypes.string_at(address, pinned.nbytes), np.float32)
    assert (on_device == 4.25).all()
    backend.close()
    with pytest.raises(ConfigError, match='inputs_from'):
        _fake_backend(monkeypatch, tmp_path, '10.x', inputs_from='cached')


@pytest.mark.parametrize('version', ['8.2', '11.x'])
def test_a_host_shape_tensor_is_refused_by_name(version, monkeypatch, tmp_path):
    log = []
    trt = _fake_runtime_trt(version, log, _STATIC, 1)
    trt.engine._impl.host.add('images')  # TensorLocation.HOST, the real 11.4 enum
    with pytest.raises(ModelError, match="'images' lives in host memory"):
        _fake_backend(monkeypatch, tmp_path, version, trt=trt)


# --- The lean runtime (bug 5) and `auto` with a runtime-only TensorRT (bug 6) ---

def _no_full_tensorrt(monkeypatch):
    from tx2_inference.backends.tensorrt import loader, runtime
    monkeypatch.setattr(loader, 'require_gpu', lambda: 1)
    for name in ('tensorrt', 'tensorrt_lean'):
        monkeypatch.setitem(sys.modules, name, None)  # import fails: not installed
    return runtime


def test_import_tensorrt_finds_the_real_11x_lean_bindings(monkeypatch):
    runtime = _no_full_tensorrt(monkeypatch)
    trt = runtime.import_tensorrt()
    assert trt is lean and runtime.is_lean(trt)
    assert not hasattr(trt, 'init_libnvinfer_plugins')
    logger = runtime.tensorrt_logger(trt)  # a real 11.4 Logger, no plugin registration
    assert isinstance(logger, lean.ILogger)


@pytest.mark.parametrize('meta, refused_before_loading', [
    ({'options': {'precision': 'fp16'}}, True),
    (None, False),  # no metadata (trtexec): TensorRT says None, the message says why
])
def test_lean_runtime_refuses_an_engine_not_built_version_compatible(
        meta, refused_before_loading, monkeypatch, tmp_path):
    log = []
    trt = _fake_runtime_trt('11.x', log, _STATIC, 1, name='tensorrt_lean_bindings')
    trt.engine = None  # what deserialize_cuda_engine returns for such an engine
    if meta is not None:
        (tmp_path / 'model.json').write_text(json.dumps(meta))
    with pytest.raises(ModelError) as err:
        _fake_backend(monkeypatch, tmp_path, '11.x', trt=trt)
    message = str(err.value)
    assert 'lean runtime' in message and '--version-compatible' in message
    assert 'another TensorRT version' not in message
    assert (('runtime', '__init__') not in log) == refused_before_loading


def test_lean_runtime_runs_a_version_compatible_engine(monkeypatch, tmp_path):
    log = []
    trt = _fake_runtime_trt('11.x', log, _STATIC, 1, name='tensorrt_lean_bindings')
    (tmp_path / 'model.json').write_text(json.dumps(
        {'options': {'precision': 'fp16', 'version_compatible': True}}))
    backend, _ = _fake_backend(monkeypatch, tmp_path, '11.x', trt=trt)
    backend.run(backend.create_slot(0))
    backend.close()


def test_auto_on_onnx_with_only_the_lean_runtime_picks_onnxruntime(monkeypatch, default_model):
    from tx2_inference import backends
    from tx2_inference.backends.tensorrt import cuda, runtime
    monkeypatch.setattr(cuda, 'probe_gpu', lambda refresh=False: (1, ''))  # as on a Jetson
    monkeypatch.setattr(runtime, 'import_tensorrt', lambda: lean)  # runtime-only TensorRT
    with backends.open_backend(default_model, 'auto') as backend:
        assert backend.name == 'onnxruntime'


# --- cuda.py's cuda-python path against the real cuda-bindings (no GPU: only the calls that
# need one are stood in, after the real call has checked their arguments; deviceless_cudart) ---

def _cuda_python_device(monkeypatch, version='13.0.3'):
    from tx2_inference.backends.tensorrt import cuda
    cudart = deviceless_cudart.install(monkeypatch)
    monkeypatch.setattr(cuda, 'require_gpu', lambda: 1)
    device = cuda.open_cuda(0, 'cuda-python')  # the real _CudaPythonDevice over it
    device.releases_gil = cuda.version_tuple(version) >= device.GIL_RELEASED_FROM
    return device, cudart


def test_cuda_python_stream_handle_is_the_streams_value_not_its_wrappers_address(monkeypatch):
    """Bug 3, on the real cuda-bindings: ``int(stream)``, never ``getPtr()``."""
    from cuda.bindings import runtime as real

    from tx2_inference.backends.tensorrt import cuda
    assert cuda_bindings.__version__ == '13.0.3'
    given = real.cudaStream_t(init_value=0x1234)
    device = cuda._CudaPythonDevice.__new__(cuda._CudaPythonDevice)
    assert device.stream_handle(given) == 0x1234
    assert given.getPtr() != 0x1234  # the wrapper's storage: what the old code handed TensorRT
    # And a stream the device made (cudaStreamCreate's real cudaStream_t type).
    device, cudart = _cuda_python_device(monkeypatch)
    stream = device.stream()
    assert isinstance(stream, real.cudaStream_t)
    assert device.stream_handle(stream) == int(stream) == int(cudart.streams[0])


def test_cuda_python_errors_are_named_with_the_real_error_enum(monkeypatch):
    from cuda.bindings import runtime as real

    from tx2_inference.backends.tensorrt import cuda
    from tx2_inference.backends.tensorrt.cuda import CudaError
    device, cudart = _cuda_python_device(monkeypatch)
    cudart.fail['cudaMalloc'] = real.cudaError_t.cudaErrorMemoryAllocation
    with pytest.raises(CudaError) as err:
        device.mem_alloc(64)
    assert str(err.value) == 'CUDA cudaMalloc (64 bytes) failed: cudaErrorMemoryAllocation (2)'
    # The unwrapped bindings on this machine (no driver): their real error, named.
    monkeypatch.undo()
    with pytest.raises(CudaError) as err:
        cuda._CudaPythonDevice(0)
    assert str(err.value) == ('CUDA cudaSetDevice failed: cudaErrorInsufficientDriver (35)')


def test_cuda_python_done_event_flags_and_waiting_without_the_gil(monkeypatch):
    from cuda.bindings import runtime as real
    device, cudart = _cuda_python_device(monkeypatch, '12.8.0')  # holds the GIL: poll
    done = device.event(blocking=True)
    device.event()  # a timing event
    assert isinstance(done, real.cudaEvent_t)
    flags = [c[1] for c in cudart.made('cudaEventCreateWithFlags')]
    assert flags == [real.cudaEventBlockingSync | real.cudaEventDisableTiming,
                     real.cudaEventDefault]
    cudart.not_ready = 2
    device.synchronize(done)
    assert cudart.made('cudaEventSynchronize') == []
    assert len(cudart.made('cudaEventQuery')) == 3
    device, cudart = _cuda_python_device(monkeypatch, '12.9.1')  # releases it: blocking call
    device.synchronize(done)
    assert [c[0] for c in cudart.calls[-1:]] == ['cudaEventSynchronize']


def test_cuda_python_pinned_arrays_are_freed_once_and_never_through_a_copy(monkeypatch):
    device, cudart = _cuda_python_device(monkeypatch)
    array = device.pagelocked_empty((4, 8), np.float32)
    array[:] = 3
    view, copy = array[1:], array + 1  # neither is an allocation of its own
    device.free(copy)
    assert cudart.made('cudaFreeHost') == []
    device.free(view)  # a view frees the allocation it views, once
    device.free(array)
    assert len(cudart.made('cudaFreeHost')) == 1 and cudart.buffers == {}


def test_cuda_python_round_trip_through_the_real_argument_checks(monkeypatch):
    """H2D and D2H on one stream: every argument passes the real bindings' conversion."""
    device, cudart = _cuda_python_device(monkeypatch)
    host_in = device.pagelocked_empty((2, 16), np.float32)
    host_out = device.pagelocked_empty((2, 16), np.float32)
    host_in[:] = np.arange(32, dtype=np.float32).reshape(2, 16)
    memory = device.mem_alloc(host_in.nbytes)
    stream, done = device.stream(), device.event(blocking=True)
    device.memcpy_htod_async(memory, host_in, stream)
    device.memcpy_dtoh_async(host_out, memory, stream)
    device.record(done, stream)
    device.synchronize(done)
    np.testing.assert_array_equal(host_out, host_in)
    assert all(c[-1] is stream for c in cudart.made('cudaMemcpyAsync'))
    device.free(memory, host_in, host_out, done, stream)
    assert cudart.buffers == {}
    assert [c[0] for c in cudart.calls[-2:]] == ['cudaEventDestroy', 'cudaStreamDestroy']


def test_pycuda_without_retain_primary_context_says_what_to_install(monkeypatch):
    from tx2_inference.backends.tensorrt import cuda
    pycuda = types.ModuleType('pycuda')
    pycuda.VERSION_TEXT = '2019.1.2'
    driver = types.ModuleType('pycuda.driver')
    driver.Error = RuntimeError
    driver.init = lambda: None
    driver.Device = lambda index: types.SimpleNamespace(make_context=None)  # no retain_...
    pycuda.driver = driver
    monkeypatch.setitem(sys.modules, 'pycuda', pycuda)
    monkeypatch.setitem(sys.modules, 'pycuda.driver', driver)
    with pytest.raises(BackendUnavailableError) as err:
        cuda._PycudaDevice(0)
    assert '2019.1.2' in str(err.value) and "'pycuda>=2020.1'" in str(err.value)


def test_pycuda_done_event_blocks_and_only_allocations_are_freed(monkeypatch):
    from tx2_inference.backends.tensorrt import cuda
    freed = []

    class Allocation(bytearray):  # pycuda's HostAllocation / DeviceAllocation: free()
        def free(self):
            freed.append(self)

    context = types.SimpleNamespace(push=lambda: None, pop=lambda: None, detach=lambda: None)
    driver = types.ModuleType('pycuda.driver')
    driver.Error, driver.init = RuntimeError, lambda: None
    driver.Device = lambda index: types.SimpleNamespace(retain_primary_context=lambda: context)
    driver.event_flags = types.SimpleNamespace(DEFAULT=0, BLOCKING_SYNC=1, DISABLE_TIMING=2)
    driver.Event = lambda flags=0: types.SimpleNamespace(flags=flags)
    driver.pagelocked_empty = lambda shape, dtype: np.ndarray(
        shape, dtype, buffer=Allocation(int(np.prod(shape)) * np.dtype(dtype).itemsize))
    pycuda = types.ModuleType('pycuda')
    pycuda.driver = driver
    monkeypatch.setitem(sys.modules, 'pycuda', pycuda)
    monkeypatch.setitem(sys.modules, 'pycuda.driver', driver)
    device = cuda._PycudaDevice(0)
    assert device.event(blocking=True).flags == 1 | 2 and device.event().flags == 0
    array = device.pagelocked_empty((2, 4), np.float32)
    device.free(array[1:], array + 1)  # a view and a copy: not allocations
    assert freed == []
    device.free(array)
    assert freed == [array.base]


def test_make_gpu_check_without_a_gpu_is_one_line_and_fails():
    import subprocess
    if probe_gpu()[0]:
        pytest.skip('a GPU is present: make gpu-check runs instead')
    proc = subprocess.run(['make', '--no-print-directory', 'gpu-check',
                           'GPU_PYTHON=' + sys.executable], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1, proc.stdout
    assert 'needs an NVIDIA GPU' in lines[0]


def test_the_tensorrt_backend_modules_import_no_circle():
    """Every import between backends/tensorrt modules (lazy ones too) points one way."""
    folder = os.path.join(ROOT, 'tx2_inference', 'backends', 'tensorrt')
    package = 'tx2_inference.backends.tensorrt'
    graph = {}
    for name in os.listdir(folder):
        if not name.endswith('.py') or name == '__init__.py':
            continue
        module = name[:-3]
        with open(os.path.join(folder, name)) as f:
            tree = ast.parse(f.read())
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == package:
                    targets.update(a.name for a in node.names)
                elif node.module.startswith(package + '.'):
                    targets.add(node.module[len(package) + 1:].split('.')[0])
        graph[module] = targets & {n[:-3] for n in os.listdir(folder)} - {module}
    assert 'runtime' not in graph['cache'] and 'cache' in graph['runtime']

    def reaches(start, goal, seen=()):
        return any(t == goal or (t not in seen and reaches(t, goal, seen + (t,)))
                   for t in graph.get(start, ()))

    assert [m for m in sorted(graph) if reaches(m, m)] == []


def test_the_gpu_check_standin_takes_the_real_signatures_and_raises_like_tensorrt():
    """test/trt_standin.py runs where no TensorRT is (make gpu-check): held to it here."""
    import trt_signatures
    import trt_standin
    classes = [(trt_standin._TensorsEngine, 'ICudaEngine'),
               (trt_standin._BindingsEngine, 'ICudaEngine'),
               (trt_standin.TensorsContext, 'IExecutionContext'),
               (trt_standin.BindingsContext, 'IExecutionContext')]
    compared = set()
    for cls, real in classes:
        for name in dir(cls):
            fn = getattr(cls, name)
            if name.startswith('_') or not callable(fn):
                continue
            overloads = trt_signatures.overloads(real, name)
            if not overloads:
                continue
            own = list(inspect.signature(fn).parameters)[1:]
            assert any([n for n, _ in p[:len(own)]] == own for p, _ in overloads), (
                cls.__name__, name, own, overloads)
            compared.add(name)
    assert {'set_optimization_profile_async', 'execute_async_v3', 'execute_async_v2',
            'set_tensor_address', 'get_tensor_profile_shape', 'get_profile_shape'} <= compared
    engine = trt_standin._TensorsEngine({'items': 4, 'max_batch': 2, 'profiles': 2,
                                         'base_ms': 0, 'item_ms': 0, 'static': False})
    context = engine.create_execution_context()
    assert context.set_optimization_profile_async(1, 0) is True
    with pytest.raises(RuntimeError, match='^Error in set optimization profile async.$'):
        context.set_optimization_profile_async(2, 0)
    static = trt_standin._TensorsEngine({'items': 4, 'max_batch': 2, 'profiles': 1,
                                         'base_ms': 0, 'item_ms': 0, 'static': True})
    assert static.get_tensor_shape('x') == (2, 4)
    assert static.create_execution_context().get_tensor_shape('y') == (2, 4)


@pytest.mark.parametrize('generation', ['tensors', 'bindings'])
@pytest.mark.parametrize('static', [False, True])
def test_the_gpu_check_path_dry_run_on_the_host(generation, static, monkeypatch, tmp_path):
    """Dry-run make gpu-check's stand-in engine through the backend, on the host.

    The real cuda-bindings with the device calls stood in (host memory at real addresses), the
    stand-in's CuPy kernel replaced by the same y = 2x + 1 on those addresses. What stays for
    the GPU: the kernel, real streams and timing (test_gpu_check.py).
    """
    import ctypes

    import trt_standin

    from tx2_inference.backends.tensorrt import runtime

    def host_kernel(x, y, count, spin_ms, stream_handle):
        assert stream_handle in handles, 'not a stream the device made'
        source = np.frombuffer((ctypes.c_float * count).from_address(int(x)), np.float32)
        target = np.frombuffer((ctypes.c_float * count).from_address(int(y)), np.float32)
        target[:] = 2 * source + 1

    device, cudart = _cuda_python_device(monkeypatch)
    handles = set()
    monkeypatch.setattr(trt_standin, 'launch', host_kernel)
    monkeypatch.setattr(runtime, 'import_tensorrt', lambda: trt_standin.module(generation))
    monkeypatch.setattr(runtime, 'open_cuda', lambda device_index, library: device)
    path = trt_standin.engine_file(str(tmp_path / 'standin.engine'), 16, max_batch=4,
                                   profiles=2, generation=generation, static=static)
    with runtime.TensorRTBackend(path, outputs_from='copy', inputs_from='copy') as backend:
        slots = [backend.create_slot(i, {'x': (4 if static else 3, 16)}) for i in range(2)]
        handles.update(int(s) for s in cudart.streams)
        for number, slot in enumerate(slots):
            slot.inputs['x'][:] = np.arange(slot.inputs['x'].size).reshape(-1, 16) + number
            backend.run(slot)
            np.testing.assert_array_equal(slot.outputs['y'], 2 * slot.inputs['x'] + 1)
        assert backend._engine.launches == {4 if static else 3: 2}
