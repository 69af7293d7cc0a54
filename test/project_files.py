"""Where the project's files are, for the tests that check the project itself."""

import importlib.util
import os
import types

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


def load_tool(name: str) -> types.ModuleType:
    """Import ``tools/<name>.py`` (a script, not a package module) and return it."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, 'tools', name + '.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
