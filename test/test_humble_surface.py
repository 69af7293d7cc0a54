"""Every rclpy and vision_msgs name the node and its tools use exists in ROS 2 Humble.

CI only ever runs ROS 2 Kilted (Python 3.11), so a name that Kilted has and Humble lacks would
pass every other test and fail on the robot. This test reads the package's code with ``ast``
and checks each use against test/data/humble_surface.json, which tools/humble_surface.py read
from the sources (the file names the repositories, refs, commits and paths):

- rclpy: ros2/rclpy, branch ``humble`` (rclpy 3.3), ``rclpy/rclpy/**/*.py``;
- vision_msgs: ros-perception/vision_msgs, tag ``4.1.0``, ``vision_msgs/msg/*.msg`` (the
  package has no ``humble`` branch: Humble is released from ``ros2``; 4.1.0 is the floor).

What is checked: imports and the names taken from them; attribute chains on rclpy modules and
classes (``QoSOverridingOptions.with_default_policies``, ``ReliabilityPolicy.BEST_EFFORT``);
keyword arguments of calls to rclpy classes and functions; ``self.<name>`` in subclasses of
rclpy's ``Node``/``LifecycleNode`` and ``<variable>.<name>`` on rclpy objects made in place,
with their keyword arguments; vision_msgs constructors' keyword arguments and field chains
(``detection.bbox.center.position.x``). Not checked: names reached through values the code
cannot show (a function's return value), and names guarded by ``hasattr`` or imported inside a
``try`` whose ``except ImportError`` has the Humble fallback.
"""

import ast
import json
import os
import re
import sys

from project_files import PACKAGE, robot_files, ROOT
import pytest

sys.path.insert(0, os.path.join(ROOT, 'tools'))
from humble_surface import dotted  # noqa: E402  (the generator's reading of a.b.c)

SURFACE_FILE = os.path.join(ROOT, 'test', 'data', 'humble_surface.json')
with open(SURFACE_FILE) as _f:
    SURFACE = json.load(_f)
RCLPY = SURFACE['rclpy']
MESSAGES = SURFACE['vision_msgs']['messages']
OPAQUE = set(RCLPY['opaque'])
# Members that Python's own bases give rclpy classes (their sources do not list them).
EXTERNAL_BASES = {
    'IntEnum': {'name', 'value'}, 'Enum': {'name', 'value'}, 'NamedTuple': {'_replace', '_asdict'},
    'object': set(), 'ABC': set(), 'Exception': {'args'}, 'RuntimeError': {'args'},
    'ValueError': {'args'}, 'KeyError': {'args'}, 'TypeError': {'args'},
}
NODE = 'rclpy.node.Node'


def resolve(path, depth=0):
    """Return (kind, canonical) of a dotted rclpy path.

    kind: module, class, function, member (of a class), name (another module-level name),
    opaque (exists, members unknowable) or missing.
    """
    if depth > 30:
        return 'opaque', path
    if path in RCLPY['modules']:
        return 'module', path
    if path in RCLPY['classes']:
        return 'class', path
    if path in RCLPY['functions']:
        return 'function', path
    if path in RCLPY['aliases']:
        return resolve(RCLPY['aliases'][path], depth + 1)
    if path in OPAQUE:
        return 'opaque', path
    parent, _, name = path.rpartition('.')
    if not parent:
        return 'missing', path
    kind, canonical = resolve(parent, depth + 1)
    if kind == 'module':
        if name not in RCLPY['modules'][canonical]:
            return 'missing', path
        inner = canonical + '.' + name
        return resolve(inner, depth + 1) if inner != path else ('name', inner)
    if kind == 'class':
        members, closed = class_members(canonical)
        if name in members or not closed:
            return 'member', canonical + '.' + name
        return 'missing', path
    if kind == 'missing':
        return 'missing', path
    return 'opaque', path  # an attribute of a function, a value or a member


