"""
camera_player: publish a folder of images, a video file or a V4L2 camera as sensor_msgs/Image.

Replays test data into the inference node on a robot, or feeds a camera without a driver::

    ros2 run tx2_inference camera_player /data/frames --rate 10 --loop
    ros2 run tx2_inference camera_player /dev/video0 --topic cam0/image_raw --frame-id cam0
    python -m tx2_inference.tools.camera_player clip.mp4 --compressed

Every option is also a ROS parameter (``--ros-args -p rate:=5.0`` wins over ``--rate``).
Each frame gets the current time as its stamp and ``frame_id``; with ``compressed`` a
`sensor_msgs/CompressedImage` goes to ``<topic>/compressed`` too. A publisher flooded with
large frames may raise ``RCLError: Failed to publish``: the player counts it and keeps going.
"""

import argparse
import glob
import os
import sys
import time
from typing import List, Optional

import cv2
import numpy as np
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions
from rclpy.utilities import remove_ros_args
from sensor_msgs.msg import CompressedImage, Image

from tx2_inference.ros.image import array_to_compressed_msg, array_to_image_msg
from tx2_inference.ros.spin import run_node

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp', '.pgm', '.ppm')
PUBLISHED_ENCODINGS = ('bgr8', 'rgb8', 'mono8')
SUBSCRIBER_SETTLE_S = 0.5
ACK_TIMEOUT_S = 5.0

try:  # rclpy raises this when publishing fails (e.g. a flooded reliable publisher)
    from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
    PublishError = _rclpy.RCLError  # type: Any
except (ImportError, AttributeError):  # older rclpy
    PublishError = RuntimeError


class FrameSource(object):
    """Frames as BGR (or grey) uint8 arrays from a folder, an image, a video or a camera."""

    def __init__(self, source: str) -> None:
        """
        Open the source.

        :param source: a folder of images, an image file, a video file, ``/dev/videoN`` or a
            camera index.
        :raises ValueError: the source does not exist, holds no images, or does not open.
        """
        self.source = source
        self.files = []  # type: List[str]
        self.capture = None  # type: Optional[Any]
        self.index = 0
        self.is_camera = source.isdigit() or source.startswith('/dev/video')
        if os.path.isdir(source):
            self.files = sorted(f for f in glob.glob(os.path.join(source, '*'))
                                if f.lower().endswith(IMAGE_EXTENSIONS))
            if not self.files:
                raise ValueError('{} holds no images ({}): give a folder of images, a video '
                                 'or a camera.'.format(source, ', '.join(IMAGE_EXTENSIONS)))
        elif source.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(source):
            self.files = [source]
        elif self.is_camera:
            self.capture = cv2.VideoCapture(int(source) if source.isdigit() else source)
            if not self.capture.isOpened():
                raise ValueError('camera {} does not open: check the device exists and is '
                                 'not in use (v4l2-ctl --list-devices).'.format(source))
        elif os.path.isfile(source):
            self.capture = cv2.VideoCapture(source)
            if not self.capture.isOpened():
                raise ValueError('video {} does not open: OpenCV has no decoder for it; '
                                 'convert it to mp4 or a folder of images.'.format(source))
        else:
            raise ValueError('source {!r} does not exist: give a folder of images, an image, a '
                             'video file or a camera (/dev/video0).'.format(source))

    def read(self) -> Optional[np.ndarray]:
        """Return the next frame, or None at the end of the source."""
        if self.files:
            while self.index < len(self.files):
                path = self.files[self.index]
                self.index += 1
                frame = cv2.imread(path, cv2.IMREAD_COLOR)
                if frame is not None:
                    return frame
            return None
        ok, frame = self.capture.read()
        return frame if ok else None

    def rewind(self) -> bool:
        """Start again from the first frame; False for a camera (it has no beginning)."""
        if self.files:
            self.index = 0
            return True
        if self.is_camera or self.capture is None:
            return False
        return bool(self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0))

    def close(self) -> None:
        """Release the video or camera."""
        if self.capture is not None:
            self.capture.release()
            self.capture = None


