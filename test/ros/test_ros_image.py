"""sensor_msgs/Image and CompressedImage to arrays: every encoding on a real photo."""

import cv2
from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image
import skimage.data

from tx2_inference.errors import FrameError
from tx2_inference.ros import image
from tx2_inference.ros.image import (
    array_to_compressed_msg,
    array_to_image_msg,
    compressed_to_array,
    ENCODING_LAYOUTS,
    image_to_array,
)


@pytest.fixture(scope='module')
def photo() -> np.ndarray:
    """Astronaut photo, RGB, cropped to an odd height and an even, non-square width."""
    return np.ascontiguousarray(skimage.data.astronaut()[:301, :450])


def padded_msg(array: np.ndarray, encoding: str, pad: int, big: bool = False) -> Image:
    """Build an Image whose rows are followed by `pad` bytes of junk."""
    rows = array.reshape(array.shape[0], -1).view(np.uint8)
    junk = np.full((rows.shape[0], pad), 0xAB, np.uint8)
    msg = Image(height=array.shape[0], width=array.shape[1], encoding=encoding,
                is_bigendian=big, step=rows.shape[1] + pad)
    msg.data = np.hstack([rows, junk]).tobytes()
    return msg


def message_bytes(msg: Image) -> np.ndarray:
    """Return the message's buffer as an array (to test memory sharing)."""
    return np.frombuffer(msg.data, np.uint8)


@pytest.mark.parametrize('pad', [0, 13])
@pytest.mark.parametrize('encoding,code,color', [
    ('rgb8', None, 'rgb'),
    ('bgr8', cv2.COLOR_RGB2BGR, 'bgr'),
    ('rgba8', cv2.COLOR_RGB2RGBA, 'rgb'),
    ('bgra8', cv2.COLOR_RGB2BGRA, 'bgr'),
])
def test_color_encodings_are_views_on_the_message(photo, encoding, code, color, pad):
    src = photo if code is None else cv2.cvtColor(photo, code)
    msg = padded_msg(src, encoding, pad)
    array, got_color = image_to_array(msg)
    assert got_color == color
    assert array.shape == photo.shape and array.dtype == np.uint8
    expected = photo if color == 'rgb' else cv2.cvtColor(photo, cv2.COLOR_RGB2BGR)
    np.testing.assert_array_equal(array, expected)
    assert np.shares_memory(array, message_bytes(msg)), 'expected a view, got a copy'
    assert not array.flags.writeable


@pytest.mark.parametrize('pad', [0, 7])
def test_mono8_is_a_view(photo, pad):
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    msg = padded_msg(gray, 'mono8', pad)
    array, color = image_to_array(msg)
    assert color == 'mono' and array.shape == gray.shape
    np.testing.assert_array_equal(array, gray)
    assert np.shares_memory(array, message_bytes(msg))


@pytest.mark.parametrize('big', [False, True])
@pytest.mark.parametrize('pad', [0, 6])
def test_mono16_scaled_like_cv_bridge(photo, big, pad):
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY).astype(np.uint16)
    # A real 16-bit range: high byte from the photo, low byte from its texture.
    wide = (gray * 256 + (gray * 37) % 256).astype(np.uint16)
    stored = wide.astype('>u2' if big else '<u2')
    msg = padded_msg(stored, 'mono16', pad, big=big)
    array, color = image_to_array(msg)
    assert color == 'mono' and array.dtype == np.uint8
    # cv_bridge: mono16 -> mono8 is convertTo(CV_8U, 255 / 65535), rounded and saturated.
    expected = cv2.convertScaleAbs(wide.astype(np.float64), alpha=255.0 / 65535.0)
    np.testing.assert_array_equal(array, expected)