def class_members(cls, seen=None):
    """Return (names a class and its bases define, whether that list is complete)."""
    seen = seen if seen is not None else set()
    if cls in seen:
        return set(), True
    seen.add(cls)
    entry = RCLPY['classes'][cls]
    members = set(entry['methods']) | set(entry['attributes'])
    closed = True
    for base in entry['bases']:
        kind, canonical = resolve(base) if base.startswith('rclpy') else ('external', base)
        if kind == 'class':
            more, base_closed = class_members(canonical, seen)
            members |= more
            closed = closed and base_closed
        else:
            short = base.rpartition('.')[2]
            if short in EXTERNAL_BASES:
                members |= EXTERNAL_BASES[short]
            else:
                closed = False  # e.g. a C extension's class: members unknowable
    return members, closed


def method_parameters(cls, name, seen=None):
    """Return the parameters of ``cls.name`` (searching the bases), or None."""
    seen = seen if seen is not None else set()
    if cls in seen or cls not in RCLPY['classes']:
        return None
    seen.add(cls)
    entry = RCLPY['classes'][cls]
    if name in entry['methods']:
        return entry['methods'][name]
    for base in entry['bases']:
        kind, canonical = resolve(base) if base.startswith('rclpy') else ('external', base)
        if kind == 'class':
            found = method_parameters(canonical, name, seen)
            if found is not None:
                return found
    return None


def is_node_class(cls):
    return cls == NODE or any(
        resolve(base)[0] == 'class' and is_node_class(resolve(base)[1])
        for base in RCLPY['classes'].get(cls, {}).get('bases', ()) if base.startswith('rclpy'))


def _message_type(kind):
    """Return the vision_msgs message a field type names, or None (arrays, other packages)."""
    if kind.endswith(']'):
        return None
    package, _, name = kind.rpartition('/')
    if package in ('', 'vision_msgs') and name in MESSAGES:
        return name
    return None


