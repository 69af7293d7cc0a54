"""`tx2-convert triton-repo`: a Triton Inference Server model repository from a model file.

Writes ``<repository>/<name>/config.pbtxt`` (platform, inputs and outputs with dims, max batch
size, dynamic batching, instance groups), ``<repository>/<name>/<version>/model.onnx`` (or
``model.plan`` for a TensorRT engine) and the node's model config ``<name>.yaml`` beside
``config.pbtxt`` (Triton ignores it; the robot uses it with ``backend: triton``). The text is
parsed with Triton's own ``ModelConfig`` protobuf schema (``tritonclient.grpc.model_config_pb2``)
before anything is written, so a typo in ``--extra`` fails here, not on the server.
"""

import os
import re
import shutil
import tempfile
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from tx2_inference.errors import BackendUnavailableError, ConfigError, ModelError, UserError

RepoTensor = NamedTuple('RepoTensor', [('name', str), ('shape', Tuple[int, ...]),
                                       ('dtype', np.dtype), ('triton_type', str)])

# ONNX TensorProto element types -> (Triton data type, numpy dtype or None for strings).
_ONNX_TYPES = {
    1: ('TYPE_FP32', np.float32), 2: ('TYPE_UINT8', np.uint8), 3: ('TYPE_INT8', np.int8),
    4: ('TYPE_UINT16', np.uint16), 5: ('TYPE_INT16', np.int16), 6: ('TYPE_INT32', np.int32),
    7: ('TYPE_INT64', np.int64), 9: ('TYPE_BOOL', np.bool_), 10: ('TYPE_FP16', np.float16),
    11: ('TYPE_FP64', np.float64),
}
ENGINE_SUFFIXES = ('.engine', '.plan', '.trt')
KINDS = ('gpu', 'cpu')


def onnx_tensors(onnx_path: str) -> Tuple[List[RepoTensor], List[RepoTensor]]:
    """Return the graph's (inputs, outputs), -1 where a dimension is dynamic.

    :raises ModelError: not a readable ONNX model, or a tensor type Triton's ONNX Runtime
        backend and this package do not share.
    """
    import onnx
    try:
        model = onnx.load(onnx_path, load_external_data=False)
    except Exception as error:
        raise ModelError('cannot read the ONNX model {!r}: {}'.format(onnx_path, error)) from error
    initializers = {t.name for t in model.graph.initializer}

    def tensor(value: Any) -> RepoTensor:
        kind = value.type.tensor_type
        if kind.elem_type not in _ONNX_TYPES:
            raise ModelError('{}: tensor {!r} has ONNX element type {}, which this package '
                             'does not handle'.format(onnx_path, value.name, kind.elem_type))
        triton_type, dtype = _ONNX_TYPES[kind.elem_type]
        dims = tuple(int(d.dim_value) if d.HasField('dim_value') and d.dim_value > 0 else -1
                     for d in kind.shape.dim)
        return RepoTensor(value.name, dims, np.dtype(dtype), triton_type)
    inputs = [tensor(v) for v in model.graph.input if v.name not in initializers]
    outputs = [tensor(v) for v in model.graph.output]
    return inputs, outputs


def engine_onnx(engine_path: str, onnx_path: Optional[str]) -> str:
    """Return the ONNX an engine was built from: given, named in its metadata, or beside it.

    :raises UserError: none is found (the engine's tensors cannot be read without TensorRT).
    """
    if onnx_path:
        return onnx_path
    base = os.path.splitext(engine_path)[0]
    candidates = [base + '.onnx']
    try:
        import json
        with open(base + '.json') as f:
            candidates.insert(0, json.load(f).get('onnx_path') or '')
    except (OSError, ValueError):
        pass
    for candidate in candidates:
        if candidate and os.path.isfile(candidate):
            return candidate
    raise UserError('cannot tell the inputs and outputs of the engine {!r}: pass --onnx with '
                    'the ONNX model it was built from'.format(engine_path))


