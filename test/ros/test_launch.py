"""
The launch files and config/params.yaml, checked statically (launch is not installable here).

They must run unchanged under `ros2 launch` on a robot: they parse, and the executable,
parameters, launch arguments, lifecycle transitions and files they name all exist. The
parameters' documentation (params.yaml's comments, the README's tables) says what the
declarations (`ros.parameters.TABLE`) say: default, choices, and when each may be set.
"""

import ast
import os
import re
from typing import Any, Dict, List
import xml.etree.ElementTree as ET

from lifecycle_msgs.msg import State, Transition
from project_files import ROOT
import pytest
from rclpy.parameter import Parameter
import yaml

from tx2_inference.ros import node as inference_node
from tx2_inference.ros import parameters as node_parameters

LAUNCH_PY = os.path.join(ROOT, 'launch', 'tx2_inference.launch.py')
LAUNCH_XML = os.path.join(ROOT, 'launch', 'tx2_inference.launch.xml')
PARAMS = os.path.join(ROOT, 'config', 'params.yaml')
REQUIRED_ARGS = {'params_file', 'namespace', 'model_path', 'image_topics', 'autostart',
                 'large_frames_dds'}
# What the large-frame DDS configuration sets: variable -> the file under config/ it names.
DDS_ENVIRONMENT = {'FASTRTPS_DEFAULT_PROFILES_FILE': 'fastdds_large_frames.xml',
                   'FASTDDS_DEFAULT_PROFILES_FILE': 'fastdds_large_frames.xml',
                   'CYCLONEDDS_URI': 'cyclonedds_large_frames.xml'}


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
    assert scripts[kwargs['executable']] == 'tx2_inference.ros.compat:main'
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


def test_python_launch_gives_the_node_the_large_frame_dds_configuration(launch_py):
    """Every DDS's variable, set before the node starts, only while large_frames_dds is on."""
    assert os.path.join('config', 'fastdds_large_frames.xml') in launch_py.path_joins()
    assert os.path.join('config', 'cyclonedds_large_frames.xml') in launch_py.path_joins()
    calls = launch_py.calls('SetEnvironmentVariable')
    assert sorted(launch_py.value(c.args[0]) for c in calls) == sorted(DDS_ENVIRONMENT)
    for call in calls:
        condition = launch_py.kwargs(call)['condition']
        assert isinstance(condition, ast.Name)  # the IfCondition on large_frames_dds
    source = launch_py.source
    assert re.search(r"IfCondition\(LaunchConfiguration\('large_frames_dds'\)\)", source)
    assert "['file://', cyclonedds_config]" in source  # CYCLONEDDS_URI is a file URI
    # Set before the node: SetEnvironmentVariable changes what the processes after it get.
    assert source.index('arguments + dds_environment') < source.index('[node, activate')
    declared = {launch_py.value(c.args[0]): launch_py.kwargs(c)
                for c in launch_py.calls('DeclareLaunchArgument')}
    assert declared['large_frames_dds']['default_value'] == 'true'


def test_xml_launch_gives_the_node_the_large_frame_dds_configuration():
    root = ET.parse(LAUNCH_XML).getroot()
    children = [child.tag for child in root]
    settings = root.findall('set_env')
    assert {s.get('name') for s in settings} == set(DDS_ENVIRONMENT)
    for setting in settings:
        assert setting.get('if') == '$(var large_frames_dds)'
        expected = '$(find-pkg-share tx2_inference)/config/' + DDS_ENVIRONMENT[setting.get('name')]
        prefix = 'file://' if setting.get('name') == 'CYCLONEDDS_URI' else ''
        assert setting.get('value') == prefix + expected
    assert max(i for i, tag in enumerate(children) if tag == 'set_env') < \
        children.index('lifecycle_node')
    assert xml_args(root)['large_frames_dds'] == 'true'


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
    assert console_scripts()[node.get('exec')] == 'tx2_inference.ros.compat:main'
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
        if isinstance(default, Parameter.Type):  # no default: shown commented out
            assert re.search(r'#\s*{}:'.format(name), text), name
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
        unset = isinstance(default, Parameter.Type)  # declared without a default: its type
        if default == Parameter.Type.DOUBLE if unset else isinstance(default, float):
            assert descriptor.floating_point_range, name
        if default == Parameter.Type.INTEGER if unset else type(default) is int:  # not bool
            assert descriptor.integer_range, name
        if name in node_parameters.RECONFIGURE:
            assert 'read-only while configured' in descriptor.additional_constraints, name
    assert set(node_parameters.RECONFIGURE) | set(node_parameters.LIVE) == \
        set(node_parameters.PARAMETERS)


