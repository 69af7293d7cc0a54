"""Smoke test of the ROS graph: an Image and a Detection2DArray cross between two processes."""

import os
import signal
import time

import numpy as np
import pytest
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from skimage import data
from vision_msgs.msg import Detection2DArray

from tx2_inference.tools.processes import ModuleProcess


@pytest.fixture
def echo_process(tmp_path):
    proc = ModuleProcess(['tx2_inference.tools.echo_node'], str(tmp_path / 'echo_node.log'))
    yield proc
    code = proc.stop(signal.SIGTERM)  # killed if it hangs: no node left on the test's domain
    assert code is not None, 'the echo node ignored SIGTERM for 10 s'
    assert code == 0, 'the echo node exited with %d on SIGTERM: %s' % (code, proc.log()[-2000:])


def test_image_and_detections_cross_processes(echo_process):
    rclpy.init()
    node = rclpy.create_node('smoke_client')
    try:
        replies = []
        node.create_subscription(Detection2DArray, 'detections', replies.append, 10)
        pub = node.create_publisher(Image, 'image', qos_profile_sensor_data)
        photo = np.ascontiguousarray(data.astronaut())
        msg = Image(height=photo.shape[0], width=photo.shape[1], encoding='rgb8',
                    step=photo.shape[1] * 3, data=photo.tobytes())
        msg.header.frame_id = 'smoke_camera'
        sent = set()
        deadline = time.monotonic() + 30.0
        # Best-effort delivery loses some large frames and discovery takes a moment: resend.
        while not replies and time.monotonic() < deadline:
            msg.header.stamp = node.get_clock().now().to_msg()
            sent.add((msg.header.stamp.sec, msg.header.stamp.nanosec))
            pub.publish(msg)
            rclpy.spin_once(node, timeout_sec=0.2)
        assert replies, 'no Detection2DArray came back from the echo process within 30 s'
        reply = replies[0]
        assert reply.header.frame_id == 'smoke_camera'
        assert (reply.header.stamp.sec, reply.header.stamp.nanosec) in sent
        assert len(reply.detections) == 0
    finally:
        node.destroy_node()
        rclpy.shutdown()


def test_domain_is_isolated():
    """Each test run picks its own ROS domain and stays on this machine."""
    assert 1 <= int(os.environ['ROS_DOMAIN_ID']) <= 100
    assert os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
