"""
The node's parameters: one declaration per parameter, and the rules a value must follow.

`TABLE` is the one place a parameter is declared: its default, its description, whether it
needs a reconfigure (read-only while configured) and what a value must be (choices, a range,
a check). rclpy rejects out-of-range values itself through the descriptors; the checks here
reject the rest with a reason the caller of ``ros2 param set`` sees.

Anyone on the DDS domain can call ``set_parameters``, so a parameter's *kind* decides who may
set it: what chooses a model, a file, a server, code or a topic (`LAUNCH_KINDS`), and the
limits that protect the node (``policy``), are read-only descriptors, set at launch only; the
read-only ``allow_remote_reconfigure`` makes the first group settable while unconfigured
again. A free-text reconfigure parameter declared without a kind counts as a ``file``: read-only
by default (docs/ROBUSTNESS.md, README "Security").

To add a parameter: append a `ParameterSpec` to `TABLE` (and a line with a comment to
config/params.yaml, which test/ros/test_launch.py checks), then read it in the node with
``self._params.value(name)`` (reconfigure) or ``self._params.live[name]`` (live).
"""

import collections
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.parameter import Parameter
from rclpy.validate_topic_name import validate_topic_name

from tx2_inference.backends import BACKENDS, INPUTS_FROM, OUTPUTS_FROM, PRECISIONS
from tx2_inference.backends.triton_backend import is_secret_header
from tx2_inference.core.tiles import TileGrid
from tx2_inference.core.tracking import DEFAULT_APPEARANCE_GATE
from tx2_inference.errors import ConfigError
from tx2_inference.ros.silence import DEFAULT_MAX_FRAME_AGE_S, DEFAULT_SILENCE_TIMEOUT_S

try:  # rclpy of Galactic and newer; older ones return None for an unset parameter
    from rclpy.exceptions import ParameterUninitializedException
except ImportError:  # depends on the ROS distribution
    ParameterUninitializedException = LookupError

DEFAULT_MODEL = 'ssdlite_person.onnx'
TRITON_COMPRESSIONS = ('none', 'gzip', 'deflate')
DEFAULT_MAX_FRAME_PIXELS = 25000000  # above a 24 MP photo, 8K is 33 MP: raise it at launch
# Parameter kinds. These choose what the node loads, reads, runs or talks to: launch only
# (unless allow_remote_reconfigure). 'policy': a limit or permission, always launch only.
LAUNCH_KINDS = ('model', 'file', 'server', 'code', 'topic')
POLICY = 'policy'
TUNING = 'tuning'
ALLOW_REMOTE = 'allow_remote_reconfigure'
INPUT_TRANSPORTS = ('raw', 'compressed')

# Labels of the loaded model, or None while no model is loaded.
Labels = Optional[Sequence[str]]
# The detection parameters whose default is the model config's: parameter -> its key in the
# config's ``detection`` section (and in DetectionParams).
MODEL_DEFAULTS = collections.OrderedDict((
    ('score_threshold', 'score_threshold'), ('nms_iou_threshold', 'iou_threshold'),
    ('max_detections', 'max_detections'), ('class_agnostic_nms', 'class_agnostic_nms')))
USER_SET = 'parameter as set (overrides the model config)'


def default_model_path() -> str:
    """Return the bundled model: the package share's ``models/``, else the source tree's."""
    # What ament_index_python's get_package_share_directory does, without the dependency.
    for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        marker = os.path.join(prefix, 'share', 'ament_index', 'resource_index', 'packages',
                              'tx2_inference')
        if prefix and os.path.isfile(marker):
            candidate = os.path.join(prefix, 'share', 'tx2_inference', 'models', DEFAULT_MODEL)
            if os.path.isfile(candidate):
                return candidate
    source = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(source, 'models', DEFAULT_MODEL)


def camera_namespace(image_topic: str) -> str:
    """Return the namespace of an image topic: ``cam0/image_raw`` -> ``cam0``."""
    head = image_topic.rpartition('/')[0]
    return head if head else ('/' if image_topic.startswith('/') else '')


def check_topics(topics: Sequence[str]) -> str:
    """Return why a list of image topics is rejected, or ''."""
    if not topics:
        return 'image_topics is empty: give at least one camera topic, e.g. [image_raw].'
    for topic in topics:
        try:
            validate_topic_name(topic)
        except Exception as error:  # rclpy raises InvalidTopicNameException
            return 'image_topics: {!r} is not a valid topic name ({}).'.format(topic, error)
    if len(set(topics)) != len(topics):
        return 'image_topics lists a topic twice: {}.'.format(', '.join(topics))
    namespaces = [camera_namespace(topic) for topic in topics]
    if len(set(namespaces)) != len(namespaces):
        return ('image_topics {} share a namespace, so their detections topics would clash: '
                'put each camera under its own namespace (cam0/image_raw, cam1/image_raw).'
                .format(', '.join(topics)))
    return ''


def check_tiles(value: str) -> str:
    """Return why a ``tiles`` value is rejected, or ''."""
    try:
        TileGrid.parse(value)
    except ConfigError as error:
        return str(error)
    return ''


