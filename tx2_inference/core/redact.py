"""
Messages about a file's content that never echo it: name fields, describe values.

A model config path can point at any readable file (a peer on the DDS domain could once set
``model_config``), and the node's errors reach ``/rosout`` and ``/diagnostics``: an error that
quotes the file would read it out. These helpers describe a value by its kind (numbers are
shown: they are the schema's, and tell the user what to fix) and name an unknown key only when
it is a near miss of a known one (a typo), never otherwise.
"""

import difflib
from typing import Any, Iterable, Sequence


def describe(value: Any) -> str:
    """Return a value for a message: numbers as they are, text and containers by kind."""
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)) and len(value) <= 8 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return repr(list(value))
    if isinstance(value, str):
        return 'a text of {} characters'.format(len(value))
    if isinstance(value, dict):
        return 'a mapping of {} keys'.format(len(value))
    if isinstance(value, (list, tuple)):
        return 'a list of {} items'.format(len(value))
    return 'a {}'.format(type(value).__name__)


def unknown_names(unknown: Iterable[Any], known: Sequence[str]) -> str:
    """Return the unknown keys for a message: a near miss of a known one, else a count."""
    shown, hidden = [], 0
    for name in unknown:
        close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.75)
        if close:
            shown.append('{!r} (did you mean {!r}?)'.format(str(name), close[0]))
        else:
            hidden += 1
    if hidden:
        shown.append('{} other{} (not shown: is this file a model config?)'.format(
            hidden, '' if hidden == 1 else 's'))
    return ', '.join(shown)


def choice(value: Any, allowed: Sequence[str], cutoff: float = 0.7) -> str:
    """Describe a value that is not one of ``allowed``: a near miss is named, nothing else."""
    if isinstance(value, str):
        close = difflib.get_close_matches(value, allowed, n=1, cutoff=cutoff)
        if close:
            return '{!r} (did you mean {!r}?)'.format(value, close[0])
    return describe(value)
