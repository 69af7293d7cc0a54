"""The large-frame Fast DDS profile named by the variable the installed Fast DDS reads.

Fast DDS 3 (here: the Kilted wheels' 3.2) warns in every process that sets the old
FASTRTPS_DEFAULT_PROFILES_FILE; the launch files set both, for Fast DDS 2 and 3. Real
processes: a plain rclpy process with both shows the warning (so the check can fail), an
inference_node started the same way does not.
"""

import os
import signal
import subprocess
import sys

from project_files import ROOT

from tx2_inference.ros import dds
from tx2_inference.tools.client import NodeClient
from tx2_inference.tools.processes import ModuleProcess

PROFILE = os.path.join(ROOT, 'config', 'fastdds_large_frames.xml')
WARNING = 'FASTRTPS_DEFAULT_PROFILES_FILE value is used for participant configuration, but ' \
          'it is deprecated'


def test_the_variable_follows_the_installed_fast_dds(tmp_path):
    assert dds.fastdds_major() == 3  # the venv's share/fastdds (Fast DDS 3.2.2)
    assert dds.profile_variables() == ['FASTDDS_DEFAULT_PROFILES_FILE']
    humble = tmp_path / 'humble'
    (humble / 'share' / 'fastrtps').mkdir(parents=True)  # Fast DDS 2.6's package name
    assert dds.profile_variables([str(humble)]) == ['FASTRTPS_DEFAULT_PROFILES_FILE']
    assert dds.profile_variables([str(tmp_path / 'none')]) == [
        'FASTRTPS_DEFAULT_PROFILES_FILE', 'FASTDDS_DEFAULT_PROFILES_FILE']
    both = {'FASTRTPS_DEFAULT_PROFILES_FILE': PROFILE, 'FASTDDS_DEFAULT_PROFILES_FILE': PROFILE}
    environ = dict(both)
    assert dds.tidy_environment(environ) == ['FASTRTPS_DEFAULT_PROFILES_FILE']
    assert environ == {'FASTDDS_DEFAULT_PROFILES_FILE': PROFILE}
    environ = dict(both)
    assert dds.tidy_environment(environ, [str(humble)]) == ['FASTDDS_DEFAULT_PROFILES_FILE']
    only_old = {'FASTRTPS_DEFAULT_PROFILES_FILE': PROFILE}  # the user's choice stays
    assert dds.tidy_environment(only_old) == [] and len(only_old) == 1


def test_exports_for_a_camera_shell():
    out = subprocess.run([sys.executable, '-m', 'tx2_inference.ros.dds'],
                         stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    assert out.splitlines() == [
        'export CYCLONEDDS_URI=file://' + os.path.join(ROOT, 'config',
                                                       'cyclonedds_large_frames.xml'),
        'export FASTDDS_DEFAULT_PROFILES_FILE=' + PROFILE]


def test_a_node_launched_with_both_variables_prints_no_deprecation_warning(tmp_path):
    env = dict(os.environ, FASTRTPS_DEFAULT_PROFILES_FILE=PROFILE,
               FASTDDS_DEFAULT_PROFILES_FILE=PROFILE)
    plain = subprocess.run(
        [sys.executable, '-c', 'import rclpy; rclpy.init(); rclpy.create_node("dds_plain")'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, env=env,
        timeout=60)
    assert WARNING in plain.stdout, plain.stdout  # what the node must not print
    node = ModuleProcess(['tx2_inference.ros.compat', '--ros-args', '-r',
                          '__node:=dds_profile_node'], str(tmp_path / 'node.log'), env)
    try:
        with NodeClient('/dds_profile_node', name='dds_profile_tester') as client:
            client.wait_for_node(timeout=60)  # its participant is up
    finally:
        node.stop(signal.SIGINT)
    log = node.log()
    assert 'deprecated' not in log, log
