"""The model config: the YAML file beside a model that says what the model file does not.

Input name and layout, colour order, normalisation, resize mode, the decoder and its output
names, and the labels (schema in docs/DESIGN.md). Anything the model's own tensors make
unambiguous may be left out: :meth:`ModelConfig.resolve` fills it in, and otherwise raises a
:class:`~tx2_inference.errors.ConfigError` naming the field to write.
"""

import copy
import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import yaml

from tx2_inference.core.decoders import (
    available_decoder_names,
    BUILTIN_DECODERS,
    decoder_class,
    DetectionParams,
    incomplete_decoder_message,
    TO_BE_COMPLETED,
)
from tx2_inference.core.preprocess import COLORS, LAYOUTS, RESIZE_MODES
from tx2_inference.core.redact import choice, describe, unknown_names
from tx2_inference.errors import ConfigError

INPUT_DEFAULTS: Dict[str, Any] = {
    'name': None, 'layout': None, 'color': None, 'dtype': None, 'size': None,
    'resize': 'stretch', 'pad_value': 114, 'scale': 1.0, 'mean': [0.0, 0.0, 0.0],
    'std': [1.0, 1.0, 1.0], 'batch': None,
}
INPUT_DTYPES = ('uint8', 'float32', 'float16', 'int8', 'int16')  # int: quantised (TFLite)
SECTIONS = ('input', 'decoder', 'labels', 'detection')
#: The ``detection`` section: this model's defaults for the node's detection parameters
#: (a node parameter given explicitly overrides them). Unset keys: DetectionParams' defaults.
DETECTION_DEFAULTS: Dict[str, Any] = {
    'score_threshold': 0.5, 'iou_threshold': 0.45, 'max_detections': 100,
    'class_agnostic_nms': False,
}
#: The accepted range of each numeric ``detection`` value, as the node's parameters have it:
#: a threshold above 1 or NaN would silently drop every detection.
DETECTION_RANGES: Dict[str, Tuple[float, float]] = {
    'score_threshold': (0.0, 1.0), 'iou_threshold': (0.0, 1.0), 'max_detections': (1, 10000),
}


def config_path_for(model_path: str) -> str:
    """Return the config path beside a model: ``model.onnx`` -> ``model.yaml``.

    An artefact's own config, ``model.onnx.yaml``, comes first where it exists: the converter
    writes one when ``model.yaml`` belongs to another artefact of the same stem (a
    ``model.tflite`` beside ``model.onnx``), so neither replaces the other's.
    """
    own = model_path + '.yaml'
    if os.path.isfile(own):
        return own
    return os.path.splitext(model_path)[0] + '.yaml'


def _plain(value: Any) -> Any:
    """Return ``value`` with numpy scalars/arrays and tuples as plain numbers and lists."""
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _dims(shape: Sequence[Any]) -> List[int]:
    """Return a shape with every dynamic dimension (None, -1, a symbol) as -1."""
    return [int(d) if isinstance(d, (int, np.integer)) and d >= 0 else -1 for d in shape]


def guess_layout(shape: Sequence[Any]) -> Optional[str]:
    """Return 'nhwc' or 'nchw' from where the 1 or 3 channels of a 4-D shape are, else None.

    None when both axes 1 and 3 could be the channels (e.g. [1, 3, 8, 3]) or neither could (a
    free or other size in both): the layout must then be given, not guessed.
    """
    dims = _dims(shape)
    if len(dims) != 4:
        return None
    last, second = dims[3] in (1, 3), dims[1] in (1, 3)
    if last != second:
        return 'nhwc' if last else 'nchw'
    return None


def _describe(tensors: Sequence[Any]) -> str:
    """List tensors as ``name [shape] dtype`` for error messages."""
    return ', '.join('{} {} {}'.format(t.name, _dims(t.shape), np.dtype(t.dtype).name)
                     for t in tensors) or '(none)'


def _names(tensors: Sequence[Any]) -> str:
    """List tensor names for error messages."""
    return ', '.join(repr(t.name) for t in tensors) or '(none)'


