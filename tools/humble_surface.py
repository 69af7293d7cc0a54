#!/usr/bin/env python3
"""Record the ROS 2 Humble API surface that test/test_humble_surface.py checks the package on.

Reads the sources, not an installed ROS: rclpy's Python files from the ``humble`` branch of
ros2/rclpy, and the .msg files of vision_msgs 4.1.0 (ros-perception/vision_msgs has no
``humble`` branch: Humble is released from its ``ros2`` branch, 4.0.0 at Humble's release and
4.1.0, with LabelInfo and VisionClass, from February 2023; 4.1.0 is the floor package.xml names).

    python3 tools/humble_surface.py RCLPY_GIT_DIR VISION_MSGS_GIT_DIR \
        > test/data/humble_surface.json

Each entry records where it was read (repository, ref, commit, path). What it records:

- ``rclpy.modules``: module -> the names defined or imported at its top level.
- ``rclpy.classes``: ``module.Class`` -> bases (resolved), methods with their parameter names,
  and attributes (class-level names, ``self.x`` assigned in a method, properties).
- ``rclpy.functions``: ``module.function`` -> its parameter names.
- ``rclpy.aliases``: ``module.name`` -> what it names (imports, ``X = Y``).
- ``rclpy.opaque``: names bound to something the sources cannot show (the C extension, a
  call's result): they exist, their members cannot be checked.
- ``vision_msgs.messages``: message -> {field: type}.
"""

import ast
import json
import subprocess
import sys

RCLPY = ('ros2/rclpy', 'humble', 'rclpy/rclpy/')
VISION_MSGS = ('ros-perception/vision_msgs', '4.1.0', 'vision_msgs/msg/')


def git(git_dir, *args):
    """Return the output of a git command on a bare repository."""
    return subprocess.check_output(['git', '--git-dir', git_dir] + list(args),
                                   universal_newlines=True)


def resolve_relative(module, is_package, level, target):
    """Return the absolute module of a relative import."""
    parts = module.split('.')
    base = parts if is_package else parts[:-1]
    base = base[:len(base) - (level - 1)] if level > 1 else base
    return '.'.join(base + ([target] if target else []))


def dotted(node):
    """Return ``a.b.c`` of a Name/Attribute chain, or None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = dotted(node.value)
        return head + '.' + node.attr if head else None
    return None


def parameters(function):
    """Return the parameter names of a function definition."""
    args = function.args
    names = [a.arg for a in args.posonlyargs + args.args]
    return {'args': names, 'kwonly': [a.arg for a in args.kwonlyargs],
            'varargs': args.vararg is not None, 'varkw': args.kwarg is not None}


def scan_module(module, is_package, source, surface):
    """Record a module's top-level names, aliases, functions and classes."""
    tree = ast.parse(source)
    names, imports = set(), {}
    for node in tree.body:
        statements = [node]
        if isinstance(node, ast.Try):  # e.g. optional imports
            statements = node.body + [s for h in node.handlers for s in h.body]
        for statement in statements:
            if isinstance(statement, ast.Import):
                for alias in statement.names:
                    local = alias.asname or alias.name.split('.')[0]
                    names.add(local)
                    imports[local] = alias.name if alias.asname else local
            elif isinstance(statement, ast.ImportFrom):
                base = (resolve_relative(module, is_package, statement.level, statement.module)
                        if statement.level else statement.module)
                for alias in statement.names:
                    if alias.name == '*':
                        surface['star'].setdefault(module, []).append(base)
                        continue
                    local = alias.asname or alias.name
                    names.add(local)
                    imports[local] = base + '.' + alias.name
            elif isinstance(statement, (ast.FunctionDef, ast.ClassDef)):
                names.add(statement.name)
                if isinstance(statement, ast.FunctionDef):
                    surface['functions'][module + '.' + statement.name] = parameters(statement)
            elif isinstance(statement, (ast.Assign, ast.AnnAssign)):
                targets = statement.targets if isinstance(statement, ast.Assign) else [
                    statement.target]
                for target in targets:
                    for element in ast.walk(target):
                        if isinstance(element, ast.Name):
                            names.add(element.id)
                            value = dotted(statement.value) if statement.value else None
                            head, _, rest = (value or '').partition('.')
                            if head in imports:
                                imports[element.id] = imports[head] + ('.' + rest if rest
                                                                       else '')
                            elif value and head in names:  # an alias of a local name
                                imports[element.id] = module + '.' + value
                            else:
                                surface['opaque'].append(module + '.' + element.id)
    surface['modules'][module] = sorted(names)
    for local, target in imports.items():
        if target != local:
            surface['aliases'][module + '.' + local] = target
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            scan_class(module, node, imports, surface)
    return imports


