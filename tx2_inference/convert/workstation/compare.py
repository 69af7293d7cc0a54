"""Workstation only: compare a converted model's outputs with TensorFlow's, as a user would.

Most outputs are compared element by element. Detection outputs that come out of a top-K or an
NMS (the rows of ``detection_boxes``, ``detection_scores``, ... or a packed ``[1, K, 6]``) are
compared as detections: two rows whose scores are nearly equal may come back in either order
from two runtimes, both correct. Their rows are matched across TensorFlow and the converted
model (jointly over every output of the same K rows, so a box keeps its score and class), then
compared. An output is a detection output when the converted ONNX graph computes it from a
``TopK`` or ``NonMaxSuppression``, or when the user names it (``--order-free``).

Each output has its tolerance, ``atol + rtol * |tf|`` per element: the global ``--atol`` and
``--rtol``, or its own with ``--tolerance NAME=ATOL[:RTOL]``. Columns of the last axis can have
their own, ``--tolerance NAME[COLUMNS]=ATOL[:RTOL]`` (``NAME[0:4]`` columns 0 to 3, ``NAME[5]``
column 5): a packed ``[1, K, 6]`` top-K holds pixels, a score and a class, which no single
tolerance fits. In such a packed detection output (5 or more columns), a column whose
TensorFlow values are all whole numbers (the class) must match exactly unless given its own.
"""

import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from tx2_inference.errors import UserError

Tolerance = Tuple[float, float]
_ROW_SOURCES = ('TopK', 'NonMaxSuppression')
_COLUMNS = re.compile(r'^(?P<name>.+)\[(?P<first>\d+)(?::(?P<end>\d+))?\]$')
#: A detection output with at least this many columns is a packed one (boxes, score, class).
PACKED_COLUMNS = 5


def split_columns(key: str) -> Tuple[str, Optional[slice]]:
    """Return ``(output name, columns or None)`` of a ``--tolerance`` key (``NAME[0:4]``)."""
    match = _COLUMNS.match(key)
    if not match:
        return key, None
    first = int(match.group('first'))
    end = int(match.group('end')) if match.group('end') is not None else first + 1
    return match.group('name'), slice(first, end)


def parse_tolerances(items: Sequence[str]) -> Dict[str, Tolerance]:
    """Parse ``NAME[COLUMNS]=ATOL[:RTOL]`` items (``--tolerance``) into key -> (atol, rtol).

    An item without RTOL keeps rtol 0 (the whole tolerance is ATOL). The key is ``NAME`` or,
    for columns of the last axis, ``NAME[FIRST:END]`` / ``NAME[COLUMN]`` as written.

    :raises UserError: on a malformed item.
    """
    out = {}  # type: Dict[str, Tolerance]
    for item in items:
        name, sep, value = item.rpartition('=')
        try:
            parts = [float(v) for v in value.split(':')]
            if not sep or not name or len(parts) > 2 or min(parts) < 0:
                raise ValueError(item)
            columns = split_columns(name)[1]
            if columns is not None and columns.stop <= columns.start:
                raise ValueError(item)
        except ValueError:
            raise UserError('--tolerance {!r}: write NAME=ATOL or NAME=ATOL:RTOL with the '
                            'output name as the conversion prints it, e.g. '
                            'detection_scores=0.01, or NAME[FIRST:END]=ATOL for columns of its '
                            'last axis, e.g. detections[0:4]=0.5.'.format(item)) from None
        out[name] = (parts[0], parts[1] if len(parts) == 2 else 0.0)
    return out