class Scanner(object):
    """Collect the Humble-surface problems of one file's source."""

    def __init__(self, source, where):
        """Parse ``source`` (named ``where`` in the problems)."""
        self.tree = ast.parse(source)
        self.where = where
        self.problems = []
        self.checked = set()  # what was looked up, to show the scan sees the code
        self.aliases = {}  # local name -> dotted rclpy / vision_msgs path
        self.optional = set()  # ImportFrom nodes inside try/except ImportError bodies
        self.guarded = set(re.findall(r"hasattr\([^,]+,\s*'(\w+)'\)", source))
        for parent in ast.walk(self.tree):
            for child in ast.iter_child_nodes(parent):
                child.parent = parent

    def problem(self, node, text):
        """Record a problem at ``node``'s line."""
        self.problems.append('{}:{}: {}'.format(self.where, node.lineno, text))

    def run(self):
        """Scan the file; return its problems."""
        self._collect_imports()
        self._check_imports()
        self._check_references()
        for node in ast.walk(self.tree):
            if isinstance(node, ast.ClassDef):
                self._check_node_class(node)
        self._check_typed_variables()
        return self.problems

    # ---------------------------------------------------------------- imports

    def _collect_imports(self):
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Try) and any(
                    dotted(h.type) in ('ImportError', 'ModuleNotFoundError')
                    for h in node.handlers if h.type is not None):
                for statement in node.body:
                    if isinstance(statement, (ast.Import, ast.ImportFrom)):
                        self.optional.add(statement)
        fallbacks = [n for n in ast.walk(self.tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                     and n not in self.optional]
        for node in list(self.optional) + fallbacks:  # fallbacks bind last: they win
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split('.')[0] in ('rclpy', 'vision_msgs'):
                        local = alias.asname or alias.name.split('.')[0]
                        self.aliases[local] = alias.name if alias.asname else local
            elif node.level == 0 and node.module and node.module.split('.')[0] in (
                    'rclpy', 'vision_msgs'):
                for alias in node.names:
                    self.aliases[alias.asname or alias.name] = node.module + '.' + alias.name

    def _check_imports(self):
        for node in ast.walk(self.tree):
            if node in self.optional:
                continue
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split('.')[0] == 'rclpy':
                        self._check_path(node, alias.name)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                top = node.module.split('.')[0]
                for alias in node.names:
                    path = node.module + '.' + alias.name
                    if top == 'rclpy':
                        self._check_path(node, path)
                    elif top == 'vision_msgs':
                        self.checked.add(path)
                        if node.module != 'vision_msgs.msg' or alias.name not in MESSAGES:
                            self.problem(node, '{} is not in vision_msgs 4.1'.format(path))

    def _check_path(self, node, path):
        self.checked.add(path)
        kind, _ = resolve(path)
        if kind == 'missing':
            self.problem(node, '{} is not in rclpy of ROS 2 Humble'.format(path))
        return kind

    # ---------------------------------------------------------------- rclpy names

    def _full_path(self, node):
        """Return the dotted path of an attribute chain rooted in an imported name, or None."""
        name = dotted(node)
        if name is None:
            return None
        head, _, rest = name.partition('.')
        if head not in self.aliases:
            return None
        return self.aliases[head] + ('.' + rest if rest else '')

    def _check_references(self):
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Attribute) and not isinstance(
                    getattr(node, 'parent', None), ast.Attribute):
                path = self._full_path(node)
                if path and path.startswith('rclpy'):
                    self._check_path(node, path)
                elif path and path.startswith('vision_msgs.msg.'):
                    self._check_message_chain(node, path[len('vision_msgs.msg.'):].split('.'))
            elif isinstance(node, ast.Call):
                path = self._full_path(node.func)
                if path and path.startswith('rclpy'):
                    self._check_call(node, path)
                elif path and path.startswith('vision_msgs.msg.'):
                    message = path[len('vision_msgs.msg.'):]
                    for keyword in node.keywords:
                        if keyword.arg and message in MESSAGES:
                            self.checked.add('{}({}=)'.format(message, keyword.arg))
                            if keyword.arg not in MESSAGES[message]:
                                self.problem(node, '{} has no field {} in vision_msgs 4.1'
                                             .format(message, keyword.arg))

    def _check_call(self, node, path):
        kind, canonical = resolve(path)
        if kind == 'class':
            parameters = method_parameters(canonical, '__init__')
            if parameters is not None and parameters['varkw']:
                # e.g. QoSProfile(**kwargs): each keyword sets the attribute of its name.
                members, closed = class_members(canonical)
                if closed:
                    parameters = {'args': sorted(members), 'kwonly': [], 'varkw': False}
        elif kind == 'function':
            parameters = RCLPY['functions'][canonical]
        elif kind == 'member':
            cls, _, method = canonical.rpartition('.')
            parameters = method_parameters(cls, method)
        else:
            return
        self._check_keywords(node, path, parameters)

    def _check_keywords(self, node, what, parameters):
        if parameters is None or parameters['varkw']:
            return
        accepted = set(parameters['args']) | set(parameters['kwonly'])
        for keyword in node.keywords:
            if keyword.arg is None:
                continue
            self.checked.add('{}({}=)'.format(what, keyword.arg))
            if keyword.arg not in accepted:
                self.problem(node, '{} takes no keyword {} in ROS 2 Humble'.format(
                    what, keyword.arg))

    # ---------------------------------------------------------------- nodes and objects

    def _rclpy_class(self, expression):
        """Return the rclpy class an expression names, or None."""
        path = self._full_path(expression)
        if path and path.startswith('rclpy'):
            kind, canonical = resolve(path)
            if kind == 'class':
                return canonical
        return None

    def _check_member(self, node, cls, name, call=None):
        label = '{}.{}'.format(cls.rpartition('.')[2], name)
        self.checked.add(label)
        if name in self.guarded:
            return
        members, closed = class_members(cls)
        if name not in members and closed:
            self.problem(node, '{} is not in rclpy of ROS 2 Humble'.format(label))
        elif call is not None:
            self._check_keywords(call, label, method_parameters(cls, name))

    def _check_node_class(self, class_node):
        bases = [self._rclpy_class(b) for b in class_node.bases]
        rclpy_bases = [b for b in bases if b]
        if not any(is_node_class(b) for b in rclpy_bases):
            return
        own = {n.name for n in class_node.body
               if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        for node in ast.walk(class_node):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and
                    node.value.id == 'self' and isinstance(node.ctx, ast.Store)):
                own.add(node.attr)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node in class_node.body:
                for target in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                    if isinstance(target, ast.Name):
                        own.add(target.id)
        for node in ast.walk(class_node):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and
                    node.value.id in ('self', 'super') and node.attr not in own):
                parent = getattr(node, 'parent', None)
                call = parent if isinstance(parent, ast.Call) and parent.func is node else None
                self._check_member(node, rclpy_bases[-1], node.attr, call)
            elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Call) and
                  dotted(node.value.func) == 'super'):
                parent = getattr(node, 'parent', None)
                call = parent if isinstance(parent, ast.Call) and parent.func is node else None
                self._check_member(node, rclpy_bases[-1], node.attr, call)

    def _check_typed_variables(self):
        """``x = SomeRclpyClass(...)`` / ``rclpy.create_node(...)`` / a message; then ``x.y``."""
        for scope in ast.walk(self.tree):
            if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Module)):
                self._check_typed_in(scope)

    def _check_typed_in(self, scope):
        """Names typed in one function (``self.x``: anywhere in its class), used there."""
        owner = scope
        while owner is not None and not isinstance(owner, (ast.ClassDef, ast.Module)):
            owner = getattr(owner, 'parent', None)
        typed = {}  # dotted target ('node', 'self._node') -> ('rclpy', class) or ('msg', name)
        local = list(_own_nodes(scope))
        for node in local + list(ast.walk(owner) if owner is not None else []):
            if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
                continue
            in_scope = any(n is node for n in local)
            path = self._full_path(node.value.func) or ''
            kind = None
            if path.startswith('rclpy'):
                resolved = resolve(path)
                if resolved[0] == 'class':
                    kind = ('rclpy', resolved[1])
                elif resolved == ('function', 'rclpy.create_node'):
                    kind = ('rclpy', NODE)
            elif path.startswith('vision_msgs.msg.') and path[16:] in MESSAGES:
                kind = ('msg', path[16:])
            if kind:
                for target in node.targets:
                    name = dotted(target)
                    if name and (in_scope or name.startswith('self.')):
                        typed[name] = kind
        for node in local:
            if (not isinstance(node, ast.Attribute) or
                    isinstance(getattr(node, 'parent', None), ast.Attribute)):
                continue
            name = dotted(node) or ''
            bases = [b for b in typed if name.startswith(b + '.')]
            if not bases:
                continue
            base = max(bases, key=len)
            family, kind = typed[base]
            chain = name[len(base) + 1:].split('.')
            if family == 'rclpy':
                first = node
                while dotted(first) != base + '.' + chain[0]:
                    first = first.value
                parent = getattr(first, 'parent', None)
                call = parent if isinstance(parent, ast.Call) and parent.func is first else None
                self._check_member(first, kind, chain[0], call)
            else:
                self._check_message_chain(node, [kind] + chain)

    def _check_message_chain(self, node, chain):
        """Check ``Message.field.field...`` through vision_msgs field types."""
        message = chain[0]
        if message not in MESSAGES:
            self.problem(node, 'vision_msgs.msg.{} is not in vision_msgs 4.1'.format(message))
            return
        for field in chain[1:]:
            self.checked.add('{}.{}'.format(message, field))
            if field not in MESSAGES[message]:
                self.problem(node, '{}.{} is not a field in vision_msgs 4.1'.format(
                    message, field))
                return
            message = _message_type(MESSAGES[message][field])
            if message is None:
                return


