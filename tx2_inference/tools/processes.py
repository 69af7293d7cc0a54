"""Child processes of the demo, the soak and the benchmark.

``ModuleProcess`` runs ``python -m <module> ...`` with its output in a log file and stops it as
Ctrl-C would (SIGINT, or another signal), killing it if it does not exit in time.
"""

import signal
import subprocess
import sys
from typing import Any, Dict, Optional, Sequence


class ModuleProcess(object):
    """``python -m <args>`` in a child process, stdout and stderr in a log file."""

    def __init__(self, args: Sequence[str], log_path: str,
                 env: Optional[Dict[str, str]] = None) -> None:
        """Start ``python -m <args>`` (``args[0]`` is the module) logging to ``log_path``.

        :param env: the child's environment (default: this process's).
        """
        self.log_path = log_path
        self._log = open(log_path, 'w')
        self.process = subprocess.Popen([sys.executable, '-m'] + list(args), env=env,
                                        stdout=self._log, stderr=subprocess.STDOUT)
        self.pid = self.process.pid

    def alive(self) -> bool:
        """Return whether the process still runs."""
        return self.process.poll() is None

    def log(self) -> str:
        """Return the process's output so far."""
        with open(self.log_path, errors='replace') as f:
            return f.read()

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10.0) -> Optional[int]:
        """Send ``sig`` if it still runs and wait ``timeout`` s; kill it if it does not exit.

        :returns: its exit status, or None when it had to be killed.
        """
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=timeout)  # type: Optional[int]
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            code = None
        self._log.close()
        return code

    def __enter__(self) -> 'ModuleProcess':
        """Use in a ``with`` block: stopped at the end."""
        return self

    def __exit__(self, *exc_info: Any) -> None:
        """Stop the process."""
        self.stop()
