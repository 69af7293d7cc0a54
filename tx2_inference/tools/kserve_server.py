"""A local KServe V2 inference server (MLServer) for the ``triton`` backend's tests and benchmark.

NVIDIA's Triton server does not install from the package index; MLServer (Seldon) does, and
speaks the same KServe V2 gRPC protocol that ``tritonclient`` talks. ``KServeServer`` writes a
model repository (``settings.json`` with ``parallel_workers: 0`` and localhost ports,
``<model>/model-settings.json`` with the absolute model path), starts ``mlserver start`` from
its own virtual environment (``make test``/``make bench`` make ``build/mlserver-venv`` with
tools/setup_mlserver.sh, ``make demo`` does not; override with
``TX2_MLSERVER_VENV``) with the ONNX Runtime runtime of ``tools/mlserver/``, and waits until
every model is ready. ``kill`` and ``start`` again take the server away and bring it back on
the same port.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNTIME_DIR = os.path.join(SOURCE_ROOT, 'tools', 'mlserver')
RUNTIME = 'onnx_runtime.OnnxRuntimeModel'


def mlserver_venv() -> str:
    """Return the MLServer virtual environment's folder (``TX2_MLSERVER_VENV`` or the default)."""
    return os.environ.get('TX2_MLSERVER_VENV') or os.path.join(SOURCE_ROOT, 'build',
                                                               'mlserver-venv')


def free_port() -> int:
    """Return a TCP port on localhost that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return int(sock.getsockname()[1])


class KServeServer(object):
    """An MLServer process serving ONNX models on localhost (a stand-in for Triton's server).

    :param folder: where the repository and the log are written.
    :param models: model name -> ``.onnx`` path, or -> dict with ``path`` and optional
        ``threads`` and ``delay_file`` (see tools/mlserver/onnx_runtime.py).
    :param threads: default ONNX Runtime threads per model (0: its default).
    """

    def __init__(self, folder: str, models: Dict[str, Any], threads: int = 0) -> None:
        """Write the repository; ``start`` runs the server."""
        self.folder = os.path.abspath(folder)
        self.repository = os.path.join(self.folder, 'repository')
        self.log_path = os.path.join(self.folder, 'mlserver.log')
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.models = sorted(models)
        self.process = None  # type: Optional[subprocess.Popen]
        self._log = None  # type: Any
        os.makedirs(self.repository, exist_ok=True)
        settings = {'parallel_workers': 0, 'host': '127.0.0.1', 'grpc_port': self.grpc_port,
                    'http_port': self.http_port, 'metrics_endpoint': None,
                    'debug': False}
        with open(os.path.join(self.repository, 'settings.json'), 'w') as f:
            json.dump(settings, f, indent=1)
        for name, spec in models.items():
            if not isinstance(spec, dict):
                spec = {'path': spec}
            folder = os.path.join(self.repository, name)
            os.makedirs(folder, exist_ok=True)
            extra = {'threads': int(spec.get('threads', threads)),
                     'delay_file': os.path.abspath(spec['delay_file'])
                     if spec.get('delay_file') else ''}
            model = {'name': name, 'implementation': RUNTIME,
                     'parameters': {'uri': os.path.abspath(spec['path']), 'extra': extra}}
            with open(os.path.join(folder, 'model-settings.json'), 'w') as f:
                json.dump(model, f, indent=1)

    @property
    def url(self) -> str:
        """Return ``host:port`` of the gRPC endpoint."""
        return '127.0.0.1:{}'.format(self.grpc_port)

    def command(self) -> List[str]:
        """Return the command line that runs the server."""
        executable = os.path.join(mlserver_venv(), 'bin', 'mlserver')
        if not os.path.isfile(executable):
            raise FileNotFoundError(
                'MLServer is not installed at {}: run tools/setup_mlserver.sh (make mlserver), '
                'which makes '
                'its virtual environment from requirements/mlserver.txt, or set '
                'TX2_MLSERVER_VENV'.format(executable))
        return [executable, 'start', self.repository]

    def start(self, timeout: float = 120.0) -> 'KServeServer':
        """Start the server and wait until every model is ready.

        :raises RuntimeError: it exited or was not ready in time (with its log's tail).
        """
        command = self.command()
        env = dict(os.environ)
        env['PYTHONPATH'] = RUNTIME_DIR
        env.pop('PYTHONHOME', None)
        self._log = open(self.log_path, 'a')
        self.process = subprocess.Popen(command, cwd=self.repository, env=env,
                                        stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        """Wait until the server says every model is ready."""
        import tritonclient.grpc as grpcclient
        deadline = time.monotonic() + timeout
        client = grpcclient.InferenceServerClient(self.url)
        try:
            while True:
                if self.process is None or self.process.poll() is not None:
                    raise RuntimeError('MLServer exited (status {}):\n{}'.format(
                        None if self.process is None else self.process.returncode,
                        self.log()[-3000:]))
                try:
                    if all(client.is_model_ready(name, client_timeout=2.0)
                           for name in self.models):
                        return
                except Exception:  # not listening yet
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError('MLServer was not ready within {} s:\n{}'.format(
                        timeout, self.log()[-3000:]))
                time.sleep(0.2)
        finally:
            client.close()

    def alive(self) -> bool:
        """Return whether the server process runs."""
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """Take the server away at once (SIGKILL: a crash or a pulled cable, not a shutdown)."""
        self.stop(signal.SIGKILL)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        """Stop the server (its whole process group) and wait for it; idempotent."""
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
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log(self) -> str:
        """Return the server's output so far."""
        try:
            with open(self.log_path, errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def __enter__(self) -> 'KServeServer':
        """Start in a ``with`` block; stopped at the end."""
        return self.start() if self.process is None else self

    def __exit__(self, *exc_info: Any) -> None:
        """Stop the server."""
        self.stop()


def main(argv: Optional[List[str]] = None) -> None:
    """Serve one model until Ctrl-C: ``python -m tx2_inference.tools.kserve_server M.onnx``."""
    import argparse
    import tempfile
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('model', help='the .onnx to serve; its name on the server is the '
                                      "file's name without .onnx")
    parser.add_argument('--threads', type=int, default=0)
    args = parser.parse_args(argv)
    name = os.path.splitext(os.path.basename(args.model))[0]
    server = KServeServer(tempfile.mkdtemp(prefix='kserve_'), {name: args.model}, args.threads)
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
