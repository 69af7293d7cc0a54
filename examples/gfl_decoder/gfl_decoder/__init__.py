"""A decoder for a distribution-focal (GFL-style) head, kept outside tx2_inference.

The head predicts, for every anchor point of every stride, class logits and, for each of the
four box sides, a distribution over ``reg_max + 1`` distances (in units of the stride). The
box side is the distribution's expectation: the integral that Generalized Focal Loss
(Li et al., 2020) trains. That needs code, not a config: hence this plugin.

Installed, this package declares the entry point ``gfl = gfl_decoder:GFLDecoder`` in the
group ``tx2_inference.decoders`` (setup.py), so a model config with ``decoder: {type: gfl}``
finds it in the node, ``tx2-convert evaluate`` and the Python API alike.

Runs on the robot: Python 3.6, numpy only.
"""

from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np

from tx2_inference.core.decoders import Decoder, DetectionParams, Detections
from tx2_inference.errors import ConfigError

__all__ = ['GFLDecoder']


class GFLDecoder(Decoder):
    """
    Decode ``cls`` [N, C] logits and ``reg`` [N, 4 * (reg_max + 1)] side distributions.

    Options (model config ``decoder:`` keys): ``cls`` and ``reg`` (output tensor names),
    ``strides`` (the feature strides, in the order the head concatenates their points,
    row-major within each) and ``reg_max`` (the last distance bin).
    """

    tensor_options = ('cls', 'reg')
    known_tensor_names: Dict[str, Tuple[str, ...]] = {'cls': ('cls',), 'reg': ('reg',)}
    defaults: Dict[str, Any] = {'strides': [8], 'reg_max': 7}

    def __init__(self, options: Mapping[str, Any], labels: Sequence[str],
                 input_size: Tuple[int, int]) -> None:
        """Lay out the anchor points of every stride once."""
        super(GFLDecoder, self).__init__(options, labels, input_size)
        height, width = self.input_size
        points: List[np.ndarray] = []
        steps: List[np.ndarray] = []
        for stride in self.options['strides']:
            stride = int(stride)
            if height % stride or width % stride:
                raise ConfigError('decoder.strides: {} does not divide the input size {}x{}.'
                                  .format(stride, height, width))
            ys, xs = np.mgrid[0:height // stride, 0:width // stride]
            centres = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)
            points.append((centres + 0.5) * stride)
            steps.append(np.full(centres.shape[0], stride, np.float32))
        self.points = np.concatenate(points)  # [N, 2] x, y in model-input pixels
        self.strides = np.concatenate(steps)  # [N]
        self.bins = np.arange(int(self.options['reg_max']) + 1, dtype=np.float32)

    def decode(self, outputs: Mapping[str, np.ndarray], params: DetectionParams) -> Detections:
        """Return one frame's detections, in model-input pixels."""
        logits = self.tensor(outputs, 'cls').reshape(self.points.shape[0], -1)
        reg = self.tensor(outputs, 'reg').reshape(self.points.shape[0], 4, self.bins.size)
        # The best class of each point (sigmoid scores: one point, one object).
        best = logits.argmax(axis=1)
        scores = 1.0 / (1.0 + np.exp(-logits[np.arange(best.size), best]))
        keep = np.flatnonzero(scores >= params.score_threshold)  # decode only what may stay
        dist = reg[keep] - reg[keep].max(axis=2, keepdims=True)
        dist = np.exp(dist)
        dist /= dist.sum(axis=2, keepdims=True)
        sides = (dist * self.bins).sum(axis=2) * self.strides[keep, None]  # l, t, r, b
        centre = self.points[keep]
        boxes = np.concatenate([centre - sides[:, :2], centre + sides[:, 2:]], axis=1)
        # The node's live parameters: threshold, class allow-list, NMS, max detections.
        return self.select(boxes, scores[keep], best[keep], params)
