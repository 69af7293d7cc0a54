"""package.xml is a valid format-3 manifest (REP 149) and names every dependency where it belongs.

The node and the converter's robot side (exec_depend) need no tool library; the tools
(tx2_inference/tools) and the tests may use more, declared as test_depend.

The format-3 XSD is not reachable offline here, so the manifest is parsed and checked against
REP 149's rules directly: root and format, required elements and their order, a valid version,
maintainers with e-mail, the ament_python build type, and dependency tags from the format.
"""

import ast
import json
import os
import re
import sys
import xml.etree.ElementTree as ET

from project_files import PACKAGE, robot_files, ROOT
import pytest

MANIFEST = os.path.join(ROOT, 'package.xml')

# REP 149: these come first, in this order; the rest may follow in any order.
HEAD = ['name', 'version', 'description']
ALLOWED = set(HEAD) | {
    'maintainer', 'license', 'url', 'author', 'depend', 'build_depend', 'build_export_depend',
    'buildtool_depend', 'buildtool_export_depend', 'exec_depend', 'test_depend', 'doc_depend',
    'conflict', 'replace', 'export', 'group_depend', 'member_of_group'}

# Python import -> rosdep key. Every third-party import in robot code must be here.
ROSDEP_KEYS = {
    'rclpy': 'rclpy', 'sensor_msgs': 'sensor_msgs', 'vision_msgs': 'vision_msgs',
    'std_msgs': 'std_msgs', 'lifecycle_msgs': 'lifecycle_msgs',
    'diagnostic_msgs': 'diagnostic_msgs', 'rcl_interfaces': 'rcl_interfaces',
    'builtin_interfaces': 'builtin_interfaces', 'cv_bridge': 'cv_bridge',
    'numpy': 'python3-numpy', 'cv2': 'python3-opencv', 'yaml': 'python3-yaml',
    'launch': 'launch', 'launch_ros': 'launch_ros', 'ament_index_python': 'ament_index_python',
    'matplotlib': 'python3-matplotlib', 'psutil': 'python3-psutil', 'skimage': 'python3-skimage',
    'pkg_resources': 'python3-pkg-resources',  # decoder plugins' entry points on Python 3.6
}
# Libraries only the tools and the tests use: test_depend, never a runtime dependency.
TOOL_LIBRARIES = ('matplotlib', 'psutil', 'skimage')
TOOLS = os.path.join(PACKAGE, 'tools') + os.sep
# Imports with no rosdep key on every distribution: JetPack ships TensorRT and pycuda; the CPU
# runtimes come from pip. The README says which to install where.
# tritonclient (backend triton, from pip) brings google.protobuf with it. motmetrics and its
# pandas run only in the tracking evaluation's own venv (tools/setup_motmetrics.sh).
NOT_ROSDEP = {'tensorrt', 'tensorrt_lean', 'pycuda', 'cuda', 'onnxruntime', 'ai_edge_litert',
              'tflite_runtime', 'onnx', 'tensorflow', 'tf2onnx', 'pycocotools', 'tritonclient',
              'google', 'motmetrics', 'pandas'}


@pytest.fixture(scope='module')
def root():
    return ET.parse(MANIFEST).getroot()


def test_format3_root(root):
    assert root.tag == 'package'
    assert root.get('format') == '3'


def test_required_elements_in_order(root):
    tags = [child.tag for child in root if isinstance(child.tag, str)]
    assert tags[:3] == HEAD, 'REP 149 wants name, version, description first; got %s' % tags[:3]
    unknown = set(tags) - ALLOWED
    assert not unknown, 'not format-3 elements: %s' % sorted(unknown)
    assert root.findtext('name') == 'tx2_inference'
    assert re.fullmatch(r'\d+\.\d+\.\d+', root.findtext('version'))
    assert root.findtext('description').strip()
    assert root.findall('license'), 'a license is required'
    maintainers = root.findall('maintainer')
    assert maintainers and all(m.get('email') and m.text.strip() for m in maintainers)


def test_ament_python_build_type(root):
    assert root.find('export/build_type').text == 'ament_python'


def test_version_matches_setup_py(root):
    with open(os.path.join(ROOT, 'setup.py')) as f:
        assert "version='%s'" % root.findtext('version') in f.read()


def _depends(root):
    tags = ('depend', 'exec_depend', 'build_export_depend')
    return {dep.text.strip() for tag in tags for dep in root.findall(tag)}


def _test_depends(root):
    return {dep.text.strip() for dep in root.findall('test_depend')}


def runtime_files():
    """Return the files the robot's node and converter run (not the tools)."""
    return [path for path in robot_files() if not path.startswith(TOOLS)]


def tool_files():
    """Return the tools' files (camera player, demo, soak, benchmark, test client)."""
    return [path for path in robot_files() if path.startswith(TOOLS)]


def _third_party_imports(files):
    """Return {top-level module: file} for every import in ``files`` outside the package."""
    stdlib = set(sys.stdlib_module_names)
    found = {}
    for path in files:
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif (isinstance(node, ast.Call) and getattr(node.func, 'id', None) == 'require' and
                  node.args and isinstance(node.args[0], ast.Constant)):
                names = [node.args[0].value]  # tools.requires.require('psutil', ...)
            for name in names:
                top = name.split('.')[0]
                if top not in stdlib and top != 'tx2_inference':
                    found.setdefault(top, os.path.relpath(path, ROOT))
    return found


def _check_declared(files, declared, tag):
    for module, where in sorted(_third_party_imports(files).items()):
        if module in NOT_ROSDEP:
            continue
        assert module in ROSDEP_KEYS, (
            '%s imports %r, which has no rosdep key here: add it to package.xml and to '
            'ROSDEP_KEYS in this test (or NOT_ROSDEP, with a reason)' % (where, module))
        assert ROSDEP_KEYS[module] in declared, (
            '%s imports %r but package.xml has no <%s>%s</%s>'
            % (where, module, tag, ROSDEP_KEYS[module], tag))


