"""Pre-processing: geometry to source pixels, colour, normalisation, layouts, no allocation."""

import tracemalloc
from typing import Tuple

import cv2
from hypothesis import assume, given, settings
from hypothesis import strategies as st
import numpy as np
import pytest
from skimage import data

from tx2_inference.core.preprocess import Preprocessor, Transform
from tx2_inference.errors import ConfigError, FrameError


def _measured_box(channel: np.ndarray) -> np.ndarray:
    """Return the x1, y1, x2, y2 pixel-corner box of the bright pixels of one channel."""
    ys, xs = np.nonzero(channel > 127)
    return np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float64)


@settings(max_examples=150, deadline=None)
@given(src=st.tuples(st.integers(3, 500), st.integers(3, 500)),
       dst=st.tuples(st.integers(8, 160), st.integers(8, 160)),
       resize=st.sampled_from(['stretch', 'letterbox']),
       layout=st.sampled_from(['nhwc', 'nchw']),
       fractions=st.tuples(*[st.floats(0, 1)] * 4))
def test_boxes_map_back_to_source_pixels(src: Tuple[int, int], dst: Tuple[int, int],
                                         resize: str, layout: str,
                                         fractions: Tuple[float, ...]) -> None:
    """A bright rectangle found in the model input maps back onto the drawn one."""
    (src_h, src_w), (dst_h, dst_w) = src, dst
    shape = (1, dst_h, dst_w, 3) if layout == 'nhwc' else (1, 3, dst_h, dst_w)
    pre = Preprocessor({'resize': resize, 'layout': layout, 'pad_value': 0}, shape, np.uint8)
    out, again = np.full(shape, 1, np.uint8), np.full(shape, 254, np.uint8)
    scale_x, scale_y = _scales(src, dst, resize)
    # The rectangle must span more than a resampling step to survive linear downscaling.
    min_w, min_h = 2 / scale_x + 2, 2 / scale_y + 2
    assume(src_w > min_w + 1 and src_h > min_h + 1)
    x1 = int(fractions[0] * (src_w - min_w))
    y1 = int(fractions[1] * (src_h - min_h))
    x2 = int(x1 + min_w + fractions[2] * (src_w - x1 - min_w))
    y2 = int(y1 + min_h + fractions[3] * (src_h - y1 - min_h))
    image = np.zeros((src_h, src_w, 3), np.uint8)
    image[y1:y2, x1:x2] = 255
    transform = pre(image, 'rgb', out)
    pre(image, 'rgb', again)
    np.testing.assert_array_equal(out, again)  # every input pixel is written: content or pad
    channel = out[0, :, :, 0] if layout == 'nhwc' else out[0, 0]
    found = transform.to_source(_measured_box(channel))[0]
    # Edges are located to 1 model-input pixel; in source pixels that is 1 / scale (>= 1 px).
    tolerance = np.array([1 / scale_x, 1 / scale_y] * 2).clip(1.0, None) + 1e-3
    assert (np.abs(found - [x1, y1, x2, y2]) <= tolerance).all(), (found, transform)
    assert (found >= 0).all() and found[2] <= src_w and found[3] <= src_h


def _scales(src: Tuple[int, int], dst: Tuple[int, int], resize: str) -> Tuple[float, float]:
    """Return the expected x and y scales, from the sizes alone."""
    if resize == 'stretch':
        return dst[1] / src[1], dst[0] / src[0]
    ratio = min(dst[0] / src[0], dst[1] / src[1])
    return ratio, ratio


def test_letterbox_centres_and_pads_with_the_normalised_pad_value() -> None:
    photo = data.astronaut()[:, :400]  # 512 x 400: tall, so padded left and right
    out = np.zeros((1, 3, 128, 128), np.float32)
    pre = Preprocessor({'resize': 'letterbox', 'scale': 1 / 255.0, 'mean': [0.5, 0.5, 0.5],
                        'std': [0.25, 0.25, 0.25], 'pad_value': 0}, out.shape, out.dtype)
    transform = pre(photo, 'rgb', out)
    assert transform.scale_x == transform.scale_y == 0.25
    assert (transform.pad_x, transform.pad_y) == (14.0, 0.0)  # (128 - 100) / 2
    np.testing.assert_array_equal(out[0, :, :, :14], -2.0)  # (0 / 255 - 0.5) / 0.25
    np.testing.assert_array_equal(out[0, :, :, 114:], -2.0)
    expected = (cv2.resize(photo, (100, 128)).astype(np.float32) / 255 - 0.5) / 0.25
    np.testing.assert_allclose(out[0, :, :, 14:114], expected.transpose(2, 0, 1), atol=1e-5)
    # A box over the whole content maps to the whole photo; boxes in the padding are clipped.
    np.testing.assert_allclose(transform.to_source([[14, 0, 114, 128], [0, 0, 5, 5]]),
                               [[0, 0, 400, 512], [0, 0, 0, 20]], atol=1e-4)


