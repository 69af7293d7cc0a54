"""Where the project's files are, for the tests that check the project itself."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, 'tx2_inference')
# The converter's TensorFlow stage: runs on a workstation only (newer Python, TensorFlow).
WORKSTATION = os.path.join(PACKAGE, 'convert', 'workstation')


def workstation_modules():
    """Return the converter's TensorFlow-stage files: every .py in convert/workstation/."""
    return {os.path.normpath(os.path.join(WORKSTATION, name))
            for name in os.listdir(WORKSTATION) if name.endswith('.py')}


def robot_files():
    """List the package's Python files that run on the robot (all but the TF stage)."""
    exempt = workstation_modules()
    files = []
    for folder, _, names in os.walk(PACKAGE):
        for name in names:
            path = os.path.normpath(os.path.join(folder, name))
            if name.endswith('.py') and path not in exempt:
                files.append(path)
    return sorted(files)
