"""
The launch files and config/params.yaml, checked statically (launch is not installable here).

They must run unchanged under `ros2 launch` on a robot: they parse, and the executable,
parameters, launch arguments, lifecycle transitions and files they name all exist.
"""

import ast
import os
import re
from typing import Any, Dict, List
import xml.etree.ElementTree as ET

from lifecycle_msgs.msg import State, Transition
from project_files import ROOT
import pytest
import yaml

from tx2_inference.ros import node as inference_node
from tx2_inference.ros import parameters as node_parameters

LAUNCH_PY = os.path.join(ROOT, 'launch', 'tx2_inference.launch.py')
LAUNCH_XML = os.path.join(ROOT, 'launch', 'tx2_inference.launch.xml')
PARAMS = os.path.join(ROOT, 'config', 'params.yaml')
REQUIRED_ARGS = {'params_file', 'namespace', 'model_path', 'image_topics', 'autostart'}


def read(path: str) -> str:
    """Return a file's text."""
    with open(path) as f:
        return f.read()


def package_name() -> str:
    """Return the package name from package.xml."""
    return ET.parse(os.path.join(ROOT, 'package.xml')).getroot().findtext('name')


def console_scripts() -> Dict[str, str]:
    """Return setup.py's console scripts: name -> 'module:function'."""
    tree = ast.parse(read(os.path.join(ROOT, 'setup.py')))
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == 'console_scripts':
                    entries = [ast.literal_eval(e) for e in value.elts]
                    return dict(tuple(part.strip() for part in e.split('=')) for e in entries)
    raise AssertionError('setup.py declares no console_scripts')


def installed_folders() -> List[str]:
    """Return the folders setup.py installs into the package share (_data('folder'))."""
    tree = ast.parse(read(os.path.join(ROOT, 'setup.py')))
    return [call.args[0].value for call in ast.walk(tree) if isinstance(call, ast.Call) and
            isinstance(call.func, ast.Name) and call.func.id == '_data']


class LaunchPy(object):
    """The Python launch file's calls, with module-level constants resolved."""

    def __init__(self) -> None:
        """Parse the file."""
        self.source = read(LAUNCH_PY)
        self.tree = ast.parse(self.source)
        self.constants = {}  # type: Dict[str, Any]
        for node in self.tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                for target in node.targets:
                    self.constants[target.id] = node.value.value

    def value(self, node: ast.AST) -> Any:
        """Return a constant, a resolved module-level name, or the node itself."""
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name) and node.id in self.constants:
            return self.constants[node.id]
        return node

    def calls(self, name: str) -> List[ast.Call]:
        """Return every call of a function or class named name."""
        found = []
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.id if isinstance(func, ast.Name) else getattr(func, 'attr', None)
                if called == name:
                    found.append(node)
        return found

    def kwargs(self, call: ast.Call) -> Dict[str, Any]:
        """Return a call's keyword arguments, constants resolved."""
        return {k.arg: self.value(k.value) for k in call.keywords}

    def path_joins(self) -> List[str]:
        """Return the package-relative paths of PathJoinSubstitution([share, 'a', 'b'])."""
        paths = []
        for call in self.calls('PathJoinSubstitution'):
            parts = [self.value(e) for e in call.args[0].elts[1:]]
            assert all(isinstance(p, str) for p in parts), ast.dump(call)
            paths.append(os.path.join(*parts))
        return paths


@pytest.fixture(scope='module')
def launch_py() -> LaunchPy:
    """Return the parsed Python launch file."""
    return LaunchPy()


def test_python_launch_parses_and_has_the_entry_point(launch_py):
    names = [n.name for n in launch_py.tree.body if isinstance(n, ast.FunctionDef)]
    assert 'generate_launch_description' in names
    modules = {n.module.split('.')[0] for n in ast.walk(launch_py.tree)
               if isinstance(n, ast.ImportFrom)}
    assert modules <= {'launch', 'launch_ros', 'lifecycle_msgs', 'typing'}, modules


def test_python_launch_runs_a_declared_executable(launch_py):
    [node] = launch_py.calls('LifecycleNode')
    kwargs = launch_py.kwargs(node)
    assert kwargs['package'] == package_name() == 'tx2_inference'
    scripts = console_scripts()
    assert scripts[kwargs['executable']] == 'tx2_inference.ros.node:main'
    assert callable(inference_node.main)
    assert kwargs['name'] == inference_node.NODE_NAME
    assert 'namespace' in kwargs  # launch_ros requires it on newer distributions


def test_python_launch_sets_only_declared_parameters(launch_py):
    [node] = launch_py.calls('LifecycleNode')
    parameters = launch_py.kwargs(node)['parameters']
    dicts = [e for e in parameters.elts if isinstance(e, ast.Dict)]
    assert dicts, 'no parameter overrides'
    names = {launch_py.value(k) for d in dicts for k in d.keys}
    assert names and names <= set(node_parameters.PARAMETERS), names
    # The first entry is the params file argument, so the explicit values override it.
    first = parameters.elts[0]
    assert launch_py.value(first.args[0]) == 'params_file'


def test_python_launch_arguments(launch_py):
    declared = {}
    for call in launch_py.calls('DeclareLaunchArgument'):
        kwargs = launch_py.kwargs(call)
        declared[launch_py.value(call.args[0])] = kwargs
        assert isinstance(kwargs.get('description'), (str, ast.AST)), call.args[0]
    assert REQUIRED_ARGS <= set(declared), declared.keys()
    assert declared['autostart']['default_value'] == 'true'
    assert yaml.safe_load(declared['image_topics']['default_value']) == \
        node_parameters.PARAMETERS['image_topics'].default
    used = {launch_py.value(c.args[0]) for c in launch_py.calls('LaunchConfiguration')}
    assert used <= set(declared), used - set(declared)
    assert set(declared) <= used, set(declared) - used


