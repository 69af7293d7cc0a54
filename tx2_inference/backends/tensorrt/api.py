"""The one place that knows how TensorRT's Python API differs between versions.

Two generations of the runtime API (NVIDIA's Python API reference for each version):

- **bindings** (TensorRT 7.x to 8.6; JetPack 4.6 ships 8.0.1, 4.6.1 and later 8.2.1, the last
  releases for Tegra X2; every call used here exists in 8.0 too):
  ``ICudaEngine.num_bindings / get_binding_name / binding_is_input / get_binding_shape /
  get_binding_dtype / get_profile_shape``; ``IExecutionContext.set_binding_shape /
  get_binding_shape / execute_async_v2(bindings, stream_handle)``.
- **tensors** (TensorRT 8.5 to 11; 10.0 removed the bindings API): ``ICudaEngine.num_io_tensors
  / get_tensor_name / get_tensor_mode / get_tensor_shape / get_tensor_dtype /
  get_tensor_profile_shape``; ``IExecutionContext.set_input_shape / get_tensor_shape /
  set_tensor_address / execute_async_v3(stream_handle)``.

8.5 and 8.6 have both; the tensors API is chosen there, as NVIDIA's migration guide asks.
The choice is made from attribute *names* (``select_runtime_api``), so it is tested against
recorded API surfaces of each version without a GPU. Builder-side differences
(``builder_features``, ``network_flags``) are here too, for the engine builder.

**Optimisation profiles and concurrent contexts.** With dynamic input shapes, a profile can be
used by one execution context at a time (NvInferRuntime.h, ``setOptimizationProfileAsync``:
"the optimization profile must be set with a unique profileIndex before calling execute or
enqueue"; NVIDIA/TensorRT issue #1590). So executor slot ``i`` selects profile ``i``
(``slot_profile``), and a dynamic engine needs one profile per slot. Static engines keep
profile 0 in every context, as before. The selection, per generation:

- both: ``IExecutionContext.set_optimization_profile_async(i, stream_handle)`` (TensorRT 8.0 to
  11), on the slot's own stream, before any input shape is set; the slot's inference is
  enqueued later on that same stream, which gives the ordering the header asks for. Where a
  context lacks it (TensorRT 7.x), the bindings generation assigns
  ``active_optimization_profile = i`` instead (``select_profile_call``).
- tensors (8.5 to 11): tensor names are the same in every profile; ``set_input_shape``,
  ``get_tensor_shape`` and ``set_tensor_address`` act on the context's selected profile, and
  ``get_tensor_profile_shape(name, i)`` reads its ranges (NVIDIA ``demo/BERT/perf.py``).
- bindings (8.0 to 8.6): ``num_bindings`` counts every profile's bindings; profile ``k``'s
  binding of a tensor is its profile-0 index ``+ k * (num_bindings // num_optimization_profiles)``
  and is named ``'<name> [profile k]'`` (``binding_index``, ``profile_binding_name``). The list
  given to ``execute_async_v2`` has all ``num_bindings`` entries, the selected profile's set.
"""

from typing import Any, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from tx2_inference.errors import BackendUnavailableError, ConfigError, ModelError

IoTensor = NamedTuple('IoTensor', [('name', str), ('is_input', bool), ('index', int)])

_TENSORS_ENGINE = ('num_io_tensors', 'get_tensor_name', 'get_tensor_mode',
                   'get_tensor_shape', 'get_tensor_dtype')
_TENSORS_CONTEXT = ('set_tensor_address', 'set_input_shape', 'get_tensor_shape',
                    'execute_async_v3')
_BINDINGS_ENGINE = ('num_bindings', 'get_binding_name', 'binding_is_input',
                    'get_binding_shape', 'get_binding_dtype')
_BINDINGS_CONTEXT = ('set_binding_shape', 'get_binding_shape', 'execute_async_v2')


def select_runtime_api(engine_names: Iterable[str], context_names: Iterable[str]) -> str:
    """Pick the runtime API generation from the names an engine and a context offer.

    :param engine_names: ``dir(engine)`` (or a recorded surface).
    :param context_names: ``dir(context)``.
    :returns: ``'tensors'`` (TensorRT 8.5 to 11) or ``'bindings'`` (TensorRT 7 to 8.4).
    :raises BackendUnavailableError: neither API is complete.
    """
    engine_names, context_names = set(engine_names), set(context_names)
    if (engine_names.issuperset(_TENSORS_ENGINE)
            and context_names.issuperset(_TENSORS_CONTEXT)):
        return 'tensors'
    if (engine_names.issuperset(_BINDINGS_ENGINE)
            and context_names.issuperset(_BINDINGS_CONTEXT)):
        return 'bindings'
    raise BackendUnavailableError(
        'this TensorRT offers neither the named-tensor API (execute_async_v3) nor the bindings '
        'API (execute_async_v2); supported: TensorRT 8.0 to 11')