def output_tolerance(name: str, refs: Sequence[np.ndarray], default: Tolerance,
                     tolerances: Mapping[str, Tolerance], detections: bool) -> Tuple[Any, Any]:
    """Return ``(atol, rtol)`` of one output: scalars, or arrays over its last axis' columns.

    Columns take their ``NAME[COLUMNS]`` entries; in a packed detection output (``detections``
    with ``PACKED_COLUMNS`` or more columns) a column not given whose TensorFlow values are
    all whole numbers (a class) gets 0: it must match exactly.
    """
    atol, rtol = tolerances.get(name, default)
    given = [(split_columns(key)[1], value) for key, value in tolerances.items()
             if split_columns(key)[0] == name and split_columns(key)[1] is not None]
    shape = np.shape(refs[0]) if refs else ()
    packed = detections and len(shape) >= 3 and shape[-1] >= PACKED_COLUMNS
    if not given and not packed:
        return atol, rtol
    count = shape[-1] if shape else 0
    atols, rtols = np.full(count, float(atol)), np.full(count, float(rtol))
    if packed:
        for column in range(count):
            values = np.concatenate([np.asarray(r, np.float64)[..., column].ravel()
                                     for r in refs])
            if values.size and np.all(values == np.round(values)):
                atols[column] = rtols[column] = 0.0
    for columns, (column_atol, column_rtol) in given:
        atols[columns], rtols[columns] = column_atol, column_rtol
    return atols, rtols


def row_ordered_outputs(model, names: Sequence[str]) -> List[str]:
    """Return the outputs of an ONNX model whose rows an upstream TopK or NMS ordered."""
    producer = {}
    for node in model.graph.node:
        for out in node.output:
            producer[out] = node
    found = []
    for name in names:
        seen = set()  # type: Set[str]
        stack = [name]
        while stack:
            tensor = stack.pop()
            node = producer.get(tensor)
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            if node.op_type in _ROW_SOURCES:
                found.append(name)
                break
            stack.extend(node.input)
    return found


class OutputDiff(object):
    """How one output compares over every sample: worst differences and the verdict."""

    def __init__(self, name: str, tolerance: Tuple[Any, Any], as_detections: bool) -> None:
        """Start with no difference."""
        self.name = name
        self.tolerance = tolerance
        self.as_detections = as_detections
        self.max_abs = 0.0
        self.max_rel = 0.0
        self.ok = True
        self.reordered_rows = 0
        self.crossed_rows = 0
        self.worst = None  # type: Optional[Tuple[Tuple[int, ...], float, float]]
        #: Per column of the last axis, where the output has per-column tolerances.
        self.column_max_abs = None  # type: Optional[List[float]]

    def add(self, ref: np.ndarray, got: np.ndarray) -> None:
        """Fold in one sample (``got`` already in ``ref``'s row order)."""
        ref = np.asarray(ref, np.float64)
        got = np.asarray(got, np.float64)
        if ref.size == 0:
            return
        diff = np.abs(ref - got)
        self.max_abs = max(self.max_abs, float(diff.max()))
        if np.ndim(self.tolerance[0]):
            worst = diff.reshape(-1, diff.shape[-1]).max(axis=0)
            self.column_max_abs = [float(v) for v in (
                worst if self.column_max_abs is None
                else np.maximum(worst, self.column_max_abs))]
        self.max_rel = max(self.max_rel, float((diff / np.maximum(np.abs(ref), 1e-6)).max()))
        atol, rtol = self.tolerance
        excess = diff - (atol + rtol * np.abs(ref))
        if excess.max() > 0:
            index = np.unravel_index(int(excess.argmax()), ref.shape)
            if self.ok:
                self.worst = (tuple(int(i) for i in index), float(ref[index]),
                              float(got[index]))
            self.ok = False

    def __repr__(self) -> str:
        """Show the verdict."""
        return 'OutputDiff({}, max_abs={:.3g}, ok={})'.format(self.name, self.max_abs, self.ok)


