"""Everything that runs on the robot must run on Python 3.6 (JetPack 4.6 on Tegra X2)."""

import os
import subprocess
import sys

from project_files import robot_files, workstation_modules


def test_only_the_workstation_folder_is_exempt():
    """The exemption is the folder convert/workstation/, holding the TensorFlow stage only."""
    exempt = workstation_modules()
    names = {os.path.basename(path) for path in exempt}
    assert {'tf_onnx.py', 'tf_lite.py', 'tf_runner.py', 'evaluate.py'} <= names, names
    assert all(os.sep + os.path.join('convert', 'workstation') + os.sep in path
               for path in exempt)
    assert not exempt & set(robot_files())


def test_robot_code_runs_on_python36():
    """Vermin finds no language feature or library call newer than Python 3.6."""
    files = robot_files()
    assert files, 'no runtime files found'
    vermin = os.path.join(os.path.dirname(sys.executable), 'vermin')
    proc = subprocess.run(
        [vermin, '-t=3.6-', '--no-tips', '--violations', '--eval-annotations',
         '--no-parse-comments'] + files,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert proc.returncode == 0, 'Python 3.6 incompatibilities:\n' + proc.stdout


def test_vermin_catches_a_36_violation(tmp_path):
    """The check itself works: a dataclass (3.7) in a runtime file would be reported."""
    bad = tmp_path / 'bad.py'
    bad.write_text('import dataclasses\n')
    vermin = os.path.join(os.path.dirname(sys.executable), 'vermin')
    proc = subprocess.run([vermin, '-t=3.6-', '--no-tips', '--violations', str(bad)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.returncode != 0