class ModelConfig(object):
    """
    A model config: ``input``, ``decoder`` (with ``type``), ``labels``, ``detection``.

    ``detection`` holds this model's default detection parameters (only the keys set).
    ``path`` is the file it came from (None when made in code); error messages name it.
    """

    def __init__(self, input: Optional[Mapping[str, Any]] = None,
                 decoder: Optional[Mapping[str, Any]] = None,
                 labels: Optional[Sequence[str]] = None, path: Optional[str] = None,
                 detection: Optional[Mapping[str, Any]] = None) -> None:
        """Build and validate a config; unset input fields take their defaults."""
        self.path = path
        self.input: Dict[str, Any] = dict(INPUT_DEFAULTS)
        self.input.update((k, _plain(v)) for k, v in dict(input or {}).items() if v is not None)
        self.decoder: Dict[str, Any] = {k: _plain(v) for k, v in dict(decoder or {}).items()}
        self.labels: List[str] = [str(label) for label in (labels or [])]
        self.detection: Dict[str, Any] = {k: _plain(v) for k, v in dict(detection or {}).items()
                                          if v is not None}
        self._unknown_input = sorted(set(dict(input or {})) - set(INPUT_DEFAULTS))
        self.validate()

    @property
    def incomplete(self) -> bool:
        """Return True when the decoder section is marked to be completed (see tx2-convert)."""
        return self.decoder.get('type') == TO_BE_COMPLETED

    def detection_params(self, **overrides: Any) -> DetectionParams:
        """Return DetectionParams: the ``detection`` section's defaults, then ``overrides``."""
        values = dict(DETECTION_DEFAULTS)
        values.update(self.detection)
        values.update((k, v) for k, v in overrides.items() if v is not None)
        return DetectionParams(**values)

    def _error(self, field: str, message: str) -> ConfigError:
        """Return a ConfigError that names the file and the field."""
        where = self.path if self.path else 'model config'
        return ConfigError('{}: {}: {}'.format(where, field, message))

    def _within(self, exc: ConfigError) -> ConfigError:
        """Return ``exc`` (whose message names the field) with this config's file in front."""
        return ConfigError('{}: {}'.format(self.path if self.path else 'model config', exc))

    @classmethod
    def from_dict(cls, data: Any, path: Optional[str] = None) -> 'ModelConfig':
        """Build a config from parsed YAML; ConfigError for unknown or malformed sections."""
        where = path or 'model config'
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError('{}: expected a mapping with sections {}, got {}.'.format(
                where, ', '.join(SECTIONS), type(data).__name__))
        unknown = sorted(set(data) - set(SECTIONS))
        if unknown:
            raise ConfigError('{}: unknown section(s) {}; the sections are {}.'.format(
                where, unknown_names(unknown, SECTIONS), ', '.join(SECTIONS)))
        for section, kind in (('input', dict), ('decoder', dict), ('labels', list),
                              ('detection', dict)):
            if data.get(section) is not None and not isinstance(data[section], kind):
                raise ConfigError('{}: {} must be a {}, got {}.'.format(
                    where, section, 'mapping' if kind is dict else 'list',
                    describe(data[section])))
        return cls(data.get('input'), data.get('decoder'), data.get('labels'), path,
                   data.get('detection'))

    @classmethod
    def load(cls, path: str) -> 'ModelConfig':
        """Read a config file; ConfigError when it is missing or not valid YAML."""
        try:
            with open(path) as stream:
                data = yaml.safe_load(stream)
        except (IOError, OSError) as exc:
            raise ConfigError('cannot read the model config {}: {}. Write one beside the model '
                              '(see docs/DESIGN.md).'.format(path, exc)) from exc
        except yaml.YAMLError as exc:
            raise ConfigError('{} is not valid YAML: {}'.format(path, exc)) from exc
        return cls.from_dict(data, path)

    @classmethod
    def for_model(cls, model_path: str, config_path: Optional[str] = None) -> 'ModelConfig':
        """Load ``config_path``, else the YAML beside the model, else an empty config."""
        if config_path:
            return cls.load(config_path)
        path = config_path_for(model_path)
        if os.path.exists(path):
            return cls.load(path)
        return cls(path=path)

    def to_dict(self) -> Dict[str, Any]:
        """Return the config as plain YAML-able data."""
        data = {'input': copy.deepcopy(self.input), 'decoder': copy.deepcopy(self.decoder),
                'labels': list(self.labels)}
        if self.detection:
            data['detection'] = dict(self.detection)
        return data

    def save(self, path: Optional[str] = None) -> str:
        """Write the config as YAML (to ``path``, else where it came from); return the path."""
        path = path or self.path
        if not path:
            raise ValueError('no path to save the model config to')
        with open(path, 'w') as stream:
            try:
                yaml.safe_dump(self.to_dict(), stream, default_flow_style=None, sort_keys=False)
            except TypeError:  # PyYAML < 5.1 (Ubuntu 18.04's) has no sort_keys
                yaml.safe_dump(self.to_dict(), stream, default_flow_style=None)
        self.path = path
        return path

    def validate(self) -> None:
        """Check every set value; ConfigError naming the field and the allowed values."""
        inp = self.input
        if self._unknown_input:
            raise self._error('input', 'unknown key(s) {}; the keys are {}.'.format(
                unknown_names(self._unknown_input, list(INPUT_DEFAULTS)),
                ', '.join(INPUT_DEFAULTS)))
        for field, allowed in (('layout', LAYOUTS), ('color', COLORS),
                               ('resize', RESIZE_MODES), ('dtype', INPUT_DTYPES)):
            if inp[field] is not None and inp[field] not in allowed:
                raise self._error('input.' + field, '{} is not one of {}.'.format(
                    choice(inp[field], allowed), ', '.join(allowed)))
        batch = inp['batch']
        if batch is not None and not (isinstance(batch, int) and not isinstance(batch, bool) and
                                      (batch >= 1 or batch == -1)):
            raise self._error('input.batch', '{} is not the largest batch (a number of frames, '
                              'or -1 for any).'.format(describe(batch)))
        size = inp['size']
        if size is not None and not (isinstance(size, (list, tuple)) and len(size) == 2 and
                                     all(isinstance(v, int) and v > 0 for v in size)):
            raise self._error('input.size', '{} is not [height, width] in pixels.'.format(
                describe(size)))
        for field in ('pad_value', 'scale', 'mean', 'std'):
            values = inp[field] if isinstance(inp[field], (list, tuple)) else [inp[field]]
            if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                     for v in values):
                raise self._error('input.' + field, '{} is not a number or a list of numbers.'
                                  .format(describe(inp[field])))
        if any(v == 0 for v in (inp['std'] if isinstance(inp['std'], list) else [inp['std']])):
            raise self._error('input.std', '{!r} contains 0.'.format(inp['std']))
        self._validate_detection()
        if self.decoder.get('type') is not None and not self.incomplete:
            try:
                decoder_class(self.decoder['type'], self.decoder.get('module'))
            except ConfigError as exc:
                raise self._within(exc) from exc

    def _validate_detection(self) -> None:
        """Check the ``detection`` section's keys and values."""
        unknown = sorted(set(self.detection) - set(DETECTION_DEFAULTS))
        if unknown:
            raise self._error('detection', 'unknown key(s) {}; the keys are {}.'.format(
                unknown_names(unknown, list(DETECTION_DEFAULTS)), ', '.join(DETECTION_DEFAULTS)))
        for key, value in self.detection.items():
            kind = type(DETECTION_DEFAULTS[key])
            if isinstance(value, bool) != (kind is bool) or not isinstance(value, (int, float)):
                raise self._error('detection.' + key, '{} is not a {}.'.format(
                    describe(value),
                    {bool: 'true/false', int: 'whole number', float: 'number'}[kind]))
            if kind is int and math.isfinite(value) and value != int(value):
                raise self._error('detection.' + key, '{!r} is not a whole number.'.format(
                    value))
            low, high = DETECTION_RANGES.get(key, (None, None))
            if low is not None and not (math.isfinite(value) and low <= value <= high):
                raise self._error('detection.' + key, '{!r} is not between {} and {} (the range '
                                  "of the node's parameter): the node would publish nothing "
                                  'useful. Write a value in range.'.format(value, low, high))
        try:
            self.detection_params()
        except ConfigError as exc:
            raise self._error('detection', str(exc)) from exc

    def resolve(self, inputs: Sequence[Any], outputs: Sequence[Any]) -> 'ModelConfig':
        """
        Return a copy with every field the runtime needs filled from the model's tensors.

        :param inputs: the model's inputs (objects with ``name``, ``shape``, ``dtype``).
        :param outputs: the model's outputs, likewise.
        :raises ConfigError: naming the field to write where the model leaves it ambiguous,
            or a name the model does not have (with the names it has).
        """
        if self.incomplete:
            raise ConfigError(incomplete_decoder_message(self.decoder, self.path or
                                                         'model config'))
        resolved = ModelConfig(self.input, self.decoder, self.labels, self.path, self.detection)
        resolved._resolve_input(inputs)
        resolved._resolve_decoder(outputs)
        return resolved

    def resolve_decoder(self, outputs: Sequence[Any]) -> Dict[str, Any]:
        """
        Return the decoder section with its type and output names filled from ``outputs``.

        Only what the outputs make unambiguous is filled: a type whose known output names the
        model has (and no other's), tensors by those names, the one output of a packed type,
        boxes as the one output whose last axis is 4 beside exactly one other.

        :raises ConfigError: naming what is left open (tx2-convert then writes the section as
            to be completed).
        """
        resolved = ModelConfig(self.input, self.decoder, self.labels, self.path, self.detection)
        resolved._resolve_decoder(outputs)
        return resolved.decoder

    def _resolve_input(self, inputs: Sequence[Any]) -> None:
        """Fill name, layout, dtype, size and colour from the model's input."""
        inp = self.input
        if inp['name'] is None:
            if len(inputs) != 1:
                raise self._error('input.name', 'the model has {} inputs ({}); write input.name: '
                                  'the one that takes the image.'.format(len(inputs),
                                                                         _describe(inputs)))
            tensor = inputs[0]
        else:
            matches = [t for t in inputs if t.name == inp['name']]
            if not matches:
                raise self._error('input.name', 'the model has no input {!r}; its inputs are '
                                  '{}: write one of them there.'.format(inp['name'],
                                                                       _names(inputs)))
            tensor = matches[0]
        inp['name'] = tensor.name
        shape = _dims(tensor.shape)
        if len(shape) != 4:
            raise self._error('input.name', 'input {} has shape {}; an image input is 4-D, '
                              '[1, H, W, C] or [1, C, H, W].'.format(tensor.name, shape))
        dtype = np.dtype(tensor.dtype).name
        if inp['dtype'] is not None and inp['dtype'] != dtype:
            raise self._error('input.dtype', '{} but the model input {} is {}; write input.dtype:'
                              ' {} or remove it.'.format(inp['dtype'], tensor.name, dtype, dtype))
        if dtype not in INPUT_DTYPES:
            raise self._error('input.dtype', 'the model input {} is {}; only {} inputs are '
                              'supported.'.format(tensor.name, dtype, ', '.join(INPUT_DTYPES)))
        inp['dtype'] = dtype
        if inp['layout'] is None:
            inp['layout'] = self._guess_layout(tensor.name, shape)
        height, width, channels = ((shape[1], shape[2], shape[3]) if inp['layout'] == 'nhwc'
                                   else (shape[2], shape[3], shape[1]))
        if inp['size'] is None:
            if height < 1 or width < 1:
                raise self._error('input.size', 'the model input {} has dynamic height/width '
                                  '{}; write input.size: [height, width].'.format(tensor.name,
                                                                                  shape))
            inp['size'] = [height, width]
        elif (height > 0 and height != inp['size'][0]) or (width > 0 and width != inp['size'][1]):
            raise self._error('input.size', '{} but the model input {} is {} ({}); write '
                              'input.size: [{}, {}] or remove it.'.format(
                                  inp['size'], tensor.name, shape, inp['layout'], height, width))
        if inp['color'] is None:
            # One channel can only be mono; three are RGB by TensorFlow's convention.
            inp['color'] = 'mono' if channels == 1 else 'rgb'
        if channels not in (-1, 1 if inp['color'] == 'mono' else 3):
            raise self._error('input.color', '{} but the model input {} has {} channels ({}, '
                              '{}); fix input.color or input.layout.'.format(
                                  inp['color'], tensor.name, channels, shape, inp['layout']))

    def _guess_layout(self, name: str, shape: List[int]) -> str:
        """Return nhwc or nchw from where the 1 or 3 channels are; ConfigError if unclear."""
        layout = guess_layout(shape)
        if layout is not None:
            return layout
        raise self._error('input.layout', 'cannot tell the layout of input {} from its shape {};'
                          ' write input.layout: nhwc or nchw.'.format(name, shape))

    def _resolve_decoder(self, outputs: Sequence[Any]) -> None:
        """Pick the decoder type and fill its output names; check them against the model."""
        names = [t.name for t in outputs]
        if not self.decoder.get('type'):
            self.decoder['type'] = self._guess_decoder(outputs)
        try:
            cls = decoder_class(self.decoder['type'], self.decoder.get('module'))
            required = cls(self.decoder, self.labels,
                           tuple(self.input['size'] or (1, 1))).required_tensors()
        except ConfigError as exc:
            raise self._within(exc) from exc
        if required == ['output']:
            found = {'output': names[0]} if len(names) == 1 else {}
        else:
            found = _boxes_and_scores(outputs)
            found.update(_find_tensors(cls.known_tensor_names, names))
        for key in cls.tensor_options:
            if not self.decoder.get(key) and key in found:
                self.decoder[key] = found[key]
        missing = [key for key in required if not self.decoder.get(key)]
        if missing:
            raise self._error('decoder.' + missing[0], 'decoder {} needs the output tensor for '
                              '{}; write decoder.{}: <name>, one of the model outputs: {}.'.format(
                                  self.decoder['type'], ', '.join(missing), missing[0],
                                  _describe(outputs)))
        for key in cls.tensor_options:
            if self.decoder.get(key) and self.decoder[key] not in names:
                raise self._error('decoder.' + key, 'the model has no output {!r}; its outputs '
                                  'are {}: write the right one there.'.format(
                                      self.decoder[key], _names(outputs)))

    def _guess_decoder(self, outputs: Sequence[Any]) -> str:
        """Return the one built-in decoder type whose known output names the model has."""
        names = [t.name for t in outputs]
        matches = []
        for name in BUILTIN_DECODERS:
            cls = decoder_class(name)
            if cls.known_tensor_names:
                found = _find_tensors(cls.known_tensor_names, names)
                if all(key in found for key in cls.known_tensor_names):
                    matches.append(name)
        if len(matches) == 1:
            return matches[0]
        raise self._error('decoder.type', 'cannot tell the decoder from the model outputs ({}); '
                          'write decoder.type: one of {}, and its output names.'.format(
                              _describe(outputs),
                              ', '.join(matches or available_decoder_names())))


