"""`tx2-convert retarget` / `onnx --target`: make an ONNX model one a target's TensorRT takes.

For a target whose TensorRT has no UINT8 (before 8.5: TX2, Nano, JetPack 4.6.x), uint8 inputs
become float32 (``backends.tensorrt.float_input``), checked in ONNX Runtime: the new model must
give the same outputs as the old one on the same pixels (seeded images, 0..255). The model
config beside it gets ``input.dtype: float32``, so the pre-processor writes float. Then the
preflight (``backends.tensorrt.preflight``) runs on the result.
"""

import logging
import os
import shutil
from typing import Any, List

import numpy as np

from tx2_inference.backends.tensorrt import devices, preflight
from tx2_inference.backends.tensorrt.float_input import float_inputs, uint8_inputs
from tx2_inference.core.fileio import atomic_path
from tx2_inference.errors import ModelError

LOG = logging.getLogger('tx2_inference.convert')


def needs_float_inputs(target: str) -> bool:
    """Return True if any TensorRT release the target checks has no UINT8 I/O."""
    releases, _ = devices.target_releases(target)
    data = preflight.support_data()
    return any(not data[r]['uint8_io']['supported'] for r in releases)


def same_outputs(old: Any, new: Any, samples: int = 2, seed: int = 0) -> float:
    """Run both models in ONNX Runtime on the same seeded uint8 pixels; return the max diff.

    :raises ModelError: the outputs differ (shape, or by more than 1e-5).
    """
    import onnxruntime as ort
    runs = [ort.InferenceSession(m.SerializeToString(), providers=['CPUExecutionProvider'])
            for m in (old, new)]
    rng = np.random.RandomState(seed)
    worst = 0.0
    for _ in range(samples):
        feeds = [{}, {}]  # type: List[Dict[str, np.ndarray]]
        for a, b in zip(runs[0].get_inputs(), runs[1].get_inputs()):
            # a free batch: 1; a free height or width: 64 pixels
            shape = [d if isinstance(d, int) and d > 0 else 1 if k == 0 else 64
                     for k, d in enumerate(a.shape)]
            pixels = rng.randint(0, 256, size=shape)
            feeds[0][a.name] = pixels.astype(np.uint8 if a.type == 'tensor(uint8)' else
                                             np.float32)
            feeds[1][b.name] = pixels.astype(np.float32 if b.type == 'tensor(float)' else
                                             np.uint8)
        got = [run.run(None, feed) for run, feed in zip(runs, feeds)]
        for x, y, out in zip(got[0], got[1], runs[0].get_outputs()):
            if np.shape(x) != np.shape(y):
                raise ModelError('output {!r}: shape {} with float inputs, {} before'.format(
                    out.name, np.shape(y), np.shape(x)))
            if np.size(x):
                worst = max(worst, float(np.max(np.abs(np.asarray(x, np.float64) -
                                                       np.asarray(y, np.float64)))))
    if worst > 1e-5:
        raise ModelError('the model with float32 inputs differs from the uint8 one by {:.3g} '
                         'in ONNX Runtime: it was not only cast to float; export the model with '
                         'a float input.'.format(worst))
    return worst


def retarget_model(model: Any, target: str) -> Any:
    """Return ``model`` fitted to ``target`` (uint8 inputs made float where needed), checked."""
    if not (needs_float_inputs(target) and uint8_inputs(model)):
        return model
    fitted, changed = float_inputs(model)
    diff = same_outputs(model, fitted)
    LOG.info('inputs %s: uint8 -> float32 for %s (ONNX Runtime: same outputs, max diff %.3g)',
             ', '.join(changed), target, diff)
    return fitted


def retarget_file(onnx_path: str, target: str, output: str, force: bool = False) -> List[str]:
    """Write ``onnx_path`` fitted to ``target`` to ``output`` (and its config beside it).

    As every converter (``convert.outputs``): never over the model it reads, and an existing
    ``output`` or a hand-edited config there only with ``force`` (``.bak`` copies kept).

    :returns: the preflight's problem lines for ``output``.
    :raises UserError: ``output`` is the input, or exists without ``force``; nothing is
        written then.
    """
    import onnx

    from tx2_inference.convert import config as cfgmod
    from tx2_inference.convert import outputs
    src_cfg = cfgmod.config_path_for(onnx_path)
    outputs.check_output(output, [onnx_path, src_cfg], force)
    model = preflight.load(onnx_path)
    fitted = retarget_model(model, target)
    if fitted is model:
        shutil.copyfile(onnx_path, output)
    else:
        with atomic_path(output) as tmp:
            onnx.save(fitted, tmp)
    if os.path.isfile(src_cfg):
        cfg = cfgmod.load(src_cfg)
        if fitted is not model:
            cfg.setdefault('input', {})['dtype'] = 'float32'
        cfgmod.save(None, cfg, header='Written by tx2-convert retarget --target {} from '
                    '{}.'.format(target, onnx_path), model=output, force=force)
    return preflight.check_target(output, target)
