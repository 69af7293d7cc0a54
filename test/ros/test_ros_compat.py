"""inference_node on a ROS 2 older than Humble: one line naming what is missing, exit 2.

CI has ROS 2 Kilted only, so an older distribution is made in a real process by hiding what it
lacks: a test-only import blocker (a ``sys.meta_path`` finder that refuses the named modules,
and attributes removed from ``vision_msgs.msg``) runs first, then the executable's entry point
(``tx2_inference.ros.compat:main``, what ``ros2 run tx2_inference inference_node`` calls).
"""

import ast
import os
import subprocess
import sys

from project_files import ROOT
import pytest

from tx2_inference.ros import compat

# Runs in the child: hide modules and message classes, note what got imported, start the node.
WRAPPER = """
import atexit, importlib.abc, sys
HIDDEN_MODULES, HIDDEN_NAMES, REPORT = {modules!r}, {names!r}, {report!r}

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == m or name.startswith(m + '.') for m in HIDDEN_MODULES):
            raise ImportError('No module named ' + repr(name))
        return None

sys.meta_path.insert(0, Blocker())
if HIDDEN_NAMES:
    import vision_msgs.msg
    for name in HIDDEN_NAMES:
        delattr(vision_msgs.msg, name)

def report():
    with open(REPORT, 'w') as f:
        f.write('\\n'.join(sorted(sys.modules)))

atexit.register(report)
from tx2_inference.ros.compat import main
sys.exit(main())
"""
# Imported by the node and its detector; none of them may load before the check passed. (numpy
# is not here: the ROS message packages import it themselves.)
HEAVY = ('cv2', 'onnxruntime', 'tx2_inference.ros.node', 'tx2_inference.detector',
         'tx2_inference.core')


def _run_older_ros(tmp_path, modules=(), names=(), distro=None):
    """Start the node's entry point with ``modules`` and ``names`` hidden; return its result."""
    report = str(tmp_path / 'modules.txt')
    env = dict(os.environ)
    env.pop('ROS_DISTRO', None)
    if distro:
        env['ROS_DISTRO'] = distro
    proc = subprocess.run(
        [sys.executable, '-c', WRAPPER.format(modules=tuple(modules), names=tuple(names),
                                              report=report)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, env=env,
        timeout=120)
    with open(report) as f:
        imported = set(f.read().split())
    return proc, imported


def _one_line(proc):
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, 'expected one line, got:\n' + proc.stdout + proc.stderr
    assert 'Traceback' not in proc.stderr
    return lines[0]


@pytest.mark.parametrize('modules, names, lacking', [
    (['rclpy.lifecycle'], [], 'rclpy.lifecycle (rclpy 3.2, ROS 2 Humble)'),  # Foxy, Galactic
    ([], ['LabelInfo'], 'vision_msgs.msg.LabelInfo (vision_msgs 4.1)'),  # vision_msgs 4.0
    (['vision_msgs'], [], 'vision_msgs (apt install ros-<distro>-vision-msgs)'),
    (['rclpy'], [], 'rclpy (source a ROS 2 setup.bash)'),  # no ROS 2 sourced
], ids=['foxy-galactic', 'vision_msgs-4.0', 'no-vision_msgs', 'no-ros'])
def test_an_older_ros_gets_one_line_and_exit_2(tmp_path, modules, names, lacking):
    proc, imported = _run_older_ros(tmp_path, modules, names, distro='foxy')
    line = _one_line(proc)
    assert proc.returncode == compat.EXIT_UNSUPPORTED == 2
    assert line.startswith('inference_node: this environment (ROS_DISTRO=foxy) has no ')
    assert lacking in line
    # ... and the supported route: Humble, and how to get it on JetPack 4.6.
    assert 'ROS 2 Humble or newer' in line and 'dustynv/ros:humble-ros-base-l4t-r32.7.1' in line
    assert 'README' in line
    # The check ran before the node's heavy imports.
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


def test_this_ros_passes_the_check():
    """Kilted here is newer than the floor: nothing is missing, no message."""
    assert compat.missing() == ''
    assert compat.unsupported_message('inference_node') == ''


def test_the_executable_starts_through_the_check():
    """``ros2 run tx2_inference inference_node`` runs compat.main, which imports the node."""
    with open(os.path.join(ROOT, 'setup.py')) as f:
        setup = f.read()
    assert "'inference_node = tx2_inference.ros.compat:main'" in setup
    tree = ast.parse(open(compat.__file__).read())
    imports = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    node_imports = [node for node in imports if node.module == 'tx2_inference.ros.node']
    # The node module is imported inside main, after the check, never at module level.
    assert node_imports and all(node.col_offset > 0 for node in node_imports)


def test_the_check_parses_on_python_35():
    """A Python older than 3.6 must reach the message, not a SyntaxError on the way."""
    vermin = os.path.join(os.path.dirname(sys.executable), 'vermin')
    files = [compat.__file__, os.path.join(ROOT, 'tx2_inference', '__init__.py'),
             os.path.join(ROOT, 'tx2_inference', 'ros', '__init__.py')]
    proc = subprocess.run([vermin, '-t=3.5-', '--no-tips', '--violations',
                           '--eval-annotations'] + files,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True)
    assert proc.returncode == 0, proc.stdout
