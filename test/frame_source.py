"""A camera stand-in for the silence tests: ``python test/frame_source.py TOPIC [options]``.

Publishes ``sensor_msgs/Image`` frames of a real photograph (scikit-image's astronaut, resized)
at a fixed rate until stopped, with the QoS a camera driver would use: best effort by default
(``--reliable`` for reliable). ``--stamp-offset S`` stamps each frame S seconds in the past,
as a stalled driver or a skewed clock would. ``--frames N`` publishes N frames, then keeps the
publisher alive without publishing, as a paused camera (or a player waiting for its subscriber)
does. ``--small-every K`` makes every K-th frame 64x48: a frame that fits any DDS set-up, so a
trickle of frames arrives among large ones the defaults lose. The DDS set-up is the process's
environment's (FASTDDS_DEFAULT_PROFILES_FILE or not), which is what the tests vary.
"""

import argparse

import cv2
import rclpy
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
import skimage.data

from tx2_inference.ros.image import array_to_image_msg


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('topic')
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--rate', type=float, default=5.0)
    parser.add_argument('--reliable', action='store_true')
    parser.add_argument('--stamp-offset', dest='stamp_offset', type=float, default=0.0)
    parser.add_argument('--frames', type=int, default=-1, help='then pause (-1: never)')
    parser.add_argument('--small-every', dest='small_every', type=int, default=0)
    args = parser.parse_args()
    pixels = cv2.resize(skimage.data.astronaut(), (args.width, args.height))
    small = cv2.resize(skimage.data.astronaut(), (64, 48))
    rclpy.init()
    node = rclpy.create_node('frame_source')
    reliability = ReliabilityPolicy.RELIABLE if args.reliable else ReliabilityPolicy.BEST_EFFORT
    publisher = node.create_publisher(Image, args.topic,
                                      QoSProfile(depth=1, reliability=reliability))
    offset = Duration(seconds=args.stamp_offset)
    published = 0
    try:
        while rclpy.ok():
            if published == args.frames:  # paused: the publisher stays, nothing is published
                rclpy.spin_once(node, timeout_sec=1.0 / args.rate)
                continue
            published += 1
            frame = small if args.small_every and published % args.small_every == 0 else pixels
            msg = array_to_image_msg(frame, 'rgb8')
            msg.header.stamp = (node.get_clock().now() - offset).to_msg()
            try:
                publisher.publish(msg)
            except Exception:  # noqa: B902 - the context shuts down under Ctrl-C
                if rclpy.ok():
                    raise
                break
            rclpy.spin_once(node, timeout_sec=1.0 / args.rate)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