def check_tile_cameras(topics: Optional[Sequence[str]]) -> str:
    """Return why a ``tile_cameras`` list is rejected (not topic names), or ''."""
    for topic in topics or ():
        try:
            validate_topic_name(topic)
        except Exception as error:  # rclpy raises InvalidTopicNameException
            return 'tile_cameras: {!r} is not a valid topic name ({}).'.format(topic, error)
    return ''


def parse_headers(entries: Optional[Sequence[str]]) -> Dict[str, str]:
    """Return request headers from ``['name=value', ...]`` (``name: value`` works too).

    :raises ConfigError: an entry without a name and a value.
    """
    headers = {}
    for entry in entries or ():
        if not entry:
            continue
        name, sep, value = entry.partition('=') if '=' in entry else entry.partition(':')
        if not sep or not name.strip() or not value.strip():
            # Never echo the entry: it may hold a credential.
            shown = name.strip() if sep and name.strip() else '<{} characters>'.format(
                len(entry))
            raise ConfigError('a triton_headers entry ({}) is not name=value, e.g. '
                              "'x-request-source=robot1'.".format(shown))
        headers[name.strip().lower()] = value.strip()
    return headers


def read_secret_headers(path: str, env: str,
                        environ: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Return the credential headers of ``triton_auth_file`` and ``triton_auth_env``.

    The file holds ``name: value`` lines (``#`` comments, blank lines); it must be a regular
    file readable by its owner only when it holds a credential. ``env`` names a variable whose
    value is the ``authorization`` header's. Errors name the file, the line or the variable,
    never a value.

    :raises ConfigError: a missing, unreadable, group- or world-readable file, a bad line, or
        an unset variable.
    """
    headers = {}
    if path:
        path = os.path.expanduser(path)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, 'O_NOFOLLOW', 0))
        except OSError as error:
            raise ConfigError('triton_auth_file {!r} cannot be read ({}): give a file of '
                              "'name: value' lines, readable by the node's user.".format(
                                  path, error.strerror)) from error
        with os.fdopen(fd) as f:
            mode = os.fstat(f.fileno()).st_mode
            if mode & 0o077:
                raise ConfigError('triton_auth_file {!r} is readable by others (mode {:o}): '
                                  'chmod 600 it.'.format(path, mode & 0o777))
            lines = f.read().splitlines()
        for number, line in enumerate(lines, 1):
            text = line.strip()
            if not text or text.startswith('#'):
                continue
            name, sep, value = text.partition(':')
            if not sep or not name.strip() or not value.strip():
                raise ConfigError("triton_auth_file {!r} line {} is not 'name: value' (e.g. "
                                  "'authorization: Bearer <token>').".format(path, number))
            headers[name.strip().lower()] = value.strip()
    if env:
        value = (os.environ if environ is None else environ).get(env, '').strip()
        if not value:
            raise ConfigError('triton_auth_env names the environment variable {}, which is '
                              'unset or empty in the node process: export it before launch '
                              "(e.g. {}='Bearer <token>').".format(env, env))
        headers['authorization'] = value
    return headers


def _check_headers(entries: Optional[Sequence[str]], labels: Labels) -> str:
    try:
        headers = parse_headers(entries)
    except ConfigError as error:
        return str(error)
    secret = sorted(name for name in headers if is_secret_header(name))
    if secret:
        return ('triton_headers holds the credential header {}: any peer on the DDS domain '
                'reads parameter values (ros2 param get), so credentials are refused here. Put '
                "'{}: <value>' in a file only the node's user can read and name it in "
                'triton_auth_file, or put the value in an environment variable named by '
                'triton_auth_env.'.format(', '.join(secret), secret[0]))
    return ''


def check_class_allowlist(allowlist: Optional[Sequence[str]], labels: Labels) -> str:
    """Return why an allowlist is rejected (a label the loaded model lacks), or ''."""
    if not allowlist or labels is None:
        return ''
    unknown = [label for label in allowlist if label not in labels]
    if unknown:
        return 'class_allowlist names labels the model does not have: {}; its labels ' \
               'are: {}.'.format(', '.join(unknown), ', '.join(labels))
    return ''


def callers(node: Any, service: str) -> str:
    """Return the nodes holding a client of one of ``node``'s services, e.g. change_state.

    rclpy hands a service callback the request only, not who sent it; the graph names the
    nodes that could have (``ros2 node info`` shows the same). '?' when the graph cannot say.
    """
    target = node.get_fully_qualified_name().rstrip('/') + '/' + service
    found = []
    try:
        for name, namespace in node.get_node_names_and_namespaces():
            clients = node.get_client_names_and_types_by_node(name, namespace)
            if any(client == target for client, _types in clients):
                found.append(namespace.rstrip('/') + '/' + name)
    except Exception:  # noqa: B902 - the graph is best effort, the log line must not fail
        return '?'
    return ', '.join(sorted(found)) or 'none seen (a client that left, or a CLI call)'


class ParameterSpec(object):
    """
    One node parameter: default, description and rules.

    :param default: the value, a `Parameter.Type` for a parameter without a default, or a
        function returning the default when the node starts.
    :param reconfigure: True: settable only while unconfigured (read when configuring);
        False: live, applied to the next frame.
    :param choices: the accepted values of a string parameter.
    :param floating: (from, to) of a float parameter, enforced by rclpy.
    :param integer: (from, to) of an integer parameter, enforced by rclpy.
    :param check: ``check(value, labels) -> reason or ''`` for anything else (labels: the
        loaded model's, or None).
    :param kind: what the parameter chooses: one of `LAUNCH_KINDS` (a model, file, server,
        code or topic: launch only unless allow_remote_reconfigure), ``'policy'`` (a limit or
        permission: launch only) or ``'tuning'``. Omitted: a reconfigure parameter holding
        free text (a string or string list without choices) is a ``'file'``, anything else
        ``'tuning'``, so a new path, address or name parameter is launch only by default.
    """

    __slots__ = ('name', 'default', 'description', 'reconfigure', 'choices', 'floating',
                 'integer', 'check', 'kind')

    def __init__(self, name: str, default: Any, description: str, reconfigure: bool = False,
                 choices: Sequence[str] = (), floating: Optional[Tuple[float, float]] = None,
                 integer: Optional[Tuple[int, int]] = None,
                 check: Optional[Callable[[Any, Labels], str]] = None,
                 kind: Optional[str] = None) -> None:
        """Store the declaration."""
        self.name = name
        self.default = default
        self.description = description
        self.choices = tuple(choices)
        self.floating = floating
        self.integer = integer
        self.check = check
        if kind is None:
            kind = 'file' if reconfigure and _free_text(default) and not self.choices else TUNING
        if kind not in LAUNCH_KINDS + (POLICY, TUNING):
            raise ValueError('parameter {}: unknown kind {!r}'.format(name, kind))
        self.kind = kind
        # What only launch may set is read when configuring, like any reconfigure parameter.
        self.reconfigure = reconfigure or kind != TUNING

    @property
    def launch_only(self) -> bool:
        """Return whether only launch sets it (unless allow_remote_reconfigure, for non-policy)."""
        return self.kind != TUNING

    def default_value(self) -> Any:
        """Return the default to declare (a function's result, computed now)."""
        return self.default() if callable(self.default) else self.default

    def read_only(self, remote: bool = False) -> bool:
        """Return whether the descriptor is read-only (``remote``: allow_remote_reconfigure)."""
        return self.kind == POLICY or (self.launch_only and not remote)

    def descriptor(self, remote: bool = False) -> ParameterDescriptor:
        """Return the ParameterDescriptor; its ranges make rclpy reject out-of-range values.

        :param remote: the node's allow_remote_reconfigure (launch-only parameters of a kind
            other than policy are then settable while unconfigured).
        """
        constraints = []
        if self.choices:
            constraints.append('one of: ' + ', '.join(self.choices))
        if self.read_only(remote):
            constraints.append('read-only: set at launch (-p {}:=..., a params file){}'.format(
                self.name, '' if self.kind == POLICY else
                '; allow_remote_reconfigure:=true at launch makes it settable while unconfigured'))
        if self.reconfigure:
            constraints.append('read-only while configured: deactivate and clean up the node, '
                               'set it, then configure again')
        descriptor = ParameterDescriptor(description=self.description,
                                         additional_constraints='; '.join(constraints),
                                         read_only=self.read_only(remote))
        if self.floating is not None:
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=self.floating[0], to_value=self.floating[1], step=0.0)]
        if self.integer is not None:
            descriptor.integer_range = [IntegerRange(
                from_value=self.integer[0], to_value=self.integer[1], step=1)]
        return descriptor

    def reject(self, value: Any, labels: Labels = None) -> str:
        """Return why ``value`` is rejected (ranges aside: rclpy checks them), or ''."""
        if self.choices and value not in self.choices:
            return '{} {!r} is not one of {}.'.format(self.name, value, ', '.join(self.choices))
        if self.check is not None:
            return self.check(value, labels)
        return ''


def _free_text(default: Any) -> bool:
    """Return whether a default (or declared type) is a string or a list of strings."""
    if isinstance(default, Parameter.Type):
        return default in (Parameter.Type.STRING, Parameter.Type.STRING_ARRAY)
    if callable(default):
        return True  # a computed default: a path (model_path)
    return isinstance(default, str) or (
        isinstance(default, (list, tuple)) and all(isinstance(v, str) for v in default))


def _check_env_name(value: str, labels: Labels) -> str:
    if value and not value.replace('_', 'A').isalnum():
        return 'triton_auth_env {!r} is not an environment variable name.'.format(value)
    return ''


TABLE = (
    ParameterSpec(
        ALLOW_REMOTE, False,
        'Launch only. false (default): the parameters that choose the model, config, backend, '
        'engine cache, topics and Triton server are read-only, set at launch, so no peer on the '
        'DDS domain can re-point the node. true: they are settable while the node is '
        'unconfigured (ros2 param set), for a trusted or SROS2-secured domain.', kind=POLICY),
    ParameterSpec(
        'model_path', default_model_path,
        'Model file: a TensorRT .engine, an .onnx (TensorRT engine built and cached on a GPU, '
        "else ONNX Runtime) or a .tflite. Default and empty: the package share's models/" +
        DEFAULT_MODEL + '. backend triton: names the model (its .yaml beside it), the file '
        'need not exist here.', reconfigure=True, kind='model'),
    ParameterSpec(
        'model_config', '',
        'Model config YAML (input layout, decoder, labels). Empty: <model_path without '
        'extension>.yaml beside the model, else auto-detected.', reconfigure=True, kind='file'),
    ParameterSpec(
        'backend', 'auto',
        'Inference runtime. auto: TensorRT where a GPU and TensorRT are present, else ONNX '
        'Runtime (or TFLite for a .tflite); onnxruntime-cuda and onnxruntime-tensorrt: ONNX '
        'Runtime with that execution provider; triton: a Triton Inference Server runs the '
        'model (triton_* parameters).', reconfigure=True, choices=BACKENDS, kind='code'),
    ParameterSpec(
        'precision', 'auto',
        'TensorRT precision of an engine built from ONNX; CPU runtimes run the model as '
        'it is. auto: the best the GPU has (FP16 on a TX2 or Nano; INT8 on Xavier/Orin for a '
        'Q/DQ model); int8 on a GPU without INT8 fails at configure.', reconfigure=True,
        choices=PRECISIONS),
    ParameterSpec(
        'engine_cache_dir', '',
        "Folder for TensorRT engines built from ONNX. Empty: the detector's default cache.",
        reconfigure=True, kind='file'),
    ParameterSpec(
        'image_topics', ['image_raw'],
        'Camera image topics, one model for all. Each camera publishes <its namespace>/'
        'detections, <its namespace>/label_info and <its namespace>/debug_image, so put each '
        'under its own namespace (cam0/image_raw, cam1/image_raw).', reconfigure=True,
        check=lambda topics, labels: check_topics(topics), kind='topic'),
    ParameterSpec(
        'input_transport', 'raw',
        'raw: sensor_msgs/Image on each topic; compressed: sensor_msgs/CompressedImage (jpeg, '
        'png) on <topic>/compressed.', reconfigure=True, choices=INPUT_TRANSPORTS),
    ParameterSpec(
        'executor_depth', 2,
        'Frames in flight (slots with their own buffers and stream); when all are busy a '
        "camera's newer frame replaces its own waiting one.", reconfigure=True, integer=(1, 8)),
    ParameterSpec(
        'batch_size', 1,
        'Frames per inference: up to one frame per camera runs through the model in one call. '
        '1: one frame per inference. Above 1 the model needs a batch dimension (tx2-convert '
        'onnx --batch N).', reconfigure=True, integer=(1, 16)),
    ParameterSpec(
        'batch_timeout_ms', 10.0,
        'With batch_size > 1: a batch runs when it holds a frame from every camera that '
        'published in the last second, or this long after its first frame; applies to the '
        'next batch.', floating=(0.0, 1000.0)),
    ParameterSpec(
        'tiles', '',
        "Tiled inference for small objects: COLUMNSxROWS overlapping tiles of each camera's "
        "frame (e.g. '3x3'), each a row of one batched inference where the model batches "
        '(tx2-convert onnx --batch dynamic), else run one after another; detections merged '
        "per frame. Empty: the whole frame, once. Costs up to one inference per tile.",
        reconfigure=True, check=lambda value, labels: check_tiles(value),
        kind=TUNING),  # a checked grid, not a path: settable while unconfigured
    ParameterSpec(  # no default: unset means every camera
        'tile_cameras', Parameter.Type.STRING_ARRAY,
        'With tiles: the image topics (of image_topics) to tile, e.g. [cam0/image_raw] for a '
        "long-range camera; the others' frames run whole. Unset or empty: every camera.",
        reconfigure=True, check=lambda topics, labels: check_tile_cameras(topics),
        kind=TUNING),  # a subset of the launch's image_topics: subscribes to nothing new
    ParameterSpec(
        'tile_overlap', 0.25,
        'With tiles: the fraction of a tile shared with its neighbour (an object up to this '
        'much of a tile wide is whole in one tile).', reconfigure=True, floating=(0.0, 0.9)),
    ParameterSpec(
        'tile_whole_frame', False,
        'With tiles: also run the whole frame (one more inference), for objects too big for '
        'a tile.', reconfigure=True),
    ParameterSpec(
        'cpu_threads', 0,
        "Threads per CPU inference (ONNX Runtime, TFLite); 0: the runtime's default.",
        reconfigure=True, integer=(0, 64)),
    ParameterSpec(
        'ort_spinning', False,
        'ONNX Runtime: let the intra-op pool threads spin between the parallel parts of a run '
        '(session.intra_op.allow_spinning), as a plain InferenceSession does, but only while '
        'a run is in progress (session.force_spinning_stop). Faster runs when the cores are '
        'otherwise idle; more CPU, and slower on a busy machine (docs/BENCHMARKS.md). The '
        'thread count is cpu_threads.', reconfigure=True),
    ParameterSpec(
        'ort_spin_us', 50,
        'ONNX Runtime 1.26+, with ort_spinning false: its pool threads spin up to this many '
        'microseconds before they sleep (session.intra_op.spin_duration_us), only while a '
        'run is in progress; 0: they sleep at once. Older ONNX Runtime: they sleep at once '
        '(docs/BENCHMARKS.md, issue 23).', reconfigure=True, integer=(0, 10000)),
    ParameterSpec(
        'trt_outputs_from', 'pinned',
        'TensorRT: where the decoder reads the outputs. pinned: straight from the pinned '
        "buffers the GPU copied them into; copy: from a CPU-cached copy (on a TX2 pinned memory "
        "is not cached by the CPU: compare the executor's decode_ms with each).",
        reconfigure=True, choices=OUTPUTS_FROM),
    ParameterSpec(
        'trt_inputs_from', 'pinned',
        'TensorRT: where the pre-processor writes the inputs. pinned: straight into the pinned '
        'buffers the GPU copies from; copy: into a CPU-cached array, copied into them at '
        "launch (on a TX2 pinned memory is not cached by the CPU: compare the executor's "
        'prepare_ms with each).', reconfigure=True, choices=INPUTS_FROM),
    ParameterSpec(
        'triton_url', 'localhost:8001',
        "backend triton: host:port of the server's gRPC endpoint (Triton: 8001); grpcs:// "
        'for TLS.', reconfigure=True, kind='server'),
    ParameterSpec(
        'triton_model', '',
        "backend triton: the model's name on the server. Empty: model_path's file name "
        'without its extension.', reconfigure=True, kind='server'),
    ParameterSpec(
        'triton_model_version', '',
        'backend triton: the model version to run. Empty: the server chooses.',
        reconfigure=True, kind='server'),
    ParameterSpec(
        'triton_timeout_s', 1.0,
        'backend triton: the most one request may take; a later answer is dropped and the '
        'frame counted (triton_timeout_error).', reconfigure=True, floating=(0.01, 600.0),
        kind='server'),
    ParameterSpec(
        'triton_root_cert', '',
        "backend triton: PEM file of the CA that signed the server's certificate; set it for "
        'TLS. Empty: plain text (or the system CAs with grpcs://).', reconfigure=True,
        kind='file'),
    ParameterSpec(
        'triton_client_cert', '',
        'backend triton: PEM client certificate for mutual TLS (with triton_client_key).',
        reconfigure=True, kind='file'),
    ParameterSpec(
        'triton_client_key', '',
        'backend triton: PEM private key of triton_client_cert.', reconfigure=True,
        kind='file'),
    ParameterSpec(
        'triton_headers', Parameter.Type.STRING_ARRAY,
        "backend triton: extra request headers as name=value, e.g. ['x-request-source=robot1']. "
        'No credentials: any peer reads parameters (authorization, cookies, tokens and keys '
        'are refused here; use triton_auth_file or triton_auth_env).', reconfigure=True,
        check=_check_headers, kind='server'),
    ParameterSpec(
        'triton_auth_file', '',
        "backend triton: a file of credential headers, one 'name: value' a line (e.g. "
        "'authorization: Bearer <token>'), readable by the node's user only (mode 600). Read "
        'at configure; the values never appear in a parameter, log or error.', kind='file'),
    ParameterSpec(
        'triton_auth_env', '',
        'backend triton: the name of an environment variable of the node process holding the '
        "authorization header's value (e.g. TRITON_AUTH='Bearer <token>'). Read at configure.",
        check=_check_env_name, kind='file'),
    ParameterSpec(
        'triton_allow_plaintext_auth', False,
        'Launch only. backend triton: send credentials (triton_auth_*) over a plain-text '
        'channel to a host other than loopback. false: refused at configure, use grpcs:// or '
        'triton_root_cert.', kind=POLICY),
    ParameterSpec(
        'triton_compression', 'none',
        'backend triton: compression of the requests.', reconfigure=True,
        choices=TRITON_COMPRESSIONS, kind='server'),
    ParameterSpec(
        'max_frame_pixels', DEFAULT_MAX_FRAME_PIXELS,
        'Launch only. Largest frame (width x height) the node converts: a larger one, raw or '
        'compressed (read from its PNG/JPEG header before decoding), is dropped and counted '
        '(bad_frame_too_large). Keeps a small compressed frame from taking the memory of a '
        'huge one.', integer=(1, 2**31 - 1), kind=POLICY),
    ParameterSpec(
        'decoder_modules', Parameter.Type.STRING_ARRAY,
        'Launch only. Python modules a model config may name as decoder.module, besides the '
        'installed tx2_inference.decoders entry points (and TX2_INFERENCE_DECODER_MODULES, '
        'comma-separated). Unset: entry points only.', kind='code'),
    ParameterSpec(
        'warmup', True,
        'Run one inference on a synthetic frame in every executor slot at configure, so the '
        "first camera frame does not pay the runtime's first-inference cost.", reconfigure=True),
    # The detection parameters have no default: unset, the model config's detection section
    # gives the model's own default (else DETECTION_DEFAULTS); set, they override it.
    ParameterSpec(
        'score_threshold', Parameter.Type.DOUBLE,
        "Minimum score of a published detection; applies to the next frame. Unset: the model "
        "config's detection.score_threshold, else 0.5.", floating=(0.0, 1.0)),
    ParameterSpec(
        'nms_iou_threshold', Parameter.Type.DOUBLE,
        'Non-maximum suppression: a box overlapping a better box of its class (of any class '
        'with class_agnostic_nms) by more than this IoU is dropped; applies to the next frame. '
        "Unset: the model config's detection.iou_threshold, else 0.45.", floating=(0.0, 1.0)),
    ParameterSpec(
        'max_detections', Parameter.Type.INTEGER,
        "Most detections per frame, best first; applies to the next frame. Unset: the model "
        "config's detection.max_detections, else 100.", integer=(1, 10000)),
    ParameterSpec(
        'class_agnostic_nms', Parameter.Type.BOOL,
        'true: NMS across classes (one object reported as "car 0.55" and "truck 0.32" keeps '
        "only the car); false: per class. Applies to the next frame. Unset: the model config's "
        'detection.class_agnostic_nms, else false.'),
    ParameterSpec(  # no default: unset means every class
        'class_allowlist', Parameter.Type.STRING_ARRAY,
        'Labels to publish (names from the model config); unset or empty: every class. '
        'Applies to the next frame.', check=check_class_allowlist),
    ParameterSpec(
        'publish_debug_image', True,
        'Publish <camera namespace>/debug_image with boxes and labels drawn; drawn only '
        'while someone subscribes. Applies to the next frame.'),
    ParameterSpec(
        'silence_timeout_s', DEFAULT_SILENCE_TIMEOUT_S,
        'Seconds with publishers on a camera topic but no frame before the node warns (log '
        'and /diagnostics): a quiet camera, or frames the DDS drops (lost samples counted '
        'within this window name the DDS at once).',
        floating=(0.5, 3600.0)),
    ParameterSpec(
        'max_frame_age_s', DEFAULT_MAX_FRAME_AGE_S,
        'A frame whose header stamp is older than this when it arrives makes the node warn '
        'of clock skew or a stalled camera driver.', floating=(0.0, 3600.0)),
    # Tracking (core/tracking.py): per camera, over the decoded detections of each frame.
    ParameterSpec(
        'tracking', False,
        'Track objects per camera and put the ID of each track in Detection2D.id (ByteTrack: '
        'high-score boxes matched first, then boxes from tracking_low_threshold up to '
        'score_threshold, which continue a track but never start one and are published only '
        'when they do). Applies to the next frame; switched on, tracks start anew.'),
    ParameterSpec(
        'tracking_low_threshold', 0.1,
        'Tracking: the least score of a detection that may continue a track (partly hidden '
        'people); at or above score_threshold the second stage is off. Applies to the next '
        'frame.', floating=(0.0, 1.0)),
    ParameterSpec(
        'tracking_iou_gate', 0.2,
        "Tracking: the least IoU of a detection with a track's predicted box for them to match "
        '(the low-score stage uses at least 0.5). Applies to the next frame.',
        floating=(0.0, 1.0)),
    ParameterSpec(
        'tracking_lost_s', 1.0,
        'Tracking: seconds (of image stamps) a track unseen is kept and can take its ID back; '
        'then it ends. Applies to the next frame.', floating=(0.0, 60.0)),
    ParameterSpec(
        'tracking_appearance_gate', DEFAULT_APPEARANCE_GATE,
        'Tracking: the largest colour distance (Bhattacharyya, 0-1) between a box and the track '
        'it continues; two people who overlap then keep their own IDs rather than swap them. '
        '1.0: motion only. Applies to the next frame.', floating=(0.0, 1.0)),
)

PARAMETERS = collections.OrderedDict((spec.name, spec) for spec in TABLE)
# Parameters whose rejected values are never quoted (they may hold a credential).
REDACTED = ('triton_headers',)
# Parameters only launch sets (read-only descriptors unless allow_remote_reconfigure).
LAUNCH_ONLY = tuple(spec.name for spec in TABLE if spec.launch_only)
# Parameters that need a reconfigure: settable only while unconfigured.
RECONFIGURE = tuple(spec.name for spec in TABLE if spec.reconfigure)
# Parameters applied to the next frame.
LIVE = tuple(spec.name for spec in TABLE if not spec.reconfigure)


class NodeParameters(object):
    """
    A node's parameters from `TABLE`: declared, checked when set, live values kept current.

    A value given at startup (command line, params file) that is rejected does not stop the
    node: the default is declared instead and the rejection kept, so configure fails naming
    it until the parameter is set again (or, launch only, the node is restarted with a valid
    value). Launch-only parameters are declared read-only unless ``allow_remote_reconfigure``
    was given at launch; every value set from outside after startup is logged with the nodes
    that hold a set_parameters client for this node (rclpy does not name a service's caller).

    :param node: the node to declare the parameters on (its callbacks are registered first,
        so startup values are checked too).
    :param is_configured: returns whether reconfigure parameters are read-only now.
    :param labels: returns the loaded model's labels, or None.
    :param on_live_change: called with the names of live parameters that changed, after
        `live` holds their new values.
    """

    def __init__(self, node: Any, is_configured: Callable[[], bool],
                 labels: Callable[[], Labels],
                 on_live_change: Callable[[List[str]], None]) -> None:
        """Register the set-parameter callbacks, then declare every parameter."""
        self._node = node
        self._is_configured = is_configured
        self._labels = labels
        self._on_live_change = on_live_change
        self._declaring = True
        self.remote = False  # allow_remote_reconfigure, read below
        self.startup_errors: Dict[str, str] = {}
        self.live: Dict[str, Any] = {}
        # Detection parameters whose value the node wrote from the model config, and where
        # each value in force came from (see show_model_defaults).
        self._from_model: Dict[str, Any] = {}
        self._writing_defaults = False
        self._undescribed: Set[str] = set()
        self.sources: Dict[str, str] = {}
        node.add_on_set_parameters_callback(self._validate)
        if hasattr(node, 'add_post_set_parameters_callback'):
            node.add_post_set_parameters_callback(self._apply)
        if hasattr(node, 'add_pre_set_parameters_callback'):  # rclpy of Iron and newer
            node.add_pre_set_parameters_callback(self._audit)
        # The policy first: it decides whether the launch-only parameters are read-only.
        self._declare(PARAMETERS[ALLOW_REMOTE], False)
        self.remote = bool(self.value(ALLOW_REMOTE))
        for spec in TABLE:
            if spec.name != ALLOW_REMOTE:
                self._declare(spec, self.remote)
        for name in LIVE:
            self.live[name] = self.value(name)
        self._declaring = False
        if self.remote:
            node.get_logger().warning(
                'allow_remote_reconfigure is true: any peer on the DDS domain may change the '
                'model, config, backend, topics and server while the node is unconfigured. '
                'Use it only on a trusted or SROS2-secured domain (README "Security").')

    def _declare(self, spec: ParameterSpec, remote: bool) -> None:
        """Declare a parameter; a bad startup value falls back to the default, and is kept."""
        default, descriptor = spec.default_value(), spec.descriptor(remote)
        try:
            self._node.declare_parameter(spec.name, default, descriptor)
        except (InvalidParameterTypeException, InvalidParameterValueException) as error:
            # Never die on a bad parameter: configure fails, naming it, until it is set again.
            self._node.declare_parameter(spec.name, default, descriptor, ignore_override=True)
            text = str(error)
            if spec.name in REDACTED:  # rclpy's message quotes the value: it may be a secret
                text = text.split('Reason: ', 1)[1] if 'Reason: ' in text else \
                    'a value of the wrong type (value not shown)'
            self.startup_errors[spec.name] = text
            fix = ('restart the node with a valid value (-p {}:=<value> or the params '
                   'file)'.format(spec.name) if spec.read_only(remote) else
                   'set it to a valid value (ros2 param set {} {} <value>)'.format(
                       self._node.get_fully_qualified_name(), spec.name))
            self._node.get_logger().error(
                'parameter {} was rejected at startup ({}); configure will fail until you '
                '{}'.format(spec.name, text, fix))

    def value(self, name: str) -> Any:
        """Return a parameter's value; None for an unset one (class_allowlist)."""
        try:
            return self._node.get_parameter(name).value
        except ParameterUninitializedException:
            return None

    def check(self, name: str, value: Any) -> str:
        """Return why a value is rejected now, or '' when it is accepted."""
        spec = PARAMETERS.get(name)
        if spec is None:  # not ours (e.g. qos_overrides, use_sim_time)
            return ''
        if spec.reconfigure and self._is_configured():
            return ('{} is read-only while the node is configured: deactivate and clean up '
                    'the node, set {}, then configure again.'.format(name, name))
        return spec.reject(value, self._labels())

    def check_startup(self) -> None:
        """Raise ConfigError naming the startup values that were rejected, if any."""
        if self.startup_errors:
            raise ConfigError('parameters rejected at startup: {}. Set each to a valid value '
                              '(ros2 param set {} <name> <value>, or at launch for a '
                              'read-only one) and configure again.'.format(
                                  '; '.join('{} ({})'.format(k, v) for k, v in
                                            sorted(self.startup_errors.items())),
                                  self._node.get_fully_qualified_name()))

    def backend_options(self) -> Dict[str, Any]:
        """Return the backend's keyword arguments: the triton_* parameters for triton."""
        if self.value('backend') != 'triton':
            return {'outputs_from': self.value('trt_outputs_from'),
                    'inputs_from': self.value('trt_inputs_from')}

        def path(name: str) -> Optional[str]:
            value = self.value(name)
            return os.path.expanduser(value) if value else None
        return {'url': self.value('triton_url'), 'model_name': self.value('triton_model') or None,
                'model_version': self.value('triton_model_version'),
                'timeout_s': self.value('triton_timeout_s'),
                'root_cert': path('triton_root_cert'), 'client_cert': path('triton_client_cert'),
                'client_key': path('triton_client_key'),
                'headers': dict(parse_headers(self.value('triton_headers')),
                                **read_secret_headers(self.value('triton_auth_file'),
                                                      self.value('triton_auth_env'))),
                'compression': self.value('triton_compression'),
                'allow_plaintext_auth': bool(self.value('triton_allow_plaintext_auth'))}

    def detection_params(self, config: Any) -> Any:
        """Return the DetectionParams: the model config's defaults, then the parameters set.

        :param config: the loaded model's ModelConfig (its ``detection`` section).
        """
        allowlist = self.live.get('class_allowlist') or None
        return config.detection_params(score_threshold=self.live['score_threshold'],
                                       iou_threshold=self.live['nms_iou_threshold'],
                                       max_detections=self.live['max_detections'],
                                       class_agnostic_nms=self.live['class_agnostic_nms'],
                                       class_allowlist=list(allowlist) if allowlist else None)

    def show_model_defaults(self, config: Any) -> Dict[str, str]:
        """Write the model config's detection defaults into the parameters nobody set.

        ``ros2 param get`` then shows the value in force, not "Parameter not set". A value set
        by the user (command line, params file, ``ros2 param set``) stays and wins; a value
        written here is replaced by the next model's at the next configure, as the model's
        default it is. ``ros2 param describe`` and /diagnostics say where each came from.

        :param config: the loaded model's ModelConfig (its ``detection`` section and path).
        :returns: parameter -> where its value in force came from (also in ``sources``).
        """
        effective = config.detection_params()
        where = config.path or 'the model config'
        updates = []
        for name, key in MODEL_DEFAULTS.items():
            current = self.value(name)
            if current is not None and self._from_model.get(name, object()) != current:
                self._from_model.pop(name, None)
                self.sources[name] = USER_SET
                continue
            value = getattr(effective, key)
            value = bool(value) if name == 'class_agnostic_nms' else (
                int(value) if name == 'max_detections' else float(value))
            self.sources[name] = ('model config {}: detection.{}'.format(where, key)
                                  if key in config.detection else
                                  'built-in default (the model config {} has no detection.{})'
                                  .format(where, key))
            self._from_model[name] = value
            updates.append(Parameter(name, value=value))
        self._writing_defaults = True
        try:
            results = self._node.set_parameters(updates) if updates else []
        finally:
            self._writing_defaults = False
        for parameter, result in zip(updates, results):
            if not result.successful:  # e.g. a config value outside the parameter's range
                self._from_model.pop(parameter.name, None)
                self.sources[parameter.name] = 'model config (not shown: {})'.format(
                    result.reason)
        self._undescribed.update(MODEL_DEFAULTS)
        self.describe_sources()
        return dict(self.sources)

    def describe_sources(self) -> None:
        """Say in each changed detection parameter's description where its value came from.

        Called after configure and from the node's timer, never inside a parameter callback
        (``set_descriptor`` runs the set-parameter callbacks itself).
        """
        names, self._undescribed = [n for n in MODEL_DEFAULTS if n in self._undescribed], set()
        for name in names:
            if not hasattr(self._node, 'set_descriptor') or name not in self.sources:
                continue
            descriptor = PARAMETERS[name].descriptor()
            descriptor.description += ' In force now: from the {}.'.format(self.sources[name])
            self._writing_defaults = True
            try:
                descriptor.type = self._node.get_parameter(name).type_.value
                self._node.set_descriptor(name, descriptor)
            except Exception as error:  # informative only: never stop the node for it
                self._node.get_logger().warning('describing {} failed: {}'.format(name, error))
            finally:
                self._writing_defaults = False

    def _audit(self, parameters: List[Parameter]) -> List[Parameter]:
        """Pre-set callback: log an attempt to set a read-only parameter (rclpy refuses it)."""
        refused = [p.name for p in parameters if p.name in PARAMETERS and
                   PARAMETERS[p.name].read_only(self.remote)]
        if refused and not self._declaring:
            self._node.get_logger().warning(
                'refused a request to set the launch-only parameter(s) {} (set_parameters '
                'clients: {})'.format(', '.join(refused),
                                      callers(self._node, 'set_parameters')))
        return parameters

    def _validate(self, parameters: List[Parameter]) -> SetParametersResult:
        """On-set callback: accept or reject each value with a reason (no side effects)."""
        for parameter in parameters:
            reason = self.check(parameter.name, parameter.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        if not hasattr(self._node, 'add_post_set_parameters_callback'):
            self._apply(parameters)  # rclpy before Iron: no post-set callbacks
        return SetParametersResult(successful=True)

    def _apply(self, parameters: List[Parameter]) -> None:
        """Post-set callback: keep live values and tell the node which changed."""
        changed = []
        outside = not (self._declaring or self._writing_defaults)
        if outside and any(p.name in PARAMETERS for p in parameters):
            self._node.get_logger().info('parameters set from outside: {} (set_parameters '
                                         'clients: {})'.format(
                                             ', '.join('{}={!r}'.format(p.name, p.value)
                                                       for p in parameters),
                                             callers(self._node, 'set_parameters')))
        for parameter in parameters:
            self.startup_errors.pop(parameter.name, None)
            if not self._writing_defaults and parameter.name in MODEL_DEFAULTS:
                self._from_model.pop(parameter.name, None)
                self.sources[parameter.name] = USER_SET
                self._undescribed.add(parameter.name)
            if parameter.name in LIVE:
                self.live[parameter.name] = parameter.value
                changed.append(parameter.name)
        if changed:
            self._on_live_change(changed)
