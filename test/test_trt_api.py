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

from tx2_inference.backends import trt_api
from tx2_inference.backends.cuda import probe_gpu
from tx2_inference.errors import BackendUnavailableError

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
    from tx2_inference.backends import tensorrt_backend
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
    if probe_gpu()[0] == 0:
        pytest.skip('no usable GPU ({}): TensorRT is not touched'.format(probe_gpu()[1]))
    for name in ('tensorrt', 'tensorrt_lean'):
        try:
            return __import__(name)
        except ImportError:
            continue
    pytest.skip('TensorRT is not installed')


def test_installed_tensorrt_matches_its_generation():
    trt = _installed_tensorrt()
    major, minor = (int(v) for v in trt.__version__.split('.')[:2])
    generation = trt_api.select_runtime_api(dir(trt.ICudaEngine), dir(trt.IExecutionContext))
    assert generation == ('tensors' if (major, minor) >= (8, 5) else 'bindings')


def test_cuda_round_trip_through_pinned_memory_on_a_stream():
    """H2D, D2H copies and an event on a real GPU, with whichever CUDA library is here."""
    count, reason = probe_gpu()
    if count == 0:
        pytest.skip('no usable GPU: {}'.format(reason))
    from tx2_inference.backends.cuda import open_cuda
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
