"""A remote backend: the model runs on an NVIDIA Triton Inference Server (KServe V2 gRPC).

The node pre-processes and decodes here, as for a local model (same model config, same
decoders); only the inference goes over the network, through ``tritonclient.grpc``'s
asynchronous requests. Each slot owns one request at a time, so the executor's double
buffering, newest-frame-wins and bounded latency behave as with a local runtime.

At open: the server is reached (``BackendUnavailableError`` naming the URL and the fix when
not), the model must be ready, and its metadata gives the inputs and outputs the model config
is checked against. While running, failures are the network's normal state: a failed request
raises ``RemoteInferenceError`` from ``wait`` with a ``reason`` (``triton_unavailable_error``,
``triton_timeout_error``, ``triton_error``) that the node counts frames by; the gRPC channel
reconnects by itself with a bounded back-off, and the next request that succeeds restores the
backend (``health()`` says which state it is in, for ``/diagnostics``). A request past
``timeout_s`` is cancelled by its gRPC deadline, never left to pile up.
"""

import ipaddress
import logging
import os
import string
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from tx2_inference.backends.base import Backend, concrete_shape, Slot, TensorInfo
from tx2_inference.errors import BackendUnavailableError, ConfigError, ModelError

_LOG = logging.getLogger(__name__)

# KServe V2 datatypes -> numpy.
_DTYPES = {
    'FP32': np.float32, 'FP16': np.float16, 'FP64': np.float64, 'UINT8': np.uint8,
    'INT8': np.int8, 'UINT16': np.uint16, 'INT16': np.int16, 'INT32': np.int32,
    'INT64': np.int64, 'BOOL': np.bool_,
}
_NP_TO_TRITON = {np.dtype(v): k for k, v in _DTYPES.items()}

COMPRESSIONS = ('none', 'gzip', 'deflate')
DEFAULT_URL = 'localhost:8001'
_SERVER_COMMAND = ('docker run --gpus all -p8000:8000 -p8001:8001 -p8002:8002 -v '
                   '$PWD/model_repository:/models nvcr.io/nvidia/tritonserver:<yy.mm>-py3 '
                   'tritonserver --model-repository=/models')

# Frame failure reasons (``RemoteInferenceError.reason``); the node counts frames by them.
UNAVAILABLE = 'triton_unavailable_error'
TIMEOUT = 'triton_timeout_error'
FAILED = 'triton_error'

# The largest answer received while opening (metadata); after it, `receive_limit` of the
# model's outputs. gRPC's own default is 4 MiB; tritonclient's is 2 GiB.
MAX_RECEIVE_BYTES = 64 << 20

# How often, at most, the backend logs that the server is still unreachable.
WARN_PERIOD_S = 10.0


class RemoteInferenceError(RuntimeError):
    """A request to the server failed; ``reason`` says how (see the module docstring)."""

    def __init__(self, reason: str, message: str) -> None:
        """Keep ``reason`` (for counting) beside the message."""
        super(RemoteInferenceError, self).__init__(message)
        self.reason = reason


def import_tritonclient() -> Any:
    """Import ``tritonclient.grpc``; BackendUnavailableError saying how to install it."""
    try:
        import tritonclient.grpc as grpcclient
    except ImportError as error:
        raise BackendUnavailableError(
            'the triton backend needs tritonclient with gRPC ({}): pip install '
            "'tritonclient[grpc]', or choose another backend".format(error)) from error
    return grpcclient


def parse_url(url: str) -> tuple:
    """Return ``(host:port, tls)`` from ``host:port``, ``grpc://host:port`` or ``grpcs://...``.

    The host is a DNS name, an IPv4 address or a bracketed IPv6 address; the port 1 to 65535.
    A typo such as ``grpcs:/host:1`` or ``grpcs//host:1`` is refused, not taken as a host name.

    :raises ConfigError: an HTTP URL, no port, or a malformed address.
    """
    text = (url or '').strip()
    tls = False
    for scheme, secure in (('grpc://', False), ('grpcs://', True)):
        if text.lower().startswith(scheme):
            text, tls = text[len(scheme):], secure
    if '://' in text:
        raise ConfigError(
            'triton url {!r}: the triton backend speaks gRPC; give host:port of the '
            "server's gRPC endpoint (Triton's default port is 8001, e.g. "
            "'gpu-server:8001'), without http://".format(url))
    text = text.rstrip('/')
    host, _, port = text.rpartition(':')
    if not host or not port.isdigit():
        raise ConfigError("triton url {!r} has no port: write host:port, e.g. 'gpu-server:"
                          "8001' (Triton's gRPC port)".format(url))
    if not _valid_host(host) or not 0 < int(port) < 65536:
        raise ConfigError("triton url {!r} is malformed: write host:port, grpc://host:port or "
                          "grpcs://host:port (TLS), e.g. 'grpcs://gpu-server:8001'; the host is "
                          'a name, an IPv4 address or [an IPv6 address]'.format(url))
    return text, tls


