"""The ``Detector`` facade: model config + backend + pre-processing + executor + decoder.

What the node, the demo and the benchmark use (contract in docs/DESIGN.md)::

    with Detector('models/ssdlite_person.onnx', on_result=callback) as det:
        det.submit(image, 'rgb', tag)        # never blocks; results in order per source
        detections = det.detect(image, 'rgb')  # synchronous convenience

Full-integer models (a TFLite model with int8/uint8 inputs or outputs and per-tensor
``(scale, zero_point)`` in ``backend.quantization``) run like their float twins: the
pre-processor writes the quantised input, and each quantised output is dequantised into a
preallocated float32 buffer per slot before decoding.
"""

import collections
import ctypes
import logging
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

import numpy as np

from tx2_inference.backends import open_backend
from tx2_inference.backends.base import SlotRow
from tx2_inference.core.decoders import create_decoder, DetectionParams, Detections
from tx2_inference.core.model_config import ModelConfig
from tx2_inference.core.preprocess import Preprocessor, Transform
from tx2_inference.core.tiles import cut_edges, edge_margin, offset_boxes, TileGrid
from tx2_inference.errors import ConfigError, FrameError
from tx2_inference.executor import DoubleBufferedExecutor
from tx2_inference.tiling import tile_of, Tiler, TileResult, TileTag

ResultCallback = Callable[[Any, Detections, Dict[str, float]], None]
Quantization = Tuple[float, int]
Outputs = Dict[str, np.ndarray]
_LOG = logging.getLogger(__name__)
# The window of ``stats()['nonfinite_recent']``: of the last this many frames decoded.
RECENT_FRAMES = 50


