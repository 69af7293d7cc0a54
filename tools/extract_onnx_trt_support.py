#!/usr/bin/env python3
r"""Regenerate tx2_inference/backends/tensorrt/onnx_trt_support.json from git checkouts.

Usage (clones of github.com/onnx/onnx-tensorrt and github.com/NVIDIA/TensorRT with their
release branches)::

    python3 tools/extract_onnx_trt_support.py onnx-tensorrt TensorRT \\
        > tx2_inference/backends/tensorrt/onnx_trt_support.json

Per TensorRT release below, from the branch's own files (each entry cites repo, branch, commit
and file):

- ``docs/operators.md`` of onnx/onnx-tensorrt: the opset range ("supports operators up to
  Opset 13", "in the inclusive range of opset 9 to opset 20"), the data types the parser takes,
  and the operator matrix (supported Y/N, supported types, restrictions as written);
- ``docs/Changelog.md`` of the same branch, where the matrix lags: UINT8 network I/O ("Added
  support for importing ONNX networks with `UINT8` I/O types", 8.5 GA);
- ``plugin/README.md`` of NVIDIA/TensorRT: the plugins the release ships (``*_TRT`` ops and
  the other names a node can carry to reach them).

The preflight (``backends/tensorrt/preflight.py``) reads the JSON; no TensorRT is needed.
"""

import json
import re
import subprocess
import sys

# TensorRT release -> (onnx-tensorrt branch, NVIDIA/TensorRT branch). 8.0: JetPack 4.6; 8.2:
# JetPack 4.6.1+ (the last for TX2 and Nano); 8.5: JetPack 5.1.x; 8.6: JetPack 6.0; 10: JetPack
# 6.1/6.2 ship 10.3, whose plugins are read from release/10.3; the newest 10.x GA parser branch
# onnx-tensorrt has is 10.1-GA (there is no "10.x-GA" branch).
RELEASES = {
    '8.0': ('8.0-GA', 'release/8.0'),
    '8.2': ('8.2-GA', 'release/8.2'),
    '8.5': ('8.5-GA', 'release/8.5'),
    '8.6': ('8.6-GA', 'release/8.6'),
    '10': ('10.1-GA', 'release/10.3'),
}
UP_TO = re.compile(r'supports operators up to Opset (\d+)', re.I)
RANGE = re.compile(r'range of opset (\d+) to opset (\d+)', re.I)
TYPES = re.compile(r'supports the following ONNX data types: ([^\n]+)', re.I)
ROW = re.compile(r'^\|\s*([A-Za-z_0-9]+)\s*\|\s*([YN])\s*(\[\w+\])?\s*\|(.*)$')
PLUGIN_ROW = re.compile(r'^\|\s*\[(\w+)\]\([^)]*\)\s*(\[DEPRECATED\])?\s*\|\s*(\w+)\s*\|\s*'
                        r'([0-9, ]+)\|')
UINT8_IO = re.compile(r'`?UINT8`? I/O', re.I)
TYPE_NAMES = {'FLOAT32': 'FP32', 'FLOAT16': 'FP16', 'BFLOAT16': 'BF16', 'DOUBLE': 'DOUBLE'}


def git(repo, *args):
    """Return the output of a git command in ``repo``."""
    return subprocess.run(['git', '-C', repo] + list(args), check=True,
                          stdout=subprocess.PIPE, universal_newlines=True).stdout


def source(repo_name, repo, branch, path):
    """Return the citation of one file of one branch."""
    return {'repo': repo_name, 'branch': branch, 'file': path,
            'commit': git(repo, 'rev-parse', branch).strip()}


def operators(repo, branch):
    """Parse docs/operators.md: opset range, data types, the operator matrix."""
    text = git(repo, 'show', '{}:docs/operators.md'.format(branch))
    low, high = None, None
    m = UP_TO.search(text)
    if m:
        high = int(m.group(1))
    m = RANGE.search(text)
    if m:
        low, high = int(m.group(1)), int(m.group(2))
    types = [TYPE_NAMES.get(t.strip().upper(), t.strip().upper())
             for t in re.split(r',\s*(?:and\s+)?|\s+and\s+', TYPES.search(text).group(1))
             if t.strip()]
    ops = {}
    for line in text.splitlines():
        m = ROW.match(line.strip())
        if not m:
            continue
        cells = [c.strip() for c in m.group(4).split('|')]
        ops[m.group(1)] = {
            'supported': m.group(2) == 'Y', 'experimental': bool(m.group(3)),
            'types': [t.strip() for t in cells[0].split(',') if t.strip()] if cells else [],
            'restrictions': cells[1] if len(cells) > 1 else ''}
    notes = [line.strip('> ').strip() for line in text.splitlines()
             if line.startswith('> Note')]
    return {'min_opset': low, 'max_opset': high, 'data_types': types, 'notes': notes,
            'ops': ops}


def uint8_io(repo, branch):
    """Return the Changelog line that adds UINT8 network I/O, with its release heading."""
    heading = ''
    for line in git(repo, 'show', '{}:docs/Changelog.md'.format(branch)).splitlines():
        if line.startswith('#') and 'Release' in line:
            heading = line.strip('# ').strip()
        if UINT8_IO.search(line):
            return {'line': line.strip('- ').strip(), 'release': heading}
    return None


def plugins(repo, branch):
    """Return the plugin op names of plugin/README.md (deprecated ones marked)."""
    found = {}
    for line in git(repo, 'show', '{}:plugin/README.md'.format(branch)).splitlines():
        m = PLUGIN_ROW.match(line.strip())
        if m:
            versions = [v.strip() for v in m.group(4).split(',') if v.strip()]
            entry = found.setdefault(m.group(3), {'versions': [], 'deprecated': False})
            entry['versions'] = sorted(set(entry['versions']) | set(versions))
            entry['deprecated'] = entry['deprecated'] or bool(m.group(2))
    return found


def main():
    """Print the JSON for every release."""
    onnx_trt, tensorrt = sys.argv[1], sys.argv[2]
    result = {}
    for release, (parser_branch, trt_branch) in RELEASES.items():
        entry = operators(onnx_trt, parser_branch)
        entry['source'] = source('onnx/onnx-tensorrt', onnx_trt, parser_branch,
                                 'docs/operators.md')
        io = uint8_io(onnx_trt, parser_branch)
        entry['uint8_io'] = {
            'supported': io is not None, 'changelog': io,
            'source': source('onnx/onnx-tensorrt', onnx_trt, parser_branch, 'docs/Changelog.md')}
        entry['plugins'] = {'ops': plugins(tensorrt, trt_branch),
                            'source': source('NVIDIA/TensorRT', tensorrt, trt_branch,
                                             'plugin/README.md')}
        result[release] = entry
    json.dump(result, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write('\n')


if __name__ == '__main__':
    main()
