"""Regenerate test/data/rosdep_keys.json from a ros/rosdistro git checkout.

Usage (a clone of github.com/ros/rosdistro)::

    python3 test/extract_rosdep_keys.py rosdistro > test/data/rosdep_keys.json

For every dependency key package.xml names, and for the rosdep keys the pip-only runtime
libraries could have had (:data:`PROBED`), it records the rule of ``rosdep/base.yaml`` or
``rosdep/python.yaml`` for Ubuntu (apt packages, per release, or pip), and whether the key is a
package released in Humble (``humble/distribution.yaml``). test/test_package_xml.py resolves
them for Ubuntu 18.04, 20.04 and 22.04, the systems a Humble robot runs.
"""

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULE_FILES = ('rosdep/base.yaml', 'rosdep/python.yaml')
DISTRIBUTION = 'humble/distribution.yaml'
#: Keys a pip-only runtime library would have: recorded so the test can show they are absent.
PROBED = ('python3-onnx', 'python3-onnx-pip', 'python3-onnxruntime', 'python3-onnxruntime-pip',
          'python3-pycuda', 'python3-tensorrt', 'python3-protobuf', 'tensorrt', 'pycuda')


def git(repo: str, *args: str) -> str:
    return subprocess.run(['git', '-C', repo] + list(args), check=True,
                          stdout=subprocess.PIPE, universal_newlines=True).stdout


def package_keys() -> list:
    root = ET.parse(os.path.join(ROOT, 'package.xml')).getroot()
    tags = ('depend', 'exec_depend', 'build_export_depend', 'test_depend')
    return sorted({dep.text.strip() for tag in tags for dep in root.findall(tag)})


def main(repo: str) -> None:
    commit = git(repo, 'rev-parse', 'HEAD').strip()
    date = git(repo, 'show', '-s', '--format=%cI', 'HEAD').strip()
    rules = {}
    for path in RULE_FILES:
        for key, rule in yaml.safe_load(git(repo, 'show', 'HEAD:' + path)).items():
            rules[key] = (path, rule)
    humble = {}
    repositories = yaml.safe_load(git(repo, 'show', 'HEAD:' + DISTRIBUTION))['repositories']
    for name, entry in repositories.items():
        release = entry.get('release')
        if release:
            for package in release.get('packages', [name]):
                humble[package] = name
    keys = {}
    for key in sorted(set(package_keys()) | set(PROBED)):
        record = {}
        if key in humble:
            record['humble_repository'] = humble[key]
            record['file'] = DISTRIBUTION
        if key in rules:
            record['file'], rule = rules[key]
            record['ubuntu'] = rule.get('ubuntu') if isinstance(rule, dict) else None
        keys[key] = record
    json.dump({'repository': 'ros/rosdistro', 'commit': commit, 'date': date,
               'files': list(RULE_FILES) + [DISTRIBUTION], 'keys': keys},
              sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write('\n')


if __name__ == '__main__':
    main(sys.argv[1])
