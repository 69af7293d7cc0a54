"""Sample and calibration images: load a folder, prepare model inputs as the runtime would.

Robot side (Python 3.6, numpy + OpenCV only): the TensorRT INT8 calibrator uses it too.
The input contract (size, layout, colour, scale/mean/std) is the model config's ``input``
section (docs/DESIGN.md); :func:`prepare` applies it with the runtime's own preprocessor.
"""

import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from tx2_inference.errors import UserError

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.ppm', '.pgm', '.tif', '.tiff', '.webp')


def list_images(folder: str, limit: Optional[int] = None) -> List[str]:
    """Return the sorted image files of ``folder`` (at most ``limit``).

    :raises UserError: if the folder is missing or holds no image.
    """
    if not os.path.isdir(folder):
        raise UserError('Image folder {!r} does not exist: pass a folder of images such as the '
                        'robot camera sees.'.format(folder))
    paths = sorted(os.path.join(folder, n) for n in os.listdir(folder)
                   if n.lower().endswith(IMAGE_EXTENSIONS))
    if not paths:
        raise UserError('Image folder {!r} holds no image ({}).'.format(
            folder, ', '.join(IMAGE_EXTENSIONS)))
    return paths[:limit] if limit else paths


def read_rgb(path: str) -> np.ndarray:
    """Read an image file as an RGB uint8 HxWx3 array.

    :raises UserError: if OpenCV cannot decode the file.
    """
    import cv2
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise UserError('Cannot read image {!r}: not an image file OpenCV can decode.'.format(
            path))
    return np.ascontiguousarray(bgr[:, :, ::-1])


def prepare(image_rgb: np.ndarray, input_cfg: Dict[str, Any], shape: Sequence[int],
            dtype: Any) -> np.ndarray:
    """Turn an RGB uint8 image into one model input of ``shape`` (batch 1) and ``dtype``.

    Uses the runtime's own :class:`tx2_inference.core.preprocess.Preprocessor`, so calibration and
    validation inputs are exactly what the robot feeds the model.

    :param image_rgb: HxWx3 uint8 RGB (or HxW mono) image.
    :param input_cfg: the model config's ``input`` mapping (layout, color, resize, scale,
        mean, std, pad_value); missing keys take DESIGN.md's defaults.
    :param shape: the model input's shape, [1, H, W, C] or [1, C, H, W].
    :param dtype: the numpy dtype of the model input.
    """
    from tx2_inference.core.preprocess import Preprocessor
    pre = Preprocessor({k: v for k, v in input_cfg.items() if v is not None}, shape, dtype)
    out = np.empty(pre.shape, dtype=pre.dtype)
    pre(image_rgb, 'mono' if image_rgb.ndim == 2 else 'rgb', out)
    return out


def batches(paths: Sequence[str], input_cfg: Dict[str, Any], shape: Sequence[int], dtype: Any,
            batch_size: int = 1) -> List[np.ndarray]:
    """Prepare ``paths`` into contiguous batches of ``batch_size`` (the last one may be short).

    ``shape`` is one input's shape (batch 1); each batch stacks along axis 0.
    """
    out = []
    for start in range(0, len(paths), batch_size):
        chunk = [prepare(read_rgb(p), input_cfg, shape, dtype) for p in
                 paths[start:start + batch_size]]
        out.append(np.ascontiguousarray(np.concatenate(chunk, axis=0)))
    return out
