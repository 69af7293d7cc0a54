"""
The core's Python logs reach the node's ROS log (console, log file and /rosout).

The engine builder's progress lines come from the real `EngineCache` code; only the TensorRT
build itself is replaced by a function returning bytes (no GPU here), as in
test_engine_builder.py. The node is a real `InferenceNode`; the lines are read from /rosout
by another node, as ``ros2 topic echo /rosout`` shows them.
"""

import logging

import pytest
from rcl_interfaces.msg import Log
import rclpy
from rclpy.qos import QoSProfile

from tx2_inference.backends.tensorrt import builder
from tx2_inference.ros.logging_bridge import PACKAGE_LOGGER
from tx2_inference.ros.node import InferenceNode
from tx2_inference.tools.client import NodeClient

NODE = 'log_bridge_node'
TX2 = builder.DeviceIdentity('8.2.1', 'NVIDIA Tegra X2', '6.2')


def fake_build(onnx_path, options):
    """Stand-in for TensorRT (no GPU here): the engine's bytes."""
    return b'ENGINE:' + options.precision.encode()


@pytest.fixture()
def node_and_listener():
    """Yield an InferenceNode and a listener collecting /rosout, in their own context."""
    context = rclpy.Context()
    rclpy.init(context=context)
    node = InferenceNode(NODE, context=context)
    listener = NodeClient(NODE, name='log_bridge_listener', context=context)
    listener.collect(Log, '/rosout', QoSProfile(depth=1000))
    try:
        yield node, listener
    finally:
        listener.close()
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def node_lines(listener, text):
    """Return the /rosout lines of the node that contain ``text``."""
    return [m for m in listener.messages('/rosout') if m.name == NODE and text in m.msg]


def wait_until_rosout_matched(listener):
    """Log through the builder's logger until a line arrives (the graph has matched)."""
    def ping():
        builder.LOG.info('ping')
        return node_lines(listener, 'ping')
    assert listener.wait_until(ping, timeout=10.0, period=0.2), 'no /rosout line from the node'


def test_engine_build_progress_appears_in_the_node_log(node_and_listener, tmp_path):
    node, listener = node_and_listener
    wait_until_rosout_matched(listener)
    onnx = tmp_path / 'model.onnx'
    onnx.write_bytes(b'only hashed' * 10)
    cache = builder.EngineCache(str(tmp_path / 'engines'))
    options = builder.BuildOptions('fp16')
    path = cache.get_or_build(str(onnx), options, TX2, fake_build)
    assert cache.get_or_build(str(onnx), options, TX2, fake_build) == path

    built = listener.wait_until(lambda: node_lines(listener, 'engine built in'), timeout=5.0)
    hit = listener.wait_until(lambda: node_lines(listener, 'engine cache hit'), timeout=5.0)
    assert built and hit, [m.msg for m in listener.messages('/rosout')]
    assert built[0].level == Log.INFO and hit[0].level == Log.INFO
    # Which module said it, without the package prefix, then the builder's own words.
    assert hit[0].msg.startswith('backends.tensorrt.'), hit[0].msg
    assert hit[0].msg.endswith(': engine cache hit: ' + path), hit[0].msg


def test_warnings_keep_their_severity(node_and_listener):
    node, listener = node_and_listener
    wait_until_rosout_matched(listener)
    builder.LOG.warning('engine %s fails its checksum (corrupted?): rebuilding', 'x.engine')
    lines = listener.wait_until(lambda: node_lines(listener, 'fails its checksum'), timeout=5.0)
    assert lines and lines[0].level == Log.WARN


def test_destroying_the_node_ends_the_route():
    package = logging.getLogger(PACKAGE_LOGGER)
    level, handlers = package.level, list(package.handlers)
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = InferenceNode(NODE, context=context)
        assert len(package.handlers) == len(handlers) + 1
        assert package.getEffectiveLevel() <= logging.INFO  # the progress lines pass
        node.destroy_node()
        assert package.handlers == handlers and package.level == level
        builder.LOG.info('after the node is gone')  # reaches no destroyed node, raises nothing
    finally:
        rclpy.try_shutdown(context=context)
