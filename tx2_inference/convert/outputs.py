"""
What the converters may overwrite: never their input; a model or hand-edited config: --force.

With ``--force`` a ``.bak`` copy is kept first. Robot side (Python 3.6). A config the
converter writes carries a stamp line, ``# tx2-convert: model=<file> sha256=<of the YAML
below>``: a config whose text no longer matches its stamp was edited by hand (the documented
way to complete a decoder) and is not replaced silently. A config of another artefact with the
same stem (``det.yaml`` of ``det.onnx`` when writing ``det.tflite``) is left alone: the new
artefact gets its own ``det.tflite.yaml``, which
`tx2_inference.core.model_config.config_path_for` finds first.
"""

import hashlib
import os
import re
import shutil
from typing import Optional, Sequence

from tx2_inference.errors import UserError

STAMP = '# tx2-convert: model={} sha256={}'
_STAMP_RE = re.compile(r'^# tx2-convert: model=(?P<model>.*) sha256=(?P<sha>[0-9a-f]{64})$')


def _same_file(a: str, b: str) -> bool:
    """Return whether two paths name one file (the same path, a link or a hard link)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def backup(path: str) -> str:
    """Copy ``path`` to ``path.bak`` (replacing an older backup); return the backup's path."""
    target = path + '.bak'
    shutil.copy2(path, target)
    return target


def check_output(output: str, inputs: Sequence[Optional[str]], force: bool,
                 what: str = 'model') -> Optional[str]:
    """Refuse to write ``output`` over an input, or over an existing file without ``force``.

    Its config is checked too (`check_config`, before any conversion work): without ``force``
    a hand-edited config there refuses the whole command, so no model is left without it.

    :param inputs: the files (or folders) the conversion reads.
    :returns: the ``.bak`` copy made of an existing output under ``force``, else None.
    :raises UserError: ``output`` is an input (even with ``force``), or exists without it.
    """
    for source in inputs:
        if source and _same_file(output, source):
            raise UserError('-o {} is the {} this command reads: write the result to another '
                            'file (e.g. {}).'.format(output, what, _suggest(output)))
    if not force:
        check_config(config_target(output), False)
    if not os.path.exists(output):
        return None
    if not force:
        raise UserError('{} exists: pass --force to replace it (a copy is kept as {}.bak), '
                        'or write to another file.'.format(output, output))
    return backup(output)


def _suggest(path: str) -> str:
    stem, ext = os.path.splitext(path)
    return stem + '_new' + ext


def stamped(text: str, model_path: str) -> str:
    """Return the config ``text`` with its stamp line in front."""
    digest = hashlib.sha256(text.encode('utf-8')).hexdigest()
    return STAMP.format(os.path.basename(model_path), digest) + '\n' + text


def _read_stamp(path: str) -> tuple:
    """Return (model file named by the stamp or None, whether the text still matches it)."""
    with open(path, encoding='utf-8', errors='replace') as f:
        lines = f.read().splitlines(True)
    for index, line in enumerate(lines):
        match = _STAMP_RE.match(line.rstrip('\n'))
        if match:
            body = ''.join(lines[index + 1:])
            digest = hashlib.sha256(body.encode('utf-8')).hexdigest()
            return match.group('model'), digest == match.group('sha')
    return None, False


def config_target(model_path: str) -> str:
    """Return where the converter writes ``model_path``'s config.

    ``<model file>.yaml`` where it exists; else ``<stem>.yaml``, unless that belongs to
    another artefact (its stamp names another file, or it has no stamp and another model of
    the same stem lies beside): then ``<model file>.yaml``.
    """
    own = model_path + '.yaml'
    shared = os.path.splitext(model_path)[0] + '.yaml'
    if os.path.isfile(own) or not os.path.isfile(shared):
        return own if os.path.isfile(own) else shared
    owner, _ = _read_stamp(shared)
    if owner == os.path.basename(model_path) or (owner is None and
                                                 not _artefacts(model_path)):
        return shared
    return own


def _artefacts(model_path: str) -> bool:
    """Return whether another model file of the same stem is beside ``model_path``."""
    stem = os.path.splitext(model_path)[0]
    return any(os.path.isfile(stem + ext) and not _same_file(stem + ext, model_path)
               for ext in ('.onnx', '.tflite', '.engine', '.plan'))


def check_config(path: str, force: bool) -> Optional[str]:
    """Refuse to replace a hand-edited config without ``force``; back it up with it.

    :returns: the ``.bak`` copy made, else None.
    :raises UserError: ``path`` was edited since the converter wrote it (or has no stamp),
        and ``force`` is not set.
    """
    if not os.path.exists(path):
        return None
    _, intact = _read_stamp(path)
    if intact:
        return None  # the converter's own, unchanged: rewriting it loses nothing
    if not force:
        raise UserError('{} was edited by hand (or written by another tool): not replaced. '
                        'Pass --force to replace it (a copy is kept as {}.bak), or move it '
                        'away first.'.format(path, path))
    return backup(path)