@pytest.mark.parametrize('source, model', [('rgb', 'bgr'), ('bgr', 'rgb'), ('rgb', 'rgb'),
                                           ('rgb', 'mono'), ('bgr', 'mono'), ('mono', 'rgb'),
                                           ('mono', 'mono')])
def test_colour_order(source: str, model: str) -> None:
    rgb = data.astronaut()
    images = {'rgb': rgb, 'bgr': rgb[:, :, ::-1].copy(),
              'mono': cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)}
    expected = {'rgb': rgb, 'bgr': images['bgr'], 'mono': images['mono'][:, :, None]}[model]
    if source == 'mono' and model == 'rgb':
        expected = np.repeat(images['mono'][:, :, None], 3, axis=2)
    channels = 1 if model == 'mono' else 3
    out = np.zeros((1, 512, 512, channels), np.uint8)  # same size: no resampling in the way
    Preprocessor({'color': model}, out.shape, out.dtype)(images[source], source, out)
    np.testing.assert_array_equal(out[0], expected)


def test_uint16_mono_into_float16_nchw() -> None:
    depth = (data.camera().astype(np.uint16) * 257)[:300, :200]  # 0..65535
    out = np.zeros((1, 1, 150, 100), np.float16)
    pre = Preprocessor({'color': 'mono', 'scale': 1 / 65535.0}, out.shape, out.dtype)
    transform = pre(depth, 'mono', out)
    expected = cv2.resize(depth, (100, 150)).astype(np.float32) / 65535
    np.testing.assert_allclose(out[0, 0].astype(np.float32), expected, atol=1e-3)
    assert transform.scale_x == transform.scale_y == 0.5


def test_steady_state_allocates_nothing_per_frame() -> None:
    photo = data.astronaut()[:, :450]
    buffers = [np.zeros((1, 3, 300, 300), np.float32) for _ in range(2)]  # two slots
    transforms = [Transform(), Transform()]
    pre = Preprocessor({'resize': 'letterbox', 'color': 'bgr', 'scale': 1 / 255.0,
                        'mean': [0.485, 0.456, 0.406], 'std': [0.229, 0.224, 0.225]},
                       buffers[0].shape, np.float32)
    for i in range(4):  # warm-up: scratch buffers are made here
        pre(photo, 'rgb', buffers[i % 2], transforms[i % 2])
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for i in range(1000):
            pre(photo, 'rgb', buffers[i % 2], transforms[i % 2])
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # One resized frame is 300 x 263 x 3 bytes = 237 kB: a per-frame array would show here.
    assert peak - before < 16 * 1024, 'a frame allocated {} bytes at once'.format(peak - before)
    assert after - before < 4 * 1024, 'memory grew by {} bytes'.format(after - before)


def test_bad_frames_and_settings_say_what_is_wrong() -> None:
    out = np.zeros((1, 64, 64, 3), np.uint8)
    pre = Preprocessor({}, out.shape, out.dtype)
    with pytest.raises(FrameError, match='colour'):
        pre(np.zeros((10, 10), np.uint8), 'rgb', out)
    with pytest.raises(FrameError, match='uint8 or uint16'):
        pre(np.zeros((10, 10, 3), np.float32), 'rgb', out)
    with pytest.raises(FrameError, match='uint16 image cannot feed a uint8'):
        pre(np.zeros((10, 10, 3), np.uint16), 'rgb', out)
    with pytest.raises(ConfigError, match='uint8'):
        Preprocessor({'scale': 1 / 255.0}, out.shape, np.uint8)
    with pytest.raises(ConfigError, match='input.color'):
        Preprocessor({'color': 'mono'}, out.shape, np.uint8)
    with pytest.raises(ConfigError, match='input.size'):
        Preprocessor({}, (1, -1, -1, 3), np.uint8)
    with pytest.raises(ConfigError, match='input.mean'):
        Preprocessor({'mean': [1, 2]}, out.shape, np.float32)


# ImageNet-style per-channel normalisation, written in the model's colour order: a model with
# input.color bgr gets its mean/std as [B, G, R]. Deliberately far from uniform.
_MEAN = [0.485, 0.456, 0.406]
_STD = [0.229, 0.224, 0.225]


def _reference(rgb: np.ndarray, model_color: str, layout: str, dtype: np.dtype,
               quantization) -> np.ndarray:
    """Return the expected input tensor: resize, model order, normalise, quantise (numpy)."""
    resized = cv2.resize(rgb, (96, 64), interpolation=cv2.INTER_LINEAR).astype(np.float64)
    if model_color == 'bgr':
        resized = resized[:, :, ::-1]
    value = (resized / 255.0 - np.array(_MEAN)) / np.array(_STD)
    if quantization is not None:
        info = np.iinfo(dtype)
        value = np.clip(np.rint(value / quantization[0] + quantization[1]), info.min, info.max)
    tensor = value[None] if layout == 'nhwc' else value.transpose(2, 0, 1)[None]
    return tensor.astype(dtype)


