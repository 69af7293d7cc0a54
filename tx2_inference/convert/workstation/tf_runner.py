"""Workstation only: load a SavedModel or frozen GraphDef and run named tensors in TensorFlow.

This is the reference every converted model is compared against: it runs the *original*
graph (not tf2onnx's optimised copy) in a ``tf.compat.v1.Session``, feeding and fetching
tensors by graph name, which also works for tensors inside a graph cut.
"""

import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tx2_inference.errors import ModelError, UserError

#: TensorFlow's oneDNN CPU kernels (on by default on x86) differ from its reference kernels by
#: up to ~0.5 % on a detector's heatmap, enough to change which rows a top-K keeps; with this
#: set to 0 before TensorFlow is imported, the reference is deterministic and ONNX Runtime
#: matches it to ~1e-6.
ONEDNN = 'TF_ENABLE_ONEDNN_OPTS'


def use_reference_kernels() -> None:
    """Ask for TensorFlow's reference CPU kernels (``TF_ENABLE_ONEDNN_OPTS=0``) in this process.

    Takes effect only before TensorFlow is imported; a value the user set is kept.
    """
    if 'tensorflow' not in sys.modules:
        os.environ.setdefault(ONEDNN, '0')


def reference_kernels_note() -> str:
    """Return '' when TensorFlow runs its reference kernels here, else what to do about it."""
    if os.environ.get(ONEDNN) == '0':
        return ''
    return (' TensorFlow ran with its oneDNN CPU kernels ({}={}), which differ from its '
            'reference kernels by up to ~0.5 % on a heatmap, enough to change the rows a top-K '
            'keeps: run the conversion again with {}=0 in the environment (set before '
            'TensorFlow is imported; tx2-convert sets it unless it is already set) before '
            'suspecting the conversion.'.format(ONEDNN, os.environ.get(ONEDNN, '(unset: on)'),
                                                ONEDNN))


def _tf():
    """Import TensorFlow quietly, with its reference kernels (lazy: the workstation stage)."""
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    use_reference_kernels()
    import tensorflow as tf
    return tf


def source_kind(path: str) -> str:
    """Return 'saved_model' or 'frozen_graph' for ``path``.

    :raises UserError: if it is neither.
    """
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, 'saved_model.pb')):
            return 'saved_model'
        raise UserError('{!r} is a folder without saved_model.pb: pass a SavedModel folder or a '
                        'frozen GraphDef (.pb) file.'.format(path))
    if os.path.isfile(path):
        return 'frozen_graph'
    raise UserError('Model {!r} does not exist: pass a SavedModel folder or a frozen GraphDef '
                    '(.pb) file.'.format(path))


class SignatureInfo(object):
    """A SavedModel signature's tensors: key -> (graph tensor name, dtype, shape)."""

    def __init__(self, inputs: Dict[str, Tuple[str, np.dtype, List[Optional[int]]]],
                 outputs: Dict[str, Tuple[str, np.dtype, List[Optional[int]]]]) -> None:
        """Hold the input and output maps."""
        self.inputs = inputs
        self.outputs = outputs


def _meta_graph(path: str, tag: str):
    """Return the MetaGraphDef of a SavedModel for ``tag``."""
    from tensorflow.core.protobuf import saved_model_pb2
    sm = saved_model_pb2.SavedModel()
    with open(os.path.join(path, 'saved_model.pb'), 'rb') as f:
        try:
            sm.ParseFromString(f.read())
        except Exception as e:
            raise ModelError('{}/saved_model.pb cannot be parsed ({}): re-export the '
                             'SavedModel.'.format(path, e)) from e
    tags = [sorted(mg.meta_info_def.tags) for mg in sm.meta_graphs]
    for mg in sm.meta_graphs:
        if set(tag.split(',')) == set(mg.meta_info_def.tags):
            return mg
    raise UserError('SavedModel {!r} has no MetaGraph with tag {!r}; its tag sets are {}: pass '
                    'one with --tag.'.format(path, tag, tags))