def _match_rows(refs: Sequence[np.ndarray], gots: Sequence[np.ndarray],
                tolerances: Sequence[Tolerance]) -> np.ndarray:
    """Return, per reference row, the converted row that is the same detection.

    Rows are axis 1 (axis 0 is the batch of one). The cost of a pair is its worst element
    difference in units of that output's tolerance (per column where it has per-column ones),
    over every output of the group; the assignment minimises the total (scipy's Hungarian
    method). An exact column (tolerance 0, a class) costs 0 where equal, a lot where not.
    """
    from scipy.optimize import linear_sum_assignment
    rows = refs[0].shape[1]
    cost = np.zeros((rows, rows))
    for ref, got, (atol, rtol) in zip(refs, gots, tolerances):
        full = np.asarray(ref, np.float64)
        r = full.reshape(rows, -1)
        g = np.asarray(got, np.float64).reshape(rows, -1)
        scale = np.broadcast_to(atol + rtol * np.abs(full), full.shape).reshape(rows, -1)
        pair = np.abs(r[:, None, :] - g[None, :, :]) / np.maximum(scale[:, None, :], 1e-12)
        cost = np.maximum(cost, pair.max(axis=2))
    ref_rows, got_rows = linear_sum_assignment(np.minimum(cost, 1e6))
    order = np.empty(rows, dtype=np.int64)
    order[ref_rows] = got_rows
    return order


def _row_groups(names: Sequence[str], ref: Mapping[str, np.ndarray],
                order_free: Sequence[str]) -> List[List[str]]:
    """Group the order-free outputs by their rows: same batch and row count (axis 0, 1)."""
    groups = {}  # type: Dict[Tuple[int, int], List[str]]
    for name in names:
        array = np.asarray(ref[name])
        if name in order_free and array.ndim >= 2 and array.shape[0] == 1 and \
                array.shape[1] > 1:
            groups.setdefault(array.shape[:2], []).append(name)
    return list(groups.values())


def compare_outputs(samples: Sequence[Tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]]],
                    names: Sequence[str], default: Tolerance,
                    tolerances: Mapping[str, Tolerance],
                    order_free: Sequence[str]) -> Dict[str, OutputDiff]:
    """Compare TensorFlow's and the converted model's outputs over samples.

    :param samples: per sample, (TensorFlow outputs, converted outputs) by output name.
    :param names: the outputs to compare, in the order to report them.
    :param default: (atol, rtol) of an output without its own tolerance.
    :param tolerances: output name -> (atol, rtol).
    :param order_free: outputs whose rows are detections in a runtime-defined order.
    :raises UserError: an output whose shapes differ (that is no tolerance matter).
    """
    diffs = {name: OutputDiff(name, output_tolerance(name, [ref[name] for ref, _ in samples],
                                                     default, tolerances, name in order_free),
                              name in order_free)
             for name in names}
    for ref, got in samples:
        for name in names:
            if np.shape(ref[name]) != np.shape(got[name]):
                raise UserError("Output {!r}: the converted shape {} differs from TensorFlow's "
                                '{}. Fix the input shape (--inputs) the model was converted '
                                'with.'.format(name, np.shape(got[name]), np.shape(ref[name])))
        aligned = {name: np.asarray(got[name]) for name in names}
        rows_compared = {}  # type: Dict[str, np.ndarray]
        for group in _row_groups(names, ref, order_free):
            order = _match_rows([ref[n] for n in group], [got[n] for n in group],
                                [diffs[n].tolerance for n in group])
            moved = int((order != np.arange(order.size)).sum())
            for name in group:
                aligned[name] = np.asarray(got[name])[:, order]
                diffs[name].reordered_rows = max(diffs[name].reordered_rows, moved)
            crossed = _crossed_the_cut(group, ref, aligned, order, diffs)
            for name in group:
                rows_compared[name] = ~crossed
                diffs[name].crossed_rows = max(diffs[name].crossed_rows, int(crossed.sum()))
        for name in names:
            if name in rows_compared:
                keep = rows_compared[name]
                diffs[name].add(np.asarray(ref[name])[:, keep], aligned[name][:, keep])
            else:
                diffs[name].add(ref[name], aligned[name])
    return diffs


