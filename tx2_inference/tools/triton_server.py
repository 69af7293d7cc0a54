"""NVIDIA's Triton Inference Server on localhost, for the ``triton`` backend's tests and benchmark.

The real ``tritonserver`` (2.51.0) comes from the ``nvidia-pytriton`` wheel, extracted under
``build/triton`` by tools/setup_triton.sh (``make test`` and ``make bench`` run it; override the
folder with ``TX2_TRITON_DIR``). That build has the Python backend but not the onnxruntime or
TensorRT backends, so ``TritonServer`` serves each ``.onnx`` through the Python backend with
ONNX Runtime inside the model's ``execute`` (tools/triton/model.py), in the Python environment
``build/triton/venv`` (numpy 1.x: the backend's stub predates numpy 2; with numpy 2 it answers
with empty tensors). The stub, one process per model instance, embeds the shared libpython of
the Python that made that venv (``LD_LIBRARY_PATH``) and takes its prefix from the first
``python`` on ``PATH``, the venv's, so it imports what the venv holds. Everything else is the
server users run: its model repository and ``config.pbtxt`` parser, dynamic batcher, gRPC
endpoint (plain or TLS), model control and statistics.

``TritonServer`` writes a model repository (``<model>/config.pbtxt`` with ``backend:
"python"``, inputs and outputs read from the ONNX model, optional ``max_batch_size`` and
``dynamic_batching``; ``<model>/1/model.py``), starts the server on free localhost ports (gRPC
only) and waits until every model is ready. ``kill`` and ``start`` again take the server away
and bring it back on the same port. Further repositories (``tx2-convert triton-repo`` output)
can be added and their models loaded through the server's model control API.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL_FILE = os.path.join(SOURCE_ROOT, 'tools', 'triton', 'model.py')
SETUP = 'tools/setup_triton.sh'


def triton_dir() -> str:
    """Return the folder tools/setup_triton.sh fills (``TX2_TRITON_DIR`` or ``build/triton``)."""
    return os.environ.get('TX2_TRITON_DIR') or os.path.join(SOURCE_ROOT, 'build', 'triton')


def server_dir() -> str:
    """Return the extracted ``tritonserver`` folder (``bin/``, ``backends/``)."""
    return os.path.join(triton_dir(), 'server', 'pytriton', 'tritonserver')


def unavailable() -> str:
    """Return why the Triton server cannot run here ('' when it is set up).

    tools/setup_triton.sh writes the reason (not x86_64, no shared libpython); a server not
    set up at all names the script to run.
    """
    reason_file = os.path.join(triton_dir(), 'UNAVAILABLE')
    if os.path.isfile(reason_file):
        with open(reason_file) as f:
            return f.read().strip()
    for path in (os.path.join(server_dir(), 'bin', 'tritonserver'),
                 os.path.join(triton_dir(), 'venv', 'bin', 'python')):
        if not os.path.isfile(path):
            return 'the Triton server is not set up ({} is missing): run {}'.format(path, SETUP)
    return ''


def free_port() -> int:
    """Return a TCP port on localhost that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return int(sock.getsockname()[1])


def python_model_config(name: str, onnx_path: str, max_batch_size: int = 0,
                        queue_delay_us: int = 0, instances: int = 1,
                        parameters: Optional[Dict[str, Any]] = None) -> str:
    """Return config.pbtxt serving ``onnx_path`` through the Python backend (tensors from it).

    ``max_batch_size`` > 0 leaves the batch dimension out of the dims and adds
    ``dynamic_batching`` with ``queue_delay_us``; ``parameters`` become string parameters of
    the model (``onnx_path``, ``threads``, ``delay_file`` for tools/triton/model.py).
    """
    from tx2_inference.convert.triton_repo import config_text, onnx_tensors, parse_config
    inputs, outputs = onnx_tensors(onnx_path)
    text = config_text(name, 'python', inputs, outputs, max_batch_size, max_batch_size > 0,
                       queue_delay_us, instances, 'cpu')
    text = text.replace('platform: "python"', 'backend: "python"')
    for key, value in sorted((parameters or {}).items()):
        text += 'parameters {{ key: "{}" value: {{ string_value: "{}" }} }}\n'.format(
            key, str(value).replace('\\', '\\\\').replace('"', '\\"'))
    parse_config(text)
    return text


