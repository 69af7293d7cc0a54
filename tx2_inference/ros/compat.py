"""
Which ROS 2 the node runs on: checked at start, before the node imports anything heavy.

The floor is ROS 2 Humble, on Python 3.6 or newer:

- ``rclpy.lifecycle`` first shipped in rclpy 3.2.0 (Humble). Foxy and Galactic have none, and
  Humble's cannot be copied into them (it has C++ parts).
- ``vision_msgs.msg.LabelInfo`` and ``VisionClass`` arrived in vision_msgs 4.1.0 (Humble, from
  February 2023). Foxy's 2.0 has no ``hypothesis`` and a ``Pose2D`` centre; Galactic has 3.x.
- A Tegra X2 stops at JetPack 4.6 (Ubuntu 18.04, Python 3.6), where no ROS 2 Humble binaries
  exist: its route is a ``dustynv/ros:humble-*-l4t-r32.7.1`` container (README, On the robot).

Started on anything older, ``inference_node`` prints one line naming what is missing and the
supported route, and exits with status 2: no traceback from deep inside the node's imports.
This module is the executable's entry point; it imports the node only once the check passed.
It must stay parseable by older Pythons (no f-strings, no variable annotations; vermin checks
3.5), so that a Python 3.5 gets the message rather than a SyntaxError.
"""

import importlib
import os
import sys
from typing import Any, List, Optional

EXIT_UNSUPPORTED = 2
ROUTE = ('tx2_inference needs ROS 2 Humble or newer (rclpy >= 3.2 with rclpy.lifecycle, '
         'vision_msgs >= 4.1 with LabelInfo) on Python >= 3.6; on a Jetson with JetPack 4.6 '
         '(L4T r32.7.1) run it in a dustynv/ros:humble-ros-base-l4t-r32.7.1 container '
         '(README: On the robot)')
# What the node needs, oldest-first: module, attribute (or None), what provides it.
REQUIRED = (
    ('rclpy', None, 'rclpy (source a ROS 2 setup.bash)'),
    ('rclpy.lifecycle', None, 'rclpy.lifecycle (rclpy 3.2, ROS 2 Humble)'),
    ('rclpy.qos_overriding_options', None, 'rclpy.qos_overriding_options (ROS 2 Galactic)'),
    ('vision_msgs.msg', None, 'vision_msgs (apt install ros-<distro>-vision-msgs)'),
    ('vision_msgs.msg', 'LabelInfo', 'vision_msgs.msg.LabelInfo (vision_msgs 4.1)'),
    ('vision_msgs.msg', 'VisionClass', 'vision_msgs.msg.VisionClass (vision_msgs 4.1)'),
)


def missing() -> str:
    """Return what this Python and ROS 2 lack of the supported floor, or '' when nothing."""
    if sys.version_info < (3, 6):
        return 'Python {}.{} (3.6 or newer is needed)'.format(*sys.version_info[:2])
    for module_name, attribute, what in REQUIRED:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            return what
        if attribute is not None and not hasattr(module, attribute):
            return what
    return ''


def unsupported_message(program: str) -> str:
    """Return the one line printed when the floor is not met, or '' when it is.

    :param program: the executable's name, first on the line.
    """
    lacking = missing()
    if not lacking:
        return ''
    distro = os.environ.get('ROS_DISTRO')
    found = ' (ROS_DISTRO={})'.format(distro) if distro else ''
    return '{}: this environment{} has no {}. {}.'.format(program, found, lacking, ROUTE)


def exit_unless_supported(program: str = 'inference_node') -> None:
    """Print one line and exit with status 2 where the floor is not met; else return."""
    message = unsupported_message(program)
    if message:
        sys.stderr.write(message + '\n')
        sys.stderr.flush()
        sys.exit(EXIT_UNSUPPORTED)


def main(args: Optional[List[str]] = None) -> Any:
    """Run ``inference_node`` once the ROS 2 it runs on is known to be supported."""
    exit_unless_supported()
    # The launch files set both Fast DDS profile variables: keep the one this Fast DDS reads
    # (Fast DDS 3 warns about the other), before the middleware starts.
    from tx2_inference.ros.dds import tidy_environment
    tidy_environment(os.environ)
    from tx2_inference.ros.node import main as node_main
    return node_main(args)


if __name__ == '__main__':
    sys.exit(main(sys.argv))