@pytest.mark.parametrize('pad', [0, 10])
@pytest.mark.parametrize('encoding,to_yuv,from_yuv', [
    ('yuv422', cv2.COLOR_RGB2YUV_UYVY, cv2.COLOR_YUV2RGB_UYVY),
    ('uyvy', cv2.COLOR_RGB2YUV_UYVY, cv2.COLOR_YUV2RGB_UYVY),
    ('yuv422_yuy2', cv2.COLOR_RGB2YUV_YUY2, cv2.COLOR_YUV2RGB_YUY2),
    ('yuyv', cv2.COLOR_RGB2YUV_YUY2, cv2.COLOR_YUV2RGB_YUY2),
])
def test_packed_yuv422(photo, encoding, to_yuv, from_yuv, pad):
    packed = cv2.cvtColor(photo, to_yuv)
    assert packed.shape == photo.shape[:2] + (2,)
    msg = padded_msg(packed, encoding, pad)
    array, color = image_to_array(msg)
    assert color == 'rgb' and array.shape == photo.shape
    np.testing.assert_array_equal(array, cv2.cvtColor(packed, from_yuv))
    # And it is the photo, up to chroma subsampling: the byte order was read right.
    assert np.abs(array.astype(int) - photo.astype(int)).mean() < 6


def test_yuv_byte_orders_differ(photo):
    """Reading UYVY as YUYV gives a wrong picture: the two encodings are not interchangeable."""
    packed = cv2.cvtColor(photo, cv2.COLOR_RGB2YUV_UYVY)
    wrong, _ = image_to_array(padded_msg(packed, 'yuyv', 0))
    assert np.abs(wrong.astype(int) - photo.astype(int)).mean() > 20


def test_array_to_image_msg_round_trip(photo):
    msg = array_to_image_msg(photo, 'rgb8')
    assert (msg.height, msg.width, msg.step) == (301, 450, 450 * 3)
    array, color = image_to_array(msg)
    np.testing.assert_array_equal(array, photo)
    with pytest.raises(ValueError, match='does not fit'):
        array_to_image_msg(photo, 'mono8')


def test_compressed_jpeg_and_png(photo):
    bgr = cv2.cvtColor(photo, cv2.COLOR_RGB2BGR)
    png = array_to_compressed_msg(photo, color='rgb', fmt='png')
    array, color = compressed_to_array(png)
    assert color == 'bgr'
    np.testing.assert_array_equal(array, bgr)
    jpeg = array_to_compressed_msg(photo, color='rgb', fmt='jpeg', quality=95)
    array, color = compressed_to_array(jpeg)
    assert color == 'bgr' and array.shape == photo.shape
    assert np.abs(array.astype(int) - bgr.astype(int)).mean() < 4
    # image_transport's format string, and a 16-bit grey png.
    jpeg.format = 'rgb8; jpeg compressed bgr8'
    assert compressed_to_array(jpeg)[1] == 'bgr'
    gray16 = (cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257)
    ok, data = cv2.imencode('.png', gray16)
    assert ok
    array, color = compressed_to_array(CompressedImage(format='png', data=data.tobytes()))
    assert color == 'mono'
    np.testing.assert_array_equal(array, cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY))


def good_rgb(photo: np.ndarray) -> Image:
    """Return a valid small rgb8 message to break one field at a time."""
    return array_to_image_msg(photo[:20, :30], 'rgb8')


@pytest.mark.parametrize('breakage,reason', [
    (lambda m: setattr(m, 'encoding', '32FC7'), 'unknown_encoding'),
    (lambda m: setattr(m, 'encoding', ''), 'unknown_encoding'),
    (lambda m: (setattr(m, 'height', 0), setattr(m, 'data', b'')), 'empty'),
    (lambda m: setattr(m, 'width', 0), 'empty'),
    (lambda m: setattr(m, 'step', 89), 'step_too_small'),
    (lambda m: setattr(m, 'data', bytes(m.data)[:-1]), 'data_too_short'),
    (lambda m: setattr(m, 'data', bytes(m.data) + b'\0'), 'data_too_long'),
    (lambda m: setattr(m, 'step', 100), 'data_too_short'),
    (lambda m: setattr(m, 'height', 10**6), 'data_too_short'),
    (lambda m: (setattr(m, 'encoding', 'yuyv'), setattr(m, 'width', 45),
                setattr(m, 'step', 90)), 'odd_width'),
])
def test_bad_images_raise_frame_error(photo, breakage, reason):
    msg = good_rgb(photo)
    breakage(msg)
    with pytest.raises(FrameError) as info:
        image_to_array(msg)
    assert info.value.reason == reason
    assert str(info.value)


