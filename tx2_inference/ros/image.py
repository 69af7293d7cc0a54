"""
ROS image messages to numpy arrays, following cv_bridge's encoding semantics.

`image_to_array` turns a `sensor_msgs/Image` into an (array, color) pair the `Detector` takes,
with no copy where the layout allows: rgb8, bgr8, mono8 and the first three channels of rgba8
and bgra8 are views on the message's buffer (``np.frombuffer`` + ``as_strided``), padded rows
(``step`` larger than a row) included. mono16 is scaled to 8 bits as cv_bridge does
(``255 / 65535``), honouring ``is_bigendian``; the packed yuv422 encodings (``yuv422`` =
``uyvy``, ``yuv422_yuy2`` = ``yuyv``) are converted to RGB with OpenCV.

`compressed_to_array` decodes a `sensor_msgs/CompressedImage` (jpeg, png). It reads the width
and height from the PNG or JPEG header first and refuses a frame above ``max_pixels``
(``too_large``) before decoding: a 200 KB PNG can decode to gigabytes. 16-bit pixels are
scaled to 8 bits by OpenCV in one pass, with no float copy of the frame.

Every message that cannot become a frame raises `FrameError`; its ``reason`` attribute is a
short category (``unknown_encoding``, ``empty``, ``step_too_small``, ``data_too_short``,
``data_too_long``, ``odd_width``, ``unknown_format``, ``corrupt_data``, ...) and its message
says what was wrong and how to fix it.

The message *building* helpers (`array_to_image_msg`, `array_to_compressed_msg`) import
sensor_msgs lazily, so the conversion functions work on any object with the message's fields.
"""

import sys
from typing import Any, Optional, Tuple

import cv2
import numpy as np

from tx2_inference.errors import FrameError

__all__ = [
    'ENCODING_LAYOUTS', 'array_to_compressed_msg', 'array_to_image_msg', 'compressed_to_array',
    'frame_error', 'image_to_array',
]

DEFAULT_MAX_PIXELS = 25000000  # the node's max_frame_pixels default
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start of frame: the size
_JPEG_STANDALONE = frozenset(range(0xD0, 0xD9)) | {0x01, 0xFF}  # markers without a length

# The encodings read: encoding -> (dtype, channels, color of the returned array, channels
# kept (None: all)).
# Names and their aliases as in sensor_msgs/image_encodings.hpp.
ENCODING_LAYOUTS = {
    'rgb8': (np.uint8, 3, 'rgb', None),
    'bgr8': (np.uint8, 3, 'bgr', None),
    'rgba8': (np.uint8, 4, 'rgb', 3),
    'bgra8': (np.uint8, 4, 'bgr', 3),
    'mono8': (np.uint8, 1, 'mono', None),
    '8UC1': (np.uint8, 1, 'mono', None),
    'mono16': (np.uint16, 1, 'mono', None),
    '16UC1': (np.uint16, 1, 'mono', None),
    'yuv422': (np.uint8, 2, 'rgb', None),
    'uyvy': (np.uint8, 2, 'rgb', None),
    'yuv422_yuy2': (np.uint8, 2, 'rgb', None),
    'yuyv': (np.uint8, 2, 'rgb', None),
}

_YUV_TO_RGB = {
    'yuv422': cv2.COLOR_YUV2RGB_UYVY,
    'uyvy': cv2.COLOR_YUV2RGB_UYVY,
    'yuv422_yuy2': cv2.COLOR_YUV2RGB_YUY2,
    'yuyv': cv2.COLOR_YUV2RGB_YUY2,
}

_SUPPORTED = ', '.join(sorted(ENCODING_LAYOUTS))
_COMPRESSED_FORMATS = ('jpeg', 'jpg', 'png')
_SIGNATURES = (b'\xff\xd8\xff', b'\x89PNG\r\n\x1a\n')  # jpeg SOI + marker, png


def frame_error(reason: str, message: str) -> FrameError:
    """
    Build a `FrameError` carrying a short categorical ``reason``.

    :param reason: category of the problem, e.g. ``'data_too_short'``.
    :param message: what was wrong and how to fix it.
    :returns: the error, with ``error.reason == reason``.
    """
    error = FrameError(message)
    error.reason = reason  # type: ignore[attr-defined]
    return error


