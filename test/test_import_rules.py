"""The layers' import rules hold, and the robot's node process loads no tool or converter.

The rules are the table in import_rules.py (docs/DESIGN.md draws them): the core imports no
ROS, backend, converter or tool; the backends no converter, ROS or tool; the node no tool;
nothing but convert/workstation imports TensorFlow; the runtime no tool library.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import import_rules
from project_files import PACKAGE, ROOT

# What the robot's node process must never load (the tools' and the converter's libraries).
NOT_IN_THE_NODE = ('matplotlib', 'psutil', 'skimage', 'tensorflow', 'tf2onnx',
                   'tx2_inference.convert', 'tx2_inference.tools')


def test_the_package_follows_the_layer_rules():
    found = import_rules.violations(ROOT)
    assert not found, 'imports that break the layer rules:\n' + '\n'.join(found)


def test_every_module_sits_in_a_layer():
    unplaced = [path for path in import_rules.python_files(ROOT)
                if import_rules.layer_of(path) == 'unplaced']
    assert not unplaced, ('modules outside the layers (put each in core/, backends/, ros/, '
                          'convert/ or tools/): {}'.format(unplaced))


def test_a_planted_violation_is_found_and_named(tmp_path):
    """A copy of the package with modules that break each rule: each is named, nothing else."""
    shutil.copytree(PACKAGE, str(tmp_path / 'tx2_inference'),
                    ignore=shutil.ignore_patterns('__pycache__'))
    planted = {
        'core/planted.py': 'def f():\n    import rclpy  # lazy imports count too\n',
        'backends/planted.py': 'from tx2_inference.convert import cli\n',
        'ros/planted.py': 'from tx2_inference import tools\n',
        'tools/planted.py': 'import tensorflow as tf\n',
        'executor_planted.py': 'import numpy\n',
    }
    for path, text in planted.items():
        (tmp_path / 'tx2_inference' / path).write_text(textwrap.dedent(text))
    found = import_rules.violations(str(tmp_path))
    assert found == [
        'tx2_inference/backends/planted.py:1 imports tx2_inference.convert: the runtime never '
        'imports the converter (backends layer)',
        'tx2_inference/core/planted.py:2 imports rclpy: the core knows no ROS (core layer)',
        'tx2_inference/ros/planted.py:1 imports tx2_inference.tools: only tools/ import the '
        'tools (ros layer)',
        'tx2_inference/tools/planted.py:1 imports tensorflow: only convert/workstation imports '
        'TensorFlow (tools layer)',
    ], found
    assert import_rules.layer_of('executor_planted.py') == 'unplaced'


def loaded_modules(code: str) -> list:
    """Run ``code`` in a fresh interpreter; return the modules of NOT_IN_THE_NODE it loaded."""
    script = textwrap.dedent(code) + textwrap.dedent("""
        import json, sys
        bad = {}
        print(json.dumps(sorted(m for m in sys.modules
                                if any(m == b or m.startswith(b + '.') for b in bad))))
        """.format(NOT_IN_THE_NODE))
    proc = subprocess.run([sys.executable, '-c', script], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=120,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_importing_the_node_loads_no_tool_tensorflow_or_converter():
    assert loaded_modules('import tx2_inference.ros.node') == []


def test_a_configured_node_loads_no_tool_tensorflow_or_converter(default_model):
    """The robot's process after configure (model, backend, executor loaded): still none."""
    loaded = loaded_modules("""
        import rclpy
        from rclpy.lifecycle import TransitionCallbackReturn
        from rclpy.parameter import Parameter
        from tx2_inference.ros.node import InferenceNode
        rclpy.init()
        node = InferenceNode('import_rules_node', parameter_overrides=[
            Parameter('model_path', value={!r}), Parameter('backend', value='onnxruntime'),
            Parameter('precision', value='fp32')])
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert 'tx2_inference.detector' in __import__('sys').modules
        """.format(os.path.abspath(default_model)))
    assert loaded == []