def _frames_of_one_photo(rgb: np.ndarray):
    """Yield (name, array, color) of one photo as every encoding the node takes."""
    pytest.importorskip('sensor_msgs', reason='the ROS image conversion needs ROS 2 messages '
                        '(not in the Python 3.6 runtime tier)')
    from sensor_msgs.msg import CompressedImage

    from tx2_inference.ros.image import (
        array_to_compressed_msg,
        array_to_image_msg,
        compressed_to_array,
        image_to_array,
    )
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    yield 'rgb8', image_to_array(array_to_image_msg(rgb, 'rgb8'))
    yield 'bgr8', image_to_array(array_to_image_msg(bgr, 'bgr8'))
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    yield 'bgra8', image_to_array(array_to_image_msg(rgba[:, :, [2, 1, 0, 3]], 'bgra8'))
    yield 'png', compressed_to_array(array_to_compressed_msg(rgb, 'rgb', 'png'))
    png16 = CompressedImage()  # a 16-bit png: scaled to 8 bits as cv_bridge does
    png16.format = 'png'
    png16.data = cv2.imencode('.png', bgr.astype(np.uint16) * 257)[1].tobytes()
    yield 'png16', compressed_to_array(png16)
    yield 'rgb uint16 (API)', (rgb.astype(np.uint16) * 257, 'rgb')
    yield 'bgr uint16 (API)', (bgr.astype(np.uint16) * 257, 'bgr')


@pytest.mark.parametrize('model_color', ['rgb', 'bgr'])
@pytest.mark.parametrize('layout', ['nhwc', 'nchw'])
@pytest.mark.parametrize('dtype, quantization', [
    (np.float32, None), (np.float16, None), (np.int8, (0.0187, -3)), (np.uint8, (0.0187, 128)),
    (np.int16, (0.0005, 0))], ids=['float32', 'float16', 'int8', 'uint8q', 'int16'])
def test_mean_std_are_in_the_model_order_for_every_encoding(model_color, layout, dtype,
                                                            quantization) -> None:
    """The same photo gives the same input tensor as rgb8, bgr8, bgra8, png and 16 bit."""
    rgb = data.astronaut()[100:292, 50:338]  # 192 x 288 -> 64 x 96: a real resize
    shape = (1, 64, 96, 3) if layout == 'nhwc' else (1, 3, 64, 96)
    config = {'color': model_color, 'layout': layout, 'mean': _MEAN, 'std': _STD}
    # 16-bit pixels take their own scale: value = (pixel * scale - mean) / std either way.
    pre8 = Preprocessor(dict(config, scale=1 / 255.0), shape, dtype, quantization)
    pre16 = Preprocessor(dict(config, scale=1 / 65535.0), shape, dtype, quantization)
    expected = _reference(rgb, model_color, layout, np.dtype(dtype), quantization)
    tensors, array_dtype = {}, {}
    for name, (array, color) in _frames_of_one_photo(rgb):
        out = np.zeros(shape, dtype)
        array_dtype[name] = array.dtype
        (pre16 if array.dtype == np.uint16 else pre8)(array, color, out)
        tensors[name] = out
    np.testing.assert_array_equal(tensors['rgb8'], tensors['bgr8'])
    for name, tensor in tensors.items():
        # float32 rounding in the affine map: < 1e-5 for floats, at most one step quantised.
        atol = 2e-3 if dtype == np.float16 else (1 if quantization else 1e-4)
        np.testing.assert_allclose(tensor.astype(np.float64), expected.astype(np.float64),
                                   atol=atol, err_msg=name)
        if array_dtype[name] == np.uint8:  # the same 8-bit pixels: the very same tensor
            np.testing.assert_array_equal(tensor, tensors['rgb8'], err_msg=name)


@pytest.mark.parametrize('layout', ['nhwc', 'nchw'])
def test_mono_source_into_a_colour_model_normalises_each_channel(layout: str) -> None:
    pytest.importorskip('sensor_msgs', reason='ROS 2 messages (not in the Python 3.6 tier)')
    from tx2_inference.ros.image import array_to_image_msg, image_to_array
    grey = data.camera()[:128, :192]
    shape = (1, 64, 96, 3) if layout == 'nhwc' else (1, 3, 64, 96)
    pre = Preprocessor({'color': 'bgr', 'layout': layout, 'scale': 1 / 255.0, 'mean': _MEAN,
                        'std': _STD}, shape, np.float32)
    for encoding, array in (('mono8', grey), ('mono16', grey.astype(np.uint16) * 257)):
        out = np.zeros(shape, np.float32)
        pre(*image_to_array(array_to_image_msg(array, encoding)), out)
        small = cv2.resize(grey, (96, 64)).astype(np.float64) / 255.0
        hwc = out[0] if layout == 'nhwc' else out[0].transpose(1, 2, 0)
        for channel in range(3):
            np.testing.assert_allclose(hwc[:, :, channel],
                                       (small - _MEAN[channel]) / _STD[channel], atol=1e-4)