def _to_8bit(array: np.ndarray) -> np.ndarray:
    """Scale 16-bit pixels to 8 bits as cv_bridge does: convertTo(CV_8U, 255 / 65535), rounded.

    OpenCV scales row by row into the 8-bit result: no float (or 32-bit) copy of the frame.
    ``v * 255 / 65535`` is never halfway between two integers, so rounding is unambiguous.
    """
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder('='))  # big-endian message: one swap
    array = np.ascontiguousarray(array)
    return cv2.convertScaleAbs(array, alpha=255.0 / 65535.0)


def too_large(width: int, height: int, max_pixels: int, what: str) -> Optional[FrameError]:
    """Return the `FrameError` (reason ``too_large``) for a frame above ``max_pixels``, or None."""
    if max_pixels and width * height > max_pixels:
        return frame_error('too_large', '{} is {}x{} = {} pixels, above max_frame_pixels {}: '
                           'publish smaller frames, or raise max_frame_pixels at launch if the '
                           'robot has the memory for them.'.format(
                               what, width, height, width * height, max_pixels))
    return None


def compressed_size(data: Any) -> Optional[Tuple[int, int]]:
    """Return (width, height) from a PNG's IHDR or a JPEG's start-of-frame, or None.

    :param data: the file's bytes (any bytes-like object; a memoryview reads without a copy).
    """
    head = memoryview(data).cast('B')
    start = bytes(head[:8])
    if start.startswith(_SIGNATURES[1]):
        if len(head) < 24 or bytes(head[12:16]) != b'IHDR':
            return None
        return int.from_bytes(head[16:20], 'big'), int.from_bytes(head[20:24], 'big')
    if not start.startswith(b'\xff\xd8'):
        return None
    index, size = 2, len(head)
    while index + 4 <= size:
        if head[index] != 0xFF:
            return None  # not at a marker: corrupt
        marker = head[index + 1]
        if marker in _JPEG_STANDALONE:
            index += 1 if marker == 0xFF else 2  # fill byte, or a marker without a segment
            continue
        if marker == 0xD9 or marker == 0xDA:
            return None  # end of image or scan data before any frame header
        length = int.from_bytes(head[index + 2:index + 4], 'big')
        if marker in _JPEG_SOF:
            if index + 9 > size or length < 7:
                return None
            height = int.from_bytes(head[index + 5:index + 7], 'big')
            return int.from_bytes(head[index + 7:index + 9], 'big'), height
        if length < 2:
            return None
        index += 2 + length
    return None


def _buffer(data: Any) -> np.ndarray:
    """Return the message's bytes as a flat uint8 array, sharing memory where possible."""
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError, BufferError):
        # A list of ints (a hand-built message): one copy is unavoidable.
        try:
            return np.asarray(data, dtype=np.uint8).ravel()
        except (TypeError, ValueError, OverflowError) as error:
            raise frame_error('bad_data', 'Image data is not a byte buffer: fill `data` with '
                              'the pixel bytes (bytes, array.array or a uint8 numpy array).'
                              ) from error


