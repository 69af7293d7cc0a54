"""`tx2-convert fold-qdq`: a Q/DQ (QAT or PTQ INT8) ONNX model -> FP32 weights, checked in ORT.

For devices without fast INT8 (Tegra X2): the fold (:func:`tx2_inference.backends.tensorrt.qdq
.fold`) keeps the weights on their INT8 grid and lets activations pass in float; build the
result as FP16 (``tx2-convert engine --precision fp16``). The folded model is run against the
Q/DQ one in ONNX Runtime on the same inputs (images prepared by the model config, or seeded
random inputs) and refused if an output differs by more than ``atol + rtol * max|Q/DQ|``:
activation rounding is the only difference, so the figures say what INT8 activations cost.
"""

import logging
import os
from typing import Any, Dict, List, Optional

import numpy as np

from tx2_inference.core.fileio import atomic_path
from tx2_inference.errors import UserError

LOG = logging.getLogger('tx2_inference.convert')


def _random_feed(sess: Any) -> Dict[str, np.ndarray]:
    """Return a seeded random feed for every input (free dims as 1; uint8 0-255, float 0-1)."""
    rng = np.random.RandomState(0)
    feed = {}
    for inp in sess.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
        if inp.type == 'tensor(uint8)':
            feed[inp.name] = rng.randint(0, 256, shape).astype(np.uint8)
        elif inp.type in ('tensor(float)', 'tensor(float16)'):
            dtype = np.float32 if inp.type == 'tensor(float)' else np.float16
            feed[inp.name] = rng.uniform(0, 1, shape).astype(dtype)
        else:
            raise UserError('input {!r} has type {}: pass --images to check with real '
                            'inputs.'.format(inp.name, inp.type))
    return feed


def compare(qdq_path: str, folded_path: str, feeds: List[Dict[str, np.ndarray]]
            ) -> Dict[str, Dict[str, float]]:
    """Run both models on ``feeds``; return per output max/mean |diff| and max |Q/DQ|."""
    import onnxruntime as ort
    a = ort.InferenceSession(qdq_path, providers=['CPUExecutionProvider'])
    b = ort.InferenceSession(folded_path, providers=['CPUExecutionProvider'])
    names = [o.name for o in a.get_outputs()]
    stats = {n: {'max_abs': 0.0, 'mean_abs': 0.0, 'max_ref': 0.0} for n in names}
    for feed in feeds:
        for name, x, y in zip(names, a.run(names, feed), b.run(names, feed)):
            d = np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))
            s = stats[name]
            s['max_abs'] = max(s['max_abs'], float(d.max()) if d.size else 0.0)
            s['mean_abs'] += float(d.mean()) / len(feeds) if d.size else 0.0
            s['max_ref'] = max(s['max_ref'], float(np.abs(x).max()) if np.size(x) else 0.0)
    return stats


def fold_file(src: str, output: str, images: Optional[str] = None,
              config_path: Optional[str] = None, atol: float = 0.05, rtol: float = 0.1,
              limit: int = 8, force: bool = False) -> Dict[str, Any]:
    """Fold ``src`` into ``output`` (its config copied beside it), checked against ``src``.

    :param force: replace an existing ``output`` (and a hand-edited config there; ``.bak``
        copies kept).
    :raises UserError: no Q/DQ in ``src``, a Q/DQ arrangement without a float meaning,
        outputs that differ beyond the tolerance, or an existing ``output`` without ``force``
        (nothing is written then).
    """
    from tx2_inference.backends.tensorrt import qdq
    from tx2_inference.convert import config as cfgmod
    from tx2_inference.convert import outputs
    if not os.path.isfile(src):
        raise UserError('ONNX model {!r} does not exist.'.format(src))
    cfg_src = config_path or cfgmod.config_path_for(src)
    outputs.check_output(output, [src, cfg_src], force)
    before = qdq.count_qdq(src)
    if before == (0, 0):
        raise UserError('{!r} has no QuantizeLinear/DequantizeLinear nodes: nothing to fold '
                        '(build it as FP16 directly).'.format(src))
    import onnx
    model = qdq.fold(src)
    with atomic_path(output) as tmp:
        onnx.save(model, tmp)
        if images:
            from tx2_inference.convert.quantize import calibration_feeds
            feeds = calibration_feeds(src, images, cfgmod.load(cfg_src), limit)
        else:
            import onnxruntime as ort
            feeds = [_random_feed(ort.InferenceSession(src,
                                                       providers=['CPUExecutionProvider']))]
        stats = compare(src, tmp, feeds)
        bad = {n: s for n, s in stats.items()
               if s['max_abs'] > atol + rtol * s['max_ref']}
        if bad:
            raise UserError('the folded model differs from the Q/DQ model by more than atol {} '
                            '+ rtol {} x max|Q/DQ|: {}. INT8 activations matter to this model: '
                            'keep INT8 on a device with INT8, or raise --atol/--rtol if this '
                            'is acceptable.'.format(atol, rtol, ', '.join(
                                '{} max abs {:.3g} (max |Q/DQ| {:.3g})'.format(
                                    n, s['max_abs'], s['max_ref']) for n, s in bad.items())))
    if os.path.isfile(cfg_src):
        cfgmod.save(None, cfgmod.load(cfg_src), header='Written by tx2-convert fold-qdq from '
                    '{}.'.format(os.path.basename(src)), model=output, force=force)
    return {'output': output, 'removed': {'quantize': before[0], 'dequantize': before[1]},
            'inputs': len(feeds), 'real_images': bool(images), 'diffs': stats,
            'atol': atol, 'rtol': rtol}


def summary(report: Dict[str, Any]) -> str:
    """Return the human summary of :func:`fold_file`."""
    lines = ['Wrote {}: {} QuantizeLinear and {} DequantizeLinear folded (weights on their '
             'INT8 grid, activations in float). Build it as FP16.'.format(
                 report['output'], report['removed']['quantize'],
                 report['removed']['dequantize'])]
    for name, s in sorted(report['diffs'].items()):
        lines.append('  vs Q/DQ in ONNX Runtime ({} {} input(s))  {:<32s} max abs {:.3g}  '
                     'mean abs {:.3g}'.format(report['inputs'], 'image' if report['real_images']
                                              else 'random', name, s['max_abs'],
                                              s['mean_abs']))
    return '\n'.join(lines)