def slot_profile(slot: int, num_profiles: int, dynamic: bool, engine_path: str = '') -> int:
    """Return the optimisation profile executor slot ``slot`` must select.

    :param slot: the slot's index (0 to depth - 1).
    :param num_profiles: ``ICudaEngine.num_optimization_profiles``.
    :param dynamic: whether any engine input has a dynamic (-1) dimension.
    :param engine_path: named in the error message.
    :returns: 0 for a static engine (its contexts may share profile 0); ``slot`` otherwise.
    :raises ModelError: a dynamic engine with no profile ``slot``: running two contexts on one
        profile is not allowed by TensorRT, so this is refused instead.
    """
    if not dynamic:
        return 0
    if slot < int(num_profiles):
        return slot
    raise ModelError(
        'TensorRT engine {!r} has dynamic input shapes and {} optimisation profile(s), but '
        'executor slot {} needs a profile of its own: TensorRT lets only one execution context '
        'use a profile at a time. Rebuild the engine with one profile per slot: tx2-convert '
        'engine MODEL.onnx --shapes NAME:MIN:OPT:MAX --profiles N -o MODEL.engine, with N the '
        'executor_depth (at least {}); or set executor_depth to at most {}.'.format(
            engine_path or '?', num_profiles, slot, slot + 1, num_profiles))


def binding_index(index: int, profile: int, num_bindings: int, num_profiles: int) -> int:
    """Return the bindings-API index of profile-0 binding ``index`` in ``profile``.

    TensorRT 7 to 8.6 (8.0.1 or 8.2.1 on a TX2) number the bindings of profile ``k`` after those of
    profile ``k - 1``: ``index + profile * (num_bindings // num_profiles)``.

    :raises ModelError: ``num_bindings`` is not a multiple of ``num_profiles``, or ``index``
        / ``profile`` are out of range.
    """
    num_profiles = max(int(num_profiles), 1)
    per_profile, rest = divmod(int(num_bindings), num_profiles)
    if rest or not 0 <= index < per_profile or not 0 <= profile < num_profiles:
        raise ModelError('binding {} of profile {} does not exist in an engine with {} '
                         'bindings in {} optimisation profile(s)'.format(
                             index, profile, num_bindings, num_profiles))
    return index + profile * per_profile


def profile_binding_name(name: str, profile: int) -> str:
    """Return the bindings-API name of tensor ``name`` in ``profile`` (``'x [profile 1]'``)."""
    return name if profile == 0 else '{} [profile {}]'.format(name, profile)


def refuse_implicit_batch(engine: Any, engine_path: str) -> None:
    """Refuse an engine built with an implicit batch dimension, saying what to do.

    Such engines (UFF and Caffe parsers, or a network made without ``EXPLICIT_BATCH``; common
    on TX2-era recipes) run only with the implicit-batch ``execute_async(batch_size, ...)``,
    which this backend does not use: ``execute_async_v2`` / ``v3`` fail on every frame. The
    property ``ICudaEngine.has_implicit_batch_dimension`` exists from 8.0 to 10.x (pyCore.cpp
    release/8.2 line 650); 10.x always answers False, 11 has no such engines nor property.

    :raises ModelError: the engine has an implicit batch dimension.
    """
    if getattr(engine, 'has_implicit_batch_dimension', False):
        raise ModelError(
            'TensorRT engine {!r} was built with an implicit batch dimension (a UFF or Caffe '
            'model, or a network without EXPLICIT_BATCH): this backend runs explicit-batch '
            'engines only (execute_async_v2/v3). Export the model to ONNX (tx2-convert onnx) '
            'and point model_path at the .onnx (the engine is then built here), or build it '
            'with tx2-convert engine MODEL.onnx -o MODEL.engine.'.format(engine_path))


def select_profile_call(context_names: Iterable[str]) -> str:
    """Return how a context selects its optimisation profile, from ``dir(context)``.

    :returns: ``'set_optimization_profile_async'`` (TensorRT 8.0 to 11) or
        ``'active_optimization_profile'`` (the attribute TensorRT 7.x sets it with; it wraps
        ``setOptimizationProfile``, deprecated in the 8.x C++ API in favour of the async call).
    :raises BackendUnavailableError: neither is there.
    """
    names = set(context_names)
    for call in ('set_optimization_profile_async', 'active_optimization_profile'):
        if call in names:
            return call
    raise BackendUnavailableError('this TensorRT execution context cannot select an '
                                  'optimisation profile; supported: TensorRT 8.0 to 11')


