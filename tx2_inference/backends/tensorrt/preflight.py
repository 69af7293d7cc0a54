"""Will this TensorRT take this ONNX model? Checked anywhere, before copying it to the robot.

``tx2-convert check MODEL.onnx --target tx2`` and the engine build (before parsing) call
:func:`check`. No TensorRT needed: the model is held against the ONNX parser's support matrix of
each TensorRT release (``onnx_trt_support.json`` beside this module, extracted by
``tools/extract_onnx_trt_support.py`` from onnx/onnx-tensorrt ``docs/operators.md`` and
``docs/Changelog.md`` and NVIDIA/TensorRT ``plugin/README.md``; every release cites repo, branch,
commit and file) and against the device table (``devices.py``).

The checks are a list of rule functions, :data:`RULES`; each takes a :class:`Facts` (the model,
one release's support data, the target) and yields :class:`Problem` s. One line per problem,
naming the tensor or node and the converter option that fixes it. A rule is added by appending
a function to :data:`RULES` (``tx2-convert check``), and to :data:`BUILD_RULES` too if the engine
build should run it before parsing (a problem with ``advisory=True`` is only logged there).
"""

import json
import os
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from tx2_inference.backends.tensorrt import devices
from tx2_inference.backends.tensorrt.float_input import uint8_inputs
from tx2_inference.errors import ModelError

SUPPORT_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            'onnx_trt_support.json')

# onnx.TensorProto element types -> the names the support matrix uses.
_TYPE_NAMES = {1: 'FP32', 2: 'UINT8', 3: 'INT8', 4: 'UINT16', 5: 'INT16', 6: 'INT32',
               7: 'INT64', 8: 'STRING', 9: 'BOOL', 10: 'FP16', 11: 'DOUBLE', 12: 'UINT32',
               13: 'UINT64', 16: 'BF16', 17: 'FP8', 18: 'FP8', 19: 'FP8', 20: 'FP8',
               22: 'INT4'}
_QDQ = ('QuantizeLinear', 'DequantizeLinear')
_PLUGIN_DOMAINS = ('trt.plugins',)

_support = None  # type: Optional[Dict[str, Any]]


def support_data() -> Dict[str, Any]:
    """Return the support matrix of every described release (read once)."""
    global _support
    if _support is None:
        with open(SUPPORT_FILE) as f:
            _support = json.load(f)
    return _support


class Problem(object):
    """One thing the target's TensorRT would refuse, and how to fix it.

    ``text`` may hold ``{trt}``, replaced by the releases that share the problem.
    ``advisory``: found from the documentation's matrix rather than a hard limit of the parser
    (per-op data types): ``tx2-convert check`` fails on it, the engine build only logs it.
    """

    def __init__(self, key: str, text: str, advisory: bool = False) -> None:
        """Hold the problem; ``key`` identifies it across releases (rule and subject)."""
        self.key = key
        self.text = text
        self.advisory = advisory
        self.releases = []  # type: List[str]

    def line(self) -> str:
        """Return the problem as one line."""
        return self.text.format(trt='TensorRT ' + ' and '.join(self.releases))


class Facts(object):
    """What the rules look at: the model (with inferred types), one release, the target."""

    def __init__(self, model: Any, path: str, release: str, device: Optional[Any],
                 shapes: Optional[Dict[str, Any]], types: Dict[str, int],
                 nodes: List[Tuple[Any, str]]) -> None:
        """Hold them (made by :func:`check`)."""
        self.model = model
        self.path = path
        self.release = release
        self.support = support_data()[release]
        self.device = device
        self.shapes = shapes or {}
        self.types = types
        self.nodes = nodes  # (node, where): where is '' or 'in the body of NODE'
        self.command_target = device.key if device else _trt_target(release)

    def type_name(self, tensor: str) -> Optional[str]:
        """Return a tensor's type as the matrix names it, after TensorRT's documented casts."""
        elem = self.types.get(tensor)
        if elem is None:
            return None
        name = _TYPE_NAMES.get(elem, 'type {}'.format(elem))
        if name == 'DOUBLE':
            return 'FP32'  # "will attempt to cast DOUBLE down to FLOAT" (every release)
        if name == 'INT64' and 'INT64' not in self.support['data_types']:
            return 'INT32'  # 8.x: "will attempt to cast down INT64 to INT32"
        return name

    def tensor_types(self) -> List[str]:
        """Return the data types this release takes (with 8.x's 'limited' INT32/INT64)."""
        taken = list(self.support['data_types'])
        if 'INT32' not in taken:
            taken.append('INT32')  # 8.x note: "limited support for INT32, INT64, and DOUBLE"
        return taken


