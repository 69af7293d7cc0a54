"""Pre-processing: a source image written straight into a model's input buffer.

Resize (stretch or letterbox), colour order, dtype and normalisation (scale, mean, std), NHWC or
NCHW, and the affine quantisation of a full-integer model's input, in as few passes as the case
allows and without allocating per frame once the scratch
buffers for a source size exist. The geometric transform of each frame is recorded in a
:class:`Transform`, which maps boxes in model-input pixels back to source pixels.

Coordinates are continuous pixel coordinates: (0, 0) is the top-left corner of the top-left
pixel and (width, height) the bottom-right corner of the image. ``cv2.resize`` with linear
interpolation maps corner to corner, so a box maps back by its scale and offset alone.
"""

from typing import Any, Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

from tx2_inference.errors import ConfigError, FrameError

COLORS = ('rgb', 'bgr', 'mono')
LAYOUTS = ('nhwc', 'nchw')
RESIZE_MODES = ('stretch', 'letterbox')
OUTPUT_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32), np.dtype(np.float16))
QUANTIZED_DTYPES = (np.dtype(np.uint8), np.dtype(np.int8), np.dtype(np.int16))


class Transform(object):
    """
    The geometry of one frame's pre-processing: model-input pixels <-> source pixels.

    ``input = source * scale + pad``, per axis. Instances are reused from frame to frame
    (:meth:`set` updates one in place), so holding one across frames sees it change.
    """

    __slots__ = ('source_size', 'input_size', 'scale_x', 'scale_y', 'pad_x', 'pad_y')

    def __init__(self, source_size: Tuple[int, int] = (1, 1),
                 input_size: Tuple[int, int] = (1, 1), scale_x: float = 1.0,
                 scale_y: float = 1.0, pad_x: float = 0.0, pad_y: float = 0.0) -> None:
        """Record a transform; sizes are (height, width) in pixels."""
        self.set(source_size, input_size, scale_x, scale_y, pad_x, pad_y)

    def set(self, source_size: Tuple[int, int], input_size: Tuple[int, int], scale_x: float,
            scale_y: float, pad_x: float, pad_y: float) -> 'Transform':
        """Update every field in place and return self."""
        self.source_size = (int(source_size[0]), int(source_size[1]))
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.scale_x = float(scale_x)
        self.scale_y = float(scale_y)
        self.pad_x = float(pad_x)
        self.pad_y = float(pad_y)
        return self

    def to_source(self, boxes_xyxy: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        """
        Map [N, 4] x1, y1, x2, y2 boxes from model-input pixels to source pixels.

        Boxes are clipped to the source image (a letterboxed model can predict into the
        padding).

        :param boxes_xyxy: boxes in model-input pixels.
        :param out: float32 [N, 4] array to write into (may be ``boxes_xyxy`` itself).
        :returns: float32 [N, 4] boxes in source pixels.
        """
        boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
        if out is None:
            out = np.empty(boxes.shape, dtype=np.float32)
        height, width = self.source_size
        np.subtract(boxes[:, 0::2], self.pad_x, out=out[:, 0::2])
        np.subtract(boxes[:, 1::2], self.pad_y, out=out[:, 1::2])
        np.divide(out[:, 0::2], self.scale_x, out=out[:, 0::2])
        np.divide(out[:, 1::2], self.scale_y, out=out[:, 1::2])
        np.clip(out[:, 0::2], 0.0, width, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0.0, height, out=out[:, 1::2])
        return out

    def to_input(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Map [N, 4] x1, y1, x2, y2 boxes from source pixels to model-input pixels (no clip)."""
        boxes = np.array(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        boxes[:, 0::2] = boxes[:, 0::2] * self.scale_x + self.pad_x
        boxes[:, 1::2] = boxes[:, 1::2] * self.scale_y + self.pad_y
        return boxes

    def __repr__(self) -> str:
        """Show the fields."""
        return ('Transform(source_size={}, input_size={}, scale=({:.6g}, {:.6g}), '
                'pad=({:.6g}, {:.6g}))'.format(self.source_size, self.input_size, self.scale_x,
                                                self.scale_y, self.pad_x, self.pad_y))


def geometry(source_size: Tuple[int, int], input_size: Tuple[int, int],
             resize: str) -> Tuple[int, int, int, int]:
    """
    Return where the resized source lands in the model input: (height, width, top, left).

    ``stretch`` fills the input; ``letterbox`` keeps the aspect ratio and centres the image,
    padding the rest.
    """
    src_h, src_w = source_size
    in_h, in_w = input_size
    if resize == 'stretch':
        return in_h, in_w, 0, 0
    ratio = min(in_h / float(src_h), in_w / float(src_w))
    new_h = min(in_h, max(1, int(round(src_h * ratio))))
    new_w = min(in_w, max(1, int(round(src_w * ratio))))
    return new_h, new_w, (in_h - new_h) // 2, (in_w - new_w) // 2


def _setting(config: Any, name: str, default: Any) -> Any:
    """Read ``name`` from an input config object or a dict, with a default for None."""
    value = config.get(name) if isinstance(config, dict) else getattr(config, name, None)
    return default if value is None else value


def _per_channel(value: Any, channels: int, name: str) -> np.ndarray:
    """Return a float32 [channels] array from a scalar or a per-channel list."""
    array = np.asarray(value, dtype=np.float32).reshape(-1)
    if array.size == 1:
        return np.repeat(array, channels)
    if array.size != channels:
        raise ConfigError('input.{}: {} values given for a {}-channel input; give one value or '
                          '{}.'.format(name, array.size, channels, channels))
    return array


class Preprocessor(object):
    """
    Writes source images into a model input buffer: resize, colour, dtype, normalisation.

    ``value = (pixel * scale - mean) / std`` per channel, in the model's colour order. A
    quantised input (``quantization=(s, zp)``) receives ``round(value / s + zp)``, saturated to
    its integer dtype: the quantisation is folded into the same per-channel affine map, then
    rounded and clipped in the float scratch buffer. Scratch buffers are kept per source size,
    so steady state allocates nothing. Not thread-safe: use one per thread.
    """

    def __init__(self, config: Any, input_shape: Sequence[int], dtype: Any,
                 quantization: Optional[Tuple[float, int]] = None) -> None:
        """
        Prepare for one model input.

        :param config: the model config's ``input`` section (an object with attributes
            ``layout``, ``color``, ``resize``, ``pad_value``, ``scale``, ``mean``, ``std``, or a
            dict with those keys); unset values take the defaults of docs/DESIGN.md.
        :param input_shape: the fixed input shape, [1, H, W, C] or [1, C, H, W].
        :param dtype: the input's numpy dtype: uint8, float32 or float16; or, quantised,
            uint8, int8 or int16.
        :param quantization: ``(scale, zero_point)`` of a quantised integer input (a full-integer
            TFLite model): ``q = round(value / scale + zero_point)``; None or a scale of 0: not
            quantised.
        :raises ConfigError: when the settings do not fit the input.
        """
        shape = tuple(int(d) if d is not None else -1 for d in input_shape)
        self.dtype = np.dtype(dtype)
        self.quantization = None  # type: Optional[Tuple[float, int]]
        if quantization is not None and float(quantization[0]) != 0.0:
            if self.dtype not in QUANTIZED_DTYPES:
                raise ConfigError('input quantisation {} given for a {} input; quantised inputs '
                                  'are uint8, int8 or int16.'.format(tuple(quantization),
                                                                     self.dtype))
            if not float(quantization[0]) > 0:
                raise ConfigError('input quantisation scale {} is not positive.'.format(
                    quantization[0]))
            self.quantization = (float(quantization[0]), int(quantization[1]))
        if len(shape) != 4 or shape[0] != 1 or min(shape) < 1:
            raise ConfigError('input shape {} is not a fixed [1, H, W, C] or [1, C, H, W] shape; '
                              'set input.size: [height, width] in the model config.'
                              .format(list(input_shape)))
        if self.quantization is None and self.dtype not in OUTPUT_DTYPES:
            raise ConfigError('input dtype {} is not supported; the model input must be uint8, '
                              'float32 or float16.'.format(self.dtype))
        self.layout = str(_setting(config, 'layout', 'nchw' if shape[1] in (1, 3) and
                                   shape[3] not in (1, 3) else 'nhwc')).lower()
        self.color = str(_setting(config, 'color', 'rgb')).lower()
        self.resize = str(_setting(config, 'resize', 'stretch')).lower()
        for name, value, allowed in (('layout', self.layout, LAYOUTS),
                                     ('color', self.color, COLORS),
                                     ('resize', self.resize, RESIZE_MODES)):
            if value not in allowed:
                raise ConfigError('input.{}: {!r} is not one of {}.'.format(
                    name, value, ', '.join(allowed)))
        self.shape = shape
        if self.layout == 'nhwc':
            self.input_size = (shape[1], shape[2])
            self.channels = shape[3]
        else:
            self.input_size = (shape[2], shape[3])
            self.channels = shape[1]
        if self.channels != (1 if self.color == 'mono' else 3):
            raise ConfigError('input.color is {} but the input has {} channels (shape {}, layout '
                              '{}); set input.color and input.layout to match the model.'
                              .format(self.color, self.channels, list(shape), self.layout))
        scale = _per_channel(_setting(config, 'scale', 1.0), self.channels, 'scale')
        mean = _per_channel(_setting(config, 'mean', 0.0), self.channels, 'mean')
        std = _per_channel(_setting(config, 'std', 1.0), self.channels, 'std')
        if np.any(std == 0):
            raise ConfigError('input.std: {} contains 0.'.format(std.tolist()))
        gain = (scale / std).astype(np.float64)
        offset = (mean / std).astype(np.float64)
        self._limits = None  # type: Optional[Tuple[float, float]]
        if self.quantization is None:
            self.identity = bool(np.all(gain == 1) and np.all(offset == 0))
        else:
            # q = value / s + zp = pixel * (gain / s) - (offset / s - zp): still affine.
            q_scale, zero_point = self.quantization
            gain = gain / q_scale
            offset = offset / q_scale - zero_point
            info = np.iinfo(self.dtype)
            self._limits = (float(info.min), float(info.max))
            # A straight copy when it gives the same integers (uint8 pixels, uint8 input, a
            # map within rounding of q = pixel: e.g. s = 1/255, zp = 0 and scale 1/255).
            self.identity = bool(self.dtype == np.uint8 and np.all(np.abs(gain - 1) < 1e-6) and
                                 np.all(np.abs(offset) < 1e-3))
        self.gain = gain.astype(np.float32)
        self.offset = offset.astype(np.float32)
        # value = gain * pixel - offset, as the [C, C + 1] matrix cv2.transform takes, for
        # pixels already in the model's channel order; and the same map for pixels in the
        # other of rgb/bgr (channel i lands in model channel C - 1 - i, so it takes that
        # channel's gain and offset).
        self._affine = np.concatenate([np.diag(gain), -offset[:, None]], axis=1)
        self._affine_swapped = np.concatenate([np.diag(gain[::-1]), -offset[::-1, None]],
                                              axis=1)
        if self.dtype == np.uint8 and not self.identity and self.quantization is None:
            raise ConfigError('input.scale/mean/std normalise the image, but the model input is '
                              'uint8; remove them, or use a float model input.')
        pad = float(_setting(config, 'pad_value', 114))
        pad_value = pad * gain - offset
        if self._limits is not None:
            pad_value = np.clip(np.rint(pad_value), self._limits[0], self._limits[1])
        self.pad = pad_value.astype(self.dtype)
        self._scratch: Dict[Tuple[Any, ...], np.ndarray] = {}

    def _buffer(self, key: Tuple[Any, ...], shape: Tuple[int, ...], dtype: Any) -> np.ndarray:
        """Return the scratch buffer for ``key``, made once per shape."""
        buf = self._scratch.get(key)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = np.empty(shape, dtype=dtype)
            self._scratch[key] = buf
        return buf

    def _check(self, image: np.ndarray, color: str) -> int:
        """Validate a source image; return its channel count."""
        if not isinstance(image, np.ndarray) or image.dtype not in (np.uint8, np.uint16):
            raise FrameError('expected a uint8 or uint16 numpy image, got {}.'.format(
                getattr(image, 'dtype', type(image).__name__)))
        channels = 1 if image.ndim == 2 else (image.shape[2] if image.ndim == 3 else 0)
        if color not in COLORS or channels != (1 if color == 'mono' else 3):
            raise FrameError('image of shape {} does not fit colour {!r}: rgb and bgr images are '
                             'HxWx3, mono images HxW or HxWx1.'.format(image.shape, color))
        if min(image.shape[:2]) < 1:
            raise FrameError('image of shape {} is empty.'.format(image.shape))
        if image.dtype == np.uint16 and self.dtype == np.uint8 and self.identity:
            raise FrameError('a uint16 image cannot feed a uint8 model input; convert it to uint8 '
                             'first, or use a float model with input.scale set.')
        return channels

    def __call__(self, image: np.ndarray, color: str, out: np.ndarray,
                 transform: Optional[Transform] = None) -> Transform:
        """
        Write ``image`` into ``out`` and return the frame's geometry.

        :param image: HxWx3 (rgb or bgr) or HxW / HxWx1 (mono), uint8 or uint16.
        :param color: the colour order of ``image``: rgb, bgr or mono.
        :param out: the input buffer, of the model input's shape and dtype (a slot's buffer).
        :param transform: a Transform to update in place (no allocation); None: a new one.
        :raises FrameError: when the image cannot feed this input.
        """
        color = color.lower()
        channels = self._check(image, color)
        if out.shape != self.shape or out.dtype != self.dtype:
            raise ValueError('out buffer is {} {}; expected {} {}'.format(
                out.shape, out.dtype, self.shape, self.dtype))
        if image.ndim == 3 and channels == 1:
            image = image.reshape(image.shape[:2])  # cv2 drops a single channel axis
        src_h, src_w = image.shape[:2]
        new_h, new_w, top, left = geometry((src_h, src_w), self.input_size, self.resize)
        if (new_h, new_w) == (src_h, src_w):
            resized = image
        else:
            scratch = self._buffer(('resize',), (new_h, new_w) + image.shape[2:], image.dtype)
            resized = cv2.resize(image, (new_w, new_h), dst=scratch,
                                 interpolation=cv2.INTER_LINEAR)
        pixels = self._convert_color(resized, color, channels)
        canvas = out[0] if self.layout == 'nhwc' else out[0].transpose(1, 2, 0)  # H, W, C view
        if self.color == 'mono' or color == 'mono' or color == self.color:
            target = canvas[top:top + new_h, left:left + new_w]
            affine = self._affine
        else:
            target = canvas[top:top + new_h, left:left + new_w, ::-1]  # rgb <-> bgr, free
            affine = self._affine_swapped  # mean/std are in the model's order
        if self.identity:
            np.copyto(target, pixels, casting='unsafe')
        else:
            # numpy ufuncs that cast or broadcast allocate buffers on every call; cv2.transform
            # applies gain and offset per channel in place, and copyto casts without buffers.
            work = self._buffer(('float',), pixels.shape, np.float32)
            np.copyto(work, pixels, casting='unsafe')
            cv2.transform(work, affine, dst=work)
            if self._limits is not None:  # quantised: round to nearest, saturate
                np.rint(work, out=work)
                np.clip(work, self._limits[0], self._limits[1], out=work)
            np.copyto(target, work, casting='unsafe')
        if self.resize == 'letterbox':
            canvas[:top] = self.pad
            canvas[top + new_h:] = self.pad
            canvas[top:top + new_h, :left] = self.pad
            canvas[top:top + new_h, left + new_w:] = self.pad
        if transform is None:
            transform = Transform()
        return transform.set((src_h, src_w), self.input_size, new_w / float(src_w),
                             new_h / float(src_h), left, top)

    def _convert_color(self, pixels: np.ndarray, color: str, channels: int) -> np.ndarray:
        """Return HxWxC pixels with the model's channel count (rgb/bgr swaps happen later)."""
        if self.color == 'mono' and channels == 3:
            code = cv2.COLOR_RGB2GRAY if color == 'rgb' else cv2.COLOR_BGR2GRAY
            gray = self._buffer(('gray',), pixels.shape[:2], pixels.dtype)
            pixels = cv2.cvtColor(pixels, code, dst=gray)
        elif self.color != 'mono' and channels == 1:
            rgb = self._buffer(('rgb',), pixels.shape[:2] + (3,), pixels.dtype)
            pixels = cv2.cvtColor(pixels.reshape(pixels.shape[:2]), cv2.COLOR_GRAY2RGB, dst=rgb)
        return pixels.reshape(pixels.shape[:2] + (-1,))