def _crossed_the_cut(group: Sequence[str], ref: Mapping[str, np.ndarray],
                     aligned: Mapping[str, np.ndarray], order: np.ndarray,
                     diffs: Mapping[str, OutputDiff]) -> np.ndarray:
    """Return the rows (a mask) that are a detection at the top-K cut-off in one runtime only.

    With near-equal scores at the cut-off, one runtime keeps detection a as its last row and
    the other keeps b: both correct. Such rows are the unmatched ones, at the end of both
    runtimes' rows (rows come best first), and few (at most a tenth, or one). Anything else
    that does not match is compared, and fails.
    """
    rows = order.size
    ok = np.ones(rows, dtype=bool)
    for name in group:
        r = np.asarray(ref[name], np.float64)
        g = np.asarray(aligned[name], np.float64)
        atol, rtol = diffs[name].tolerance
        ok &= (np.abs(r - g) <= atol + rtol * np.abs(r)).reshape(rows, -1).all(axis=1)
    bad = np.flatnonzero(~ok)
    tail = rows - bad.size
    if bad.size and bad.size <= max(1, rows // 10) and (bad >= tail).all() and \
            (order[bad] >= tail).all():
        return ~ok
    return np.zeros(rows, dtype=bool)


def failure_message(diffs: Mapping[str, OutputDiff], label: Mapping[str, str],
                    samples: Sequence[Tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]]],
                    reference_note: str = '') -> str:
    """Say which outputs differ, where, and what would tell a real fault from an expected one.

    For an element-wise output whose rows are the same detections in another order, the hint
    is ``--order-free``; otherwise the worst element, and the per-output (or per-column)
    tolerance to use only if that difference is expected (reduced precision), or a cut before
    the op that differs. ``reference_note``: why TensorFlow's own result may be the one that
    moved (its oneDNN kernels), said before the conversion is blamed.
    """
    parts = []
    for name, diff in diffs.items():
        if diff.ok:
            continue
        index, want, have = diff.worst or ((), float('nan'), float('nan'))
        atol, rtol = diff.tolerance
        if np.ndim(atol) and index:  # per column: the worst element's column
            atol, rtol = atol[index[-1]], rtol[index[-1]]
        text = '{}: max abs {:.3g} (at {}: TensorFlow {:.6g}, converted {:.6g}; tolerance atol ' \
               '{:g} rtol {:g}{})'.format(label.get(name, name), diff.max_abs, list(index), want,
                                          have, float(atol), float(rtol),
                                          ', rows matched as detections' if diff.as_detections
                                          else '')
        if diff.column_max_abs is not None:
            text += ('; per column max abs {}: columns take their own tolerance with '
                     '--tolerance {}[FIRST:END]=ATOL[:RTOL] (e.g. pixels {}[0:4]=0.5)'.format(
                         [float('{:.3g}'.format(v)) for v in diff.column_max_abs], name, name))
        if not diff.as_detections and _same_rows_reordered(name, diff, samples):
            text += ('. Its rows are the same values in another order, as after a top-K or NMS '
                     'with near-equal scores: compare it as detections with --order-free {}'
                     .format(name))
        parts.append(text)
    return ('The converted model differs from TensorFlow: {}. Nothing was written.{} If the '
            'difference is expected for an output (e.g. reduced precision), give that output '
            'its own tolerance with --tolerance NAME=ATOL[:RTOL]; otherwise the conversion '
            'changed the result: cut the graph before the op that differs (--outputs, see '
            '--list-tensors) or try another --opset.'.format('; '.join(parts), reference_note))


def _same_rows_reordered(name: str, diff: OutputDiff,
                         samples: Sequence[Tuple[Mapping[str, np.ndarray],
                                                 Mapping[str, np.ndarray]]]) -> bool:
    """Return True when matching rows would make a failing element-wise output pass."""
    retry = OutputDiff(name, diff.tolerance, True)
    for ref, got in samples:
        r, g = np.asarray(ref[name]), np.asarray(got[name])
        if r.ndim < 2 or r.shape[0] != 1 or r.shape[1] < 2:
            return False
        order = _match_rows([r], [g], [diff.tolerance])
        retry.add(r, g[:, order])
    return retry.ok