class CameraPlayer(Node):
    """Publish a FrameSource at a fixed rate."""

    def __init__(self, source: str, topic: str, frame_id: str, rate: float, loop: bool,
                 count: int, wait_for_subscribers: int, encoding: str, compressed: bool,
                 compressed_format: str) -> None:
        """Declare the parameters (these values as defaults) and open the source.

        Each argument is the default of the ROS parameter of the same name (a value given with
        ``--ros-args -p name:=value`` wins); see `parse_args` for what each means.
        """
        super().__init__('camera_player')
        self.declare_parameter('source', source, ParameterDescriptor(
            description='Folder of images, image, video file, /dev/videoN or camera index.',
            read_only=True))
        self.declare_parameter('topic', topic, ParameterDescriptor(
            description='Image topic; CompressedImage goes to <topic>/compressed.',
            read_only=True))
        self.declare_parameter('frame_id', frame_id, ParameterDescriptor(
            description='header.frame_id of every frame.'))
        self.declare_parameter('rate', rate, ParameterDescriptor(
            description='Frames per second.', read_only=True,
            floating_point_range=[FloatingPointRange(from_value=0.01, to_value=1000.0)]))
        self.declare_parameter('loop', loop, ParameterDescriptor(
            description='Start again at the end of a folder or video.'))
        self.declare_parameter('count', count, ParameterDescriptor(
            description='Stop after this many frames; 0: no limit.', read_only=True,
            integer_range=[IntegerRange(from_value=0, to_value=2**31 - 1, step=1)]))
        self.declare_parameter('wait_for_subscribers', wait_for_subscribers,
                               ParameterDescriptor(
            description='Hold the first frame until this many subscribers have matched (on the '
                        'image topic and, with compressed, <topic>/compressed together), so a '
                        'replay is not lost to discovery; 0: start at once.', read_only=True,
            integer_range=[IntegerRange(from_value=0, to_value=1000, step=1)]))
        self.declare_parameter('encoding', encoding, ParameterDescriptor(
            description='Image encoding published: ' + ', '.join(PUBLISHED_ENCODINGS) + '.',
            read_only=True))
        self.declare_parameter('compressed', compressed, ParameterDescriptor(
            description='Also publish sensor_msgs/CompressedImage on <topic>/compressed.',
            read_only=True))
        self.declare_parameter('compressed_format', compressed_format,
                               ParameterDescriptor(description='jpeg or png.', read_only=True))
        self.encoding = self.get_parameter('encoding').value
        if self.encoding not in PUBLISHED_ENCODINGS:
            raise ValueError('encoding {!r} is not one of {}'.format(
                self.encoding, ', '.join(PUBLISHED_ENCODINGS)))
        self.compressed_format = self.get_parameter('compressed_format').value
        if self.compressed_format not in ('jpeg', 'png'):
            raise ValueError('compressed_format must be jpeg or png, got {!r}'.format(
                self.compressed_format))
        self.source = FrameSource(self.get_parameter('source').value)
        self.count = self.get_parameter('count').value
        self.wait_for = self.get_parameter('wait_for_subscribers').value
        self.matched_at = None  # type: Optional[float]
        self.hold_first = False
        self.published = 0
        self.failures = 0
        self.done = False
        topic = self.get_parameter('topic').value
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        overrides = QoSOverridingOptions.with_default_policies()
        self.image_pub = self.create_publisher(Image, topic, qos,
                                               qos_overriding_options=overrides)
        self.compressed_pub = None
        if self.get_parameter('compressed').value:
            self.compressed_pub = self.create_publisher(CompressedImage, topic + '/compressed',
                                                        qos, qos_overriding_options=overrides)
        self.timer = self.create_timer(1.0 / self.get_parameter('rate').value, self._tick)
        self.get_logger().info('publishing {} on {} at {} Hz'.format(
            self.source.source, topic, self.get_parameter('rate').value))

    def _tick(self) -> None:
        """Publish the next frame; stop at the end (or loop)."""
        if self.wait_for:
            now = time.monotonic()
            if self.subscribers() < self.wait_for:
                self.get_logger().info('waiting for {} subscriber(s)'.format(self.wait_for),
                                       once=True)
                self.matched_at = None
                return
            # Discovery is two-sided: the subscriber may match this publisher a moment after
            # this side sees it, and a frame sent before that is not delivered.
            if self.matched_at is None:
                self.matched_at = now
            if now - self.matched_at < SUBSCRIBER_SETTLE_S:
                return
            self.wait_for = 0
            self.hold_first = True
        frame = self.source.read()
        if frame is None and self.get_parameter('loop').value and self.source.rewind():
            frame = self.source.read()
        if frame is None:
            self._finish('end of {}'.format(self.source.source))
            return
        pixels = self._pixels(frame)
        msg = self._image_msg(pixels)
        try:
            self.image_pub.publish(msg)
            if self.compressed_pub is not None:
                # The frame as it is (bgr), or the grey pixels already made for mono8.
                mono = self.encoding == 'mono8'
                self.compressed_pub.publish(array_to_compressed_msg(
                    pixels if mono else frame, color='mono' if mono else 'bgr',
                    fmt=self.compressed_format, header=msg.header))
        except PublishError as error:  # flooded middleware: drop this frame, keep going
            self.failures += 1
            self.get_logger().warning('publishing failed ({}); {} failures so far'.format(
                error, self.failures), throttle_duration_sec=5.0)
            return
        self.published += 1
        if self.hold_first:
            # The first frame stays in the writer's history until reliable subscribers have it,
            # however late their side of discovery completes; the next frame would replace it.
            self.hold_first = False
            self._wait_for_acks()
        if self.count and self.published >= self.count:
            self._finish('published {} frames'.format(self.published))

    def subscribers(self) -> int:
        """Return the subscribers matched on the image topic and, with compressed, its twin.

        A node on ``input_transport: compressed`` subscribes only to ``<topic>/compressed``.
        """
        return sum(pub.get_subscription_count() for pub in (self.image_pub, self.compressed_pub)
                   if pub is not None)

    def _pixels(self, frame: np.ndarray) -> np.ndarray:
        """Return a BGR frame in the chosen encoding."""
        if self.encoding == 'rgb8':
            return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        if self.encoding == 'mono8':
            return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        return frame

    def _image_msg(self, pixels: np.ndarray) -> Image:
        """Build the Image message of pixels in the chosen encoding, stamped now."""
        msg = array_to_image_msg(pixels, self.encoding)
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.get_parameter('frame_id').value
        return msg

    def _wait_for_acks(self) -> None:
        """Wait until reliable subscribers acknowledged what was published (up to a timeout).

        rclpy has wait_for_all_acked from Humble on; best-effort subscribers return at once.
        """
        for pub in (self.image_pub, self.compressed_pub):
            if pub is not None and hasattr(pub, 'wait_for_all_acked'):
                pub.wait_for_all_acked(Duration(seconds=ACK_TIMEOUT_S))

    def _finish(self, why: str) -> None:
        """Stop publishing, once reliable subscribers have acknowledged the last frames."""
        self.timer.cancel()
        self.done = True
        # A large frame goes out in fragments: leaving now would lose the last one.
        self._wait_for_acks()
        self.get_logger().info('{}: {} frames published, {} publish failures'.format(
            why, self.published, self.failures))

    def destroy_node(self) -> None:
        """Release the source, then the node."""
        self.source.close()
        super().destroy_node()