@pytest.mark.parametrize('fmt,data,reason', [
    ('jpeg', b'', 'empty'),
    ('jpeg', b'\xff\xd8\xff\xe0 this is not a jpeg', 'corrupt_data'),
    ('png', bytes(range(256)), 'corrupt_data'),
    ('tiff', b'II*\0', 'unknown_format'),
    ('16UC1; compressedDepth png', b'\x89PNG', 'unknown_format'),
])
def test_bad_compressed_raise_frame_error(fmt, data, reason):
    with pytest.raises(FrameError) as info:
        compressed_to_array(CompressedImage(format=fmt, data=data))
    assert info.value.reason == reason


def test_truncated_jpeg_is_rejected_or_decoded(photo):
    """A jpeg cut in half either decodes (libjpeg pads it) or raises FrameError: never crashes."""
    msg = array_to_compressed_msg(photo, fmt='jpeg')
    msg.data = bytes(msg.data)[:len(msg.data) // 8]
    try:
        array, _ = compressed_to_array(msg)
    except FrameError as error:
        assert error.reason == 'corrupt_data'
    else:
        assert array.shape == photo.shape


@settings(max_examples=150, deadline=None)
@given(encoding=st.sampled_from(sorted(ENCODING_LAYOUTS) + ['bayer_rggb8', 'x']),
       height=st.integers(0, 9), width=st.integers(0, 9), step=st.integers(0, 40),
       size=st.integers(0, 400), big=st.booleans())
def test_any_message_is_a_frame_or_a_frame_error(encoding, height, width, step, size, big):
    msg = Image(height=height, width=width, step=step, encoding=encoding, is_bigendian=big)
    msg.data = bytes(size)
    try:
        array, color = image_to_array(msg)
    except FrameError as error:
        assert error.reason
        return
    assert array.shape[:2] == (height, width) and array.dtype == np.uint8
    assert color in ('rgb', 'bgr', 'mono')
    assert array.ndim == (2 if color == 'mono' else 3)


def test_16_bit_frames_become_8_bit_without_a_float_copy():
    """cv_bridge's rounding, and no temporary beyond the 8-bit result (issue 22, item 3)."""
    import tracemalloc
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    expected = np.rint(values.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
    assert np.array_equal(image._to_8bit(values), expected)
    assert np.array_equal(image._to_8bit(values.astype('>u2')), expected)  # big-endian data
    frame = np.full((1000, 1000, 3), 40000, np.uint16)
    tracemalloc.start()
    try:
        out = image._to_8bit(frame)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.dtype == np.uint8 and out[0, 0, 0] == 156
    assert peak < out.nbytes * 1.5, peak  # a float32 copy alone would be 4x the result


def test_frames_above_max_pixels_are_refused_from_the_header_before_decoding():
    big = np.zeros((3000, 4000), np.uint8)
    for fmt in ('png', 'jpeg'):
        msg = image.array_to_compressed_msg(big, 'mono', fmt)
        assert image.compressed_size(msg.data) == (4000, 3000)
        with pytest.raises(FrameError) as error:
            image.compressed_to_array(msg, max_pixels=4000 * 3000 - 1)
        assert error.value.reason == 'too_large' and '4000x3000' in str(error.value)
        assert image.compressed_to_array(msg, max_pixels=4000 * 3000)[0].shape == (3000, 4000)
    raw = image.array_to_image_msg(big, 'mono8')
    with pytest.raises(FrameError) as error:
        image.image_to_array(raw, max_pixels=1000)
    assert error.value.reason == 'too_large'
    # A JPEG whose frame header is missing cannot say its size: refused as corrupt.
    msg = image.array_to_compressed_msg(big[:8, :8], 'mono', 'jpeg')
    sof = bytes(msg.data).index(b'\xff\xc0')
    msg.data = bytes(msg.data)[:sof] + b'\xff\xd9'
    with pytest.raises(FrameError) as error:
        image.compressed_to_array(msg)
    assert error.value.reason == 'corrupt_data'
