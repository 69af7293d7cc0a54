"""Sample and calibration images: load a folder, prepare model inputs as the runtime would.

Robot side (Python 3.6, numpy + OpenCV only): the TensorRT INT8 calibrator uses it too.
The input contract (size, layout, colour, scale/mean/std) is the model config's ``input``
section (docs/DESIGN.md); :func:`prepare` applies it the way the runtime's preprocessor does
for ``resize: stretch`` and ``letterbox``.
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

    :param image_rgb: HxWx3 uint8 RGB (or HxW mono) image.
    :param input_cfg: the model config's ``input`` mapping (layout, color, resize, scale,
        mean, std, pad_value); missing keys take DESIGN.md's defaults.
    :param shape: the model input's shape, batch first, fixed.
    :param dtype: the numpy dtype of the model input.
    """
    import cv2
    layout = input_cfg.get('layout') or ('nchw' if shape[1] in (1, 3) and shape[3] not in (1, 3)
                                         else 'nhwc')
    if layout == 'nchw':
        channels, height, width = int(shape[1]), int(shape[2]), int(shape[3])
    else:
        height, width, channels = int(shape[1]), int(shape[2]), int(shape[3])
    img = image_rgb
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    color = input_cfg.get('color', 'rgb')
    if color == 'bgr':
        img = img[:, :, ::-1]
    elif color == 'mono' or channels == 1:
        img = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)[:, :, None]
    if input_cfg.get('resize', 'stretch') == 'letterbox':
        img = _letterbox(img, height, width, int(input_cfg.get('pad_value', 114)))
    else:
        img = cv2.resize(np.ascontiguousarray(img), (width, height),
                         interpolation=cv2.INTER_LINEAR)
    if img.ndim == 2:
        img = img[:, :, None]
    x = img.astype(np.float32)
    scale = float(input_cfg.get('scale', 1.0))
    mean = np.asarray(input_cfg.get('mean', [0.0] * channels), np.float32).reshape(-1)
    std = np.asarray(input_cfg.get('std', [1.0] * channels), np.float32).reshape(-1)
    x = (x * scale - mean) / std
    if np.dtype(dtype) == np.uint8:
        x = np.clip(np.rint(x), 0, 255)
    x = x.astype(dtype)
    if layout == 'nchw':
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x[None])


def _letterbox(img: np.ndarray, height: int, width: int, pad: int) -> np.ndarray:
    """Resize keeping the aspect ratio, centred on a ``pad``-filled canvas."""
    import cv2
    h, w = img.shape[:2]
    r = min(height / float(h), width / float(w))
    nh, nw = max(1, int(round(h * r))), max(1, int(round(w * r)))
    resized = cv2.resize(np.ascontiguousarray(img), (nw, nh), interpolation=cv2.INTER_LINEAR)
    if resized.ndim == 2:
        resized = resized[:, :, None]
    canvas = np.full((height, width, img.shape[2]), pad, dtype=img.dtype)
    top, left = (height - nh) // 2, (width - nw) // 2
    canvas[top:top + nh, left:left + nw] = resized
    return canvas


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