BuilderFeatures = NamedTuple('BuilderFeatures', [
    ('workspace', str),        # 'set_memory_pool_limit' (8.4+) or 'max_workspace_size' (<= 8.x)
    ('precision_flags', bool),  # BuilderFlag.FP16/INT8 exist (up to 10.x; not 11)
    ('calibrators', bool),     # IInt8EntropyCalibrator2 exists (up to 10.x; not 11)
    ('serialized_build', bool),  # Builder.build_serialized_network (8.0+)
])


def builder_features(config_names: Iterable[str], flag_names: Iterable[str],
                     module_names: Iterable[str], builder_names: Iterable[str]
                     ) -> BuilderFeatures:
    """Say which builder calls this TensorRT has, from ``dir()`` of its objects.

    :param config_names: ``dir(builder.create_builder_config())``.
    :param flag_names: ``trt.BuilderFlag.__members__``.
    :param module_names: ``dir(tensorrt)``.
    :param builder_names: ``dir(builder)``.
    """
    config_names, flag_names = set(config_names), set(flag_names)
    if 'set_memory_pool_limit' in config_names:
        workspace = 'set_memory_pool_limit'
    elif 'max_workspace_size' in config_names:
        workspace = 'max_workspace_size'
    else:
        workspace = ''
    return BuilderFeatures(
        workspace=workspace,
        precision_flags={'FP16', 'INT8'}.issubset(flag_names),
        calibrators='IInt8EntropyCalibrator2' in set(module_names),
        serialized_build='build_serialized_network' in set(builder_names))


def network_flags(version: str, flag_names: Iterable[str], strongly_typed: bool) -> List[str]:
    """Return the ``NetworkDefinitionCreationFlag`` names to create a network with.

    ``EXPLICIT_BATCH`` up to 9.x (ignored in 10, gone in 11); ``STRONGLY_TYPED`` on 10.x when
    ``strongly_typed`` is asked for (a QDQ model built as INT8); TensorRT 11 is always strongly
    typed and takes no flag.

    :param version: ``tensorrt.__version__``.
    :param flag_names: ``trt.NetworkDefinitionCreationFlag.__members__``.
    :param strongly_typed: whether the network should be strongly typed where that is a flag.
    """
    major = int(str(version).split('.')[0])
    names = set(flag_names)
    flags = []  # type: List[str]
    if major < 10 and 'EXPLICIT_BATCH' in names:
        flags.append('EXPLICIT_BATCH')
    if major == 10 and strongly_typed and 'STRONGLY_TYPED' in names:
        flags.append('STRONGLY_TYPED')
    return flags


class RuntimeApi(object):
    """Engine and context calls of one API generation; all results are checked."""

    generation = ''
    execute_call = ''  # the IExecutionContext call ``execute`` makes, for error messages

    def __init__(self, trt: Any, engine: Any) -> None:
        """Wrap ``engine`` of TensorRT module ``trt``."""
        self.trt = trt
        self.engine = engine

    def io_tensors(self) -> List[IoTensor]:
        """List the engine's inputs and outputs (of optimisation profile 0)."""
        raise NotImplementedError

    def shape(self, name: str) -> Tuple[int, ...]:
        """Return the engine's shape of a tensor (-1 where dynamic)."""
        raise NotImplementedError

    def dtype(self, name: str) -> Any:
        """Return the numpy dtype of a tensor."""
        raise NotImplementedError

    def profile_shapes(self, name: str, profile: int) -> Sequence[Tuple[int, ...]]:
        """Return (min, opt, max) shapes of an input in an optimisation profile."""
        raise NotImplementedError

    def select_profile(self, context: Any, profile: int, stream_handle: int) -> None:
        """Make ``context`` use optimisation ``profile``, before its input shapes are set.

        ``set_optimization_profile_async(profile, stream_handle)``, checked: its copies go on
        the slot's stream, the stream its inference is enqueued on later. On failure every
        TensorRT from 8.0 to 11 *raises* ``RuntimeError("Error in set optimization profile
        async.")`` instead of returning False (``python/src/infer/pyCore.cpp``,
        ``context_set_optimization_profile_async``: ``throw std::runtime_error`` in
        release/8.0 and 8.2, ``PY_ASSERT_RUNTIME_ERROR`` in 8.6, 10.3, 11.0 and 11.1); both
        become the explanatory ``ModelError``.
        """
        try:
            selected = context.set_optimization_profile_async(profile, stream_handle)
        except RuntimeError as error:
            raise ModelError(self._profile_refused(profile, error)) from error
        if not selected:
            raise ModelError(self._profile_refused(profile, 'it returned False'))

    def _profile_refused(self, profile: int, why: Any) -> str:
        return ('TensorRT could not select optimisation profile {} ({}): the engine has {} '
                'optimisation profile(s), or another execution context uses this one (see the '
                'TensorRT log above). Rebuild the engine with one profile per executor slot '
                '(tx2-convert engine MODEL.onnx --profiles N, N = executor_depth) or lower '
                'executor_depth.'.format(profile, why, self.engine.num_optimization_profiles))

    def set_input_shape(self, context: Any, name: str, shape: Sequence[int],
                        profile: int) -> None:
        """Set a dynamic input's shape on a context."""
        raise NotImplementedError

    def is_host_tensor(self, name: str) -> bool:
        """Return True when a tensor lives in host memory (a shape tensor), not on the GPU."""
        raise NotImplementedError

    def context_shape(self, context: Any, name: str, profile: int) -> Tuple[int, ...]:
        """Return a tensor's concrete shape on a context once inputs are set."""
        raise NotImplementedError

    def bind(self, context: Any, addresses: Sequence[Tuple[str, int]], profile: int) -> Any:
        """Bind device addresses to a context once; returns what ``execute`` needs."""
        raise NotImplementedError

    def execute(self, context: Any, bound: Any, stream_handle: int) -> bool:
        """Enqueue inference on a stream; False when TensorRT refused."""
        raise NotImplementedError