def when(spec: Any) -> str:
    """Return when a parameter may be set: launch, reconfigure or live (as usage() says)."""
    return 'launch' if spec.launch_only else 'reconfigure' if spec.reconfigure else 'live'


def test_params_yaml_says_when_each_parameter_may_be_set():
    """Each entry's comment starts with what TABLE says: launch only, reconfigure or live."""
    lines = read(PARAMS).splitlines()
    wrong = {}
    for name, spec in node_parameters.PARAMETERS.items():
        [index] = [i for i, line in enumerate(lines)
                   if re.match(r'#?\s*{}:'.format(name), line.strip())]
        said = None
        for line in reversed(lines[:index]):  # the comment block above the entry
            text = line.strip()
            if not text.startswith('#'):
                break
            found = re.match(r'#\s*(launch only|reconfigure|live)\.', text)
            if found:
                said = found.group(1).replace('launch only', 'launch')
                break
        if said != when(spec):
            wrong[name] = (said, when(spec))
    assert not wrong, 'config/params.yaml comment -> TABLE: {}'.format(wrong)


def readme_parameter_rows() -> Dict[str, List[str]]:
    """Return the README's parameter table rows: parameter name -> its cells."""
    rows = {}
    for line in read(os.path.join(ROOT, 'README.md')).splitlines():
        if line.startswith('| `'):
            cells = [cell.strip() for cell in line.strip().strip('|').split('|')]
            for name in re.findall(r'`([a-z0-9_]+)`', cells[0]):
                if name in node_parameters.PARAMETERS:
                    rows[name] = cells
    return rows


def test_readme_parameter_tables_agree_with_the_declarations():
    """Every parameter has a README row; its default, choices, range and when are TABLE's."""
    rows = readme_parameter_rows()
    assert set(rows) == set(node_parameters.PARAMETERS)
    wrong = []
    for name, spec in node_parameters.PARAMETERS.items():
        cells = rows[name]
        default = spec.default
        if len(cells) == 6:  # the node's table: name, type, default, range, when, what
            shown, choices, said = cells[2], cells[3], cells[4]
            if said != when(spec):
                wrong.append((name, 'when', said, when(spec)))
        else:  # the Triton table: name, default, what (all launch only, said above it)
            shown, choices = cells[1], cells[2]
            assert spec.launch_only, name
        if callable(default) or isinstance(default, Parameter.Type):
            continue  # the bundled model; unset: described in words
        quoted = re.match(r'`([^`]*)`', shown)  # `value`, else a bare number or word
        first = quoted.group(1) if quoted else shown.split(':')[0].split()[0]
        if isinstance(default, bool):
            same = first == str(default).lower()
        elif isinstance(default, (int, float)):
            same = float(first) == float(default)
        elif isinstance(default, list):
            same = first == '[{}]'.format(', '.join(default))
        else:
            same = first == default or (default == '' and first == "''")
        if not same:
            wrong.append((name, 'default', shown, default))
        missing = [choice for choice in spec.choices if choice not in choices]
        if missing:
            wrong.append((name, 'choices', choices, missing))
        limits = spec.floating or spec.integer
        if limits is not None and len(cells) == 6:  # the range column: 'from-to'
            low, _, high = choices.partition('-')
            shown_limits = (float(low), float(2**31 - 1 if high == '2^31-1' else high))
            if shown_limits != (float(limits[0]), float(limits[1])):
                wrong.append((name, 'range', choices, limits))
    assert not wrong, wrong
