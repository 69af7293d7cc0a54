"""Regenerate test/data/trt_api_surfaces.json from a NVIDIA/TensorRT git checkout.

Usage (a clone of github.com/NVIDIA/TensorRT with its release branches)::

    python3 test/extract_trt_surfaces.py TensorRT > test/data/trt_api_surfaces.json

For each release branch below, the Python names of the classes the package touches are read
from the pybind11 sources (``py::class_<...> [var](m, "Name")`` / ``py::enum_`` followed by
``.def("x"`` / ``.def_property("x"`` / ``.value("X"`` ...) in ``python/src/**.cpp``, and module
functions from ``m.def("x"`` and ``def x(`` in ``python/packaging/**/__init__.py``.
"""

import json
import re
import subprocess
import sys

# 8.0: JetPack 4.6; 8.2: JetPack 4.6.1+ (the last for TX2); 8.6: both runtime APIs; 10.3:
# JetPack 6.1; 11.1: builder-side classes only (the 11.x runtime surface is read from the real
# tensorrt-lean 11.4 bindings in the test itself).
BRANCHES = {'8.0': 'release/8.0', '8.2': 'release/8.2', '8.6': 'release/8.6',
            '10.x': 'release/10.3', '11.1': 'release/11.1'}
CLASSES = ('ICudaEngine', 'IExecutionContext', 'IBuilderConfig', 'Builder', 'BuilderFlag',
           'NetworkDefinitionCreationFlag', 'Runtime')
DECL = re.compile(r'py::(?:class_|enum_)<(?:[^<>]|<(?:[^<>]|<[^<>]*>)*>)*>'
                  r'\s*(?:\w+\s*)?\(\s*m\s*,\s*"(\w+)"')
MEMBER = re.compile(r'\.(?:def|def_property|def_property_readonly|def_readwrite|def_readonly|'
                    r'def_static|value)\s*\(\s*"(\w+)"')
MODULE_DEF = re.compile(r'\bm\.def\s*\(\s*"(\w+)"')
PY_DEF = re.compile(r'^def (\w+)\(', re.M)


def git(repo, *args):
    return subprocess.run(['git', '-C', repo] + list(args), check=True,
                          stdout=subprocess.PIPE, universal_newlines=True).stdout


def surface(repo, branch):
    classes, where, module = {}, {}, set()
    for path in git(repo, 'ls-tree', '-r', '--name-only', branch, 'python').split():
        if path.startswith('python/src/') and path.endswith('.cpp'):
            text = git(repo, 'show', '{}:{}'.format(branch, path))
            decls = list(DECL.finditer(text))
            for i, d in enumerate(decls):
                end = decls[i + 1].start() if i + 1 < len(decls) else len(text)
                names = {m.group(1) for m in MEMBER.finditer(text, d.end(), end)}
                classes.setdefault(d.group(1), set()).update(names)
                where.setdefault(d.group(1), path)
            module.update(MODULE_DEF.findall(text))
        elif path.startswith('python/packaging/') and path.endswith('__init__.py'):
            module.update(PY_DEF.findall(git(repo, 'show', '{}:{}'.format(branch, path))))
    module.update(classes)
    out = {c: sorted(n for n in classes.get(c, ()) if not n.startswith('_')) for c in CLASSES}
    out['module'] = sorted(n for n in module if not n.startswith('_'))
    out['source'] = {c: where.get(c, '') for c in CLASSES}
    out['branch'] = branch
    out['commit'] = git(repo, 'rev-parse', branch).strip()
    return out


def main():
    repo = sys.argv[1]
    result = {version: surface(repo, branch) for version, branch in BRANCHES.items()}
    json.dump(result, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write('\n')


if __name__ == '__main__':
    main()
