"""The model config the converter writes beside each model (schema: docs/DESIGN.md).

Robot side (Python 3.6): plain dicts and PyYAML.
"""

import os
from typing import Any, Dict, List, Optional

from tx2_inference.convert.fileio import atomic_write_text
from tx2_inference.errors import ConfigError

DEFAULT_INPUT = {'layout': 'nhwc', 'color': 'rgb', 'resize': 'stretch', 'pad_value': 114,
                 'scale': 1.0, 'mean': [0.0, 0.0, 0.0], 'std': [1.0, 1.0, 1.0]}


def config_path_for(model_path: str) -> str:
    """Return the config path beside a model: ``x.onnx`` -> ``x.yaml``."""
    return os.path.splitext(model_path)[0] + '.yaml'


def load(path: str) -> Dict[str, Any]:
    """Read a model config YAML as a dict.

    :raises ConfigError: if it is missing or not a mapping.
    """
    import yaml
    if not os.path.isfile(path):
        raise ConfigError('Model config {!r} does not exist: pass --config or write one '
                          '(docs/DESIGN.md, "Model config").'.format(path))
    with open(path) as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict):
        raise ConfigError('Model config {!r} is not a YAML mapping.'.format(path))
    return data


def build(input_name: str, shape: List[int], dtype: str, input_overrides: Dict[str, Any],
          decoder: Dict[str, Any], labels: List[str]) -> Dict[str, Any]:
    """Assemble a config dict: input section (size from ``shape``), decoder and labels."""
    inp = dict(DEFAULT_INPUT)
    inp.update({k: v for k, v in input_overrides.items() if v is not None})
    layout = inp['layout']
    if len(shape) == 4 and all(isinstance(d, int) and d > 0 for d in shape[1:]):
        h, w = (shape[2], shape[3]) if layout == 'nchw' else (shape[1], shape[2])
        inp['size'] = [int(h), int(w)]
    inp['name'] = input_name
    inp['dtype'] = dtype
    order = ['name', 'layout', 'color', 'dtype', 'size', 'resize', 'pad_value', 'scale',
             'mean', 'std']
    ordered = {k: inp[k] for k in order if k in inp}
    ordered.update({k: v for k, v in inp.items() if k not in ordered})
    return {'input': ordered, 'decoder': dict(decoder), 'labels': list(labels)}


def save(path: str, cfg: Dict[str, Any], header: Optional[str] = None) -> None:
    """Write ``cfg`` as YAML atomically, keeping key order, with an optional comment header."""
    import yaml
    text = yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False)
    if header:
        text = ''.join('# ' + line + '\n' for line in header.splitlines()) + text
    atomic_write_text(path, text)


def parse_labels(value: Optional[str]) -> List[str]:
    """Labels from a comma list or a file with one label a line."""
    if not value:
        return []
    if os.path.isfile(value):
        with open(value) as f:
            return [line.strip() for line in f if line.strip()]
    return [v.strip() for v in value.split(',') if v.strip()]