def _own_nodes(scope):
    """Yield the nodes of a function or module, not those of the functions inside it."""
    for child in ast.iter_child_nodes(scope):
        yield child
        if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for node in _own_nodes(child):
                yield node


def _ros_files():
    """Return the package's files that use rclpy or vision_msgs: the node, its modules, tools."""
    found = []
    for path in robot_files():
        with open(path) as f:
            source = f.read()
        if re.search(r'^\s*(from|import) (rclpy|vision_msgs)\b', source, re.M):
            found.append((path, source))
    return found


def _scan(source, where='<test>'):
    scanner = Scanner(source, where)
    return scanner.run(), scanner.checked


def test_the_surface_file_names_its_sources():
    rclpy_source = RCLPY['source']
    assert rclpy_source['repository'] == 'ros2/rclpy' and rclpy_source['ref'] == 'humble'
    assert re.fullmatch(r'[0-9a-f]{40}', rclpy_source['commit'])
    assert 'rclpy/rclpy/lifecycle/node.py' in rclpy_source['files']
    vision = SURFACE['vision_msgs']['source']
    assert vision['repository'] == 'ros-perception/vision_msgs' and vision['ref'] == '4.1.0'
    assert 'vision_msgs/msg/LabelInfo.msg' in vision['files']


def test_every_rclpy_and_vision_msgs_name_the_package_uses_is_in_humble():
    files = _ros_files()
    assert any(p.endswith(os.path.join('ros', 'node.py')) for p, _ in files)
    problems, checked = [], set()
    for path, source in files:
        found, seen = _scan(source, os.path.relpath(path, ROOT))
        problems += found
        checked |= seen
    # The scan sees the node's real uses (so an empty problem list means something) ...
    for expected in ('rclpy.lifecycle.LifecycleNode', 'LifecycleNode.create_lifecycle_publisher',
                     'LifecycleNode.create_subscription(qos_overriding_options=)',
                     'rclpy.qos_overriding_options.QoSOverridingOptions.with_default_policies',
                     'Detection2D.bbox', 'BoundingBox2D.center', 'Pose2D.position',
                     'VisionClass(class_name=)', 'rclpy.qos.QoSProfile(reliability=)'):
        assert expected in checked, (expected, sorted(checked))
    # ... and every one of them is in Humble.
    assert not problems, 'not in ROS 2 Humble:\n' + '\n'.join(problems)


