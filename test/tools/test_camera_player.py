"""camera_player as a process: a folder and a video of real photos, received in this process."""

import os
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import rclpy
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CompressedImage, Image
import skimage.data

from tx2_inference.ros.image import compressed_to_array, image_to_array
from tx2_inference.tools.client import NodeClient

IMAGES, COMPRESSED = 'player/image_raw', 'player/image_raw/compressed'


@pytest.fixture(scope='module')
def photos_dir(tmp_path_factory):
    """Write two real photos as png (lossless) and a text file to skip into a folder."""
    folder = tmp_path_factory.mktemp('photos')
    photos = {'a_astronaut.png': skimage.data.astronaut(), 'b_chelsea.png': skimage.data.chelsea()}
    for name, rgb in photos.items():
        cv2.imwrite(str(folder / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    (folder / 'notes.txt').write_text('not an image')
    return folder, photos


def listen(name: str, *topics: str) -> NodeClient:
    """Return a client in its own context collecting what the player publishes on topics."""
    client = NodeClient('camera_player', name=name, context=rclpy.Context())
    for topic in topics:
        client.collect(CompressedImage if topic == COMPRESSED else Image, topic,
                       QoSProfile(depth=100))
    return client


@pytest.fixture()
def listener():
    """Collect the player's images and compressed images."""
    with listen('camera_player_listener', IMAGES, COMPRESSED) as client:
        yield client


def player(*args: str) -> subprocess.Popen:
    """Start camera_player with args, publishing on player/image_raw."""
    return subprocess.Popen([sys.executable, '-m', 'tx2_inference.tools.camera_player',
                             '--topic', IMAGES] + list(args),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True)


@pytest.mark.parametrize('transport', ['raw', 'compressed'])
def test_waits_for_its_subscriber_so_no_frame_is_lost(photos_dir, transport):
    """With --wait-for-subscribers, a replay starts only once a consumer has matched.

    compressed: a node on ``input_transport: compressed`` subscribes to <topic>/compressed
    alone, and the player with --compressed counts it.
    """
    folder, photos = photos_dir
    topic, extra = IMAGES, ['--encoding', 'rgb8']
    if transport == 'compressed':
        topic, extra = COMPRESSED, ['--compressed', '--compressed-format', 'png']
    proc = player(str(folder), '--rate', '20', '--count', '2', '--wait-for-subscribers', '1',
                  *extra)
    try:
        time.sleep(2.0)
        assert proc.poll() is None, 'the player published to nobody and ended'
        with listen('late_listener', topic) as late:
            late.wait_until(lambda: len(late.messages(topic)) >= 2, timeout=20.0)
            got = late.messages(topic)
        to_array = compressed_to_array if transport == 'compressed' else image_to_array
        assert [to_array(m)[0].shape for m in got] == [
            photos['a_astronaut.png'].shape, photos['b_chelsea.png'].shape]
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_folder_looped_as_image_and_compressed(photos_dir, listener):
    folder, photos = photos_dir
    proc = player(str(folder), '--rate', '20', '--loop', '--encoding', 'rgb8', '--compressed',
                  '--compressed-format', 'png', '--frame-id', 'cam_test')
    try:
        assert listener.wait_until(lambda: len(listener.messages(IMAGES)) >= 6 and
                                   listener.messages(COMPRESSED), timeout=20.0), \
            'received {} images'.format(len(listener.messages(IMAGES)))
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0]
    images = listener.messages(IMAGES)
    shapes = set()
    for msg in images:
        assert msg.header.frame_id == 'cam_test' and msg.encoding == 'rgb8'
        array, color = image_to_array(msg)
        expected = [rgb for rgb in photos.values() if rgb.shape == array.shape]
        assert expected, array.shape
        np.testing.assert_array_equal(array, expected[0])
        shapes.add(array.shape)
    assert len(shapes) == 2, 'both photos, looped: ' + out
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in images]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))
    assert abs(stamps[-1] - time.time()) < 30
    period = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
    assert 0.02 < period < 0.2, period  # 20 Hz asked, loose on 2 shared cores
    array, color = compressed_to_array(listener.messages(COMPRESSED)[0])
    assert color == 'bgr' and array.shape in shapes


def test_video_plays_to_the_end_and_exits(tmp_path, listener):
    path = str(tmp_path / 'clip.avi')
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'MJPG'), 10, (450, 300))
    assert writer.isOpened()
    cat = cv2.cvtColor(skimage.data.chelsea()[:, :450], cv2.COLOR_RGB2BGR)
    for _ in range(40):
        writer.write(cat)
    writer.release()
    proc = player(path, '--rate', '50', '--encoding', 'mono8')
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out
    assert '40 frames published' in out, out
    assert listener.messages(IMAGES), 'no frame received'
    array, color = image_to_array(listener.messages(IMAGES)[-1])
    assert color == 'mono' and array.shape == (300, 450)
    gray = cv2.cvtColor(cat, cv2.COLOR_BGR2GRAY)
    assert np.abs(array.astype(int) - gray.astype(int)).mean() < 8  # MJPG is lossy


@pytest.mark.parametrize('source,words', [
    ('/nonexistent/frames', ['does not exist']),
    ('EMPTY', ['holds no images']),
])
def test_bad_source_exits_with_a_message(tmp_path, source, words):
    if source == 'EMPTY':
        source = str(tmp_path)
    proc = player(source)
    out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 2, out
    for word in words:
        assert word in out
    assert os.path.basename(source) in out


def test_help_shows_every_default():
    out = subprocess.run([sys.executable, '-m', 'tx2_inference.tools.camera_player', '--help'],
                         stdout=subprocess.PIPE, universal_newlines=True, timeout=60).stdout
    text = ' '.join(out.split())
    assert '(default: 1)' in text.rsplit('--wait-for-subscribers N', 1)[1].split('--encoding')[0]
    for default in ('(default: image_raw)', '(default: 10.0)', '(default: bgr8)'):
        assert default in text, default
