"""Detection decoders: a model's output tensors -> boxes, scores and classes.

Every built-in family is one configuration of :class:`GenericDecoder`, which reads boxes and
scores described as data (box order, units, packed columns, score activation, background
column) and runs the one class-aware NMS of :mod:`tx2_inference.core.nms` where the model has not.
A new model therefore needs a config file, not new code. Where a head truly needs code, write
a decoder in your own package (docs/BRING_YOUR_OWN_DETECTOR.md has a complete example)::

    from tx2_inference.core.decoders import Decoder, register_decoder

    @register_decoder('my_head')
    class MyHead(Decoder):
        tensor_options = ('output',)       # config keys that name output tensors

        def decode(self, outputs, params):
            raw = self.tensor(outputs, 'output')
            ...                            # boxes_xyxy in model-input pixels, scores, classes
            return self.select(boxes_xyxy, scores, class_ids, params)

and write ``decoder: {type: my_head, module: my_pkg.heads, output: <tensor name>}`` in the
model config, or declare ``my_head = my_pkg.heads:MyHead`` in the entry-point group
``tx2_inference.decoders`` of your package (:mod:`tx2_inference.core.decoder_plugins`).
:meth:`Decoder.select` applies the score threshold, class allow-list, NMS and max detections,
so the node's live parameters act on a custom decoder's output too.

Decoders return boxes in model-input pixels; the frame's
:class:`tx2_inference.core.preprocess.Transform` maps them to source pixels.
"""

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Type, Union

import numpy as np

from tx2_inference.core.nms import batched_nms
from tx2_inference.errors import ConfigError

BOX_FORMATS = ('yxyx', 'xyxy', 'cxcywh')
BOX_UNITS = ('normalized', 'pixels')
SCORE_ACTIVATIONS = ('none', 'sigmoid', 'softmax')
#: ``decoder.type`` of a section tx2-convert could not fill (see incomplete_decoder_message).
TO_BE_COMPLETED = 'to_be_completed'


class DetectionParams(object):
    """
    What to keep of a frame's detections; read at each frame's decode, so it may change.

    :param score_threshold: keep scores >= this (after the score activation).
    :param iou_threshold: NMS drops a box whose IoU with a better box of its class (of any
        class, with ``class_agnostic_nms``) is above this.
    :param max_detections: keep at most this many, best first (<= 0: no limit).
    :param class_allowlist: None for every class, else class ids (int, or a string of digits:
        index into the labels) and/or label names to keep.
    :param class_agnostic_nms: NMS across classes: of two overlapping boxes of different
        classes (one object as "car 0.55" and "truck 0.32") only the better is kept.
    :raises ConfigError: for an IoU threshold outside [0, 1].
    """

    __slots__ = ('score_threshold', 'iou_threshold', 'max_detections', 'class_allowlist',
                 'class_agnostic_nms')

    def __init__(self, score_threshold: float = 0.5, iou_threshold: float = 0.45,
                 max_detections: int = 100,
                 class_allowlist: Optional[Sequence[Union[int, str]]] = None,
                 class_agnostic_nms: bool = False) -> None:
        """Store the parameters."""
        self.score_threshold = float(score_threshold)
        self.iou_threshold = float(iou_threshold)
        self.max_detections = int(max_detections)
        self.class_allowlist = None if class_allowlist is None else tuple(class_allowlist)
        self.class_agnostic_nms = bool(class_agnostic_nms)
        if not 0.0 <= self.iou_threshold <= 1.0:
            raise ConfigError('iou_threshold: {} is not between 0 and 1.'.format(iou_threshold))

    def __repr__(self) -> str:
        """Show the fields."""
        return 'DetectionParams({})'.format(', '.join(
            '{}={!r}'.format(name, getattr(self, name)) for name in self.__slots__))