_HOST_CHARACTERS = frozenset(string.ascii_letters + string.digits + '-_')
# Header names whose values are credentials: never from a parameter value, never in plain text
# to another host, never in a message.
SECRET_HEADERS = ('authorization', 'proxy-authorization', 'cookie', 'x-api-key', 'api-key')


def is_secret_header(name: str) -> bool:
    """Return whether a header's value is a credential (authorization, cookie, token, key)."""
    name = name.strip().lower()
    return name in SECRET_HEADERS or any(w in name for w in ('token', 'secret', 'key', 'auth'))


def _valid_host(host: str) -> bool:
    """Return whether ``host`` is a DNS name, an IPv4 address or a bracketed IPv6 address."""
    if host.startswith('[') and host.endswith(']'):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
        return True
    labels = host.split('.')
    return len(host) <= 253 and all(
        label and len(label) <= 63 and not label.startswith('-') and not label.endswith('-') and
        all(c in _HOST_CHARACTERS for c in label) for label in labels)


def is_loopback(address: str) -> bool:
    """Return whether ``host:port`` names this machine (localhost, 127.0.0.0/8, ::1)."""
    host = address.rpartition(':')[0].strip('[]').lower()
    if host == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def receive_limit(outputs: Sequence[TensorInfo]) -> int:
    """Return the gRPC receive limit for answers of ``outputs``: 4x their size, 1 MiB at least.

    A dynamic dimension (-1) counts as 1 for the batch (one frame a request) and 4096 elsewhere.
    """
    total = 0
    for info in outputs:
        dims = list(info.shape)
        count = 1
        for index, dim in enumerate(dims):
            count *= int(dim) if int(dim) > 0 else (1 if index == 0 else 4096)
        total += count * np.dtype(info.dtype).itemsize
    return int(min(MAX_RECEIVE_BYTES, max(1 << 20, 4 * total + 65536)))


def _shape_fits(shape: Sequence[int], declared: Sequence[int]) -> bool:
    """Return whether an answer's shape is the metadata's (its -1 dimensions match any size)."""
    return len(shape) == len(declared) and all(
        int(d) < 0 or int(d) == int(s) for s, d in zip(shape, declared))


def _status(error: BaseException) -> str:
    """Return the gRPC status of a tritonclient error ('' when it has none)."""
    status = getattr(error, 'status', None)
    try:
        return str(status() if callable(status) else status or '')
    except Exception:  # a status we cannot read is no status
        return ''


def _message(error: BaseException) -> str:
    message = getattr(error, 'message', None)
    try:
        text = message() if callable(message) else str(error)
    except Exception:
        text = str(error)
    return ' '.join(str(text or error or type(error).__name__).split())


def classify(error: BaseException) -> str:
    """Return the failure reason of a request error (``UNAVAILABLE``, ``TIMEOUT``, ``FAILED``)."""
    status = _status(error)
    if status.endswith('UNAVAILABLE'):
        return UNAVAILABLE
    if status.endswith('DEADLINE_EXCEEDED'):
        return TIMEOUT
    return FAILED


class _Request(object):
    """A slot's request: its tritonclient inputs and outputs, and the outcome of the last one."""

    __slots__ = ('infer_inputs', 'requested', 'done', 'result', 'error', 'started', 'elapsed_ms',
                 'call', 'callback')

    def __init__(self, infer_inputs: List[Any], requested: List[Any]) -> None:
        self.infer_inputs = infer_inputs
        self.requested = requested
        self.done = threading.Event()
        self.done.set()
        self.result = None  # type: Any
        self.error = None  # type: Optional[BaseException]
        self.started = 0.0
        self.elapsed_ms = float('nan')
        self.call = None  # type: Any

        def callback(result: Any, error: Any) -> None:  # gRPC's thread
            self.elapsed_ms = (time.perf_counter() - self.started) * 1e3
            self.result, self.error = result, error
            self.done.set()
        self.callback = callback