def _trt_target(release: str) -> str:
    for name, rel in devices.TRT_TARGETS.items():
        if rel == release:
            return name
    return release


def _node_label(node: Any, where: str) -> str:
    return '{} ({}){}'.format(node.name or '(unnamed)', node.op_type,
                              ' ' + where if where else '')


def rule_opset(facts: Facts) -> Iterable[Problem]:
    """Check the default domain's opset against the release's range."""
    opset = max([o.version for o in facts.model.opset_import if o.domain in ('', 'ai.onnx')] or
                [0])
    high, low = facts.support['max_opset'], facts.support['min_opset']
    if high and opset > high:
        yield Problem('opset', 'opset {}: {{trt}} supports operators up to opset {}: convert '
                      'with tx2-convert onnx --opset {} (or --target {}).'.format(
                          opset, high, high, facts.command_target))
    if low and opset < low:
        yield Problem('opset', 'opset {}: {{trt}} supports opset {} to {}: convert with '
                      'tx2-convert onnx --opset 13.'.format(opset, low, high))


def rule_io_types(facts: Facts) -> Iterable[Problem]:
    """Network inputs and outputs: uint8 only from 8.5 (Changelog), others from the matrix."""
    weights = {i.name for i in facts.model.graph.initializer}
    uint8_ok = facts.support['uint8_io']['supported']
    taken = facts.tensor_types()
    for role, tensors in (('input', [t for t in facts.model.graph.input
                                     if t.name not in weights]),
                          ('output', list(facts.model.graph.output))):
        for tensor in tensors:
            name = facts.type_name(tensor.name)
            if name == 'UINT8' and not uint8_ok:
                fix = ('convert with tx2-convert onnx SAVED_MODEL --target {t} (a float32 input, '
                       'same detections), or fix this file: tx2-convert retarget {p} --target '
                       '{t} -o OUT.onnx'.format(t=facts.command_target, p=facts.path)
                       if role == 'input' and tensor.name in uint8_inputs(facts.model) else
                       'export it as float32')
                yield Problem('io:' + tensor.name,
                              '{} {!r} is uint8, which {{trt}} cannot take (UINT8 I/O '
                              'came with TensorRT 8.5, onnx-tensorrt Changelog): {}.'.format(
                                  role, tensor.name, fix))
            elif name is not None and name != 'UINT8' and name not in taken:
                yield Problem('io:' + tensor.name, '{} {!r} is {}: {{trt}} takes {}: export '
                              'it as FP32.'.format(role, tensor.name, name, ', '.join(taken)))


def _is_plugin(node: Any) -> bool:
    return node.domain in _PLUGIN_DOMAINS or node.op_type.endswith('_TRT')


def rule_ops(facts: Facts) -> Iterable[Problem]:
    """Every node's op against the matrix (and the release's plugins for plugin ops)."""
    ops = facts.support['ops']
    plugins = facts.support['plugins']['ops']
    seen = set()
    for node, where in facts.nodes:
        if node.domain not in ('', 'ai.onnx') and not _is_plugin(node):
            key = 'domain:' + node.domain + node.op_type
            text = ('node {}: op of domain {!r}, which the ONNX parser of {{trt}} does not '
                    'import: export without it (standard ONNX ops only).'.format(
                        _node_label(node, where), node.domain))
        elif _is_plugin(node) or (node.op_type not in ops and node.op_type in plugins):
            if node.op_type in plugins:
                continue
            key = 'plugin:' + node.op_type
            text = ('node {}: plugin {} is not among the plugins of {{trt}}: export the model '
                    'without it (decode and NMS on the CPU: cut with tx2-convert onnx '
                    '--outputs).'.format(_node_label(node, where), node.op_type))
        elif node.op_type not in ops or not ops[node.op_type]['supported']:
            key = 'op:' + node.op_type
            text = ("node {}: {{trt}}'s ONNX parser does not support {}: cut the graph "
                    'before it (tx2-convert onnx --outputs) or export without it.'.format(
                        _node_label(node, where), node.op_type))
        else:
            continue
        if key not in seen:
            seen.add(key)
            yield Problem(key, text)


