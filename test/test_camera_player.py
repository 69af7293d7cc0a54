"""camera_player as a process: a folder and a video of real photos, received in this process."""

import os
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CompressedImage, Image
import skimage.data

from tx2_inference.ros_image import compressed_to_array, image_to_array


@pytest.fixture(scope='module')
def photos_dir(tmp_path_factory):
    """Write two real photos as png (lossless) and a text file to skip into a folder."""
    folder = tmp_path_factory.mktemp('photos')
    photos = {'a_astronaut.png': skimage.data.astronaut(), 'b_chelsea.png': skimage.data.chelsea()}
    for name, rgb in photos.items():
        cv2.imwrite(str(folder / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    (folder / 'notes.txt').write_text('not an image')
    return folder, photos


@pytest.fixture()
def listener():
    """Collect what the player publishes, from a node in its own context."""
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node('camera_player_listener', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    received = {'image': [], 'compressed': []}
    node.create_subscription(Image, 'player/image_raw',
                             lambda m: received['image'].append(m), QoSProfile(depth=100))
    node.create_subscription(CompressedImage, 'player/image_raw/compressed',
                             lambda m: received['compressed'].append(m), QoSProfile(depth=100))
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    yield received
    executor.shutdown()
    thread.join(timeout=5)
    node.destroy_node()
    rclpy.try_shutdown(context=context)


def player(*args: str) -> subprocess.Popen:
    """Start camera_player with args, publishing on player/image_raw."""
    return subprocess.Popen([sys.executable, '-m', 'tx2_inference.camera_player',
                             '--topic', 'player/image_raw'] + list(args),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True)


def wait_until(predicate, timeout: float = 20.0) -> bool:
    """Poll predicate until true or timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_waits_for_its_subscriber_so_no_frame_is_lost(photos_dir, tmp_path):
    """With --wait-for-subscribers, a replay starts only once a consumer has matched."""
    folder, photos = photos_dir
    proc = player(str(folder), '--rate', '20', '--count', '2', '--encoding', 'rgb8',
                  '--wait-for-subscribers', '1')
    try:
        time.sleep(2.0)
        assert proc.poll() is None, 'the player published to nobody and ended'
        context = rclpy.Context()
        rclpy.init(context=context)
        node = rclpy.create_node('late_listener', context=context)
        got = []
        node.create_subscription(Image, 'player/image_raw', got.append, QoSProfile(depth=10))
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + 20.0
        while len(got) < 2 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        assert [image_to_array(m)[0].shape for m in got] == [
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
        assert wait_until(lambda: len(listener['image']) >= 6 and listener['compressed']), \
            'received {} images'.format(len(listener['image']))
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0]
    images = list(listener['image'])
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
    array, color = compressed_to_array(listener['compressed'][0])
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
    assert listener['image'], 'no frame received'
    array, color = image_to_array(listener['image'][-1])
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