class NonFiniteOutputError(FrameError):
    """A frame's model outputs held NaN or Inf; it was dropped (``reason`` for counting)."""

    reason = 'nonfinite_output_error'


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
    :param batch_size: frames per inference (1: unbatched). Frames of different sources
        (``submit``'s ``source``) share a batch; see ``tx2_inference.executor``. Above 1 the
        model needs a batch dimension (``tx2-convert onnx --batch``).
    :param batch_timeout_ms: a partial batch launches this long after its first frame.
    :param sources: the sources expected (the cameras): batches wait for them from the start.
    :param threads: CPU threads for ONNX Runtime / TFLite (None: the runtime's default).
    :param spinning: whether ONNX Runtime's intra-op pool threads spin between the parallel
        parts of a run (see ``OnnxRuntimeBackend``; None: its default, off). Other backends
        ignore it.
    :param spin_us: ONNX Runtime 1.26+: how long its pool threads spin before sleeping, in
        microseconds (``OnnxRuntimeBackend``; None: its default, 50). Others ignore it.
    :param on_result: ``on_result(tag, detections, timing)``, called from the executor's
        completion thread, or from the thread that submitted the frame when the executor ran
        it there (idle, frames far apart: ``executor``), in submission order per source
        (camera), never two at once.
    :param on_error: ``on_error(tag, error)`` for a frame that could not be processed (e.g. a
        ``FrameError``); default: logged.
    :param backend_options: more keyword arguments for the backend (``triton``: url,
        model_name, timeout_s, TLS files, headers, compression).
    :param tiles: run each frame as these tiles (``core.tiles.TileGrid``) and merge their
        detections (``tx2_inference.tiling``). Where the model batches, a frame's tiles are
        the rows of one inference (``batch_size`` frames of different sources: ``batch_size``
        x tiles rows), else they run one after another. ``on_result`` is called once per
        frame, merged; ``batch_size`` then returns the rows.
    :param tile_sources: the sources (cameras) to tile; None: every source. Frames of the
        others run whole, as without ``tiles`` (each still one row of a batch).
    :raises UserError: a missing or bad model, config or backend, with what to fix.
    """

    def __init__(self, model_path: str, config_path: Optional[str] = None,
                 backend: str = 'auto', precision: str = 'fp16',
                 engine_cache_dir: Optional[str] = None, depth: int = 2,
                 threads: Optional[int] = None, on_result: Optional[ResultCallback] = None,
                 on_error: Optional[Callable[[Any, BaseException], None]] = None,
                 backend_options: Optional[Dict[str, Any]] = None,
                 batch_size: int = 1, batch_timeout_ms: float = 10.0,
                 sources: Sequence[Any] = (), spinning: Optional[bool] = None,
                 spin_us: Optional[int] = None,
                 tiles: Optional[TileGrid] = None,
                 tile_sources: Optional[Sequence[Any]] = None) -> None:
        """Load the config and the model, allocate the slots, start the executor."""
        self.model_path = model_path
        self.on_result = on_result
        self.params = DetectionParams()
        self.tiles = tiles
        self.tile_sources = None if tile_sources is None else frozenset(tile_sources)
        self._tiler = None  # type: Optional[Tiler]
        self._on_error = on_error
        self._detect_lock = threading.Lock()
        self._closed = False
        self._lock = threading.Lock()
        self._nonfinite = 0  # frames whose outputs held NaN or Inf
        self._recent_finite: Deque[bool] = collections.deque(maxlen=RECENT_FRAMES)
        config = ModelConfig.for_model(model_path, config_path)
        self._backend = open_backend(model_path, backend, precision=precision, threads=threads,
                                     engine_cache_dir=engine_cache_dir, spinning=spinning,
                                     spin_us=spin_us,
                                     # a TensorRT engine built here runs every tile's row
                                     batch_size=int(batch_size) * (len(tiles) if tiles else 1),
                                     depth=int(depth),
                                     **(backend_options or {}))
        try:
            self.config = config.resolve(self._backend.inputs, self._backend.outputs)
            self.params = self.config.detection_params()  # the model config's defaults
            inp = self.config.input
            self._input_name = inp['name']
            height, width = inp['size']
            self.input_shape = input_shape(inp)
            batch_size = self._tile_batch(int(batch_size))
            self.slot_batch = self._slot_batch(batch_size)
            slot_shape = (self.slot_batch,) + self.input_shape[1:]
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
            # (slot index, row) -> (the row's raw outputs, what the decoder reads: float buffers
            # for the quantised outputs, the raw arrays for the rest); made at its first frame.
            self._decode_inputs = {}  # type: Dict[Tuple[int, int], Tuple[Outputs, Outputs]]
            self._decoder = create_decoder(self.config.decoder, self.config.labels,
                                           (height, width))
            # One pre-processor and one transform per slot row: a row's frame is prepared by
            # one thread at a time, but several rows may be prepared at once.
            self._preprocessors = [[Preprocessor(inp, self.input_shape, dtype,
                                                 self.input_quantization)
                                    for _ in range(self.slot_batch)] for _ in range(int(depth))]
            self._transforms = [[Transform() for _ in range(self.slot_batch)]
                                for _ in range(int(depth))]
            if tiles is not None:
                self._tiler = Tiler(tiles, self._submit_tiles, self._deliver_frame,
                                    self._frame_error, lambda: self.params)
                sources = [key for source in sources for key in (
                    self._tiler.sources(source) if self._tiled(source) else [source])]
            self._executor = DoubleBufferedExecutor(
                self._backend, self._prepare, self._finish, self._deliver,
                self._tile_error if tiles is not None else on_error,
                depth=depth, input_shapes={self._input_name: slot_shape},
                batch_size=int(batch_size), batch_timeout_ms=batch_timeout_ms, sources=sources)
        except BaseException:
            self._backend.close()
            raise

    def _tile_batch(self, batch_size: int) -> int:
        """Return the rows per inference with tiling: ``batch_size`` frames' tiles, if it batches.

        A model that runs several frames at once (a free batch dimension, or a fixed batch
        above 1) runs a frame's tiles as the rows of one inference: ``batch_size`` (frames,
        of different cameras) times the tiles, within the model's largest batch. Otherwise
        ``batch_size`` stays, and the tiles run one after another.
        """
        if self.tiles is None or batch_size < 1 or self._backend.batch_refusal:
            return batch_size
        largest = self._backend.max_batch
        recorded = self.config.input.get('batch')
        if largest is None and isinstance(recorded, int) and recorded > 0:
            largest = recorded
        if largest == 1:
            return batch_size
        wanted = batch_size * len(self.tiles)
        return wanted if largest is None else min(wanted, max(largest, batch_size))

    def _slot_batch(self, batch_size: int) -> int:
        """Return the slots' batch for ``batch_size`` frames per inference, or refuse it.

        :raises ConfigError: the model cannot run that many frames at once, saying how to
            convert it so that it can.
        """
        if batch_size < 1:
            raise ConfigError('batch_size must be at least 1, got {}'.format(batch_size))
        if batch_size > 1 and self._backend.batch_refusal:
            raise ConfigError('batch_size {}: {}'.format(batch_size, self._backend.batch_refusal))
        largest = self._backend.max_batch
        recorded = self.config.input.get('batch')
        if largest is None and isinstance(recorded, int) and recorded > 0:
            largest = recorded  # a dynamic batch, converted for at most this many frames
        if largest is not None and largest > 1 and not self._backend.dynamic_batch:
            if batch_size > largest:
                raise ConfigError(
                    'batch_size {}: the model {} has a fixed batch of {}: set batch_size to at '
                    'most {}, or convert it for a larger batch (tx2-convert onnx --batch {} or '
                    '--batch dynamic).'.format(batch_size, self.model_path, largest, largest,
                                               batch_size))
            return largest  # fixed batch: every launch runs it (padding rows)
        if batch_size == 1:
            return 1
        if largest is not None and batch_size > largest:
            hint = ('convert the model with a batch dimension: tx2-convert onnx MODEL --batch '
                    '{} (or --batch dynamic), then tx2-convert engine model.onnx --batch {} for '
                    'TensorRT'.format(batch_size, batch_size) if largest == 1 else
                    'rebuild it for a larger batch: tx2-convert engine model.onnx --batch '
                    '{}'.format(batch_size))
            raise ConfigError('batch_size {}: the model {} runs at most {} frame(s) at once; '
                              'set batch_size to at most {}, or {}.'.format(
                                  batch_size, self.model_path, largest, largest, hint))
        return batch_size

    @property
    def batch_size(self) -> int:
        """Return the most frames one inference runs."""
        return self._executor.batch_size

    @property
    def batch_timeout_ms(self) -> float:
        """Return how long a partial batch waits for the other sources' frames (ms)."""
        return self._executor.batch_timeout_ms

    @batch_timeout_ms.setter
    def batch_timeout_ms(self, value: float) -> None:
        self._executor.batch_timeout_ms = value

    @property
    def tiler(self) -> Optional[Tiler]:
        """Return the tiler (``tx2_inference.tiling``) with ``tiles``, else None."""
        return self._tiler

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

    def _prepare(self, frame: Any, row: SlotRow) -> Any:
        image, color = frame[0], frame[1]
        index = row.slot.index
        transform = self._preprocessors[index][row.row](
            image, color, row.inputs[self._input_name], self._transforms[index][row.row])
        tile = tile_of(frame)
        return transform if tile is None else (transform, tile)

    def decode_inputs(self, slot: Any) -> Dict[str, np.ndarray]:
        """Return a slot's (or a slot row's) outputs as the decoder reads them: dequantised.

        Without quantised outputs this is ``slot.outputs`` itself. Otherwise the float32
        buffers are made at the slot row's first frame and reused; not thread-safe per row.
        """
        if not self.output_quantization:
            return slot.outputs
        key = (getattr(slot, 'slot', slot).index, getattr(slot, 'row', 0))
        entry = self._decode_inputs.get(key)
        if entry is None or entry[0] is not slot.outputs:
            views = dict(slot.outputs)
            for name in self.output_quantization:
                views[name] = np.empty(slot.outputs[name].shape, np.float32)
            entry = (slot.outputs, views)
            self._decode_inputs[key] = entry
        raw, views = entry
        for name, quantization in self.output_quantization.items():
            dequantize(raw[name], quantization, views[name])
        return views

    def _finish(self, row: SlotRow, context: Any, check: bool = True) -> Any:
        transform, tile = context if isinstance(context, tuple) else (context, None)
        outputs = self.decode_inputs(row)
        if check:
            self._check_finite(outputs)
        detections = self._decoder(outputs, self.params)
        transform.to_source(detections.boxes, out=detections.boxes)
        if tile is None:
            return detections
        # A tile: its boxes into frame pixels, and which sides of them the tile cut.
        offset_boxes(detections.boxes, tile)
        height, width = tile[4], tile[5]
        cut = cut_edges(detections.boxes, tile[:4], height, width,
                        edge_margin(tile, self.config.input['size']))
        return TileResult(detections, cut)

    def _check_finite(self, outputs: Dict[str, np.ndarray]) -> None:
        """Count the frame; raise NonFiniteOutputError when a float output holds NaN or Inf.

        Such a frame (an FP16 engine's overflow, a broken model) would decode to zero
        detections, an all-clear nobody asked for: it is dropped and counted instead. One
        float64 sum per output finds any NaN or Inf without a temporary array.
        """
        bad = [name for name, array in outputs.items()
               if array.dtype.kind == 'f' and not np.isfinite(np.sum(array, dtype=np.float64))]
        with self._lock:
            self._recent_finite.append(not bad)
            if bad:
                self._nonfinite += 1
        if bad:
            raise NonFiniteOutputError(
                'the model output {} holds NaN or Inf values: the frame is dropped. An FP16 '
                'engine that overflows does this: rebuild it with precision fp32 (or fix the '
                "model's weights); nonfinite_frames on /diagnostics counts them".format(
                    ', '.join(sorted(bad))))

    def _deliver(self, tag: Any, detections: Any, timing: Dict[str, float]) -> None:
        if isinstance(tag, TileTag):
            self._tiler.collect(tag, detections, timing)
            return
        self._deliver_frame(tag, detections, timing)

    def _deliver_frame(self, tag: Any, detections: Detections, timing: Dict[str, float]) -> None:
        if isinstance(tag, _Waiter):
            tag.finish(detections, None)
            return
        callback = self.on_result
        if callback is not None:
            callback(tag, detections, timing)

    def _tiled(self, source: Any) -> bool:
        return self._tiler is not None and (self.tile_sources is None or
                                            source in self.tile_sources)

    def _submit_tiles(self, items: List[Tuple[Any, TileTag, Any]]) -> None:
        self._executor.submit_many(items)

    def _tile_error(self, tag: Any, error: BaseException) -> None:
        if isinstance(tag, TileTag):
            self._tiler.failed(tag, error)
        else:
            self._frame_error(tag, error)

    def _frame_error(self, tag: Any, error: BaseException) -> None:
        if isinstance(tag, _Waiter):
            tag.finish(None, error)
        elif self._on_error is not None:
            self._on_error(tag, error)
        else:
            _LOG.error('frame %r failed: %s', tag, error)

    def warmup(self) -> float:
        """Run one inference on a synthetic frame in every slot; return the time it took in ms.

        The first inference of a freshly built session or engine is often many times slower
        than the next ones (lazy initialisation, allocation, kernel and algorithm selection),
        and each slot has its own buffers and, on TensorRT, its own execution context. Calling
        this before the first real frame (the node does, at configure) moves that cost out of
        the first frame's latency. The frame goes through the same pre-processing, inference
        and decoding as a real one, on each slot's own stream or worker thread, but it is not
        counted in ``stats()`` and no ``on_result`` is called for it.

        :raises RuntimeError: the backend failed to run the model (the model cannot run here).
        """
        height, width = self.config.input['size']
        color = 'mono' if self.config.input['color'] == 'mono' else 'rgb'
        # Noise rather than a flat frame: a decoder then sees scores of every kind, as on a
        # real image. Seeded, so every warm-up does the same work.
        shape = (height, width) if color == 'mono' else (height, width, 3)
        frame = np.random.RandomState(0).randint(0, 256, shape).astype(np.uint8)
        start = time.perf_counter()
        for slot in self._executor.slots:
            # A full batch: the largest shape the slot runs is the one warmed up.
            slot.count = slot.batch
            transforms = [self._prepare((frame, color), row) for row in slot.rows]
            self._backend.launch(slot)
            self._backend.wait(slot)
            for row, transform in zip(slot.rows, transforms):
                self._finish(row, transform, check=False)  # noise: not counted
        return (time.perf_counter() - start) * 1e3

    def submit(self, image: np.ndarray, color: str, tag: Any = None,
               source: Any = None) -> None:
        """Queue one frame; never waits for inference (its source's newest frame wins when busy).

        :param image: HxWx3 (rgb, bgr) or HxW / HxWx1 (mono), uint8.
        :param color: ``rgb``, ``bgr`` or ``mono``.
        :param tag: anything; handed back to ``on_result`` with the frame's detections.
        :param source: the camera the frame comes from (any hashable, e.g. its topic): each
            source keeps its own pending frame and is served fairly; see ``stats()['sources']``.
        """
        if self._tiled(source):
            self._tiler.submit(image, color, tag, source)
            return
        self._executor.submit((image, color), tag, source)

    def detect(self, image: np.ndarray, color: str = 'rgb',
               timeout: Optional[float] = 30.0) -> Detections:
        """Detect in one image synchronously; boxes in ``image``'s pixels.

        :raises FrameError: the image cannot feed this model.
        """
        if self._tiler is None:
            return self._executor.process((image, color), timeout)
        with self._detect_lock:  # one tiled frame of this source at a time
            waiter = _Waiter()
            self._tiler.submit(image, color, waiter, _DETECT_SOURCE)
            return waiter.wait(timeout)

    def stats(self) -> Dict[str, Any]:
        """Return counts (submitted, completed, dropped, dropped_reasons) and timings."""
        result = self._executor.stats()
        if self._tiler is not None:  # frames, not tiles, per camera; the tiles' cost
            result['tiling'], result['sources'] = self._tiler.stats(result['sources'])
            result['sources'].pop(_DETECT_SOURCE, None)
        result['backend'] = self.backend_name
        with self._lock:
            result['nonfinite_frames'] = self._nonfinite
            result['nonfinite_recent'] = self._recent_finite.count(False)
            result['recent_frames'] = len(self._recent_finite)
        health = getattr(self._backend, 'health', None)  # a remote backend's connection
        if health is not None:
            result['backend_health'] = health()
        memory = getattr(self._backend, 'device_memory', None)  # a CUDA backend's GPU memory
        info = memory() if memory is not None else None
        if info is not None:
            result['device_memory'] = info
        return result

    def drain(self, timeout_s: Optional[float] = None) -> bool:
        """Wait until every accepted frame has produced its result; False on timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            if not self._executor.drain(remaining):
                return False
            if self._tiler is None or not self._tiler.busy():
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.001)  # a merged frame's successor is on its way into the executor

    def close(self) -> None:
        """Finish the frames in flight, release model, buffers and GPU memory; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            if self._tiler is not None:
                self._tiler.close()
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


_DETECT_SOURCE = ('tx2_inference.detect',)  # the tiled synchronous path's camera


class _Waiter(object):
    """A tiled ``detect`` call waiting for its merged frame."""

    __slots__ = ('done', 'result', 'error')

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result = None  # type: Optional[Detections]
        self.error = None  # type: Optional[BaseException]

    def finish(self, result: Optional[Detections], error: Optional[BaseException]) -> None:
        self.result, self.error = result, error
        self.done.set()

    def wait(self, timeout: Optional[float]) -> Detections:
        if not self.done.wait(timeout):
            raise TimeoutError('no result within {} s'.format(timeout))
        if self.error is not None:
            raise self.error
        return self.result


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