class TritonBackend(Backend):
    """Run a model on a Triton Inference Server (or any KServe V2 gRPC server).

    :param model_path: the local name of the model: its ``.yaml`` model config is found beside
        it (the model file itself need not exist here). The server's model name defaults to
        this file's name without its extension.
    :param url: ``host:port`` of the server's gRPC endpoint (``grpcs://`` for TLS).
    :param model_name: the model's name on the server (default: from ``model_path``).
    :param model_version: the version to run; '' lets the server choose (its policy).
    :param timeout_s: the most one request may take; later, it is cancelled and its frame is
        counted (``triton_timeout_error``). Also the limit of each call at open.
    :param root_cert: PEM file of the CA that signed the server's certificate; setting it (or
        ``client_cert``) switches to TLS.
    :param client_cert: PEM certificate chain for mutual TLS (with ``client_key``).
    :param client_key: PEM private key of ``client_cert``.
    :param headers: extra request metadata, e.g. ``{'authorization': 'Bearer <token>'}``.
        A credential header (``is_secret_header``) goes only over TLS or to a loopback host.
    :param compression: ``none``, ``gzip`` or ``deflate`` (of the requests).
    :param allow_plaintext_auth: send credential headers over plain text to another host.
    :param reconnect_max_s: the longest back-off between two reconnection attempts of the
        gRPC channel while the server is away.
    """

    name = 'triton'

    def __init__(self, model_path: str, url: str = DEFAULT_URL,
                 model_name: Optional[str] = None, model_version: str = '',
                 timeout_s: float = 1.0, root_cert: Optional[str] = None,
                 client_cert: Optional[str] = None, client_key: Optional[str] = None,
                 headers: Optional[Dict[str, str]] = None, compression: Optional[str] = None,
                 reconnect_max_s: float = 2.0, allow_plaintext_auth: bool = False) -> None:
        """Connect, check the model is ready and read its inputs and outputs."""
        super(TritonBackend, self).__init__(model_path)
        self.precision = 'server'
        self.url, tls = parse_url(url)
        self.model_name = model_name or os.path.splitext(os.path.basename(model_path))[0]
        self.model_version = str(model_version or '')
        if not self.model_name:
            raise ConfigError('no Triton model name: set triton_model (the name of the model '
                              "in the server's repository) or model_path")
        if not float(timeout_s) > 0:
            raise ConfigError('triton timeout {!r} s must be above 0'.format(timeout_s))
        self.timeout_s = float(timeout_s)
        compression = (compression or 'none').lower()
        if compression not in COMPRESSIONS:
            raise ConfigError('triton compression {!r} is not one of {}'.format(
                compression, ', '.join(COMPRESSIONS)))
        self.compression = None if compression == 'none' else compression
        self.headers = {str(k).strip().lower(): str(v).strip()
                        for k, v in (headers or {}).items()} or None
        for label, path in (('root certificate', root_cert),
                            ('client certificate', client_cert), ('client key', client_key)):
            if path and not os.path.isfile(path):
                raise ConfigError('triton TLS {} {!r} does not exist: give the path of the PEM '
                                  'file'.format(label, path))
        if bool(client_cert) != bool(client_key):
            raise ConfigError('triton TLS: a client certificate and its key go together; set '
                              'both, or neither')
        self.tls = bool(tls or root_cert or client_cert)
        secret = sorted(name for name in self.headers or () if is_secret_header(name))
        if secret and not self.tls and not is_loopback(self.url) and not allow_plaintext_auth:
            # Name the header, never its value.
            raise ConfigError(
                'triton: the credential header {} would travel in plain text to {}: use TLS '
                '(grpcs://{} or triton_root_cert), or, on a network you trust, set '
                'triton_allow_plaintext_auth:=true at launch'.format(
                    ', '.join(secret), self.url, self.url))
        grpcclient = import_tritonclient()
        self._grpcclient = grpcclient
        self._send_lock = threading.Lock()  # tritonclient's async_infer is not thread-safe
        self._health_lock = threading.Lock()
        self._state = 'ok'
        self._last_error = ''
        self._down_since = 0.0
        self._last_warning = 0.0
        self._errors = {UNAVAILABLE: 0, TIMEOUT: 0, FAILED: 0}
        self._requests = 0
        self._recoveries = 0
        millis = int(max(reconnect_max_s, 0.1) * 1e3)
        # Every channel argument tritonclient would set, plus a bounded reconnect back-off
        # (gRPC's default grows to 120 s: a server back after a minute would wait that long).
        self._channel_args = [
            ('grpc.max_send_message_length', 2 ** 31 - 1),
            ('grpc.max_receive_message_length', MAX_RECEIVE_BYTES),
            ('grpc.keepalive_time_ms', 2 ** 31 - 1),
            ('grpc.keepalive_timeout_ms', 20000),
            ('grpc.keepalive_permit_without_calls', 0),
            ('grpc.http2.max_pings_without_data', 2),
            ('grpc.initial_reconnect_backoff_ms', min(200, millis)),
            ('grpc.min_reconnect_backoff_ms', min(200, millis)),
            ('grpc.max_reconnect_backoff_ms', millis),
        ]
        self._tls_files = (root_cert, client_key, client_cert)
        self._client = self._connect(MAX_RECEIVE_BYTES)
        try:
            self._inputs, self._outputs = self._open()
            # A server (or one the URL was redirected to) answers no more than the outputs.
            self.receive_limit = receive_limit(self._outputs)
            if self.receive_limit < MAX_RECEIVE_BYTES:
                self._client.close()
                self._client = self._connect(self.receive_limit)
        except BaseException:
            self._client.close()
            raise

    def _connect(self, max_receive: int) -> Any:
        """Return a client whose channel takes answers of up to ``max_receive`` bytes."""
        root_cert, client_key, client_cert = self._tls_files
        args = [(k, max_receive if k == 'grpc.max_receive_message_length' else v)
                for k, v in self._channel_args]
        try:
            return self._grpcclient.InferenceServerClient(
                self.url, ssl=self.tls, root_certificates=root_cert or None,
                private_key=client_key or None, certificate_chain=client_cert or None,
                channel_args=args)
        except Exception as error:
            raise ConfigError('cannot create a gRPC client for {!r}: {}'.format(
                self.url, _message(error))) from error

    # ------------------------------------------------------------------ open

    # The slot's rows would be read from arrays the answer replaces, and several robots'
    # requests are batched by the server itself: one frame per request.
    batch_refusal = ('backend triton sends one frame per request: set batch_size 1 and let the '
                     "server batch the cameras' requests (dynamic_batching in config.pbtxt, "
                     'which tx2-convert triton-repo writes).')

    @property
    def max_batch(self) -> Optional[int]:
        """Return 1: one frame per request (``batch_refusal``)."""
        return 1

    @property
    def dynamic_batch(self) -> bool:
        """Return False: a request holds one frame."""
        return False

    def _where(self) -> str:
        version = ' version {}'.format(self.model_version) if self.model_version else ''
        return 'model {!r}{} on the server at {}'.format(self.model_name, version, self.url)

    def _open(self) -> tuple:
        """Reach the server, check the model is ready, return its (inputs, outputs)."""
        call = {'headers': self.headers, 'client_timeout': max(self.timeout_s, 5.0)}
        try:
            self._client.is_server_live(**call)
        except Exception as error:
            raise self._unreachable(error) from error
        answer = ''
        try:
            ready = self._client.is_model_ready(self.model_name, self.model_version, **call)
        except Exception as error:  # the server is live: it refused this model name
            if classify(error) == UNAVAILABLE:
                raise self._unreachable(error) from error
            ready, answer = False, ' ({})'.format(_message(error))
        if not ready:
            raise ModelError('the server at {} has no ready model {!r}{}{}{}: set triton_model '
                             '(and triton_model_version) to a model it serves, or add the '
                             'model to its repository (tx2-convert triton-repo) and load '
                             'it'.format(self.url, self.model_name,
                                         ' version ' + self.model_version
                                         if self.model_version else '', answer, self._index()))
        try:
            metadata = self._client.get_model_metadata(self.model_name, self.model_version,
                                                       **call)
        except Exception as error:
            raise ModelError('cannot read the metadata of the {}: {}'.format(
                self._where(), _message(error))) from error
        inputs = [self._info(t, 'input') for t in metadata.inputs]
        outputs = [self._info(t, 'output') for t in metadata.outputs]
        if not inputs or not outputs:
            raise ModelError('the {} declares no {}: the server must publish its model '
                             'metadata'.format(self._where(), 'inputs' if not inputs
                                               else 'outputs'))
        return inputs, outputs

    def _index(self) -> str:
        """Return ' (it serves: a, b)' from the server's repository index, or ''."""
        try:
            index = self._client.get_model_repository_index(
                headers=self.headers, client_timeout=self.timeout_s)
            names = sorted('{}{}'.format(m.name, ' v' + m.version if m.version else '')
                           for m in index.models)
        except Exception:  # not every KServe server has a repository index
            return ''
        return ' (it serves: {})'.format(', '.join(names) or 'no model')

    def _unreachable(self, error: BaseException) -> BackendUnavailableError:
        text = _message(error)
        lowered = text.lower()
        if any(word in lowered for word in ('ssl', 'handshake', 'certificate', 'tls')):
            fix = ('the TLS handshake failed: check that triton_root_cert is the CA that '
                   'signed the server certificate (and the client certificate and key, when '
                   'the server asks for one), and that the server speaks TLS on this port')
        elif self.tls:
            fix = ('check that the server runs and speaks TLS on this port (a plain-text '
                   'port fails the handshake), and triton_root_cert')
        else:
            fix = ('start the server (e.g. {}), check triton_url (host:port of its gRPC '
                   'endpoint, 8001 by default) and that this machine can reach it'.format(
                       _SERVER_COMMAND))
        return BackendUnavailableError('cannot reach the Triton server at {} ({}): {}'.format(
            self.url, text, fix))

    def _info(self, tensor: Any, kind: str) -> TensorInfo:
        dtype = _DTYPES.get(tensor.datatype)
        if dtype is None:
            raise ModelError('{} {!r} of the {} has datatype {}, which this package does not '
                             'handle ({})'.format(kind, tensor.name, self._where(),
                                                  tensor.datatype, ', '.join(sorted(_DTYPES))))
        return TensorInfo(tensor.name, tuple(int(d) for d in tensor.shape), np.dtype(dtype))

    # The model's inputs and outputs, from the server's model metadata.
    inputs = property(lambda self: list(self._inputs))  # type: ignore[assignment]
    outputs = property(lambda self: list(self._outputs))  # type: ignore[assignment]

    # ------------------------------------------------------------------ slots

    def create_slot(self, index: int,
                    input_shapes: Optional[Dict[str, Sequence[int]]] = None) -> Slot:
        """Allocate the slot's input buffers and its request; one request runs to learn outputs.

        :raises ConfigError: an input shape the server's model does not take.
        :raises ModelError: the server refused the request (the message names why).
        """
        inputs = {}
        for info in self._inputs:
            try:
                shape = concrete_shape(info, (input_shapes or {}).get(info.name))
            except ConfigError as error:
                raise ConfigError('{} (the {})'.format(error, self._where())) from error
            inputs[info.name] = np.zeros(shape, info.dtype)
        grpcclient = self._grpcclient
        infer_inputs = [grpcclient.InferInput(name, list(array.shape),
                                              _NP_TO_TRITON[array.dtype])
                        for name, array in inputs.items()]
        requested = [grpcclient.InferRequestedOutput(info.name) for info in self._outputs]
        outputs = {}  # type: Dict[str, np.ndarray]
        slot = Slot(index, inputs, outputs, _Request(infer_inputs, requested))
        self._slots.append(slot)
        try:
            # One request on zeros gives the output shapes and proves the whole path (as ONNX
            # Runtime's probe run does); its outputs become the slot's buffers.
            self.launch(slot)
            self.wait(slot)
        except RemoteInferenceError as error:
            self.release_slot(slot)
            raise ModelError('the {} refused a request with inputs {}: {}'.format(
                self._where(), ', '.join('{} {} {}'.format(n, list(a.shape), a.dtype)
                                         for n, a in inputs.items()), error)) from error
        return slot

    def launch(self, slot: Slot) -> None:
        """Send the slot's inputs as one asynchronous request; return without waiting."""
        request = slot.handle  # type: _Request
        if not request.done.is_set():
            raise RuntimeError('launch on a busy slot: wait for the previous request first')
        request.result = request.error = None
        request.done.clear()
        for infer_input in request.infer_inputs:
            # The slot buffer itself goes to the client, no copy of ours in between; gRPC
            # sends a serialised protobuf, so tritonclient copies it into the request (a
            # zero-copy path, shared memory, exists only for a server on the same host).
            infer_input.set_data_from_numpy(slot.inputs[infer_input.name()])
        request.started = time.perf_counter()
        try:
            with self._send_lock:
                request.call = self._client.async_infer(
                    self.model_name, request.infer_inputs, request.callback,
                    model_version=self.model_version, outputs=request.requested,
                    client_timeout=self.timeout_s, headers=self.headers,
                    compression_algorithm=self.compression)
        except Exception as error:  # refused before sending: counted like a failed request
            request.error = error
            request.done.set()

    def query(self, slot: Slot) -> bool:
        """Return True when the slot's request has completed (or failed)."""
        return slot.handle.done.is_set()

    def wait(self, slot: Slot, timeout: Optional[float] = None) -> bool:
        """Wait for the slot's request and copy its outputs into ``slot.outputs``.

        The gRPC deadline ends every request within ``timeout_s``; a request still not back
        a second after it (a client stuck on a dead connection) is cancelled.

        :raises RemoteInferenceError: the request failed, with the ``reason``.
        """
        request = slot.handle  # type: _Request
        limit = self.timeout_s + 1.0 if timeout is None else timeout
        if not request.done.wait(limit):
            if timeout is not None:
                return False
            if request.call is not None:
                request.call.cancel()
            if not request.done.wait(1.0):
                request.error = RemoteInferenceError(TIMEOUT, 'no answer')
                request.done.set()
        error, result = request.error, request.result
        request.call = request.result = None
        if error is not None:
            request.error = None
            raise self._failed(error)
        for info in self._outputs:
            array = result.as_numpy(info.name)
            if array is None:
                raise self._failed(RemoteInferenceError(
                    FAILED, 'the answer has no output {!r}'.format(info.name)))
            if not _shape_fits(array.shape, info.shape):
                raise self._failed(RemoteInferenceError(
                    FAILED, "the answer's output {!r} has shape {}, the model metadata says "
                    '{}: refused'.format(info.name, list(array.shape), list(info.shape))))
            buffer = slot.outputs.get(info.name)
            if buffer is not None and buffer.shape == array.shape:
                np.copyto(buffer, array, casting='unsafe')
            else:  # first answer, or an output whose shape changes with the data
                slot.outputs[info.name] = np.array(array, info.dtype)
        slot.infer_ms = request.elapsed_ms
        self._succeeded()
        return True

    def _release_slot(self, slot: Slot) -> None:
        request = slot.handle  # type: _Request
        if request.call is not None and not request.done.is_set():
            request.call.cancel()
            request.done.wait(1.0)

    def _close(self) -> None:
        super(TritonBackend, self)._close()
        self._client.close()

    # ------------------------------------------------------------------ health

    def _failed(self, error: BaseException) -> RemoteInferenceError:
        """Count a failed request, update the state, and return the error to raise."""
        reason = getattr(error, 'reason', None) or classify(error)
        message = _message(error)
        now = time.monotonic()
        with self._health_lock:
            self._requests += 1
            self._errors[reason] = self._errors.get(reason, 0) + 1
            self._last_error = message
            newly = self._state == 'ok'
            if reason == UNAVAILABLE:
                self._state = 'unavailable'
            elif reason == TIMEOUT:
                self._state = 'timeout' if self._state == 'ok' else self._state
            else:
                self._state = 'failing'
            if newly:
                self._down_since = now
            warn = newly or now - self._last_warning >= WARN_PERIOD_S
            if warn:
                self._last_warning = now
            lost = sum(self._errors.values())
        if warn:
            _LOG.warning('triton: %s: %s (%d frames failed so far; retrying, the channel '
                         'reconnects by itself)', self._where(), message, lost)
        return RemoteInferenceError(reason, 'triton: {} failed: {}'.format(
            self._where(), message))

    def _succeeded(self) -> None:
        with self._health_lock:
            self._requests += 1
            recovered = self._state != 'ok'
            if recovered:
                self._recoveries += 1
                self._state = 'ok'
                downtime = time.monotonic() - self._down_since
        if recovered:
            _LOG.warning('triton: the %s answers again after %.1f s', self._where(), downtime)

    def health(self) -> Dict[str, Any]:
        """Return the connection's state for diagnostics.

        ``level``: ``ok``; ``error`` while the server is unreachable or refuses requests;
        ``warn`` after a request timed out. Counters: ``requests``, ``recoveries`` and
        ``errors`` by reason; ``last_error`` is the last failure's message.
        """
        with self._health_lock:
            state = self._state
            return {
                'level': {'ok': 'ok', 'timeout': 'warn'}.get(state, 'error'),
                'state': state, 'url': self.url, 'model': self.model_name,
                'requests': self._requests, 'recoveries': self._recoveries,
                'errors': dict(self._errors), 'last_error': self._last_error,
            }