def _find_tensors(known: Mapping[str, Sequence[str]], names: Sequence[str]) -> Dict[str, str]:
    """Map decoder option keys to the one output whose name contains a known name for it."""
    found = {}
    for key, candidates in known.items():
        hits = [name for name in names if any(c in name for c in candidates)]
        if len(hits) == 1:
            found[key] = hits[0]
    return found


def _boxes_and_scores(outputs: Sequence[Any]) -> Dict[str, str]:
    """Guess boxes (the one output whose last axis is 4) and scores (the other of two)."""
    boxes = [t.name for t in outputs if _dims(t.shape)[-1:] == [4]]
    if len(boxes) != 1:
        return {}
    others = [t.name for t in outputs if t.name != boxes[0]]
    return {'boxes': boxes[0], 'scores': others[0]} if len(others) == 1 else {'boxes': boxes[0]}


def describe_outputs(outputs: Sequence[Any]) -> Dict[str, str]:
    """Return output name -> ``'[shape] dtype'``, as a to-be-completed decoder lists them."""
    return {t.name: '{} {}'.format(_dims(t.shape), np.dtype(t.dtype).name) for t in outputs}


def candidate_decoders(outputs: Sequence[Any]) -> List[str]:
    """
    Return the decoder types whose layout the outputs' shapes allow, each with its reason.

    Shapes alone never decide (a [1, N, 4] output may hold xyxy pixels or normalised yxyx):
    this is the list a user chooses from, not a choice.
    """
    shapes = [_dims(t.shape) for t in outputs]
    boxes = [s for s in shapes if len(s) >= 2 and s[-1] == 4]
    counts = [s for s in shapes if int(np.prod([max(d, 1) for d in s])) == 1]
    # A packed table: [N, K] (or [K, N]) rows of >= 5 columns, after a batch of one.
    packed = [s for s in shapes if len(s) >= 2 and min(s[-1], s[-2]) >= 5]
    found = []
    if boxes and len(outputs) >= 2:
        found.append('boxes_scores (boxes [N, 4] + per-class scores [N, C], before NMS)')
        if counts:
            found.append('tf_od_api or efficient_nms (boxes, scores, classes, a detection '
                         'count: after NMS)')
        found.append('generic with boxes and scores (and classes, num_detections), with the '
                     'box_format, box_units and score_activation your model has')
    if packed:
        found.append('yolov5 ([N, 5 + C]: cx, cy, w, h, objectness, class scores) or yolov8 '
                     '([4 + C, N])')
        found.append('generic with output: <packed tensor>, box_columns: [4 indices], '
                     'class_scores: [first, stop] or score_column + class_column')
    plugins = [n for n in available_decoder_names() if n not in BUILTIN_DECODERS]
    found.append('a decoder of your own (decoder.module, or the tx2_inference.decoders entry '
                 'point{})'.format('; installed: ' + ', '.join(plugins) if plugins else ''))
    return found