class TritonServer(object):
    """A ``tritonserver`` process serving ONNX models on localhost through the Python backend.

    :param folder: where the repository and the log are written.
    :param models: model name -> ``.onnx`` path, or -> dict with ``path`` and optional
        ``threads``, ``delay_file``, ``max_batch_size``, ``queue_delay_us``, ``instances``.
    :param threads: default ONNX Runtime threads per model (0: its default).
    :param tls: ``(certificate, key)`` PEM files: gRPC over TLS with them.
    :param repositories: further model repositories; their models are loaded on request
        (``load``), not at start.
    """

    def __init__(self, folder: str, models: Dict[str, Any], threads: int = 0,
                 tls: Optional[Sequence[str]] = None,
                 repositories: Sequence[str] = ()) -> None:
        """Write the repository; ``start`` runs the server."""
        self.folder = os.path.abspath(folder)
        self.repository = os.path.join(self.folder, 'repository')
        self.log_path = os.path.join(self.folder, 'tritonserver.log')
        self.grpc_port = free_port()
        self.models = sorted(models)
        self.tls = tuple(tls) if tls else None
        self.repositories = [os.path.abspath(r) for r in repositories]
        self.process = None  # type: Optional[subprocess.Popen]
        self._log = None  # type: Any
        # The Python backend's shared-memory regions are named by this prefix: unique per server.
        self.shm_prefix = 'tx2_triton_{}_{}_'.format(os.getpid(), self.grpc_port)
        os.makedirs(self.repository, exist_ok=True)
        for name, spec in models.items():
            if not isinstance(spec, dict):
                spec = {'path': spec}
            parameters = {'onnx_path': os.path.abspath(spec['path']),
                          'threads': int(spec.get('threads', threads))}
            if spec.get('delay_file'):
                parameters['delay_file'] = os.path.abspath(spec['delay_file'])
            text = python_model_config(name, spec['path'], int(spec.get('max_batch_size', 0)),
                                       int(spec.get('queue_delay_us', 0)),
                                       int(spec.get('instances', 1)), parameters)
            model_folder = os.path.join(self.repository, name)
            os.makedirs(os.path.join(model_folder, '1'), exist_ok=True)
            with open(os.path.join(model_folder, 'config.pbtxt'), 'w') as f:
                f.write(text)
            shutil.copyfile(MODEL_FILE, os.path.join(model_folder, '1', 'model.py'))

    @property
    def url(self) -> str:
        """Return ``host:port`` of the gRPC endpoint."""
        return '127.0.0.1:{}'.format(self.grpc_port)

    def command(self) -> List[str]:
        """Return the command line that runs the server.

        :raises FileNotFoundError: tools/setup_triton.sh has not made the server.
        """
        executable = os.path.join(server_dir(), 'bin', 'tritonserver')
        why = unavailable()
        if why:
            raise FileNotFoundError('{} (make test and make bench run {}; TX2_TRITON_DIR '
                                    'names another folder)'.format(why, SETUP))
        command = [executable, '--model-repository', self.repository,
                   '--backend-directory', os.path.join(server_dir(), 'backends'),
                   '--cache-directory', os.path.join(server_dir(), 'caches'),
                   '--model-control-mode', 'explicit',
                   '--allow-http', 'false', '--allow-metrics', 'false',
                   '--grpc-address', '127.0.0.1', '--grpc-port', str(self.grpc_port),
                   '--backend-config', 'python,shm-region-prefix-name=' + self.shm_prefix,
                   '--exit-timeout-secs', '5', '--log-verbose', '0']
        for repository in self.repositories:
            command += ['--model-repository', repository]
        for name in self.models:
            command += ['--load-model', name]
        if self.tls:
            command += ['--grpc-use-ssl', 'true', '--grpc-server-cert', self.tls[0],
                        '--grpc-server-key', self.tls[1]]
        return command

    def start(self, timeout: float = 120.0) -> 'TritonServer':
        """Start the server and wait until every model is ready.

        :raises RuntimeError: it exited or was not ready in time (with its log's tail).
        """
        command = self.command()
        env = dict(os.environ)
        # The Python backend's stub embeds libpython (that of the Python the venv was made
        # with, tools/setup_triton.sh) and takes its prefix from the first python on PATH: the
        # server's own venv, with numpy 1.x and ONNX Runtime.
        env['PATH'] = os.path.join(triton_dir(), 'venv', 'bin') + os.pathsep + env.get('PATH', '')
        for name in ('PYTHONPATH', 'PYTHONHOME', 'LD_LIBRARY_PATH', 'VIRTUAL_ENV'):
            env.pop(name, None)
        try:
            with open(os.path.join(triton_dir(), 'python_libdir')) as f:
                env['LD_LIBRARY_PATH'] = f.read().strip()
        except OSError:
            pass
        self._log = open(self.log_path, 'a')
        self.process = subprocess.Popen(command, cwd=self.folder, env=env, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_ready(timeout)
        return self

    def client(self) -> Any:
        """Return a ``tritonclient.grpc`` client of this server (TLS: trusting no CA check)."""
        import tritonclient.grpc as grpcclient
        if self.tls:
            return grpcclient.InferenceServerClient(self.url, ssl=True,
                                                    root_certificates=self.tls[0])
        return grpcclient.InferenceServerClient(self.url)

    def wait_ready(self, timeout: float) -> None:
        """Wait until the server says every model is ready."""
        deadline = time.monotonic() + timeout
        client = self.client()
        try:
            while True:
                if self.process is None or self.process.poll() is not None:
                    raise RuntimeError('tritonserver exited (status {}):\n{}'.format(
                        None if self.process is None else self.process.returncode,
                        self.log()[-3000:]))
                try:
                    if client.is_server_live(client_timeout=2.0) and all(
                            client.is_model_ready(name, client_timeout=2.0)
                            for name in self.models):
                        return
                except Exception:  # not listening yet
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError('tritonserver was not ready within {} s:\n{}'.format(
                        timeout, self.log()[-3000:]))
                time.sleep(0.2)
        finally:
            client.close()

    def load(self, name: str) -> None:
        """Load model ``name`` from the repositories (the server's model control API).

        :raises Exception: tritonclient's error, with the server's reason for refusing it.
        """
        client = self.client()
        try:
            client.load_model(name, client_timeout=120.0)
        finally:
            client.close()

    def statistics(self, name: str) -> Any:
        """Return the server's inference statistics of model ``name`` (a protobuf message)."""
        client = self.client()
        try:
            return client.get_inference_statistics(name).model_stats[0]
        finally:
            client.close()

    def alive(self) -> bool:
        """Return whether the server process runs."""
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """Take the server away at once (SIGKILL: a crash or a pulled cable, not a shutdown)."""
        self.stop(signal.SIGKILL)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        """Stop the server (its whole process group: the backend's stubs too); idempotent."""
        process = self.process
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if process is not None:
            try:  # the stubs may outlive a killed server by a moment
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        self._remove_shared_memory()

    def _remove_shared_memory(self) -> None:
        """Remove the Python backend's regions a killed server leaves in /dev/shm."""
        try:
            names = os.listdir('/dev/shm')
        except OSError:
            return
        for name in names:
            if name.startswith(self.shm_prefix):
                try:
                    os.remove(os.path.join('/dev/shm', name))
                except OSError:
                    pass

    def log(self) -> str:
        """Return the server's output so far."""
        try:
            with open(self.log_path, errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def __enter__(self) -> 'TritonServer':
        """Start in a ``with`` block; stopped at the end."""
        return self.start() if self.process is None else self

    def __exit__(self, *exc_info: Any) -> None:
        """Stop the server."""
        self.stop()


def main(argv: Optional[List[str]] = None) -> None:
    """Serve one model until Ctrl-C: ``python -m tx2_inference.tools.triton_server M.onnx``."""
    import argparse
    import tempfile
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('model', help='the .onnx to serve; its name on the server is the '
                                      "file's name without .onnx")
    parser.add_argument('--threads', type=int, default=0,
                        help='ONNX Runtime intra-op threads in the server (0: its default)')
    parser.add_argument('--max-batch-size', type=int, default=0,
                        help='> 0: dynamic batching of requests up to this many')
    args = parser.parse_args(argv)
    name = os.path.splitext(os.path.basename(args.model))[0]
    spec = {'path': args.model, 'max_batch_size': args.max_batch_size, 'queue_delay_us': 1000}
    server = TritonServer(tempfile.mkdtemp(prefix='triton_'), {name: spec}, args.threads)
    with server:
        print('serving {!r} at {} (log: {}); Ctrl-C stops'.format(name, server.url,
                                                                   server.log_path))
        sys.stdout.flush()
        try:
            while server.alive():
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass


if __name__ == '__main__':
    main()