def scan_class(module, node, imports, surface):
    """Record a class: resolved bases, methods with parameters, attributes."""
    bases = []
    for base in node.bases:
        name = dotted(base)
        if name is None:
            continue
        head, _, rest = name.partition('.')
        if head in imports:
            bases.append(imports[head] + ('.' + rest if rest else ''))
        elif head in surface['modules'].get(module, ()):
            bases.append(module + '.' + name)
        else:
            bases.append(name)
    methods, attributes = {}, set()
    for statement in node.body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
            decorators = [dotted(d) for d in statement.decorator_list]
            if 'property' in decorators or any(d and d.endswith('.setter') for d in decorators):
                attributes.add(statement.name)
            else:
                methods[statement.name] = parameters(statement)
            for inner in ast.walk(statement):
                if (isinstance(inner, ast.Attribute) and isinstance(inner.ctx, ast.Store) and
                        isinstance(inner.value, ast.Name) and inner.value.id == 'self'):
                    attributes.add(inner.attr)
        elif isinstance(statement, (ast.Assign, ast.AnnAssign)):
            targets = statement.targets if isinstance(statement, ast.Assign) else [
                statement.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    attributes.add(target.id)
        elif isinstance(statement, ast.ClassDef):  # e.g. Parameter.Type
            attributes.add(statement.name)
            scan_class(module + '.' + node.name, statement, imports, surface)
    surface['classes'][module + '.' + node.name] = {
        'bases': bases, 'methods': methods, 'attributes': sorted(attributes)}


def rclpy_surface(git_dir):
    """Return the surface of rclpy's Python sources on the humble branch."""
    repository, ref, folder = RCLPY
    commit = git(git_dir, 'rev-parse', ref).strip()
    files = [p for p in git(git_dir, 'ls-tree', '-r', '--name-only', commit).split()
             if p.startswith(folder) and p.endswith('.py')]
    surface = {'modules': {}, 'classes': {}, 'functions': {}, 'aliases': {}, 'opaque': [],
               'star': {}}
    for path in sorted(files):
        module = path[len('rclpy/'):-len('.py')].replace('/', '.')
        is_package = module.endswith('.__init__')
        if is_package:
            module = module[:-len('.__init__')]
        scan_module(module, is_package, git(git_dir, 'show', commit + ':' + path), surface)
    # Submodules are attributes of their package once imported.
    for module in list(surface['modules']):
        parent, _, child = module.rpartition('.')
        if parent in surface['modules'] and child not in surface['modules'][parent]:
            surface['modules'][parent].append(child)
            surface['modules'][parent].sort()
    # `from x import *`: the names of x without a leading underscore.
    for module, sources in surface.pop('star').items():
        for source in sources:
            extra = [n for n in surface['modules'].get(source, ()) if not n.startswith('_')]
            surface['modules'][module] = sorted(set(surface['modules'][module]) | set(extra))
    surface['opaque'] = sorted(set(surface['opaque']))
    surface['source'] = {'repository': repository, 'ref': ref, 'commit': commit,
                         'files': sorted(files)}
    return surface


def vision_msgs_surface(git_dir):
    """Return the fields of every vision_msgs 4.1.0 message."""
    repository, ref, folder = VISION_MSGS
    commit = git(git_dir, 'rev-parse', ref + '^{commit}').strip()
    files = [p for p in git(git_dir, 'ls-tree', '-r', '--name-only', commit).split()
             if p.startswith(folder) and p.endswith('.msg')]
    messages = {}
    for path in sorted(files):
        fields = {}
        for line in git(git_dir, 'show', commit + ':' + path).splitlines():
            line = line.split('#', 1)[0].strip()
            if not line or '=' in line.split()[-1] or len(line.split()) < 2:
                continue
            kind, name = line.split()[:2]
            if '=' in name:  # a constant
                continue
            fields[name] = kind
        messages[path[len(folder):-len('.msg')]] = fields
    return {'messages': messages,
            'source': {'repository': repository, 'ref': ref, 'commit': commit,
                       'files': sorted(files)}}


def main():
    """Write the surface of the two repositories given as JSON to stdout."""
    rclpy_dir, vision_msgs_dir = sys.argv[1:3]
    surface = {'rclpy': rclpy_surface(rclpy_dir),
               'vision_msgs': vision_msgs_surface(vision_msgs_dir)}
    json.dump(surface, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write('\n')


if __name__ == '__main__':
    main()