def signature(path: str, tag: str, name: str) -> SignatureInfo:
    """Read a SavedModel signature's input and output tensors.

    :raises UserError: naming the available signatures if ``name`` is not one.
    """
    tf = _tf()
    mg = _meta_graph(path, tag)
    sigs = {k: v for k, v in mg.signature_def.items() if not k.startswith('_')}
    if name not in sigs:
        raise UserError('SavedModel {!r} (tag {!r}) has no signature {!r}; it has {}: pass one '
                        'with --signature.'.format(path, tag, name, sorted(sigs)))

    def tensors(m) -> Dict[str, Tuple[str, np.dtype, List[Optional[int]]]]:
        out = {}
        for key in sorted(m):
            info = m[key]
            dims = None if info.tensor_shape.unknown_rank else [
                None if d.size < 0 else int(d.size) for d in info.tensor_shape.dim]
            out[key] = (info.name, tf.dtypes.as_dtype(info.dtype).as_numpy_dtype, dims)
        return out

    sig = sigs[name]
    return SignatureInfo(tensors(sig.inputs), tensors(sig.outputs))


def load_graph(path: str, tag: str = 'serve'):
    """Return the model's GraphDef: a SavedModel's MetaGraph for ``tag``, or a frozen graph."""
    if source_kind(path) == 'saved_model':
        return _meta_graph(path, tag).graph_def
    return load_graph_def(path)


def node_ops(graph_def) -> Dict[str, str]:
    """Return node name -> op of a GraphDef, the nodes of its functions included."""
    ops = {n.name: n.op for n in graph_def.node}
    for fn in graph_def.library.function:
        for n in fn.node_def:
            ops.setdefault(n.name, n.op)
    return ops


def graph_node_names(path: str, tag: str = 'serve') -> Tuple[set, Dict[str, str]]:
    """Return (node names, node name -> op) of the model's graph, functions included."""
    ops = node_ops(load_graph(path, tag))
    return set(ops), ops


def load_graph_def(path: str):
    """Parse a frozen GraphDef file.

    :raises ModelError: if the file is not a GraphDef.
    """
    tf = _tf()
    gd = tf.compat.v1.GraphDef()
    with open(path, 'rb') as f:
        data = f.read()
    try:
        gd.ParseFromString(data)
    except Exception as e:
        raise ModelError('{!r} is not a TensorFlow GraphDef ({}): pass a frozen graph (.pb) '
                         'or a SavedModel folder.'.format(path, e)) from e
    if not gd.node:
        raise ModelError('{!r} holds an empty GraphDef: pass a frozen graph (.pb) or a '
                         'SavedModel folder.'.format(path))
    return gd


class TFRunner(object):
    """Run the original TensorFlow graph: feed and fetch tensors by graph name."""

    def __init__(self, path: str, outputs: Sequence[str], tag: str = 'serve',
                 threads: Optional[int] = None) -> None:
        """Load ``path`` (SavedModel or frozen graph) into its own graph and session."""
        tf = _tf()
        self.outputs = list(outputs)
        self._graph = tf.Graph()
        cfg = tf.compat.v1.ConfigProto()
        if threads:
            cfg.intra_op_parallelism_threads = threads
            cfg.inter_op_parallelism_threads = 1
        self._sess = tf.compat.v1.Session(graph=self._graph, config=cfg)
        with self._graph.as_default():
            if source_kind(path) == 'saved_model':
                tf.compat.v1.saved_model.loader.load(self._sess, tag.split(','), path)
            else:
                tf.import_graph_def(load_graph_def(path), name='')

    def run(self, feed: Dict[str, np.ndarray]) -> List[np.ndarray]:
        """Run the graph on ``feed`` (tensor name -> array); return the outputs in order."""
        return list(self._sess.run(self.outputs, feed_dict=feed))

    def tensor_dtype_shape(self, name: str) -> Tuple[np.dtype, List[Optional[int]]]:
        """Return a graph tensor's numpy dtype and (partly unknown) shape."""
        t = self._graph.get_tensor_by_name(name)
        dims = t.shape.as_list() if t.shape.rank is not None else None
        return t.dtype.as_numpy_dtype, dims

    def close(self) -> None:
        """Release the session."""
        self._sess.close()