@pytest.mark.parametrize('source, problem', [
    # rclpy.event_handler is Iron's name for Humble's rclpy.qos_event.
    ('from rclpy.event_handler import SubscriptionEventCallbacks\n',
     'rclpy.event_handler.SubscriptionEventCallbacks is not in rclpy'),
    # Subscription.get_publisher_count arrived in Iron.
    ('from rclpy.node import Node\nclass N(Node):\n    def f(self):\n'
     '        self.create_subscription(1, 2, 3, 4, raw=True).x = 1\n'
     '        self.add_post_set_parameters_callback(None)\n',
     'Node.add_post_set_parameters_callback is not in rclpy'),
    # Iron's SubscriptionEventCallbacks(matched=...).
    ('from rclpy.qos_event import SubscriptionEventCallbacks\n'
     'SubscriptionEventCallbacks(matched=print)\n',
     'takes no keyword matched in ROS 2 Humble'),
    # Foxy's vision_msgs: the box centre was a geometry_msgs/Pose2D with x, y, theta.
    ('from vision_msgs.msg import Detection2D\nd = Detection2D()\nd.bbox.center.x = 1.0\n',
     'Pose2D.x is not a field in vision_msgs 4.1'),
    ('from vision_msgs.msg import ObjectHypothesisWithPose as H\nH(id="person")\n',
     'ObjectHypothesisWithPose has no field id'),
    ('from vision_msgs.msg import Detection2DArray, SegmentationMask\n',
     'vision_msgs.msg.SegmentationMask is not in vision_msgs 4.1'),
    ('import rclpy\nrclpy.create_node("n", enable_logger_service=True)\n',
     'rclpy.create_node takes no keyword enable_logger_service'),
], ids=['module', 'node-method', 'keyword', 'foxy-bbox', 'message-keyword', 'message',
        'function-keyword'])
def test_a_name_humble_lacks_is_reported(source, problem):
    """The check works: each of these newer (or older) names is caught."""
    problems, _ = _scan(source)
    assert any(problem in p for p in problems), problems


def test_guarded_and_fallback_names_are_not_reported():
    """``hasattr`` guards and ``try: <newer> except ImportError: <Humble's>`` are allowed."""
    source = ('try:\n    from rclpy.event_handler import SubscriptionEventCallbacks\n'
              'except ImportError:\n    from rclpy.qos_event import SubscriptionEventCallbacks\n'
              'from rclpy.node import Node\nclass N(Node):\n    def f(self):\n'
              "        if hasattr(self, 'add_post_set_parameters_callback'):\n"
              '            self.add_post_set_parameters_callback(None)\n'
              'SubscriptionEventCallbacks(incompatible_qos=print)\n')
    problems, checked = _scan(source)
    assert problems == []
    assert 'rclpy.qos_event.SubscriptionEventCallbacks(incompatible_qos=)' in checked
    assert PACKAGE  # the package's own files are scanned by the test above