def rule_op_types(facts: Facts) -> Iterable[Problem]:
    """Each node's data input type against the matrix's supported types of its op."""
    ops = facts.support['ops']
    seen = set()
    for node, where in facts.nodes:
        entry = ops.get(node.op_type)
        if not entry or not entry['supported'] or not entry['types'] or not node.input:
            continue
        name = facts.type_name(node.input[0]) if node.input[0] else None
        if name is None or name == 'UINT8' and node.input[0] in uint8_inputs(facts.model):
            continue  # an input's uint8 is rule_io_types' problem
        key = 'type:{}:{}'.format(node.op_type, name)
        if name not in entry['types'] and key not in seen:
            seen.add(key)
            yield Problem(key, "node {} reads {}: {{trt}}'s ONNX parser supports {} for {}: "
                          'export the model so that it reads {} (or cut the graph before it: '
                          'tx2-convert onnx --outputs).'.format(
                              _node_label(node, where), name, ', '.join(entry['types']),
                              node.op_type, entry['types'][0]),
                          advisory=True)


def rule_dynamic_inputs(facts: Facts) -> Iterable[Problem]:
    """Refuse inputs with a free dimension and no shape profile (--shapes, --batch N)."""
    weights = {i.name for i in facts.model.graph.initializer}
    for tensor in facts.model.graph.input:
        if tensor.name in weights or tensor.name in facts.shapes:
            continue
        dims = [d.dim_value if d.HasField('dim_value') else -1
                for d in tensor.type.tensor_type.shape.dim]
        if any(d <= 0 for d in dims):
            yield Problem('dynamic:' + tensor.name, 'input {!r} has dynamic dimensions {} and '
                          'no shape profile: build with tx2-convert engine --batch N (a free '
                          'batch) or --shapes {}:MIN:OPT:MAX, or convert with a fixed shape '
                          '(tx2-convert onnx --inputs NAME[1,H,W,3]).'.format(
                              tensor.name, dims, tensor.name))


def rule_qdq_without_int8(facts: Facts) -> Iterable[Problem]:
    """Q/DQ nodes on a GPU without INT8: TensorRT refuses them (NVIDIA/TensorRT#3399)."""
    if facts.device is None or facts.device.fast_int8:
        return
    count = sum(1 for node, _ in facts.nodes if node.op_type in _QDQ)
    if count:
        yield Problem('qdq', '{} QuantizeLinear/DequantizeLinear nodes: the {} has no INT8 and '
                      '{{trt}} refuses Q/DQ networks there: fold them into FP32 weights and '
                      'build FP16: tx2-convert fold-qdq {} -o OUT.onnx.'.format(
                          count, facts.device.name, facts.path))


def rule_explicit_int8(facts: Facts) -> Iterable[Problem]:
    """Check that Q/DQ on a GPU with INT8 is in the form explicit quantization takes.

    Symmetric INT8 (zero points 0, no UINT8), opset >= 13, no QOperator ops: else the parser
    refuses it. Q/DQ on both the input and the weights of each Conv/Gemm/MatMul: else those
    layers build in FP16/FP32 (advisory). See ``qdq.readiness``.
    """
    if facts.device is not None and not facts.device.fast_int8:
        return  # rule_qdq_without_int8 says what to do there
    from tx2_inference.backends.tensorrt import qdq
    verdict = qdq.readiness(facts.model)
    for k, reason in enumerate(verdict.reasons):
        yield Problem('explicit-int8-{}'.format(k), 'not explicit INT8 ready for {{trt}}: {}.'
                      .format(reason), advisory=reason in verdict.advisory)


#: The checks, in the order their problems are printed. Append a function to add one.
RULES = [rule_opset, rule_io_types, rule_ops, rule_op_types, rule_dynamic_inputs,
         rule_qdq_without_int8, rule_explicit_int8]  # type: List[Callable[[Facts], Iterable[Problem]]]