class TensorsApi(RuntimeApi):
    """TensorRT 8.5 to 11: named tensors, ``set_tensor_address`` + ``execute_async_v3``."""

    generation = 'tensors'
    execute_call = 'execute_async_v3'

    def io_tensors(self) -> List[IoTensor]:
        """Enumerate with ``num_io_tensors`` / ``get_tensor_name`` / ``get_tensor_mode``."""
        engine, mode = self.engine, self.trt.TensorIOMode.INPUT
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        return [IoTensor(n, engine.get_tensor_mode(n) == mode, i) for i, n in enumerate(names)]

    def shape(self, name: str) -> Tuple[int, ...]:
        """``ICudaEngine.get_tensor_shape``."""
        return tuple(self.engine.get_tensor_shape(name))

    def dtype(self, name: str) -> Any:
        """``trt.nptype(ICudaEngine.get_tensor_dtype)``."""
        return self.trt.nptype(self.engine.get_tensor_dtype(name))

    def is_host_tensor(self, name: str) -> bool:
        """``ICudaEngine.get_tensor_location(name) == TensorLocation.HOST``."""
        return self.engine.get_tensor_location(name) == self.trt.TensorLocation.HOST

    def profile_shapes(self, name: str, profile: int) -> Sequence[Tuple[int, ...]]:
        """``ICudaEngine.get_tensor_profile_shape(name, profile)``."""
        return [tuple(s) for s in self.engine.get_tensor_profile_shape(name, profile)]

    def set_input_shape(self, context: Any, name: str, shape: Sequence[int],
                        profile: int) -> None:
        """``IExecutionContext.set_input_shape``, checked."""
        if not context.set_input_shape(name, tuple(shape)):
            raise ConfigError('TensorRT refused shape {} for input {!r} (outside the '
                              'optimisation profile?)'.format(list(shape), name))

    def context_shape(self, context: Any, name: str, profile: int) -> Tuple[int, ...]:
        """``IExecutionContext.get_tensor_shape``."""
        return tuple(context.get_tensor_shape(name))

    def bind(self, context: Any, addresses: Sequence[Tuple[str, int]], profile: int) -> Any:
        """``IExecutionContext.set_tensor_address`` for every tensor, checked."""
        for name, address in addresses:
            if not context.set_tensor_address(name, int(address)):
                raise RuntimeError('TensorRT set_tensor_address({!r}) failed'.format(name))
        return None

    def execute(self, context: Any, bound: Any, stream_handle: int) -> bool:
        """``IExecutionContext.execute_async_v3(stream_handle)``."""
        return bool(context.execute_async_v3(stream_handle))


