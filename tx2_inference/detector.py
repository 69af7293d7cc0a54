"""The ``Detector`` facade: model config + backend + pre-processing + executor + decoder.

What the node, the demo and the benchmark use (contract in docs/DESIGN.md)::

    with Detector('models/ssdlite_person.onnx', on_result=callback) as det:
        det.submit(image, 'rgb', tag)        # never blocks; results in submission order
        detections = det.detect(image, 'rgb')  # synchronous convenience

Full-integer models (a TFLite model with int8/uint8 inputs or outputs and per-tensor
``(scale, zero_point)`` in ``backend.quantization``) run like their float twins: the
pre-processor writes the quantised input, and each quantised output is dequantised into a
preallocated float32 buffer per slot before decoding.
"""

import ctypes
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from tx2_inference.backends import open_backend
from tx2_inference.backends.base import Slot
from tx2_inference.core.decoders import create_decoder, DetectionParams, Detections
from tx2_inference.core.model_config import ModelConfig
from tx2_inference.core.preprocess import Preprocessor, Transform
from tx2_inference.executor import DoubleBufferedExecutor

ResultCallback = Callable[[Any, Detections, Dict[str, float]], None]
Quantization = Tuple[float, int]
Outputs = Dict[str, np.ndarray]


def integer_quantization(backend: Any, name: str, dtype: Any) -> Optional[Quantization]:
    """Return ``(scale, zero_point)`` of a quantised integer tensor of ``backend``, else None.

    Backends that know of no quantisation have no ``quantization`` attribute; float tensors and
    integer tensors with a scale of 0 (counts, class ids) are not quantised.
    """
    scale, zero_point = (getattr(backend, 'quantization', None) or {}).get(name, (0.0, 0))
    if not scale or not np.issubdtype(np.dtype(dtype), np.integer):
        return None
    return float(scale), int(zero_point)


def input_shape(input_config: Dict[str, Any]) -> Tuple[int, ...]:
    """Return the model input's shape, batch 1, from a resolved config's input section."""
    height, width = input_config['size']
    channels = 1 if input_config['color'] == 'mono' else 3
    if input_config['layout'] == 'nhwc':
        return (1, height, width, channels)
    return (1, channels, height, width)


def dequantize(q: np.ndarray, quantization: Quantization, out: np.ndarray) -> np.ndarray:
    """Write ``(q - zero_point) * scale`` into the float array ``out``, allocating nothing."""
    scale, zero_point = quantization
    np.copyto(out, q, casting='unsafe')  # to float first: q - zero_point overflows int8
    np.subtract(out, zero_point, out=out)
    np.multiply(out, scale, out=out)
    return out


