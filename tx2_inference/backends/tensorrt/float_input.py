"""Give an ONNX model float32 inputs where it has uint8 ones (TensorRT before 8.5 has no UINT8).

Every TensorFlow Object Detection API export takes a uint8 ``image_tensor`` and casts it to
float as its first step. TensorRT 8.0/8.2 (JetPack 4.6.x, the last for TX2 and Nano) has no
``kUINT8`` and its ONNX parser refuses UINT8 tensors (onnx/onnx-tensorrt#400, "Unsupported ONNX
data type: UINT8 (2)"); UINT8 network I/O came with 8.5 (onnx-tensorrt ``docs/Changelog.md``,
8.5 GA). :func:`float_inputs` makes such an input float32 and drops the Casts to float that
read it, so the model computes the same numbers from the same pixel values (0..255, now
written as float by the pre-processor, which follows the model's input dtype). A Cast to
another type stays (from float now); a uint8 input read by anything but a Cast is refused,
since making it float could change what that node computes.

Needs only the ``onnx`` package (Python 3.6, no TensorRT).
"""

from typing import Any, Iterator, List, Tuple

from tx2_inference.errors import ModelError

UINT8 = 2  # onnx.TensorProto.UINT8
FLOAT = 1  # onnx.TensorProto.FLOAT


def uint8_inputs(model: Any) -> List[str]:
    """Return the names of the graph inputs (not weights) whose type is uint8."""
    weights = {i.name for i in model.graph.initializer}
    return [i.name for i in model.graph.input
            if i.name not in weights and i.type.tensor_type.elem_type == UINT8]


def _graphs(graph: Any) -> Iterator[Any]:
    """Yield ``graph`` and every subgraph of its nodes (Loop, If, Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField('g'):
                for sub in _graphs(attr.g):
                    yield sub
            for sub_graph in attr.graphs:
                for sub in _graphs(sub_graph):
                    yield sub


def _rename_uses(model: Any, old: str, new: str) -> None:
    """Make every node input ``old`` (in the graph and its subgraphs) read ``new``."""
    for graph in _graphs(model.graph):
        for node in graph.node:
            for k, name in enumerate(node.input):
                if name == old:
                    node.input[k] = new


def float_inputs(model: Any) -> Tuple[Any, List[str]]:
    """Return a copy of ``model`` whose uint8 inputs are float32, and the inputs changed.

    :raises ModelError: a uint8 input read by something other than a Cast, or a Cast to float
        whose output is also a graph output.
    """
    import onnx
    out = onnx.ModelProto()
    out.CopyFrom(model)
    changed = []
    outputs = {o.name for o in out.graph.output}
    for name in uint8_inputs(out):
        readers = [n for g in _graphs(out.graph) for n in g.node if name in n.input]
        others = [n for n in readers if n.op_type != 'Cast']
        if others:
            raise ModelError(
                'uint8 input {!r} is read by {} ({}), not only by a Cast: it cannot be made '
                'float32 without changing what that node computes. Export the model with a '
                'float input (e.g. TF Object Detection API: --input_type float_image_tensor)'
                '.'.format(name, others[0].name or '(unnamed)', others[0].op_type))
        for cast in readers:
            to = [a.i for a in cast.attribute if a.name == 'to']
            if to != [FLOAT]:
                continue  # a Cast to another type now casts from float: same values
            if cast.output[0] in outputs:
                raise ModelError('uint8 input {!r} is cast to a graph output ({!r}): export the '
                                 'model with a float input.'.format(name, cast.output[0]))
            _rename_uses(out, cast.output[0], name)
            for graph in _graphs(out.graph):
                if cast in graph.node:
                    graph.node.remove(cast)
                    break
            for info in list(out.graph.value_info):
                if info.name == cast.output[0]:
                    out.graph.value_info.remove(info)
        for tensor in out.graph.input:
            if tensor.name == name:
                tensor.type.tensor_type.elem_type = FLOAT
        changed.append(name)
    return out, changed