def parse_args(argv: List[str]) -> argparse.Namespace:
    """Parse the command line (without the ROS arguments)."""
    parser = argparse.ArgumentParser(prog='camera_player', description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('source', nargs='?', default='0',
                        help='folder of images, image, video file, /dev/videoN or camera index')
    parser.add_argument('--topic', default='image_raw', help='image topic')
    parser.add_argument('--frame-id', dest='frame_id', default='camera', help='header.frame_id')
    parser.add_argument('--rate', type=float, default=10.0, help='frames per second')
    parser.add_argument('--loop', action='store_true', help='start again at the end')
    parser.add_argument('--count', type=int, default=0, help='stop after N frames (0: never)')
    # 1: the first frames are not lost while the consumer is still being discovered.
    parser.add_argument('--wait-for-subscribers', dest='wait_for_subscribers', type=int,
                        default=1, metavar='N',
                        help='hold the first frame until N subscribers match, on the image '
                        'topic and <topic>/compressed together (0: start at once)')
    parser.add_argument('--encoding', choices=PUBLISHED_ENCODINGS, default='bgr8',
                        help='published encoding')
    parser.add_argument('--compressed', action='store_true',
                        help='also publish CompressedImage on <topic>/compressed')
    parser.add_argument('--compressed-format', dest='compressed_format', default='jpeg',
                        choices=('jpeg', 'png'), help='compressed image format')
    return parser.parse_args(argv)


def main(args: Optional[List[str]] = None) -> int:
    """Run the player until the source ends, Ctrl-C or an external shutdown."""
    argv = sys.argv if args is None else args
    options = parse_args(remove_ros_args(args=argv)[1:])
    # A source or option the user must fix raises ValueError: printed, status 2.
    return run_node(lambda: CameraPlayer(**vars(options)), argv, done=lambda player: player.done,
                    fixable=(ValueError,), program='camera_player')

if __name__ == '__main__':
    sys.exit(main())
