"""TFLite backend (ai-edge-litert, or tflite_runtime): FP32 / FP16 / INT8 models on CPU.

Each slot has its own interpreter (one interpreter must not run two frames at once) and its
own worker thread; ``invoke`` releases the GIL. The slot's host buffers are plain numpy arrays:
``launch`` copies the input in with ``set_tensor`` (the CPU's "H2D copy") and the outputs out
into preallocated arrays through short-lived ``tensor()`` views, so nothing is allocated per
frame and no view into the interpreter outlives an ``invoke``.

Full-integer models (int8/uint8 inputs or outputs) describe their per-tensor affine
quantisation in ``quantization``: ``real = (q - zero_point) * scale``. The backend moves the
raw integers; ``Detector`` quantises the input and dequantises the outputs. Per-channel
quantisation of an input or output is refused with a ``ModelError``.
"""

import os
import threading
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from tx2_inference.backends.base import concrete_shape, Slot, TensorInfo, ThreadedBackend
from tx2_inference.errors import BackendUnavailableError, ModelError


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as error:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise BackendUnavailableError(
                'no TFLite runtime ({}): pip install ai-edge-litert (or tflite-runtime), or '
                'use backend onnxruntime'.format(error)) from error
    return Interpreter


def quantization_from_detail(detail: Dict[str, Any]) -> Tuple[float, int]:
    """Return a tensor's per-tensor ``(scale, zero_point)``; ``(0.0, 0)``: not quantised.

    :param detail: one entry of the interpreter's ``get_input_details()`` or
        ``get_output_details()``.
    :raises ModelError: the tensor is quantised per channel (several scales), which the
        pre-processor and the decoders do not apply.
    """
    params = detail.get('quantization_parameters') or {}
    scales = np.asarray(params.get('scales', ()), dtype=np.float64).reshape(-1)
    zero_points = np.asarray(params.get('zero_points', ()), dtype=np.int64).reshape(-1)
    if scales.size > 1 or zero_points.size > 1:
        raise ModelError(
            'TFLite tensor {!r} is quantised per channel ({} scales along axis {}); only '
            'per-tensor quantisation of model inputs and outputs is supported: convert with '
            'float (or per-tensor int8) inputs and outputs.'.format(
                detail.get('name'), max(scales.size, zero_points.size),
                params.get('quantized_dimension')))
    if scales.size == 1:
        return float(scales[0]), int(zero_points[0]) if zero_points.size else 0
    scale, zero_point = detail.get('quantization', (0.0, 0)) or (0.0, 0)
    return float(scale), int(zero_point)


class TFLiteBackend(ThreadedBackend):
    """Run a ``.tflite`` model.

    :param model_path: the ``.tflite`` file.
    :param threads: interpreter threads (None: the runtime's default).
    :param serialize_runs: run one slot at a time (off: see ``OnnxRuntimeBackend``).
    """

    name = 'tflite'
    runtime_label = 'TFLite inference'

    def __init__(self, model_path: str, threads: Optional[int] = None,
                 serialize_runs: bool = False) -> None:
        """Load the model once to describe it; slots load their own interpreters."""
        super(TFLiteBackend, self).__init__(model_path)
        self._interpreter_class = _interpreter_class()
        if not os.path.isfile(model_path):
            raise ModelError('TFLite model {!r} does not exist: check the model path'.format(
                model_path))
        self._threads = threads
        probe = self._new_interpreter()
        self._inputs = [self._info(d) for d in probe.get_input_details()]
        self._outputs = [self._info(d) for d in probe.get_output_details()]
        # name -> (scale, zero_point) of every input and output; (0.0, 0): not quantised.
        self.quantization = {d['name']: quantization_from_detail(d)
                             for d in probe.get_input_details() + probe.get_output_details()}
        self._device_lock = threading.Lock() if serialize_runs else None

    def _new_interpreter(self) -> Any:
        try:
            interpreter = self._interpreter_class(model_path=self.model_path,
                                                  num_threads=self._threads)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise ModelError('TFLite cannot load {!r}: {} (is it a valid .tflite '
                             'model?)'.format(self.model_path, error)) from error
        return interpreter

    @staticmethod
    def _info(detail: Dict[str, Any]) -> TensorInfo:
        signature = detail.get('shape_signature', detail['shape'])
        return TensorInfo(detail['name'], tuple(int(d) for d in signature),
                          np.dtype(detail['dtype']))

    def create_slot(self, index: int,
                    input_shapes: Optional[Dict[str, Sequence[int]]] = None) -> Slot:
        """Give the slot its own interpreter, buffers and worker thread."""
        interpreter = self._new_interpreter()
        details = interpreter.get_input_details()
        resized = False
        inputs = {}
        for info, detail in zip(self._inputs, details):
            shape = concrete_shape(info, (input_shapes or {}).get(info.name))
            if tuple(detail['shape']) != shape:
                interpreter.resize_tensor_input(detail['index'], list(shape))
                resized = True
            inputs[info.name] = np.zeros(shape, info.dtype)
        if resized:
            interpreter.allocate_tensors()
        outputs = {d['name']: np.zeros(tuple(d['shape']), d['dtype'])
                   for d in interpreter.get_output_details()}
        feeds = [(d['index'], inputs[d['name']]) for d in interpreter.get_input_details()]
        fetches = [(interpreter.tensor(d['index']), outputs[d['name']])
                   for d in interpreter.get_output_details()]

        def job() -> None:
            for tensor_index, array in feeds:
                interpreter.set_tensor(tensor_index, array)
            interpreter.invoke()
            for view, array in fetches:
                np.copyto(array, view())

        return self._add_slot(index, inputs, outputs, interpreter, job, self._device_lock)