def test_python_launch_names_files_that_exist_and_get_installed(launch_py, default_model):
    paths = launch_py.path_joins()
    assert os.path.join('config', 'params.yaml') in paths
    assert os.path.join('models', 'ssdlite_person.onnx') in paths
    for path in paths:
        assert os.path.isfile(os.path.join(ROOT, path)), path
        assert path.split(os.sep)[0] in installed_folders(), path
    assert 'launch' in installed_folders()


def test_python_launch_autostart_configures_then_activates(launch_py):
    transitions = []
    for call in launch_py.calls('ChangeState'):
        kwargs = launch_py.kwargs(call)
        attribute = kwargs['transition_id']
        assert isinstance(attribute, ast.Attribute) and attribute.value.id == 'Transition'
        assert hasattr(Transition, attribute.attr), attribute.attr
        transitions.append(attribute.attr)
    assert sorted(transitions) == ['TRANSITION_ACTIVATE', 'TRANSITION_CONFIGURE']
    [handler] = launch_py.calls('OnStateTransition')
    kwargs = launch_py.kwargs(handler)
    labels = {getattr(State, n): n for n in dir(State) if n.startswith(('PRIMARY', 'TRANSITION'))}
    label_names = {name.split('_STATE_')[1].lower() for name in labels.values()}
    assert kwargs['goal_state'] == 'inactive' and kwargs['start_state'] == 'configuring'
    assert {'inactive', 'configuring'} <= label_names
    # The activate request sits inside the handler; both are conditional on autostart.
    inner = [c for c in ast.walk(handler) if isinstance(c, ast.Call) and
             getattr(c.func, 'id', None) == 'ChangeState']
    assert launch_py.kwargs(inner[0])['transition_id'].attr == 'TRANSITION_ACTIVATE'
    for name in ('RegisterEventHandler', 'EmitEvent'):
        outer = [c for c in launch_py.calls(name) if 'condition' in launch_py.kwargs(c)]
        assert outer, name + ' without the autostart condition'


def test_launch_files_have_no_side_effects_or_home_paths():
    for path in (LAUNCH_PY, LAUNCH_XML, PARAMS):
        text = read(path)
        assert not re.search(r'\b(eval|exec)\s*\(|subprocess|os\.system', text), path
        assert not re.search(r'(/home/|/root/|~/)', text), path


def xml_args(root: ET.Element) -> Dict[str, str]:
    """Return the XML launch file's <arg> names and defaults."""
    return {arg.get('name'): arg.get('default') for arg in root.iter('arg')}


def test_xml_twin_matches_the_python_launch(launch_py, default_model):
    root = ET.parse(LAUNCH_XML).getroot()
    assert root.tag == 'launch'
    args = xml_args(root)
    python_args = {launch_py.value(c.args[0]) for c in launch_py.calls('DeclareLaunchArgument')}
    assert set(args) == python_args
    [node] = root.iter('lifecycle_node')
    assert node.get('pkg') == package_name()
    assert console_scripts()[node.get('exec')] == 'tx2_inference.ros.node:main'
    assert node.get('name') == inference_node.NODE_NAME
    assert node.get('autostart') == '$(var autostart)' and args['autostart'] == 'true'
    params = list(node.iter('param'))
    assert params[0].get('from') == '$(var params_file)'
    names = {p.get('name') for p in params[1:]}
    assert names and names <= set(node_parameters.PARAMETERS)
    text = read(LAUNCH_XML)
    used = set(re.findall(r'\$\(var (\w+)\)', text))
    assert used == set(args), used ^ set(args)
    shared = re.findall(r'\$\(find-pkg-share (\w+)\)/([\w./]+)', text)
    assert shared, 'no package files named'
    for package, path in shared:
        assert package == package_name()
        assert os.path.isfile(os.path.join(ROOT, path)), path
        assert path.split('/')[0] in installed_folders()


def params_yaml() -> Dict[str, Any]:
    """Return the node's section of config/params.yaml."""
    data = yaml.safe_load(read(PARAMS))
    assert list(data) == ['/**']
    return data['/**']['ros__parameters']


def test_params_yaml_holds_every_parameter_with_its_default_and_a_comment():
    values = params_yaml()
    text = read(PARAMS)
    lines = text.splitlines()
    for name, spec in node_parameters.PARAMETERS.items():
        default = spec.default
        if name == 'class_allowlist':  # no default: shown commented out
            assert re.search(r'#\s*class_allowlist:', text)
            continue
        assert name in values, name
        if name == 'model_path':
            assert values[name] == ''  # empty: the bundled model
        else:
            assert values[name] == default, name
        [index] = [i for i, line in enumerate(lines) if line.strip().startswith(name + ':')]
        assert lines[index - 1].strip().startswith('#'), 'no comment above ' + name
    unknown = set(values) - set(node_parameters.PARAMETERS)
    assert not unknown, unknown


def test_every_parameter_is_described_with_ranges_where_numeric():
    for name, spec in node_parameters.PARAMETERS.items():
        default, descriptor = spec.default, spec.descriptor()
        assert len(descriptor.description) > 20, name
        if isinstance(default, float):
            assert descriptor.floating_point_range, name
        if type(default) is int:  # not bool, not Parameter.Type (an IntEnum)
            assert descriptor.integer_range, name
        if name in node_parameters.RECONFIGURE:
            assert 'read-only while configured' in descriptor.additional_constraints, name
    assert set(node_parameters.RECONFIGURE) | set(node_parameters.LIVE) == \
        set(node_parameters.PARAMETERS)
