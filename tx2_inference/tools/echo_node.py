"""A node that answers each image with an empty Detection2DArray carrying the image's header.

It measures the transport floor: what a round trip of an image and a small reply costs on this
machine with no inference at all. The benchmark and the smoke tests use it; on a robot,
`ros2 run tx2_inference echo_node` shows what the middleware costs before any model runs.
"""

import sys
from typing import List, Optional

import rclpy
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data, QoSProfile
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from tx2_inference.ros.spin import run_node


class EchoNode(Node):
    """Republish each image's header as an empty detection array."""

    def __init__(self, reliable: bool = False) -> None:
        """Subscribe to `image` and publish on `detections`."""
        super().__init__('echo_node')
        qos = QoSProfile(depth=1) if reliable else qos_profile_sensor_data
        self._pub = self.create_publisher(Detection2DArray, 'detections', 10)
        self.create_subscription(Image, 'image', self._on_image, qos)

    def _on_image(self, msg: Image) -> None:
        self._pub.publish(Detection2DArray(header=msg.header))


def main(args: Optional[List[str]] = None) -> int:
    """Spin the echo node until interrupted."""
    argv = rclpy.utilities.remove_ros_args(args if args is not None else sys.argv)
    return run_node(lambda: EchoNode(reliable='--reliable' in argv), args)

if __name__ == '__main__':
    sys.exit(main())