def config_text(name: str, platform: str, inputs: List[RepoTensor], outputs: List[RepoTensor],
                max_batch_size: int, dynamic_batching: bool, queue_delay_us: int,
                instances: int, kind: str) -> str:
    """Return config.pbtxt for the model (batch dimension left out when batching)."""
    def tensors(label: str, items: List[RepoTensor]) -> List[str]:
        lines = ['{} ['.format(label)]
        for i, t in enumerate(items):
            dims = t.shape[1:] if max_batch_size > 0 else t.shape
            lines += ['  {', '    name: "{}"'.format(t.name),
                      '    data_type: {}'.format(t.triton_type),
                      '    dims: [ {} ]'.format(', '.join(str(d) for d in dims)),
                      '  }' + (',' if i + 1 < len(items) else '')]
        return lines + [']']
    lines = ['name: "{}"'.format(name), 'platform: "{}"'.format(platform),
             'max_batch_size: {}'.format(max_batch_size)]
    lines += tensors('input', inputs) + tensors('output', outputs)
    if dynamic_batching and max_batch_size > 0:
        lines += ['dynamic_batching {',
                  '  max_queue_delay_microseconds: {}'.format(int(queue_delay_us)), '}']
    lines += ['instance_group [', '  {', '    count: {}'.format(int(instances)),
              '    kind: KIND_{}'.format(kind.upper()), '  }', ']']
    return '\n'.join(lines) + '\n'


def parse_config(text: str, where: str = 'config.pbtxt') -> Any:
    """Parse config.pbtxt text with Triton's ModelConfig schema; return the message.

    :raises ConfigError: a field, enum value or syntax the schema does not have (with the line).
    :raises BackendUnavailableError: tritonclient is not installed.
    """
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError as error:
        raise BackendUnavailableError(
            "checking config.pbtxt needs tritonclient's ModelConfig schema ({}): pip install "
            "'tritonclient[grpc]'".format(error)) from error
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as error:
        raise ConfigError("{} does not fit Triton's ModelConfig schema: {}".format(
            where, error)) from error


def _batch_size(requested: Optional[int], tensors: List[RepoTensor], model_path: str) -> int:
    """Return the max batch size: as asked (checked), or 8 when every first dim is free."""
    free_first = all(t.shape and t.shape[0] == -1 for t in tensors)
    if requested is None:
        return 8 if free_first else 0
    if requested > 0 and not free_first:
        fixed = [t.name for t in tensors if not t.shape or t.shape[0] != -1]
        raise ConfigError('--max-batch-size {}: the first dimension of {} in {!r} is not '
                          'dynamic, so Triton cannot batch it; use --max-batch-size 0, or '
                          'export the model with a dynamic batch dimension'.format(
                              requested, ', '.join(fixed), model_path))
    if requested < 0:
        raise ConfigError('--max-batch-size must be 0 (no batching) or more')
    return requested


# Triton model names: a folder of the repository, so one path component; letters, digits,
# '_', '-' and '.', starting with a letter, digit or '_' ('.' and '..' are not names).
_MODEL_NAME = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$')


def check_model_name(name: str) -> str:
    """Return ``name`` if it is a model name Triton takes and a single folder; else raise.

    :raises ConfigError: ``.``, ``..``, a path (``../x``, ``a/b``) or other characters.
    """
    if not _MODEL_NAME.match(name or '') or name in ('.', '..'):
        raise ConfigError('--name {!r} is not a model name: use letters, digits, _, - and . '
                          "(starting with a letter, digit or _), one folder of the "
                          "repository, e.g. 'ssdlite_person'".format(name))
    return name


def model_folder(repository: str, name: str) -> str:
    """Return ``repository/name``, checked to be a direct child of the repository.

    :raises ConfigError: the folder resolves elsewhere (a link out of the repository).
    """
    folder = os.path.join(repository, name)
    root = os.path.realpath(repository)
    parent = os.path.realpath(os.path.dirname(os.path.abspath(folder)))
    if parent != root or os.path.basename(folder) != name:
        raise ConfigError('model folder {!r} is not inside the repository {!r}'.format(
            folder, repository))
    return folder