class BindingsApi(RuntimeApi):
    """TensorRT 7 to 8.6 (8.0.1 or 8.2.1 on JetPack 4.6.x): bindings + ``execute_async_v2``.

    With several optimisation profiles, profile k's bindings follow profile k-1's
    (``binding_index``), and are named ``'<name> [profile k]'``; both are checked against the
    engine the first time a profile is used.
    """

    generation = 'bindings'
    execute_call = 'execute_async_v2'

    def __init__(self, trt: Any, engine: Any) -> None:
        """Count bindings per optimisation profile."""
        super(BindingsApi, self).__init__(trt, engine)
        self.profiles = max(int(engine.num_optimization_profiles), 1)
        self.per_profile = engine.num_bindings // self.profiles
        self._index = {engine.get_binding_name(i): i for i in range(self.per_profile)}
        self._checked = {0}

    def select_profile(self, context: Any, profile: int, stream_handle: int) -> None:
        """``set_optimization_profile_async`` (8.0+), else ``active_optimization_profile =``."""
        if select_profile_call(dir(context)) == 'set_optimization_profile_async':
            super(BindingsApi, self).select_profile(context, profile, stream_handle)
        else:  # TensorRT 7.x; 8.x's setter raises RuntimeError too (pyCore.cpp release/8.2)
            try:
                context.active_optimization_profile = profile
            except RuntimeError as error:
                raise ModelError(self._profile_refused(profile, error)) from error

    def io_tensors(self) -> List[IoTensor]:
        """Enumerate with ``get_binding_name`` / ``binding_is_input``."""
        engine = self.engine
        return [IoTensor(engine.get_binding_name(i), bool(engine.binding_is_input(i)), i)
                for i in range(self.per_profile)]

    def _binding(self, name: str, profile: int = 0) -> int:
        index = binding_index(self._index[name], profile, self.engine.num_bindings,
                              self.profiles)
        if profile not in self._checked:
            for tensor, first in self._index.items():
                other = binding_index(first, profile, self.engine.num_bindings, self.profiles)
                found = self.engine.get_binding_name(other)
                if found != profile_binding_name(tensor, profile):
                    raise ModelError(
                        'engine binding {} is {!r}, expected {!r}: this TensorRT numbers the '
                        'bindings of optimisation profiles in another way; rebuild the engine '
                        'with --profiles 1 and run executor_depth 1'.format(
                            other, found, profile_binding_name(tensor, profile)))
            self._checked.add(profile)
        return index

    def shape(self, name: str) -> Tuple[int, ...]:
        """``ICudaEngine.get_binding_shape``."""
        return tuple(self.engine.get_binding_shape(self._binding(name)))

    def dtype(self, name: str) -> Any:
        """``trt.nptype(ICudaEngine.get_binding_dtype)``."""
        return self.trt.nptype(self.engine.get_binding_dtype(self._binding(name)))

    def is_host_tensor(self, name: str) -> bool:
        """``ICudaEngine.get_location(binding) == TensorLocation.HOST``."""
        return self.engine.get_location(self._binding(name)) == self.trt.TensorLocation.HOST

    def profile_shapes(self, name: str, profile: int) -> Sequence[Tuple[int, ...]]:
        """``ICudaEngine.get_profile_shape(profile, binding)``."""
        return [tuple(s) for s in self.engine.get_profile_shape(
            profile, self._binding(name, profile))]

    def set_input_shape(self, context: Any, name: str, shape: Sequence[int],
                        profile: int) -> None:
        """``IExecutionContext.set_binding_shape``, checked."""
        if not context.set_binding_shape(self._binding(name, profile), tuple(shape)):
            raise ConfigError('TensorRT refused shape {} for input {!r} (outside the '
                              'optimisation profile?)'.format(list(shape), name))

    def context_shape(self, context: Any, name: str, profile: int) -> Tuple[int, ...]:
        """``IExecutionContext.get_binding_shape``."""
        return tuple(context.get_binding_shape(self._binding(name, profile)))

    def bind(self, context: Any, addresses: Sequence[Tuple[str, int]], profile: int) -> Any:
        """Build the bindings list once: one address per binding index, 0 elsewhere."""
        bindings = [0] * self.engine.num_bindings
        for name, address in addresses:
            bindings[self._binding(name, profile)] = int(address)
        return bindings

    def execute(self, context: Any, bound: Any, stream_handle: int) -> bool:
        """``IExecutionContext.execute_async_v2(bindings, stream_handle)``."""
        return bool(context.execute_async_v2(bindings=bound, stream_handle=stream_handle))


def runtime_api(trt: Any, engine: Any, context: Optional[Any] = None) -> RuntimeApi:
    """Return the ``RuntimeApi`` for an engine, chosen by ``select_runtime_api``."""
    names = dir(context) if context is not None else dir(trt.IExecutionContext)
    generation = select_runtime_api(dir(engine), names)
    return TensorsApi(trt, engine) if generation == 'tensors' else BindingsApi(trt, engine)