def _walk(graph: Any, where: str = '') -> Iterable[Tuple[Any, str]]:
    for node in graph.node:
        yield node, where
        for attr in node.attribute:
            subs = ([attr.g] if attr.HasField('g') else []) + list(attr.graphs)
            for sub in subs:
                for pair in _walk(sub, 'in the {} of {}'.format(attr.name, node.name or
                                                                 node.op_type)):
                    yield pair


def _types(model: Any) -> Dict[str, int]:
    """Return tensor name -> element type, from ONNX shape inference (subgraphs included)."""
    onnx = _onnx()
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # an op the installed onnx cannot infer: use what the file declares
        inferred = model
    types = {}  # type: Dict[str, int]

    def collect(graph: Any) -> None:
        for info in list(graph.input) + list(graph.output) + list(graph.value_info):
            if info.type.HasField('tensor_type'):
                types[info.name] = info.type.tensor_type.elem_type
        for init in graph.initializer:
            types[init.name] = init.data_type
        for node in graph.node:
            for attr in node.attribute:
                for sub in ([attr.g] if attr.HasField('g') else []) + list(attr.graphs):
                    collect(sub)
    collect(inferred.graph)
    return types


def _onnx() -> Any:
    """Return the ``onnx`` module, or raise ``BackendUnavailableError`` with its pip line."""
    from tx2_inference.backends.tensorrt.loader import import_onnx
    return import_onnx()


def load(path: str) -> Any:
    """Load an ONNX model's graph (not its external weights) or raise ``ModelError``."""
    onnx = _onnx()
    if not os.path.isfile(path):
        raise ModelError('ONNX model {!r} does not exist.'.format(path))
    try:
        return onnx.load(path, load_external_data=False)
    except Exception as error:
        raise ModelError('{!r} is not a readable ONNX model: {}'.format(path, error)) from None


def check(model: Any, path: str, releases: List[str], device: Optional[Any] = None,
          shapes: Optional[Dict[str, Any]] = None,
          rules: Optional[List[Callable[[Facts], Iterable[Problem]]]] = None
          ) -> List[Problem]:
    """Return the problems of ``model`` on every release in ``releases``, merged.

    :param path: how lines name the file (in the commands they suggest).
    :param device: a ``devices.Device`` (its INT8), or None for a bare TensorRT release.
    :param shapes: inputs that have a shape profile (their free dimensions are fine).
    """
    types = _types(model)
    nodes = list(_walk(model.graph))
    merged = {}  # type: Dict[str, Problem]
    order = []  # type: List[str]
    for release in releases:
        facts = Facts(model, path, release, device, shapes, types, nodes)
        for rule in (RULES if rules is None else rules):
            for problem in rule(facts):
                if problem.key not in merged:
                    merged[problem.key] = problem
                    order.append(problem.key)
                merged[problem.key].releases.append(release)
    return [merged[k] for k in order]


def check_target(path: str, target: str) -> List[str]:
    """Return the problem lines of the ONNX file at ``path`` on ``target`` (CLI and tests)."""
    releases, device = devices.target_releases(target)
    return [p.line() for p in check(load(path), path, releases, device)]


def sources(releases: List[str]) -> List[str]:
    """Return the citations of the data the releases were checked against, one a line."""
    lines = []
    for release in releases:
        data = support_data()[release]
        for what in (data['source'], data['uint8_io']['source'], data['plugins']['source']):
            lines.append('TensorRT {}: {} {} @ {} {}'.format(
                release, what['repo'], what['branch'], what['commit'][:12], what['file']))
    return lines


# The rules the engine build runs before parsing. Dynamic inputs are left to the build's own
# profile step, which knows the shapes the build was given (``builder._add_profiles``); Q/DQ on a
# GPU without INT8 is refused earlier, by :func:`precision_for` (before the cache lookup).
BUILD_RULES = [rule_opset, rule_io_types, rule_ops, rule_op_types, rule_explicit_int8]


