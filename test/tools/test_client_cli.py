"""`python -m tx2_inference.tools.client`: lifecycle and parameters without the ros2 command."""

import os
import subprocess
import sys

from project_files import ROOT


def _client(*args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, '-m', 'tx2_inference.tools.client'] + list(args),
                          cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)


def test_help_prints_the_usage_and_the_steps():
    proc = _client('--help')
    assert proc.returncode == 0
    for words in ('usage: python -m tx2_inference.tools.client', 'configure', 'activate',
                  'state', 'set NAME=VALUE', 'get NAME', 'ROS_DOMAIN_ID', '--node'):
        assert words in proc.stdout, proc.stdout


def test_a_missing_node_or_a_bad_step_is_one_clear_line():
    proc = _client('--node', '/no_such_node', '--timeout', '1', 'configure')
    assert proc.returncode == 1
    assert '/no_such_node' in proc.stderr and 'ROS_DOMAIN_ID' in proc.stderr, proc.stderr
    proc = _client('configur')
    assert proc.returncode == 2 and "unknown step 'configur'" in proc.stderr
