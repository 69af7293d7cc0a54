"""The package's layer rules, read from the import statements of every module (lazy ones too).

One table, `RULES`, says which layer may not import what; `violations(root)` lists every
import that breaks one, naming the file, the line, the import and the rule. The layers are the
folders of ``tx2_inference/`` (docs/DESIGN.md draws them); an arrow points at what a layer
may import:

    errors  <-  core/  <-  backends/  <-  executor, detector (the facade)  <-  ros/  <-  tools/
                                 ^-- convert/ (tx2-convert)  <-  convert/workstation/ (TensorFlow)
"""

import ast
import os
from typing import Dict, Iterator, List, Sequence, Tuple

PACKAGE = 'tx2_inference'

# Third-party families a rule can name.
ROS = ('rclpy', 'rcl_interfaces', 'sensor_msgs', 'vision_msgs', 'std_msgs', 'lifecycle_msgs',
       'diagnostic_msgs', 'builtin_interfaces', 'cv_bridge', 'launch', 'launch_ros',
       'ament_index_python')
TENSORFLOW = ('tensorflow', 'tf2onnx', 'keras', 'tf_keras')
TOOL_LIBRARIES = ('matplotlib', 'psutil', 'skimage')


def _rule(why: str, names: Sequence[str]) -> Tuple[Tuple[str, str], ...]:
    """Return (forbidden import prefix, why) pairs; prefixes match whole dotted components."""
    return tuple((name, why) for name in names)


def _no_ros(who: str) -> Tuple[Tuple[str, str], ...]:
    return _rule(who + ' knows no ROS', ROS + (PACKAGE + '.ros',))


NO_TENSORFLOW = _rule('only convert/workstation imports TensorFlow', TENSORFLOW)
NO_TOOLS = _rule('only tools/ import the tools', (PACKAGE + '.tools',))
NO_TOOL_LIBRARIES = _rule('the robot needs no tool library (only tools/ and the workstation '
                          'import them)', TOOL_LIBRARIES)
NO_CONVERTER = _rule('the runtime never imports the converter', (PACKAGE + '.convert',))
NO_FACADE = _rule('it is below the facade', (PACKAGE + '.executor', PACKAGE + '.detector',
                                             PACKAGE + '.tiling'))
RUNTIME = NO_TENSORFLOW + NO_TOOLS + NO_TOOL_LIBRARIES + NO_CONVERTER
# layer -> what it must not import, and why.
RULES = {
    'errors': RUNTIME + _no_ros('errors.py') + NO_FACADE + _rule(
        'errors.py is below everything', (PACKAGE + '.core', PACKAGE + '.backends')),
    'core': RUNTIME + _no_ros('the core') + NO_FACADE + _rule(
        'the core knows no backend', (PACKAGE + '.backends',)),
    'backends': RUNTIME + _no_ros('a backend') + NO_FACADE,
    'facade': RUNTIME + _no_ros('the facade'),
    'ros': RUNTIME,
    'convert': NO_TENSORFLOW + NO_TOOLS + NO_TOOL_LIBRARIES + _no_ros('the converter'),
    'workstation': NO_TOOLS + _no_ros('the converter'),
    'tools': NO_TENSORFLOW,
}


# The modules at the package's top level, and their layer; anything else belongs in a folder.
TOP_LEVEL = {'__init__.py': 'errors', 'errors.py': 'errors', 'executor.py': 'facade',
             'detector.py': 'facade', 'tiling.py': 'facade'}


def layer_of(relative_path: str) -> str:
    """Return the layer of a file given relative to the package folder ('core/nms.py')."""
    parts = [os.path.splitext(p)[0] for p in relative_path.replace(os.sep, '/').split('/')]
    if parts[0] in ('core', 'backends', 'ros', 'tools'):
        return parts[0]
    if parts[0] == 'convert':
        return 'workstation' if len(parts) > 1 and parts[1] == 'workstation' else 'convert'
    return TOP_LEVEL.get(parts[0] + '.py', 'unplaced')


def imports(path: str) -> Iterator[Tuple[int, str]]:
    """Yield (line, dotted module) of every import in a file, inside functions too."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level:  # relative: the package uses absolute imports only
                yield node.lineno, '.' * node.level + node.module
                continue
            yield node.lineno, node.module
            for alias in node.names:  # from tx2_inference import backends
                yield node.lineno, node.module + '.' + alias.name


def _matches(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + '.')


def python_files(root: str) -> List[str]:
    """Return the package's Python files, relative to ``root/tx2_inference``."""
    package = os.path.join(root, PACKAGE)
    found = []
    for folder, _, names in os.walk(package):
        for name in names:
            if name.endswith('.py'):
                found.append(os.path.relpath(os.path.join(folder, name), package))
    return sorted(found)


def violations(root: str) -> List[str]:
    """Return one line per import that breaks a rule: file:line imports X: why."""
    found = []
    for relative in python_files(root):
        rules = RULES.get(layer_of(relative), ())
        path = os.path.join(root, PACKAGE, relative)
        seen = set()
        for line, module in imports(path):
            if module.startswith('.'):
                found.append('{}/{}:{} imports {}: use an absolute import, so the rules can '
                             'be checked'.format(PACKAGE, relative, line, module))
                continue
            for prefix, why in rules:
                if _matches(module, prefix) and (line, prefix) not in seen:
                    seen.add((line, prefix))
                    found.append('{}/{}:{} imports {}: {} ({} layer)'.format(
                        PACKAGE, relative, line, module, why, layer_of(relative)))
    return found


def internal_dependencies(root: str) -> Dict[str, set]:
    """Return {layer: layers it imports} (for the map in docs/DESIGN.md)."""
    graph = {}  # type: Dict[str, set]
    for relative in python_files(root):
        layer = layer_of(relative)
        for _, module in imports(os.path.join(root, PACKAGE, relative)):
            if _matches(module, PACKAGE) and module != PACKAGE:
                target = layer_of(module.split('.', 1)[1].replace('.', '/'))
                if target != layer:
                    graph.setdefault(layer, set()).add(target)
    return graph
