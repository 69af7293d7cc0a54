"""Keep the thread that calls a CPU runtime off the CPUs the runtime pinned its own threads to.

ONNX Runtime's default intra-op pool (``intra_op_num_threads`` 0) has one thread fewer than
there are physical cores and pins each to a core of its own, leaving one core for the thread
that calls ``run``, which it never pins ("ort does not set affinity on the main thread which
is started and managed by the calling app": ``SetGlobalIntraOpThreadAffinity``'s note in
``onnxruntime_c_api.h``). Nothing keeps the caller on that core: Linux wakes a thread where
it last ran, so a caller that once ran on a pool thread's core stays there, and the two then
share one core while the other idles. Measured on this 2-core machine (issue 23): the default
model's run takes 6.0 ms with the caller on the free core and 8.5 ms on the pool's core; in
the node, 40 % of the frames at 15 FPS ran on the pool's core.

``pinned_cpus_of_new_threads`` learns which CPUs a runtime pinned its threads to, from the
threads that appeared while it loaded (Linux ``/proc``); ``CallerAffinity`` moves the calling
thread to the other CPUs for the length of a run and back. Elsewhere, or when nothing was
pinned, both do nothing.
"""

import os
from typing import Any, FrozenSet, Optional, Set

_TASKS = '/proc/self/task'


def thread_ids() -> Set[str]:
    """Return the ids of this process's threads (empty where ``/proc`` is not Linux's)."""
    try:
        return set(os.listdir(_TASKS))
    except OSError:
        return set()


def parse_cpu_list(text: str) -> FrozenSet[int]:
    """Return the CPUs of a kernel CPU list such as ``0-3,8,10-11``."""
    cpus = set()  # type: Set[int]
    for part in text.strip().split(','):
        if not part:
            continue
        first, _, last = part.partition('-')
        cpus.update(range(int(first), int(last or first) + 1))
    return frozenset(cpus)


def thread_cpus(thread_id: str) -> Optional[FrozenSet[int]]:
    """Return the CPUs a thread of this process may run on (None: it ended, or no ``/proc``)."""
    try:
        with open(os.path.join(_TASKS, thread_id, 'status')) as status:
            for line in status:
                if line.startswith('Cpus_allowed_list:'):
                    return parse_cpu_list(line.split(':', 1)[1])
    except (OSError, ValueError):
        pass
    return None


def pinned_cpus_of_new_threads(before: Set[str]) -> FrozenSet[int]:
    """Return the CPUs that threads started since ``before`` (``thread_ids()``) are pinned to.

    A new thread counts when it may run on fewer CPUs than this process: a thread another
    library started meanwhile keeps the process's CPUs and is not counted.
    """
    try:
        allowed = frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return frozenset()
    pinned = set()  # type: Set[int]
    for thread_id in thread_ids() - before:
        cpus = thread_cpus(thread_id)
        if cpus is not None and cpus < allowed:
            pinned.update(cpus)
    return frozenset(pinned)


class CallerAffinity(object):
    """``with`` block: the calling thread runs on the CPUs not in ``avoid``, then as it did.

    Two system calls on the way in, one on the way out (a few microseconds). Nothing happens
    when ``avoid`` is empty, when the thread may only run on CPUs in ``avoid`` (a user's
    ``taskset``), or where the platform has no ``sched_setaffinity``.
    """

    __slots__ = ('avoid', '_saved')

    def __init__(self, avoid: FrozenSet[int]) -> None:
        """Avoid the CPUs ``avoid`` inside the block."""
        self.avoid = frozenset(avoid) if hasattr(os, 'sched_setaffinity') else frozenset()
        self._saved = None  # type: Optional[Set[int]]

    def __enter__(self) -> 'CallerAffinity':
        """Move the calling thread off ``avoid`` (remembering where it could run).

        Where the kernel refuses (a sandbox's seccomp filter, say), the run goes on where it
        is and no later run tries again.
        """
        self._saved = None
        if self.avoid:
            try:
                current = os.sched_getaffinity(0)
                wanted = current - self.avoid
                if wanted and wanted != current:
                    os.sched_setaffinity(0, wanted)
                    self._saved = current
            except OSError:
                self.avoid = frozenset()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        """Give the calling thread back the CPUs it had."""
        if self._saved is not None:
            try:
                os.sched_setaffinity(0, self._saved)
            except OSError:
                self.avoid = frozenset()
            self._saved = None
