"""Finding decoders that live outside the package: a module to import, or an entry point.

A model config names a decoder type; when the package has no decoder of that name, it comes
from one of two places, both found the same way by the node, ``tx2-convert evaluate`` and the
Python API (everything goes through :func:`tx2_inference.core.decoders.decoder_class`):

- ``decoder: {type: my_head, module: my_pkg.heads}``: ``my_pkg.heads`` is imported and must
  register ``my_head`` with :func:`~tx2_inference.core.decoders.register_decoder`;
- an installed distribution that declares, in the entry-point group ``tx2_inference.decoders``,
  ``my_head = my_pkg.heads:MyHead`` (a :class:`~tx2_inference.core.decoders.Decoder`
  subclass; registered under the entry point's name when it loads).

Entry points are read lazily (only for a type the registry lacks) with ``importlib.metadata``
(Python 3.8+), else the ``importlib_metadata`` backport, else ``pkg_resources`` (Python 3.6 on
the robot). Every failure is a :class:`~tx2_inference.errors.ConfigError` naming the module or
entry point and why it failed.

A model config is data, and importing a module runs its code: ``decoder.module`` may name only
a module (or a submodule of a package) that is an installed entry point's, named in
``TX2_INFERENCE_DECODER_MODULES`` (comma-separated) or given to `allow_modules` (the node's
read-only ``decoder_modules`` parameter). A module on ``sys.path`` by chance (the working
directory) is refused. Whatever the import raises, ``SystemExit`` included, becomes a
ConfigError; only ``KeyboardInterrupt`` passes.
"""

import importlib
import os
import traceback
from typing import Any, Iterable, List, Optional, Set

from tx2_inference.errors import ConfigError

GROUP = 'tx2_inference.decoders'
ENV_MODULES = 'TX2_INFERENCE_DECODER_MODULES'
_ALLOWED: Set[str] = set()  # modules allowed by the application (allow_modules)


def allow_modules(names: Iterable[str]) -> None:
    """Set the modules (and their submodules) a model config's ``decoder.module`` may name."""
    _ALLOWED.clear()
    _ALLOWED.update(n.strip() for n in names if n and n.strip())


def allowed_modules() -> List[str]:
    """Return the allowed module roots: `allow_modules`, the variable, the entry points'."""
    names = set(_ALLOWED)
    names.update(n.strip() for n in os.environ.get(ENV_MODULES, '').split(',') if n.strip())
    try:
        names.update(ep.target.split(':')[0].strip() for ep in entry_points())
    except Exception:  # noqa: B902 - broken metadata: the other sources still count
        pass
    return sorted(names)


def _allowed(module: str) -> bool:
    return any(module == root or module.startswith(root + '.') for root in allowed_modules())


class _EntryPoint(object):
    """One entry point of the group, whichever metadata library found it."""

    def __init__(self, name: str, target: str, distribution: str, load: Any) -> None:
        """Keep the name, ``module:attr`` target, distribution name and loader."""
        self.name = name
        self.target = target
        self.distribution = distribution
        self.load = load


def _why(exc: BaseException) -> str:
    """Return ``Type: message`` and the line of the plugin's code that raised it."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f[0].startswith('<frozen') and f[0] != __file__]
    # The user's line, rather than the library (numpy, ...) it called.
    own = [f for f in frames if 'site-packages' not in f[0] and 'dist-packages' not in f[0]]
    frame = (own or frames or [None])[-1]
    where = ' (at {}:{})'.format(frame[0], frame[1]) if frame is not None else ''
    return '{}: {}{}'.format(type(exc).__name__, exc, where)


def entry_points() -> List[_EntryPoint]:
    """Return the installed entry points of the ``tx2_inference.decoders`` group."""
    metadata = None  # type: Any
    # importlib.metadata is Python 3.8+; the robot's 3.6 may have the backport, else
    # pkg_resources (setuptools).
    for name in ('importlib.metadata', 'importlib_metadata'):
        try:
            metadata = importlib.import_module(name)
            break
        except ImportError:
            continue
    found = []  # type: List[_EntryPoint]
    if metadata is not None:
        for dist in metadata.distributions():
            for ep in dist.entry_points:
                if ep.group == GROUP:
                    found.append(_EntryPoint(ep.name, ep.value,
                                             dist.metadata['Name'] or '?', ep.load))
        return found
    import pkg_resources  # Python 3.6/3.7 without the backport
    # A fresh working set: sys.path as it is now, not as it was at pkg_resources' import.
    for dist in pkg_resources.WorkingSet():
        for ep in dist.get_entry_map(GROUP).values():
            target = '{}:{}'.format(ep.module_name, '.'.join(ep.attrs))
            found.append(_EntryPoint(ep.name, target, dist.project_name, ep.resolve))
    return found


def entry_point_names() -> List[str]:
    """Return the decoder types installed packages declare (not loaded)."""
    return sorted({ep.name for ep in entry_points()})


def import_module(module: str, decoder_type: str) -> None:
    """Import ``module`` (the config's ``decoder.module``), which registers decoders.

    :raises ConfigError: naming the module and why it failed to import.
    """
    if not _allowed(module):
        raise ConfigError(
            'decoder.module: {!r} (for decoder type {!r}) is not an allowed module: importing '
            'runs its code, so a model config may name only the module of an installed {} '
            'entry point, one listed in the node parameter decoder_modules (launch only) or in '
            'the environment variable {}. Allowed now: {}. Add it there if you trust it, or '
            'install the decoder as an entry point (docs/BRING_YOUR_OWN_DETECTOR.md).'.format(
                module, decoder_type, GROUP, ENV_MODULES,
                ', '.join(allowed_modules()) or 'none'))
    try:
        importlib.import_module(module)
    except KeyboardInterrupt:
        raise
    except ImportError as exc:
        raise ConfigError('decoder.module: cannot import {!r} for decoder type {!r}: {}. Install '
                          'the package that provides it, or put its folder on PYTHONPATH.'
                          .format(module, decoder_type, _why(exc))) from exc
    except BaseException as exc:  # noqa: B902 - SystemExit too: a config cannot end the process
        raise ConfigError('decoder.module: importing {!r} for decoder type {!r} failed: {}.'
                          .format(module, decoder_type, _why(exc))) from exc


def load_entry_point(decoder_type: str) -> Optional[Any]:
    """Load the entry point named ``decoder_type``; None when no package declares it.

    :returns: what the entry point names (a Decoder subclass, or a module that registers it).
    :raises ConfigError: naming the entry point, its distribution and why it failed to load.
    """
    matches = []  # type: List[_EntryPoint]
    for ep in entry_points():  # a folder twice on sys.path lists its packages twice
        if ep.name == decoder_type and (ep.distribution, ep.target) not in [
                (m.distribution, m.target) for m in matches]:
            matches.append(ep)
    if not matches:
        return None
    if len(matches) > 1:
        raise ConfigError('decoder.type: {!r} is declared by several installed packages ({}); '
                          'uninstall all but one, or name the module with decoder.module.'
                          .format(decoder_type, ', '.join('{} ({})'.format(
                              ep.distribution, ep.target) for ep in matches)))
    ep = matches[0]
    try:
        return ep.load()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: B902 - SystemExit too
        raise ConfigError('decoder.type: the entry point {} = {} of {} (group {}) failed to '
                          'load: {}. Fix or reinstall that package.'.format(
                              ep.name, ep.target, ep.distribution, GROUP, _why(exc))) from exc
