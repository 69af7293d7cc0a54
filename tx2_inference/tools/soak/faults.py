"""The soak's faults: broken Image and CompressedImage messages, and the photo they come from.

Each fault kind produces one drop reason on the node's /diagnostics (``bad_frame_<reason>``).
"""

from typing import Any, Optional, Tuple

import cv2
import numpy as np

from tx2_inference.ros.image import ENCODING_LAYOUTS
from tx2_inference.tools.requires import require

# Fault kinds and the drop reason (``bad_frame_<reason>`` on /diagnostics) each must produce.
RAW_FAULTS = (
    'unknown_encoding', 'zero_size', 'huge_size', 'step_too_small', 'data_too_short',
    'data_too_long', 'mismatched_encoding', 'odd_width')
COMPRESSED_FAULTS = ('unknown_format', 'empty', 'random_bytes', 'no_signature',
                     'truncated', 'flipped_bytes')
# The encodings raw faults are applied to, and their bytes per pixel.
BYTES_PER_PIXEL = {
    name: ENCODING_LAYOUTS[name][1] * np.dtype(ENCODING_LAYOUTS[name][0]).itemsize
    for name in ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', 'mono16', 'yuv422', 'yuv422_yuy2')}


def astronaut(size: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Return the astronaut photo (skimage.data, a person), RGB, resized to (width, height)."""
    image = require('skimage.data', "the soak's photo").astronaut()
    if size is not None and tuple(size) != image.shape[1::-1]:
        image = cv2.resize(image, tuple(size), interpolation=cv2.INTER_AREA)
    return image


# --------------------------------------------------------------------------- fault messages

def raw_fault(kind: str, width: int, height: int, encoding: str, delta: int,
              text: str = 'bayer_xyz8') -> Tuple[Any, str]:
    """
    Build one broken `sensor_msgs/Image` with exactly one defect.

    :param kind: one of `RAW_FAULTS`.
    :param width: pixels per row (>= 1; the ``huge_size`` kind takes it as is).
    :param height: rows (>= 1).
    :param encoding: a supported encoding (key of ``BYTES_PER_PIXEL``) the defect is applied to.
    :param delta: how far a size is off (>= 1).
    :param text: the encoding name for ``unknown_encoding`` (must not be a supported one).
    :returns: ``(msg, reason)``: the ``reason`` the node must count the frame under.
    """
    from sensor_msgs.msg import Image

    msg = Image()
    bpp = BYTES_PER_PIXEL[encoding]
    msg.encoding, msg.width, msg.height = encoding, width, height
    msg.step = width * bpp
    size = msg.step * height
    reason = kind
    if kind == 'unknown_encoding':
        if text in ENCODING_LAYOUTS:
            raise ValueError('{!r} is a supported encoding'.format(text))
        msg.encoding = text
    elif kind == 'zero_size':
        if delta % 2:
            msg.width, msg.step = 0, 0
        else:
            msg.height = 0
        size, reason = width * bpp * (delta % 3), 'empty'
    elif kind == 'huge_size':  # far above any model input, data for one row only
        msg.width, msg.height = 4096 + width * 16, 3072 + height * 16
        msg.step = msg.width * bpp
        size, reason = msg.step, 'data_too_short'
    elif kind == 'step_too_small':
        msg.step = max(0, msg.step - delta)
        size = msg.step * height
    elif kind == 'data_too_short':
        size = max(0, size - delta)
    elif kind == 'data_too_long':
        size += delta
    elif kind == 'mismatched_encoding':  # mono8 pixels labelled with a wider encoding
        if bpp == 1:
            msg.encoding, bpp = 'rgb8', 3
        msg.step, size, reason = width, width * height, 'step_too_small'
    elif kind == 'odd_width':
        msg.encoding = 'yuv422' if delta % 2 else 'yuv422_yuy2'
        msg.width = width | 1
        msg.step = msg.width * 2
        size = msg.step * height
    else:
        raise ValueError('unknown fault kind {!r}'.format(kind))
    msg.data = bytes(bytearray((i * 7 + delta) & 0xFF for i in range(min(size, 64)))) * (
        size // 64) + bytes(size % 64)
    return msg, reason


def compressed_fault(kind: str, image: np.ndarray, fmt: str, delta: int,
                     text: str = 'bmp', junk: bytes = b'junk') -> Tuple[Any, Optional[str]]:
    """
    Build one broken `sensor_msgs/CompressedImage`.

    :param kind: one of `COMPRESSED_FAULTS`.
    :param image: an RGB photo to encode (the defect is applied to its encoding).
    :param fmt: ``'jpeg'`` or ``'png'``.
    :param delta: where the data is cut or changed.
    :param text: the format string for ``unknown_format`` (must not name jpeg or png).
    :param junk: the data for ``random_bytes``.
    :returns: ``(msg, reason)``; ``reason`` is None when the damaged data still decodes (a
        truncated jpeg often does, gray at the bottom), so the node must accept the frame.
    """
    from tx2_inference.ros.image import array_to_compressed_msg
    msg = array_to_compressed_msg(image, 'rgb', fmt)
    data = bytearray(msg.data)
    reason = None  # type: Optional[str]
    if kind == 'unknown_format':
        if any(name in text.lower() for name in ('jpeg', 'jpg', 'png')) or not text:
            raise ValueError('{!r} names a supported format'.format(text))
        msg.format, reason = text, 'unknown_format'
    elif kind == 'empty':
        data, reason = bytearray(), 'empty'
    elif kind == 'random_bytes':  # a leading zero byte: no image format starts so
        data, reason = bytearray(b'\x00' + junk), 'corrupt_data'
    elif kind == 'no_signature':
        data[0:4] = b'\x00\x00\x00\x00'
        reason = 'corrupt_data'
    elif kind in ('truncated', 'flipped_bytes'):
        cut = 8 + delta % max(1, len(data) - 8)
        if kind == 'truncated':
            data = data[:cut]
        else:
            data[cut] ^= 0xFF
        # What this OpenCV makes of the damaged data decides the expected outcome.
        decoded = cv2.imdecode(np.frombuffer(bytes(data), np.uint8), cv2.IMREAD_UNCHANGED)
        reason = None if decoded is not None and decoded.size else 'corrupt_data'
    else:
        raise ValueError('unknown fault kind {!r}'.format(kind))
    msg.data = bytes(data)
    return msg, reason


def random_raw_fault(rng: np.random.RandomState) -> Tuple[Any, str]:
    """Draw one broken Image (the soak's generator; the tests draw with hypothesis)."""
    kind = RAW_FAULTS[rng.randint(len(RAW_FAULTS))]
    encoding = sorted(BYTES_PER_PIXEL)[rng.randint(len(BYTES_PER_PIXEL))]
    text = ''.join(chr(c) for c in rng.randint(33, 127, size=rng.randint(0, 12)))
    if text in ENCODING_LAYOUTS:
        text += '_x'
    return raw_fault(kind, int(rng.randint(1, 96)), int(rng.randint(1, 96)), encoding,
                     int(rng.randint(1, 5000)), text)


def random_compressed_fault(rng: np.random.RandomState,
                            image: np.ndarray) -> Tuple[Any, Optional[str]]:
    """Draw one broken CompressedImage (the soak's generator)."""
    kind = COMPRESSED_FAULTS[rng.randint(len(COMPRESSED_FAULTS))]
    junk = rng.randint(0, 256, size=rng.randint(0, 2000)).astype(np.uint8).tobytes()
    return compressed_fault(kind, image, ('jpeg', 'png')[rng.randint(2)],
                            int(rng.randint(0, 1 << 20)), 'raw; x-' + str(rng.randint(99)),
                            junk)


# --------------------------------------------------------------------------- the node process
