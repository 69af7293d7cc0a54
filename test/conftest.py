"""Test-wide set-up: an isolated ROS graph per test run, and shared fixtures."""

import os
import random
import tempfile

# Isolate this run's ROS graph: its own domain, discovery on this machine only, and logs in a
# temporary folder. Set before rclpy is imported anywhere, and inherited by subprocesses.
os.environ.setdefault('ROS_DOMAIN_ID', str(random.randint(1, 100)))
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
os.environ.setdefault('ROS_LOG_DIR', tempfile.mkdtemp(prefix='tx2_ros_log_'))
os.environ.setdefault('HOME', tempfile.gettempdir())
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