def image_to_array(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> Tuple[np.ndarray, str]:
    """
    Convert a `sensor_msgs/Image` to an array for the detector.

    :param msg: a `sensor_msgs/Image` (or any object with its fields).
    :param max_pixels: the largest width x height converted (0: no limit); above it the
        frame is refused (``too_large``).
    :returns: ``(array, color)``: an HxWx3 uint8 array with ``color`` ``'rgb'`` or ``'bgr'``,
        or an HxW uint8 array with ``color`` ``'mono'``. For rgb8, bgr8, rgba8, bgra8 and mono8
        the array is a read-only view on ``msg.data`` (no copy).
    :raises FrameError: the message cannot be a frame; ``error.reason`` says why.
    """
    encoding = str(msg.encoding)
    if encoding not in ENCODING_LAYOUTS:
        return _fallback_cv_bridge(msg, encoding)
    dtype, channels, color, keep = ENCODING_LAYOUTS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    itemsize = np.dtype(dtype).itemsize
    if height <= 0 or width <= 0:
        raise frame_error('empty', 'Image is empty ({}x{}): publish frames with a non-zero '
                          'width and height.'.format(width, height))
    row = width * channels * itemsize
    if step < row:
        raise frame_error('step_too_small', 'Image step {} is smaller than a row of {} {} pixels '
                          '({} bytes): set step to at least width * bytes per pixel.'
                          .format(step, width, encoding, row))
    flat = _buffer(msg.data)
    expected = height * step
    if flat.size < expected:
        raise frame_error('data_too_short', 'Image data has {} bytes, height * step is {}: the '
                          'message is truncated or step/height are wrong.'
                          .format(flat.size, expected))
    if flat.size > expected:
        raise frame_error('data_too_long', 'Image data has {} bytes, height * step is {}: set '
                          'height and step to match the data.'.format(flat.size, expected))
    error = too_large(width, height, max_pixels, 'Image')
    if error is not None:
        raise error
    if encoding in _YUV_TO_RGB and width % 2:
        raise frame_error('odd_width', 'Packed {} needs an even width, got {}: crop the image '
                          'to an even width.'.format(encoding, width))

    # (height, width, bytes per pixel) over the padded rows: a view on the message, no copy.
    pixels = np.lib.stride_tricks.as_strided(
        flat, shape=(height, width, channels * itemsize),
        strides=(step, channels * itemsize, 1), writeable=False)
    if itemsize > 1:
        # 16 bit: the message's byte order, then one packed copy (scaled to 8 bits below).
        wide = np.dtype(dtype).newbyteorder('>' if msg.is_bigendian else '<')
        pixels = np.ascontiguousarray(pixels).view(wide)

    if encoding in _YUV_TO_RGB:
        return cv2.cvtColor(pixels, _YUV_TO_RGB[encoding]), color
    if channels == 1:
        mono = pixels[:, :, 0]
        if itemsize > 1:
            mono = _to_8bit(mono)
        return mono, color
    if keep is not None:
        pixels = pixels[:, :, :keep]
    return pixels, color


def _fallback_cv_bridge(msg: Any, encoding: str) -> Tuple[np.ndarray, str]:
    """Convert an encoding this module does not handle with cv_bridge, if it is installed."""
    try:
        from cv_bridge import CvBridge  # ROS 2 cv_bridge: bayer, rgb16, ... -> bgr8
    except ImportError:
        CvBridge = None  # noqa: N806
    if CvBridge is not None and encoding:
        try:
            return CvBridge().imgmsg_to_cv2(msg, desired_encoding='bgr8'), 'bgr'
        except Exception as error:  # cv_bridge raises CvBridgeError, TypeError, cv2.error
            raise frame_error('unknown_encoding', 'cv_bridge cannot convert encoding {!r} to '
                              'bgr8 ({}): publish one of {}.'.format(encoding, error, _SUPPORTED)
                              ) from error
    raise frame_error('unknown_encoding', 'Image encoding {!r} is not supported: publish one of '
                      '{}.'.format(encoding, _SUPPORTED))


def compressed_to_array(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS
                        ) -> Tuple[np.ndarray, str]:
    """
    Decode a `sensor_msgs/CompressedImage` (jpeg or png) for the detector.

    ``format`` may be a bare ``jpeg``/``png`` or image_transport's ``"bgr8; jpeg compressed
    bgr8"``; an empty format is decoded by content.

    :param msg: a `sensor_msgs/CompressedImage` (or any object with its fields).
    :param max_pixels: the largest width x height decoded (0: no limit), read from the
        header before decoding; above it the frame is refused (``too_large``).
    :returns: ``(array, color)``: HxWx3 uint8 ``'bgr'`` or HxW uint8 ``'mono'``.
    :raises FrameError: unsupported format, empty or corrupt data; ``error.reason`` says why.
    """
    fmt = str(msg.format).lower()
    if fmt and not any(name in fmt for name in _COMPRESSED_FORMATS):
        raise frame_error('unknown_format', 'CompressedImage format {!r} is not supported: '
                          'publish jpeg or png.'.format(msg.format))
    if 'compresseddepth' in fmt.replace(' ', ''):
        raise frame_error('unknown_format', 'compressedDepth images are not supported: publish '
                          'color or mono jpeg/png.')
    data = _buffer(msg.data)
    if data.size == 0:
        raise frame_error('empty', 'CompressedImage has no data: publish encoded jpeg/png bytes.')
    head = data[:8].tobytes()
    if not head.startswith(_SIGNATURES):
        # Only jpeg and png reach a decoder: imdecode would also try bmp, tiff, webp, ...
        raise frame_error('corrupt_data', 'CompressedImage data ({} bytes, format {!r}) is '
                          'neither jpeg nor png (it starts with {!r}): publish jpeg or png '
                          'bytes.'.format(data.size, msg.format, head[:4]))
    size = compressed_size(data)
    if size is None:
        raise frame_error('corrupt_data', 'CompressedImage data ({} bytes, format {!r}) has no '
                          'readable PNG/JPEG header with the image size: the data is corrupt.'
                          .format(data.size, msg.format))
    error = too_large(size[0], size[1], max_pixels, 'CompressedImage')
    if error is not None:
        raise error
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        image = None
    if image is None or image.size == 0:
        raise frame_error('corrupt_data', 'CompressedImage data ({} bytes, format {!r}) does '
                          'not decode: the data is corrupt or not jpeg/png.'
                          .format(data.size, msg.format))
    if image.dtype == np.uint16:
        image = _to_8bit(image)
    elif image.dtype != np.uint8:
        raise frame_error('unknown_format', 'CompressedImage decodes to {} pixels: publish '
                          '8 or 16 bit jpeg/png.'.format(image.dtype))
    if image.ndim == 2:
        return image, 'mono'
    if image.shape[2] == 1:
        return image[:, :, 0], 'mono'
    return image[:, :, :3], 'bgr'


def array_to_image_msg(array: np.ndarray, encoding: str, header: Optional[Any] = None) -> Any:
    """
    Build a `sensor_msgs/Image` from an array (one copy, rows packed).

    :param array: HxW (mono8, mono16) or HxWxC array laid out as ``encoding`` says.
    :param encoding: a `sensor_msgs` encoding name, e.g. ``'rgb8'``.
    :param header: optional `std_msgs/Header` to copy into the message.
    :returns: the `sensor_msgs/Image`.
    :raises ValueError: the array's dtype or channels do not match ``encoding``.
    """
    from sensor_msgs.msg import Image

    if encoding not in ENCODING_LAYOUTS:
        raise ValueError('encoding {!r} is not one of {}'.format(encoding, _SUPPORTED))
    dtype, channels, _, _ = ENCODING_LAYOUTS[encoding]
    array = np.ascontiguousarray(array)
    got = 1 if array.ndim == 2 else array.shape[2]
    if array.dtype != np.dtype(dtype) or got != channels or array.ndim not in (2, 3):
        raise ValueError('array {} {} does not fit encoding {!r} ({} x {} channels)'.format(
            array.dtype, array.shape, encoding, np.dtype(dtype).name, channels))
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = sys.byteorder == 'big'
    msg.step = int(array.shape[1] * channels * array.itemsize)
    msg.data = array.tobytes()
    return msg


def array_to_compressed_msg(array: np.ndarray, color: str = 'bgr', fmt: str = 'jpeg',
                            header: Optional[Any] = None, quality: int = 90) -> Any:
    """
    Encode an array into a `sensor_msgs/CompressedImage`.

    :param array: HxWx3 uint8 (``color`` ``'rgb'`` or ``'bgr'``) or HxW uint8 (``'mono'``).
    :param color: channel order of ``array``.
    :param fmt: ``'jpeg'`` or ``'png'``.
    :param header: optional `std_msgs/Header` to copy into the message.
    :param quality: jpeg quality, 0 to 100.
    :returns: the `sensor_msgs/CompressedImage`.
    :raises ValueError: unknown format or color, or OpenCV failed to encode.
    """
    from sensor_msgs.msg import CompressedImage

    if fmt not in ('jpeg', 'png'):
        raise ValueError('fmt must be jpeg or png, got {!r}'.format(fmt))
    if color == 'rgb':
        array = cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_RGB2BGR)
    elif color not in ('bgr', 'mono'):
        raise ValueError('color must be rgb, bgr or mono, got {!r}'.format(color))
    params = [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)] if fmt == 'jpeg' else []
    ok, encoded = cv2.imencode('.jpg' if fmt == 'jpeg' else '.png', array, params)
    if not ok:
        raise ValueError('OpenCV could not encode a {} {} image'.format(array.shape, fmt))
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = fmt
    msg.data = encoded.tobytes()
    return msg