def write_repository(model_path: str, repository: str, name: Optional[str] = None,
                     version: int = 1, max_batch_size: Optional[int] = None,
                     dynamic_batching: bool = True, queue_delay_us: int = 100,
                     instances: int = 1, kind: str = 'gpu',
                     config_path: Optional[str] = None, onnx_path: Optional[str] = None,
                     extra: Optional[str] = None, force: bool = False) -> Dict[str, str]:
    """Write the model's folder in ``repository``; return the paths written by role.

    :param extra: ModelConfig text merged into the generated config (optimisation, ...).
    :raises UserError: a bad option, model, model config or ``extra`` (nothing written).
    """
    if not os.path.isfile(model_path):
        raise ModelError('model {!r} does not exist'.format(model_path))
    suffix = os.path.splitext(model_path)[1].lower()
    if suffix == '.onnx':
        platform, file_name = 'onnxruntime_onnx', 'model.onnx'
        inputs, outputs = onnx_tensors(model_path)
    elif suffix in ENGINE_SUFFIXES:
        platform, file_name = 'tensorrt_plan', 'model.plan'
        inputs, outputs = onnx_tensors(engine_onnx(model_path, onnx_path))
        if kind != 'gpu':
            raise ConfigError('a TensorRT engine runs on a GPU: use --kind gpu')
    else:
        raise ConfigError('triton-repo takes an .onnx model or a TensorRT engine ({}), not '
                          '{!r}'.format(', '.join(ENGINE_SUFFIXES), model_path))
    if kind not in KINDS:
        raise ConfigError('--kind {!r} is not one of {}'.format(kind, ', '.join(KINDS)))
    if int(version) < 1 or int(instances) < 1:
        raise ConfigError('--version and --instances must be 1 or more')
    name = check_model_name(name or os.path.splitext(os.path.basename(model_path))[0])
    batch = _batch_size(max_batch_size, inputs + outputs, model_path)
    text = config_text(name, platform, inputs, outputs, batch, dynamic_batching,
                       queue_delay_us, instances, kind)
    parse_config(text)
    if extra:
        from google.protobuf import text_format
        message = parse_config(extra, '--extra')
        merged = parse_config(text)
        merged.MergeFrom(message)
        text = text_format.MessageToString(merged)
    model_config = _model_config(model_path, config_path, inputs, outputs)

    folder = model_folder(repository, name)
    if os.path.lexists(folder) and not force:
        raise UserError('{!r} exists: pass --force to replace it'.format(folder))
    os.makedirs(repository, exist_ok=True)
    staging = tempfile.mkdtemp(prefix='.' + name + '.', dir=repository)
    aside = None
    try:
        os.makedirs(os.path.join(staging, str(int(version))))
        shutil.copyfile(model_path, os.path.join(staging, str(int(version)), file_name))
        with open(os.path.join(staging, 'config.pbtxt'), 'w') as f:
            f.write(text)
        source, model_config = model_config
        if source:  # the user's config as written, comments and all
            shutil.copyfile(source, os.path.join(staging, name + '.yaml'))
        else:
            model_config.save(os.path.join(staging, name + '.yaml'))
        # Replace: the old folder renamed aside, the new one renamed in, then the old deleted;
        # a failure in between leaves the old model in place (or aside, named in the error).
        if os.path.lexists(folder):
            aside = tempfile.mkdtemp(prefix='.' + name + '.old.', dir=repository)
            os.rename(folder, os.path.join(aside, name))
        try:
            os.rename(staging, folder)
        except BaseException:
            if aside is not None:
                os.rename(os.path.join(aside, name), folder)
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if aside is not None and not os.listdir(aside):
            os.rmdir(aside)
        raise
    if aside is not None:
        old = os.path.join(aside, name)
        if os.path.islink(old):
            os.unlink(old)  # a link is removed, never what it points to
        shutil.rmtree(aside)
    return {'folder': folder, 'config': os.path.join(folder, 'config.pbtxt'),
            'model': os.path.join(folder, str(int(version)), file_name),
            'model_config': os.path.join(folder, name + '.yaml'), 'platform': platform}


def _model_config(model_path: str, config_path: Optional[str], inputs: List[RepoTensor],
                  outputs: List[RepoTensor]) -> Any:
    """Return ``(its file or None, the config)``, checked against the model's tensors.

    Without a config file, the config resolved from the model's tensors is the one written.
    """
    from tx2_inference.core.model_config import ModelConfig
    config = ModelConfig.for_model(model_path, config_path)
    resolved = config.resolve(inputs, outputs)  # raises ConfigError naming what does not fit
    if config.path and os.path.isfile(config.path):
        return config.path, config
    return None, resolved