class Detections(object):
    """
    One frame's detections, best first.

    ``boxes`` float32 [N, 4] x1, y1, x2, y2 (model-input pixels out of a decoder, source pixels
    out of the detector), ``scores`` float32 [N], ``class_ids`` int32 [N] (index into the
    labels), ``labels`` List[str] in the same order.
    """

    __slots__ = ('boxes', 'scores', 'class_ids', 'labels')

    def __init__(self, boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray,
                 labels: List[str]) -> None:
        """Store the arrays as float32 boxes and scores and int32 class ids."""
        self.boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        self.class_ids = np.asarray(class_ids, dtype=np.int32).reshape(-1)
        self.labels = list(labels)

    @classmethod
    def empty(cls) -> 'Detections':
        """Return no detections."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                   np.zeros(0, np.int32), [])

    def __len__(self) -> int:
        """Return the number of detections."""
        return int(self.scores.shape[0])

    def __repr__(self) -> str:
        """Show a summary."""
        return 'Detections({} : {})'.format(len(self), ', '.join(
            '{} {:.2f}'.format(label, score) for label, score in zip(self.labels, self.scores)))


class Decoder(object):
    """
    Base of every decoder: options from the model config, labels, the model input size.

    Subclasses list in ``tensor_options`` the option keys whose values name output tensors (the
    model config checks those names against the model), may suggest tensor names per key in
    ``known_tensor_names`` (substrings, for auto-detection), and implement :meth:`decode`.
    """

    tensor_options: Tuple[str, ...] = ()
    known_tensor_names: Dict[str, Tuple[str, ...]] = {}
    defaults: Dict[str, Any] = {}

    def __init__(self, options: Mapping[str, Any], labels: Sequence[str],
                 input_size: Tuple[int, int]) -> None:
        """
        Keep the options (defaults filled in), labels and input (height, width).

        :raises ConfigError: for an option this decoder does not know.
        """
        known = set(self.defaults) | set(self.tensor_options) | {'type', 'module'}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError('decoder: unknown option(s) {} for decoder type {!r}; known: {}.'
                              .format(', '.join(unknown), options.get('type'),
                                      ', '.join(sorted(known))))
        self.options = dict(self.defaults)
        self.options.update((k, v) for k, v in options.items() if v is not None)
        self.labels = [str(label) for label in labels]
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self._label_array = np.array(self.labels + [''], dtype=object)

    def required_tensors(self) -> List[str]:
        """Return the option keys that must name an output tensor with these options."""
        return list(self.tensor_options)

    @property
    def output_names(self) -> List[str]:
        """Return the output tensor names this decoder reads."""
        return [self.options[key] for key in self.tensor_options if self.options.get(key)]

    def decode(self, outputs: Mapping[str, np.ndarray], params: DetectionParams) -> Detections:
        """Return the detections of one frame (batch item 0) in model-input pixels."""
        raise NotImplementedError

    def __call__(self, outputs: Mapping[str, np.ndarray],
                 params: DetectionParams) -> Detections:
        """Decode; see :meth:`decode`."""
        return self.decode(outputs, params)

    def tensor(self, outputs: Mapping[str, np.ndarray], key: str) -> np.ndarray:
        """Return the output named by option ``key``, batch item 0 (a leading 1 is dropped)."""
        name = self.options.get(key)
        if name not in outputs:
            raise ConfigError('decoder.{}: the model has no output {!r}; its outputs are {}.'
                              .format(key, name, ', '.join(sorted(outputs))))
        array = np.asarray(outputs[name])
        return array[0] if array.ndim > 1 and array.shape[0] == 1 else array

    def allowed_classes(self, params: DetectionParams) -> Optional[np.ndarray]:
        """Return the class ids of ``params.class_allowlist`` (labels resolved), or None."""
        if params.class_allowlist is None:
            return None
        ids = []
        for item in params.class_allowlist:
            if isinstance(item, str) and not item.lstrip('-').isdigit():
                if item not in self.labels:
                    raise ConfigError('class_allowlist: {!r} is not a label of this model; its '
                                      'labels are {}.'.format(item, ', '.join(self.labels)))
                ids.append(self.labels.index(item))
            else:
                ids.append(int(item))
        return np.array(ids, dtype=np.int64)

    def detections(self, boxes: np.ndarray, scores: np.ndarray,
                   class_ids: np.ndarray) -> Detections:
        """Build :class:`Detections`; ids outside the labels get their number as label."""
        class_ids = np.asarray(class_ids, dtype=np.int32).reshape(-1)
        known = (class_ids >= 0) & (class_ids < len(self.labels))
        labels = self._label_array[np.where(known, class_ids, len(self.labels))].tolist()
        if not known.all():
            labels = [label if ok else str(i) for label, ok, i in
                      zip(labels, known.tolist(), class_ids.tolist())]
        return Detections(boxes, scores, class_ids, labels)

    def select(self, boxes_xyxy: np.ndarray, scores: np.ndarray, class_ids: np.ndarray,
               params: DetectionParams, nms: bool = True) -> Detections:
        """
        Keep what the live detection parameters keep: how every decoder should end.

        In order: ``score >= params.score_threshold``; ``params.class_allowlist``; empty boxes
        dropped; NMS at ``params.iou_threshold`` per class (across classes with
        ``params.class_agnostic_nms``) unless ``nms`` is False (outputs already after NMS:
        then only sorted); best first; at most ``params.max_detections``. A custom decoder
        that ends with this follows the node's parameters (``ros2 param set``) like the
        built-in ones.

        :param boxes_xyxy: [N, 4] x1, y1, x2, y2 in model-input pixels.
        :param scores: [N] scores (probabilities: compared with the threshold).
        :param class_ids: [N] class ids (indices into the labels).
        :param params: the frame's :class:`DetectionParams`.
        :param nms: run NMS (False for an output that is already after NMS).
        :returns: the kept :class:`Detections`, best first, boxes in model-input pixels.
        """
        boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        class_ids = np.asarray(class_ids).reshape(-1).astype(np.int64)
        keep = scores >= params.score_threshold
        allowed = self.allowed_classes(params)
        if allowed is not None:
            keep &= np.isin(class_ids, allowed)
        # Empty boxes are no detections (and OpenCV's NMS counts two of them as overlapping).
        keep &= (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        if not keep.all():
            boxes, scores, class_ids = boxes[keep], scores[keep], class_ids[keep]
        if nms:
            groups = np.zeros_like(class_ids) if params.class_agnostic_nms else class_ids
            order = batched_nms(boxes, scores, groups, params.iou_threshold,
                                params.max_detections)
        else:
            order = np.argsort(-scores, kind='mergesort')
            if params.max_detections > 0:
                order = order[:params.max_detections]
        return self.detections(boxes[order], scores[order], class_ids[order])


_REGISTRY: Dict[str, Type[Decoder]] = {}


def register_decoder(name: str) -> Callable[[Type[Decoder]], Type[Decoder]]:
    """
    Register a :class:`Decoder` subclass under ``name`` (the config's ``decoder.type``).

    :raises ValueError: when the name is taken.
    """
    def register(cls: Type[Decoder]) -> Type[Decoder]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError('a decoder named {!r} is already registered'.format(name))
        _REGISTRY[name] = cls
        return cls
    return register


def decoder_names() -> List[str]:
    """Return the registered decoder types (built-in, and plugins loaded so far)."""
    return sorted(_REGISTRY)


def available_decoder_names() -> List[str]:
    """Return the registered decoder types and those installed packages declare."""
    from tx2_inference.core.decoder_plugins import entry_point_names
    return sorted(set(_REGISTRY) | set(entry_point_names()))


def decoder_class(name: str, module: Optional[str] = None) -> Type[Decoder]:
    """
    Return the decoder class of type ``name``, loading a plugin decoder when needed.

    Looked up in order: the registry (built-in types and those registered so far); ``module``
    (the config's ``decoder.module``), imported so that it registers ``name``; an entry point
    ``name`` of the group ``tx2_inference.decoders`` of an installed package. See
    :mod:`tx2_inference.core.decoder_plugins` and docs/BRING_YOUR_OWN_DETECTOR.md.

    :raises ConfigError: an unknown type (naming the choices), or a plugin that failed to
        load (naming the module or entry point and why).
    """
    from tx2_inference.core import decoder_plugins
    if name == TO_BE_COMPLETED:
        raise ConfigError(incomplete_decoder_message({'type': name}))
    if name not in _REGISTRY and module:
        decoder_plugins.import_module(module, name)
        if name not in _REGISTRY:
            raise ConfigError('decoder.module: importing {!r} registered no decoder {!r} (it '
                              'registers {}); decorate the class with '
                              "@register_decoder('{}')." .format(
                                  module, name, ', '.join(sorted(_REGISTRY)), name))
    if name not in _REGISTRY:
        loaded = decoder_plugins.load_entry_point(name)
        if isinstance(loaded, type) and issubclass(loaded, Decoder):
            register_decoder(name)(loaded)
        elif loaded is not None and name not in _REGISTRY:
            raise ConfigError('decoder.type: the entry point {!r} ({} group) loaded {!r}, '
                              'which is not a Decoder subclass and registered no decoder {!r}.'
                              .format(name, decoder_plugins.GROUP, loaded, name))
    if name not in _REGISTRY:
        from tx2_inference.core.redact import choice
        known = available_decoder_names()
        raise ConfigError('decoder.type: {} is not a known decoder; choose one of {}, or '
                          'bring your own: decoder.module naming a module that registers it, '
                          'or a package declaring it in the entry-point group {} '
                          '(docs/BRING_YOUR_OWN_DETECTOR.md).'.format(
                              choice(name, known), ', '.join(known), decoder_plugins.GROUP))
    return _REGISTRY[name]


def incomplete_decoder_message(options: Mapping[str, Any], where: str = 'model config') -> str:
    """
    Return what a ``decoder: {type: to_be_completed}`` section lacks and how to complete it.

    ``tx2-convert`` writes such a section when it cannot tell the decoder from the model's
    outputs (it never guesses one); it prints this message, and the node, the Detector and
    ``evaluate`` refuse the config with it.
    """
    outputs = options.get('outputs') or {}
    lines = ['{}: decoder: TO BE COMPLETED. tx2-convert could not tell how to decode this '
             "model's outputs and wrote no decoder rather than guess one".format(where)]
    if options.get('reason'):
        lines[0] += ' ({})'.format(str(options['reason']).rstrip('.'))
    lines[0] += '.'
    if outputs:
        lines.append('The model outputs: {}.'.format('; '.join(
            '{} {}'.format(name, spec) for name, spec in outputs.items())))
    if options.get('candidates'):
        lines.append('Decoder types that could fit: {}.'.format(
            '; '.join(str(c) for c in options['candidates'])))
    lines.append('Write decoder.type and the output names it needs (replacing the decoder '
                 'section; docs/BRING_YOUR_OWN_DETECTOR.md), or convert again with --decoder '
                 'TYPE and --boxes/--scores or --decoder-option KEY=VALUE.')
    return ' '.join(lines)


def create_decoder(options: Mapping[str, Any], labels: Sequence[str],
                   input_size: Tuple[int, int]) -> Decoder:
    """Create the decoder ``options['type']`` with the config's decoder options."""
    if not options.get('type'):
        raise ConfigError('decoder.type is missing; choose one of {}.'.format(
            ', '.join(available_decoder_names())))
    if options['type'] == TO_BE_COMPLETED:
        raise ConfigError(incomplete_decoder_message(options))
    return decoder_class(options['type'], options.get('module'))(options, labels, input_size)


def _activate(scores: np.ndarray, activation: str) -> np.ndarray:
    """Apply the score activation (over the last axis for softmax)."""
    if activation == 'sigmoid':
        return 1.0 / (1.0 + np.exp(-scores))
    if activation == 'softmax':
        shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True)
    return scores


def to_xyxy(boxes: np.ndarray, box_format: str, box_units: str,
            input_size: Tuple[int, int]) -> np.ndarray:
    """Return float32 [N, 4] x1, y1, x2, y2 model-input pixels from boxes in any format."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if box_format == 'yxyx':
        xyxy = boxes[:, [1, 0, 3, 2]]
    elif box_format == 'cxcywh':
        half = boxes[:, 2:] * 0.5
        xyxy = np.concatenate([boxes[:, :2] - half, boxes[:, :2] + half], axis=1)
    else:
        xyxy = boxes.copy()
    if box_units == 'normalized':
        height, width = input_size
        xyxy[:, 0::2] *= width
        xyxy[:, 1::2] *= height
    return xyxy


@register_decoder('generic')
class GenericDecoder(Decoder):
    """
    Boxes and scores described purely by config.

    Separate tensors: ``boxes`` ([N, 4] or [N, 1, 4]), ``scores`` ([N] with ``classes``, or
    [N, C] per-class), optional ``classes`` [N] and ``num_detections`` (valid rows).
    Or one packed [N, K] tensor ``output`` ([K, N] with ``transposed``: true; 'auto': K is
    the axis of length first class column + number of labels, else the shorter one) with
    ``box_columns`` (4 columns in ``box_format`` order) and either
    ``class_scores: [first, stop]`` (per-class columns; stop null: to the end) or
    ``score_column`` + ``class_column``; ``objectness_column`` multiplies the class scores.

    ``score_activation`` (none | sigmoid | softmax) turns logits into probabilities;
    ``background_class`` drops that per-class column; ``class_offset`` is subtracted from
    class numbers in a ``classes`` tensor/column. ``nms``: run host NMS (false for outputs that
    are already after NMS); ``multi_label``: a box may be kept for several classes (else only
    its best class).
    """

    tensor_options = ('boxes', 'scores', 'classes', 'num_detections', 'output')
    separate_tensors: Tuple[str, ...] = ('boxes', 'scores')  # required unless packed
    defaults: Dict[str, Any] = {
        'box_format': 'xyxy', 'box_units': 'pixels', 'score_activation': 'none',
        'background_class': None, 'class_offset': 0, 'nms': True, 'multi_label': False,
        'transposed': False, 'box_columns': [0, 1, 2, 3], 'class_scores': None,
        'score_column': None, 'class_column': None, 'objectness_column': None,
    }

    def __init__(self, options: Mapping[str, Any], labels: Sequence[str],
                 input_size: Tuple[int, int]) -> None:
        """Check the options; see the class docstring."""
        super(GenericDecoder, self).__init__(options, labels, input_size)
        opts = self.options
        for key, allowed in (('box_format', BOX_FORMATS), ('box_units', BOX_UNITS),
                             ('score_activation', SCORE_ACTIVATIONS)):
            if opts[key] not in allowed:
                raise ConfigError('decoder.{}: {!r} is not one of {}.'.format(
                    key, opts[key], ', '.join(allowed)))
        if len(list(opts['box_columns'])) != 4:
            raise ConfigError('decoder.box_columns: give 4 column indices, got {!r}.'.format(
                opts['box_columns']))
        if opts.get('output') and opts['class_scores'] is None and (
                opts['score_column'] is None or opts['class_column'] is None):
            raise ConfigError('decoder: a packed output needs class_scores: [first, stop] '
                              '(per-class score columns), or score_column and class_column.')

    def required_tensors(self) -> List[str]:
        """Return ['output'] for a packed tensor (named, or columns set), else boxes, scores."""
        if self.options.get('output') or self.options['class_scores'] is not None or \
                self.options['score_column'] is not None:
            return ['output']
        return list(self.separate_tensors)

    def _packed(self, outputs: Mapping[str, np.ndarray]) -> Tuple[np.ndarray, ...]:
        """Return boxes, scores, classes-or-None, objectness-or-None from the packed output."""
        opts = self.options
        table = self.tensor(outputs, 'output')
        table = table.reshape(-1, table.shape[-1]) if table.ndim != 2 else table
        transposed = opts['transposed']
        if transposed == 'auto':
            transposed = self._columns_first(table.shape)
        if transposed:
            table = table.T
        boxes = table[:, list(opts['box_columns'])]
        objectness = None
        if opts['objectness_column'] is not None:
            objectness = table[:, int(opts['objectness_column'])]
        if opts['class_scores'] is not None:
            first, stop = opts['class_scores']
            return boxes, table[:, int(first):None if stop is None else int(stop)], None, \
                objectness
        return (boxes, table[:, int(opts['score_column'])],
                table[:, int(opts['class_column'])], objectness)

    def _columns_first(self, shape: Tuple[int, int]) -> bool:
        """Guess whether a packed table is [K, N]: K is known from the labels, else shorter."""
        scores = self.options['class_scores']
        if self.labels and scores is not None and scores[1] is None:
            columns = int(scores[0]) + len(self.labels)
            if columns in shape:
                return shape[0] == columns and shape[1] != columns
        return shape[0] < shape[1]

    def _separate(self, outputs: Mapping[str, np.ndarray]) -> Tuple[np.ndarray, ...]:
        """Return boxes, scores, classes-or-None, None from separate tensors."""
        boxes = self.tensor(outputs, 'boxes').reshape(-1, 4)
        scores = self.tensor(outputs, 'scores')
        scores = scores.reshape(boxes.shape[0], -1) if scores.size != boxes.shape[0] else \
            scores.reshape(-1)
        classes = None
        if self.options.get('classes'):
            classes = self.tensor(outputs, 'classes').reshape(-1)
        if self.options.get('num_detections'):
            count = int(self.tensor(outputs, 'num_detections').reshape(-1)[0])
            boxes, scores = boxes[:count], scores[:count]
            classes = None if classes is None else classes[:count]
        return boxes, scores, classes, None

    def decode(self, outputs: Mapping[str, np.ndarray], params: DetectionParams) -> Detections:
        """Decode one frame; see the class docstring."""
        opts = self.options
        if opts.get('output'):
            boxes, scores, classes, objectness = self._packed(outputs)
        else:
            boxes, scores, classes, objectness = self._separate(outputs)
        activation = opts['score_activation']
        scores = _activate(scores.astype(np.float32), activation)
        if objectness is not None:
            objectness = _activate(objectness.astype(np.float32), activation)
        if classes is not None or scores.ndim == 1:
            scores = scores.reshape(-1) if objectness is None else scores.reshape(-1) * objectness
            rows = np.flatnonzero(scores >= params.score_threshold)
            if classes is None:
                class_ids = np.zeros(rows.shape, dtype=np.int64)
            else:
                class_ids = np.round(classes[rows]).astype(np.int64) - int(opts['class_offset'])
        else:
            if opts['background_class'] is not None:
                # A background column is dropped; the classes after it move down by one.
                scores = np.delete(scores, int(opts['background_class']), axis=1)
            if objectness is not None:
                scores = scores * objectness[:, None]
            if opts['multi_label']:
                rows, class_ids = np.nonzero(scores >= params.score_threshold)
            else:
                best = scores.argmax(axis=1)
                rows = np.flatnonzero(scores[np.arange(best.size), best] >=
                                      params.score_threshold)
                class_ids = best[rows]
        return self._finish(boxes, scores[rows, class_ids] if scores.ndim == 2 else scores[rows],
                            rows, class_ids, params)

    def _finish(self, boxes: np.ndarray, scores: np.ndarray, rows: np.ndarray,
                class_ids: np.ndarray, params: DetectionParams) -> Detections:
        """Convert the selected rows' boxes to xyxy pixels, then :meth:`select` them."""
        boxes = to_xyxy(boxes[rows], self.options['box_format'], self.options['box_units'],
                        self.input_size)
        return self.select(boxes, scores, class_ids, params, nms=bool(self.options['nms']))


def _family(name: str, doc: str, known_tensor_names: Dict[str, Tuple[str, ...]],
            **preset: Any) -> Type[GenericDecoder]:
    """Register a built-in family: :class:`GenericDecoder` with other default options."""
    defaults = dict(GenericDecoder.defaults)
    defaults.update(preset)
    cls = type(name, (GenericDecoder,), {
        '__doc__': doc, 'defaults': defaults, 'known_tensor_names': known_tensor_names,
        'separate_tensors': tuple(known_tensor_names) or GenericDecoder.separate_tensors})
    return register_decoder(name)(cls)


_family('tf_od_api', 'TF Object Detection API after NMS: normalised yxyx boxes, scores, classes '
        '(1-based), num_detections.',
        {'boxes': ('detection_boxes',), 'scores': ('detection_scores',),
         'classes': ('detection_classes',), 'num_detections': ('num_detections',)},
        box_format='yxyx', box_units='normalized', class_offset=1, nms=False)
_family('boxes_scores', 'Boxes [N, 4] (or [N, 1, 4]) and per-class scores [N, C] before NMS, '
        'e.g. the TF OD API SSD graph cut before its postprocessor; host NMS.',
        {'boxes': ('Postprocessor/ExpandDims_1',), 'scores': ('Postprocessor/convert_scores',)},
        box_format='yxyx', box_units='normalized', background_class=0, multi_label=True)
_family('efficient_nms', "TensorRT's EfficientNMS plugin: num_dets, det_boxes (xyxy pixels), "
        'det_scores, det_classes.',
        {'boxes': ('det_boxes',), 'scores': ('det_scores',), 'classes': ('det_classes',),
         'num_detections': ('num_dets',)},
        nms=False)
_family('yolov5', 'YOLOv5 raw head [N, 5 + C]: cx, cy, w, h (pixels), objectness, class '
        'scores; host NMS.', {},
        box_format='cxcywh', objectness_column=4, class_scores=[5, None])
_family('yolov8', 'YOLOv8 raw head [4 + C, N] (transposed; [N, 4 + C] also read): cx, cy, w, '
        'h (pixels), class scores; host NMS.', {},
        box_format='cxcywh', class_scores=[4, None], transposed='auto')

#: The package's own decoder types; model configs name a plugin's type themselves (it is never
#: picked from output names, whichever plugins a process happens to have loaded).
BUILTIN_DECODERS = tuple(sorted(_REGISTRY))