def test_every_runtime_import_is_declared(root):
    _check_declared(runtime_files(), _depends(root), 'exec_depend')


def test_every_tool_import_is_declared(root):
    _check_declared(tool_files(), _depends(root) | _test_depends(root), 'test_depend')


def test_the_robot_install_needs_no_tool_library(root):
    """matplotlib, psutil and scikit-image are test dependencies, and no runtime file uses one."""
    runtime = _depends(root)
    for module in TOOL_LIBRARIES:
        assert ROSDEP_KEYS[module] not in runtime, ROSDEP_KEYS[module] + ' is a runtime dependency'
        assert ROSDEP_KEYS[module] in _test_depends(root), ROSDEP_KEYS[module]
    used = _third_party_imports(runtime_files())
    assert not set(TOOL_LIBRARIES) & set(used), {m: used[m] for m in TOOL_LIBRARIES if m in used}
    assert set(TOOL_LIBRARIES) <= set(_third_party_imports(tool_files()))  # the check sees them


def test_issue_named_dependencies_are_declared(root):
    declared = _depends(root)
    for key in ('rclpy', 'sensor_msgs', 'vision_msgs', 'lifecycle_msgs', 'diagnostic_msgs',
                'cv_bridge', 'python3-numpy', 'python3-opencv'):
        assert key in declared
    tests = {d.text for d in root.findall('test_depend')}
    assert 'python3-pytest' in tests


def test_the_ros_floor_is_declared(root):
    """Humble's rclpy (lifecycle) and vision_msgs 4.1 (LabelInfo) are the oldest that work."""
    floors = {dep.text.strip(): dep.get('version_gte') for dep in root.findall('exec_depend')}
    assert floors['rclpy'] == '3.2.0'
    assert floors['vision_msgs'] == '4.1.0'
    for dep in root.iter():
        for attribute in ('version_lt', 'version_lte', 'version_eq', 'version_gte', 'version_gt'):
            if dep.get(attribute) is not None:  # REP 149: a version is MAJOR.MINOR.PATCH
                assert re.fullmatch(r'\d+\.\d+\.\d+', dep.get(attribute)), dep.text


# --- every key resolves where a Humble robot runs (issue 20, bug 2) ---
# test/data/rosdep_keys.json: the rules of ros/rosdistro's rosdep/base.yaml and
# rosdep/python.yaml and its humble/distribution.yaml, as test/extract_rosdep_keys.py read them.
UBUNTU = ('bionic', 'focal', 'jammy')  # 18.04 (JetPack 4.6), 20.04 (JetPack 5), 22.04 (6)
# The runtime libraries no rosdep key installs on Ubuntu, and the pip line the README gives a
# TX2 for each: the version is the last with a cp36 manylinux2014_aarch64 wheel (checked with
# `pip download --only-binary=:all: --python-version 3.6 --platform manylinux2014_aarch64`:
# onnx-1.11.0-cp36-cp36m-manylinux_2_17_aarch64.whl, onnxruntime-1.10.0-cp36-cp36m-manylinux_
# 2_17_aarch64.whl). TensorRT comes with JetPack; pycuda is built on the robot (no wheel).
PIP_ON_THE_ROBOT = {'onnx': 'onnx==1.11.0', 'onnxruntime': 'onnxruntime==1.10.0',
                    'pycuda': 'pycuda==2022.1'}


def _rosdep_data():
    with open(os.path.join(ROOT, 'test', 'data', 'rosdep_keys.json')) as f:
        return json.load(f)


def _resolves(record, release):
    """Return how rosdep resolves a key on this Ubuntu release: 'ros', 'apt', 'pip' or None."""
    if record.get('humble_repository'):
        return 'ros'  # a Humble package: a binary on 22.04, the source-built underlay before
    rule = record.get('ubuntu')
    if isinstance(rule, dict) and 'pip' not in rule:  # per release, '*' for the others
        rule = rule.get(release, rule.get('*'))
    if isinstance(rule, dict) and 'pip' in rule:
        return 'pip' if rule['pip'].get('packages') else None
    return 'apt' if rule else None


def test_every_dependency_key_resolves_on_the_ubuntu_releases_of_humble_robots(root):
    data = _rosdep_data()
    keys = _depends(root) | _test_depends(root)
    missing = sorted(keys - set(data['keys']))
    assert not missing, ('{} not in test/data/rosdep_keys.json: run test/extract_rosdep_keys.py '
                         'on a ros/rosdistro checkout'.format(missing))
    for key in sorted(keys):
        for release in UBUNTU:
            assert _resolves(data['keys'][key], release), (
                'rosdep key {!r} does not resolve on Ubuntu {} (ros/rosdistro {})'.format(
                    key, release, data['commit']))


def test_runtime_libraries_without_a_rosdep_key_have_a_pip_line_in_the_readme():
    data = _rosdep_data()
    # rosdistro has no key that would install these with apt on Ubuntu: pip it is.
    for key in ('python3-onnx', 'python3-pycuda', 'python3-tensorrt'):
        assert not data['keys'][key], key
    imported = _third_party_imports(runtime_files())
    with open(os.path.join(ROOT, 'README.md')) as f:
        readme = f.read()
    for module, line in sorted(PIP_ON_THE_ROBOT.items()):
        assert module in imported, '{} is no longer imported by the runtime'.format(module)
        assert line in readme, (
            '{} imports {!r} (no rosdep key): the README must give the robot `pip3 install '
            '{}`'.format(imported[module], module, line))