class Detector(object):
    """Detect objects in images with one model, on the best (or the named) backend.

    :param model_path: ``.onnx``, a TensorRT engine, or ``.tflite``.
    :param config_path: the model config; default: the ``.yaml`` beside the model.
    :param backend: ``auto``, ``onnxruntime``, ``onnxruntime-cuda``, ``onnxruntime-tensorrt``,
        ``tensorrt`` or ``tflite`` (see ``tx2_inference.backends.open_backend``).
    :param precision: TensorRT engine precision when an engine is built from ONNX.
    :param engine_cache_dir: where built TensorRT engines are cached.
    :param depth: executor slots (2: double buffering).
    :param threads: CPU threads for ONNX Runtime / TFLite (None: the runtime's default).
    :param spinning: whether ONNX Runtime's intra-op pool threads spin between the parallel
        parts of a run (see ``OnnxRuntimeBackend``; None: its default, off). Other backends
        ignore it.
    :param on_result: ``on_result(tag, detections, timing)``, called from the executor's
        completion thread in submission order.
    :param on_error: ``on_error(tag, error)`` for a frame that could not be processed (e.g. a
        ``FrameError``); default: logged.
    :raises UserError: a missing or bad model, config or backend, with what to fix.
    """

    def __init__(self, model_path: str, config_path: Optional[str] = None,
                 backend: str = 'auto', precision: str = 'fp16',
                 engine_cache_dir: Optional[str] = None, depth: int = 2,
                 threads: Optional[int] = None, on_result: Optional[ResultCallback] = None,
                 on_error: Optional[Callable[[Any, BaseException], None]] = None,
                 spinning: Optional[bool] = None) -> None:
        """Load the config and the model, allocate the slots, start the executor."""
        self.model_path = model_path
        self.on_result = on_result
        self.params = DetectionParams()
        self._closed = False
        self._lock = threading.Lock()
        config = ModelConfig.for_model(model_path, config_path)
        self._backend = open_backend(model_path, backend, precision=precision, threads=threads,
                                     engine_cache_dir=engine_cache_dir, spinning=spinning)
        try:
            self.config = config.resolve(self._backend.inputs, self._backend.outputs)
            inp = self.config.input
            self._input_name = inp['name']
            height, width = inp['size']
            self.input_shape = input_shape(inp)
            dtype = [t.dtype for t in self._backend.inputs if t.name == self._input_name][0]
            self._input_dtype = dtype
            #: ``(scale, zero_point)`` of a quantised input, or None.
            self.input_quantization = integer_quantization(self._backend, self._input_name,
                                                          dtype)
            #: output name -> ``(scale, zero_point)``, for the quantised outputs only.
            self.output_quantization = {}  # type: Dict[str, Quantization]
            for tensor in self._backend.outputs:
                quantization = integer_quantization(self._backend, tensor.name, tensor.dtype)
                if quantization is not None:
                    self.output_quantization[tensor.name] = quantization
            # slot index -> (the slot's raw outputs, what the decoder reads: float buffers for
            # the quantised outputs, the raw arrays for the rest); made at a slot's first frame.
            self._decode_inputs = {}  # type: Dict[int, Tuple[Outputs, Outputs]]
            self._decoder = create_decoder(self.config.decoder, self.config.labels,
                                           (height, width))
            # One pre-processor and one transform per slot: a slot's frame is prepared by one
            # thread at a time, but two slots may be prepared at once.
            self._preprocessors = [Preprocessor(inp, self.input_shape, dtype,
                                                self.input_quantization)
                                   for _ in range(int(depth))]
            self._transforms = [Transform() for _ in range(int(depth))]
            self._executor = DoubleBufferedExecutor(
                self._backend, self._prepare, self._finish, self._deliver, on_error,
                depth=depth, input_shapes={self._input_name: self.input_shape})
        except BaseException:
            self._backend.close()
            raise

    @property
    def labels(self) -> List[str]:
        """Return the model's labels (class id -> name)."""
        return list(self.config.labels)

    @property
    def backend_name(self) -> str:
        """Return the backend's name (``onnxruntime``, ``tensorrt``, ``tflite``)."""
        return self._backend.name

    @property
    def backend(self) -> Any:
        """Return the open backend (its tensors and providers; run nothing on it)."""
        return self._backend

    @property
    def depth(self) -> int:
        """Return the number of executor slots."""
        return self._executor.depth

    @property
    def precision(self) -> str:
        """Return the precision the backend runs at."""
        return self._backend.precision

    def _prepare(self, frame: Any, slot: Slot) -> Transform:
        image, color = frame
        return self._preprocessors[slot.index](image, color, slot.inputs[self._input_name],
                                               self._transforms[slot.index])

    def decode_inputs(self, slot: Slot) -> Dict[str, np.ndarray]:
        """Return the slot's outputs as the decoder reads them: quantised ones dequantised.

        Without quantised outputs this is ``slot.outputs`` itself. Otherwise the float32
        buffers are made at the slot's first frame and reused; not thread-safe per slot.
        """
        if not self.output_quantization:
            return slot.outputs
        entry = self._decode_inputs.get(slot.index)
        if entry is None or entry[0] is not slot.outputs:
            views = dict(slot.outputs)
            for name in self.output_quantization:
                views[name] = np.empty(slot.outputs[name].shape, np.float32)
            entry = (slot.outputs, views)
            self._decode_inputs[slot.index] = entry
        raw, views = entry
        for name, quantization in self.output_quantization.items():
            dequantize(raw[name], quantization, views[name])
        return views

    def _finish(self, slot: Slot, transform: Transform) -> Detections:
        detections = self._decoder(self.decode_inputs(slot), self.params)
        transform.to_source(detections.boxes, out=detections.boxes)
        return detections

    def _deliver(self, tag: Any, detections: Detections, timing: Dict[str, float]) -> None:
        callback = self.on_result
        if callback is not None:
            callback(tag, detections, timing)

    def submit(self, image: np.ndarray, color: str, tag: Any = None) -> None:
        """Queue one frame; never waits for inference (the newest frame wins when busy).

        :param image: HxWx3 (rgb, bgr) or HxW / HxWx1 (mono), uint8.
        :param color: ``rgb``, ``bgr`` or ``mono``.
        :param tag: anything; handed back to ``on_result`` with the frame's detections.
        """
        self._executor.submit((image, color), tag)

    def detect(self, image: np.ndarray, color: str = 'rgb',
               timeout: Optional[float] = 30.0) -> Detections:
        """Detect in one image synchronously; boxes in ``image``'s pixels.

        :raises FrameError: the image cannot feed this model.
        """
        return self._executor.process((image, color), timeout)

    def stats(self) -> Dict[str, Any]:
        """Return counts (submitted, completed, dropped, dropped_reasons) and timings."""
        result = self._executor.stats()
        result['backend'] = self.backend_name
        return result

    def drain(self, timeout_s: Optional[float] = None) -> bool:
        """Wait until every accepted frame has produced its result; False on timeout."""
        return self._executor.drain(timeout_s)

    def close(self) -> None:
        """Finish the frames in flight, release model, buffers and GPU memory; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._executor.close()
        finally:
            self._backend.close()
            return_freed_memory()

    def __enter__(self) -> 'Detector':
        """Use in a ``with`` block; closes at the end."""
        return self

    def __exit__(self, *exc_info: Any) -> None:
        """Close the detector."""
        self.close()


def return_freed_memory() -> None:
    """Hand the memory a closed model freed back to the OS, where the C library allows it.

    glibc keeps freed heap pages for reuse, so a node's RSS after cleanup depends on the
    allocator's state (seen here: 160 or 188 MB, alternating from one cycle to the next) rather
    than on what is still in use. ``malloc_trim(0)`` returns them. Elsewhere it does nothing.
    """
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc
