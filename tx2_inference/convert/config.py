"""The model config the converter writes beside each model (schema: docs/DESIGN.md).

Robot side (Python 3.6). Validation and loading are the core's
:class:`tx2_inference.core.model_config.ModelConfig`; this module only assembles the dict the
converter knows and writes it atomically, in the schema's key order.
"""

import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from tx2_inference.core.decoders import incomplete_decoder_message, TO_BE_COMPLETED
from tx2_inference.core.fileio import atomic_write_text
from tx2_inference.core.model_config import (
    candidate_decoders,
    config_path_for,
    describe_outputs,
    guess_layout,
    ModelConfig,
)
from tx2_inference.errors import ConfigError

__all__ = ['build', 'config_path_for', 'decoder_section', 'incomplete_banner', 'load',
           'parse_labels', 'save']

_INPUT_ORDER = ('name', 'layout', 'color', 'dtype', 'size', 'resize', 'pad_value', 'scale',
                'mean', 'std')


def load(path: str) -> Dict[str, Any]:
    """Read and validate a model config; return it as a dict with defaults filled in.

    :raises ConfigError: if it is missing or invalid (the message names the file and field).
    """
    return ModelConfig.load(path).to_dict()


def build(input_name: str, shape: List[int], dtype: str, input_overrides: Dict[str, Any],
          decoder: Dict[str, Any], labels: List[str]) -> Dict[str, Any]:
    """Assemble a config dict: input section (size from ``shape``), decoder and labels.

    The layout is ``input_overrides['layout']``, else where the 1 or 3 channels of ``shape``
    are (axis 3: nhwc, axis 1: nchw).

    :raises ConfigError: the layout is not given and the shape does not tell it.
    """
    inp = {'color': 'rgb', 'resize': 'stretch', 'pad_value': 114,
           'scale': 1.0, 'mean': [0.0, 0.0, 0.0], 'std': [1.0, 1.0, 1.0]}  # type: Dict[str, Any]
    inp.update({k: v for k, v in input_overrides.items() if v is not None})
    if not inp.get('layout'):
        inp['layout'] = guess_layout(shape)
        if inp['layout'] is None:
            raise ConfigError('cannot tell the layout of input {} from its shape {}: the 1 or '
                              '3 channels could be on axis 1 (nchw) or 3 (nhwc). Pass --layout '
                              'nhwc or --layout nchw.'.format(input_name, list(shape)))
    if len(shape) == 4 and all(isinstance(d, int) and d > 0 for d in shape[1:]):
        h, w = (shape[2], shape[3]) if inp['layout'] == 'nchw' else (shape[1], shape[2])
        inp['size'] = [int(h), int(w)]
    inp['name'] = input_name
    inp['dtype'] = dtype
    ordered = {k: inp[k] for k in _INPUT_ORDER if k in inp}
    ordered.update({k: v for k, v in inp.items() if k not in ordered})
    return {'input': ordered, 'decoder': dict(decoder), 'labels': list(labels)}


def decoder_section(requested: Optional[str], given: Mapping[str, Any], outputs: Sequence[Any],
                    cfg: Mapping[str, Any],
                    rename: Optional[Callable[[str], str]] = None) -> Dict[str, Any]:
    """
    Return the decoder section to write: complete only where nothing had to be guessed.

    The type is ``requested`` (``--decoder``), else the one family whose known output names
    the model has. Its output tensors are the ones given (``--boxes``, ``--scores``,
    ``--decoder-option``), else those the model makes unambiguous
    (:meth:`ModelConfig.resolve_decoder`). Anything left open gives a section marked
    ``type: to_be_completed`` that lists the outputs with their shapes, the types that could
    fit and why it is incomplete; the node refuses it with :func:`incomplete_banner`'s message.

    :param requested: the decoder type asked for, or None.
    :param given: decoder options from the command line (None values are left out).
    :param outputs: the converted model's outputs (``name``, ``shape``, ``dtype``).
    :param cfg: the config built so far (its ``input`` and ``labels``).
    :param rename: maps a tensor name the user gave (a TF name) to the model's output name.
    """
    options = {k: v for k, v in given.items() if v is not None}
    names = [t.name for t in outputs]
    for key in ('boxes', 'scores', 'classes', 'num_detections', 'output'):
        if rename is not None and options.get(key) and options[key] not in names:
            options[key] = rename(options[key]) or options[key]
    if requested:
        options['type'] = requested
    config = ModelConfig(cfg.get('input'), options, cfg.get('labels'))
    try:
        return config.resolve_decoder(outputs)
    except ConfigError as exc:
        reason = str(exc).split(': ', 1)[-1]
        if not options.get('type'):
            reason = ('no --decoder was given, and no decoder type knows these output names')
    return {'type': TO_BE_COMPLETED, 'reason': reason, 'requested': dict(options) or None,
            'outputs': describe_outputs(outputs), 'candidates': candidate_decoders(outputs)}


def incomplete_banner(path: str, decoder: Mapping[str, Any]) -> str:
    """Return the loud notice tx2-convert prints after writing an incomplete config."""
    rule = '!' * 79
    return '\n'.join([rule, '!!! The model config {} is INCOMPLETE: its decoder section is TO '
                       'BE COMPLETED.'.format(path), rule,
                       incomplete_decoder_message(decoder, path), rule])


def save(path: Optional[str], cfg: Dict[str, Any], header: Optional[str] = None,
         model: Optional[str] = None, force: bool = False) -> str:
    """Validate ``cfg`` (ModelConfig) and write it as YAML atomically, keeping key order.

    :param path: where to write; None: the config of ``model`` (`outputs.config_target`:
        beside it, never over another artefact's config).
    :param model: the model file the config belongs to: the file is stamped with it, and a
        hand-edited config there is refused without ``force`` (`outputs.check_config`).
    :returns: the path written.
    :raises ConfigError: if the config is invalid; nothing is written then.
    :raises UserError: a hand-edited config would be replaced without ``force``.
    """
    import yaml

    from tx2_inference.convert import outputs
    if path is None:
        path = outputs.config_target(model)
    ModelConfig.from_dict(cfg, path)
    text = yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False)
    if model is not None:
        outputs.check_config(path, force)
        text = outputs.stamped(text, model)
    if header:
        text = ''.join('# ' + line + '\n' for line in header.splitlines()) + text
    atomic_write_text(path, text)
    return path


def parse_labels(value: Optional[str]) -> List[str]:
    """Labels from a comma list or a file with one label a line."""
    if not value:
        return []
    if os.path.isfile(value):
        with open(value) as f:
            return [line.strip() for line in f if line.strip()]
    return [v.strip() for v in value.split(',') if v.strip()]