def before_build(onnx_path: str, trt_version: str) -> List[str]:
    """Run the parser rules for this TensorRT; return the advisory lines (to log).

    :raises ModelError: one line per problem the parser would refuse, with the fix.
    """
    release = devices.release_for(trt_version)
    problems = check(load(onnx_path), onnx_path, [release], rules=BUILD_RULES)
    hard = [p.line() for p in problems if not p.advisory]
    if hard:
        raise ModelError('TensorRT {} cannot build {!r}:\n  {}'.format(
            trt_version, onnx_path, '\n  '.join(hard)))
    return [p.line() for p in problems]


def has_qdq(onnx_path: str) -> bool:
    """Return True if the model has QuantizeLinear/DequantizeLinear nodes (subgraphs too)."""
    return any(node.op_type in _QDQ for node, _ in _walk(load(onnx_path).graph))


def precision_for(onnx_path: str, precision: str, gpu_name: str, compute_capability: str,
                  int8_ready: bool) -> str:
    """Return the precision to build ``onnx_path`` with on this GPU (``auto`` resolved).

    :param int8_ready: calibration images or cache are at hand (a Q/DQ model always is).
    :raises ConfigError: INT8 asked of a GPU without it; a Q/DQ model on such a GPU (with the
        command that folds it).
    """
    try:
        qdq = has_qdq(onnx_path)
    except ModelError:
        qdq = False  # not readable as ONNX: the parser says so, at the build
    device = devices.device_for(compute_capability)
    if qdq and device is not None and not device.fast_int8:
        from tx2_inference.errors import ConfigError
        raise ConfigError(
            '{!r} is a Q/DQ (quantised) model and the {} has no INT8: TensorRT refuses Q/DQ '
            'networks there. Fold it into an FP32 model and build that at FP16: tx2-convert '
            'fold-qdq {} -o {}'.format(onnx_path, devices.gpu_label(gpu_name, compute_capability),
                                       onnx_path, os.path.splitext(onnx_path)[0] + '_folded.onnx'))
    return devices.resolve_precision(precision, gpu_name, compute_capability,
                                     int8_ready=qdq or int8_ready)


def describe_parser_errors(errors: List[Any], onnx_path: str) -> str:
    """Return the ONNX parser's errors as text naming each node and op.

    ``ParserError.node()`` is the node's index in the graph (-1 when none) in every release;
    ``node_name()`` / ``node_operator()`` exist from 10.x (NVIDIA/TensorRT
    ``python/src/parsers/pyOnnx.cpp``). Before 10, the name and op come from the ONNX file.
    """
    graph_nodes = None
    lines = []
    for error in errors:
        desc = str(error.desc()) if hasattr(error, 'desc') else str(error)
        index = int(error.node()) if hasattr(error, 'node') else -1
        name = str(error.node_name()) if hasattr(error, 'node_name') else ''
        op = str(error.node_operator()) if hasattr(error, 'node_operator') else ''
        if index >= 0 and not (name and op):
            if graph_nodes is None:
                try:
                    graph_nodes = list(load(onnx_path).graph.node)
                except ModelError:
                    graph_nodes = []
            if index < len(graph_nodes):
                name = name or graph_nodes[index].name
                op = op or graph_nodes[index].op_type
        where = 'node {} {} ({})'.format(index, name or '(unnamed)', op or '?') \
            if index >= 0 or name else 'the model'
        lines.append('{}: {}'.format(where, desc))
    return '; '.join(lines) or 'unknown error'


def fit_options(onnx_path: str, options: Any, gpu_name: str, compute_capability: str) -> Any:
    """Return ``options`` (a ``BuildOptions``) with the precision this GPU builds (a copy).

    ``auto`` becomes the best the device has (FP16 on a TX2; INT8 where the GPU has it and the
    model is Q/DQ or calibration is given); INT8 on a GPU without it, and a Q/DQ model there,
    are refused (:func:`precision_for`). Runs before the cache lookup, so the key holds the
    precision really built.
    """
    import copy
    int8_ready = bool(options.calib_images) or bool(
        options.calib_cache and os.path.isfile(options.calib_cache))
    fitted = copy.copy(options)
    fitted.precision = precision_for(onnx_path, options.precision, gpu_name,
                                     compute_capability, int8_ready)
    return fitted
