"""The real signatures of the TensorRT calls the backend makes, to hold the test fakes to.

- TensorRT 11.4: read from the real lean bindings (``tensorrt_lean_bindings``, the pybind11
  signature lines of each method's ``__doc__``), which import without a GPU.
- The bindings API (TensorRT 8.x only, absent from 11.4): the argument names of the
  ``.def(...)`` lines of ``python/src/infer/pyCore.cpp`` on NVIDIA/TensorRT ``release/8.2``
  (commit f5f4e6f2e2eeccce2021283680ed46cdad42350d, lines 600-667), copied below.

``follows(real)`` wraps a fake's method so that it is called as pybind11 would call the real
one: arguments by the real names, ``typing.SupportsInt`` converted with ``operator.index``
(anything else is pybind11's ``TypeError``), ``str`` and ``tuple``/``list`` checked, and a
``-> bool`` result checked to be a bool.
"""

import functools
import inspect
import operator
import re

import tensorrt_lean_bindings as lean

# release/8.2 pyCore.cpp: name -> [(argument, pybind11 type)] (types from the C++ signatures).
BINDINGS_API = {
    ('IExecutionContext', 'execute_async_v2'): (
        [('bindings', 'list'), ('stream_handle', 'typing.SupportsInt'),
         ('input_consumed', 'typing.SupportsInt = None')], 'bool'),
    ('IExecutionContext', 'set_binding_shape'): (
        [('binding', 'typing.SupportsInt'), ('shape', 'tuple')], 'bool'),
    ('IExecutionContext', 'get_binding_shape'): ([('binding', 'typing.SupportsInt')], 'Dims'),
    ('ICudaEngine', 'get_binding_name'): ([('index', 'typing.SupportsInt')], 'str'),
    ('ICudaEngine', 'binding_is_input'): ([('index', 'typing.SupportsInt')], 'bool'),
    ('ICudaEngine', 'get_binding_shape'): ([('index', 'typing.SupportsInt')], 'Dims'),
    ('ICudaEngine', 'get_binding_dtype'): ([('index', 'typing.SupportsInt')], 'DataType'),
    ('ICudaEngine', 'get_location'): ([('index', 'typing.SupportsInt')], 'TensorLocation'),
    ('ICudaEngine', 'get_profile_shape'): (
        [('profile_index', 'typing.SupportsInt'), ('binding', 'typing.SupportsInt')],
        'list[Dims]'),
}


def _split(text):
    """Split a pybind11 argument list at its top-level commas."""
    parts, depth, current = [], 0, ''
    for char in text:
        depth += char in '[(<'
        depth -= char in '])>'
        if char == ',' and depth == 0:
            parts.append(current.strip())
            current = ''
        else:
            current += char
    if current.strip():
        parts.append(current.strip())
    return parts


def lean_overloads(class_name, method):
    """Return [([(argument, type)], returns)] of a method of the real 11.4 lean bindings."""
    doc = getattr(getattr(lean, class_name), method).__doc__ or ''
    found = []
    for args, returns in re.findall(r'^(?:\d+\. )?' + re.escape(method) + r'\((.*)\) -> (.*)$',
                                    doc, re.M):
        params = [p.split(': ', 1) for p in _split(args)][1:]  # without self
        found.append(([(name, kind) for name, kind in params], returns.strip()))
    return found


def overloads(class_name, method):
    """Return the real overloads: 11.4's where it has the method, else release/8.2's."""
    if hasattr(getattr(lean, class_name), method):
        return lean_overloads(class_name, method)
    if (class_name, method) in BINDINGS_API:
        return [BINDINGS_API[class_name, method]]
    return []


def _convert(value, kind):
    kind = kind.split(' = ')[0]
    if kind == 'typing.SupportsInt':
        return operator.index(value)  # pybind11: TypeError for anything not an integer
    if kind == 'str' and not isinstance(value, str):
        raise TypeError('expected str, got {!r}'.format(value))
    if kind in ('tuple', 'list') and not isinstance(value, (tuple, list)):
        raise TypeError('expected a {}, got {!r}'.format(kind, value))
    return value


def _bind(params, args, kwargs):
    if len(args) > len(params):
        raise TypeError('too many arguments')
    kwargs = dict(kwargs)
    values = []
    for i, (name, kind) in enumerate(params):
        if i < len(args):
            if name in kwargs:
                raise TypeError('{} given twice'.format(name))
            values.append(_convert(args[i], kind))
        elif name in kwargs:
            values.append(_convert(kwargs.pop(name), kind))
        elif ' = ' in kind:
            values.append(None)
        else:
            raise TypeError('missing argument {}'.format(name))
    if kwargs:
        raise TypeError('unknown argument(s) {}'.format(sorted(kwargs)))
    return values


def follows(class_name):
    """Decorate a fake method: called as pybind11 calls the real ``class_name.<method>``."""
    def decorate(fake):
        real = overloads(class_name, fake.__name__)
        assert real, 'TensorRT has no {}.{}'.format(class_name, fake.__name__)
        own = list(inspect.signature(fake).parameters)[1:]
        # The fake takes the real arguments, in order; it may leave out trailing defaults.
        assert any([n for n, _ in params[:len(own)]] == own
                   and all(' = ' in k for _, k in params[len(own):]) for params, _ in real), (
            fake.__name__, own, real)

        @functools.wraps(fake)
        def call(self, *args, **kwargs):
            errors = []
            for params, returns in real:
                try:
                    values = _bind(params, args, kwargs)
                except TypeError as error:
                    errors.append(str(error))
                    continue
                if any(v is not None for v in values[len(own):]):
                    errors.append('the fake does not model {}'.format(params[len(own):]))
                    continue
                result = fake(self, *values[:len(own)])
                if returns == 'bool':
                    assert isinstance(result, bool), (fake.__name__, result)
                return result
            raise TypeError('{}(): incompatible function arguments: {}'.format(
                fake.__name__, '; '.join(errors)))
        call.real_overloads = real
        return call
    return decorate
