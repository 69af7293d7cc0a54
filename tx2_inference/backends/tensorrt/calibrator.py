"""INT8 calibration (TensorRT <= 10): the shape to calibrate in, the batches, the calibrator.

**Shapes** (NvInfer.h 8.2, ``IBuilderConfig::setCalibrationProfile``: "Calibration optimization
profile must be set if int8 calibration is used to set scales for a network with runtime
dimensions ... MIN and MAX values will be overwritten by kOPT"). So:

- a network with a dynamic input calibrates in one fixed shape: the ``--shapes`` profile's OPT
  with the batch set to ``--calib-batch`` (clamped to the profile's MIN..MAX batch); that shape
  is given to TensorRT as the calibration profile, and the buffer is sized for it;
- a static network calibrates in its own batch: with explicit batch, TensorRT feeds the
  network's input shape from the buffer and ignores ``get_batch_size`` (NVIDIA/TensorRT#2978),
  so a batch-1 network gets batches of one image, whatever ``--calib-batch`` says.

Every image is calibrated: the last batch is filled up with images from the start of the list
(:class:`CalibrationBatches`).

**The calibrator** mirrors NVIDIA's sample calibrators (``get_batch_size``, ``get_batch(names)``
returning device pointers, None when done, ``read/write_calibration_cache``). Its CUDA state (a
device buffer, a stream, an event) is made only when ``open()`` is called, right before the
build, and freed by ``release()`` on every path; the CUDA context is pushed only around each
CUDA call, never left pushed on the thread (pycuda aborts a process whose thread exits with a
context pushed).
"""

import logging
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from tx2_inference.core.fileio import atomic_write_bytes
from tx2_inference.errors import ConfigError, UserError

LOG = logging.getLogger('tx2_inference.backends.tensorrt.calibrator')


def calibration_shape(input_shape: Sequence[int],
                      profile: Optional[Tuple[Sequence[int], Sequence[int], Sequence[int]]],
                      calib_batch: int) -> Tuple[Tuple[int, ...], bool]:
    """Return (the shape TensorRT calibrates the input in, whether it needs a profile).

    :param input_shape: the network input's shape, -1 where dynamic.
    :param profile: its (min, opt, max) from ``--shapes``, or None.
    :param calib_batch: the images per batch asked for.
    :raises UserError: a dynamic input without a shape profile.
    """
    shape = tuple(int(d) for d in input_shape)
    if all(d >= 0 for d in shape):
        return shape, False  # explicit batch: TensorRT uses the network's own batch
    if profile is None:
        raise UserError('INT8 calibration of an input with dynamic shape {} needs its shape '
                        'profile: pass --shapes NAME:MIN:OPT:MAX.'.format(list(shape)))
    low, opt, high = (tuple(int(d) for d in s) for s in profile)
    calib = list(opt)
    if shape[0] < 0:
        calib[0] = min(max(int(calib_batch), low[0]), high[0])
    return tuple(calib), True


class CalibrationBatches(object):
    """Batches of preprocessed calibration images (no GPU; what the calibrator feeds).

    TensorRT's calibrators take a constant batch, so there are ``ceil(len(paths) / batch)``
    batches and the last one is filled up with images from the start of the list: every image
    is calibrated (a few twice).
    """

    def __init__(self, paths: Sequence[str], input_cfg: Dict[str, Any],
                 shape: Sequence[int], dtype: Any) -> None:
        """Plan batches of ``shape`` (its first dimension is the batch) over ``paths``."""
        if not paths:
            raise UserError('no calibration images: give a folder with a few hundred images '
                            'like the camera sees.')
        shape = tuple(int(d) for d in shape)
        if len(shape) < 2 or shape[0] < 1:
            raise ConfigError('calibration shape {} has no batch dimension.'.format(
                list(shape)))
        self.paths = list(paths)
        self.input_cfg = input_cfg
        self.batch_shape = shape
        self.batch_size = shape[0]
        self.item_shape = (1,) + shape[1:]
        self.dtype = np.dtype(dtype)
        self.count = -(-len(self.paths) // self.batch_size)
        repeated = self.count * self.batch_size - len(self.paths)
        if repeated:
            LOG.info('calibration: the last batch of %d is filled up with %d image(s) from the '
                     'start', self.batch_size, repeated)

    @property
    def nbytes(self) -> int:
        """Return the size of one batch in bytes (the device buffer to allocate)."""
        return int(np.prod(self.batch_shape)) * self.dtype.itemsize

    def __len__(self) -> int:
        """Return the number of batches."""
        return self.count

    def batch_paths(self, number: int) -> List[str]:
        """Return the image paths of batch ``number``."""
        start = number * self.batch_size
        return [self.paths[(start + i) % len(self.paths)] for i in range(self.batch_size)]

    def __iter__(self) -> Iterator[np.ndarray]:
        """Yield contiguous batches of ``batch_shape`` and ``dtype`` (one array, refilled)."""
        from tx2_inference.core import images
        out = np.empty(self.batch_shape, self.dtype)
        for number in range(self.count):
            for i, path in enumerate(self.batch_paths(number)):
                out[i] = images.prepare(images.read_rgb(path), self.input_cfg, self.item_shape,
                                        self.dtype)[0]
            yield out


def make_calibrator(trt: Any, kind: str, batches: Optional[CalibrationBatches],
                    cache_path: Optional[str], open_cuda: Any = None,
                    source: Optional[str] = None) -> Any:
    """Return an ``IInt8EntropyCalibrator2`` or ``IInt8MinMaxCalibrator`` (TensorRT <= 10).

    With a cache file and no images, TensorRT calibrates from the cache alone. With images, a
    cache is used only if it was written from the same images: ``source`` (their digest,
    ``BuildOptions.calibration_digest``) is written beside it as ``<cache>.source``, and a
    cache without it or from other images is recalibrated and overwritten. Nothing is
    allocated until ``open()``; ``release()`` frees it and is safe to call on any path.

    :param open_cuda: ``cuda.open_cuda`` (tests pass a host stand-in).
    :param source: the digest of the images ``batches`` come from.
    """
    base = trt.IInt8MinMaxCalibrator if kind == 'minmax' else trt.IInt8EntropyCalibrator2
    if open_cuda is None:
        from tx2_inference.backends.tensorrt.cuda import open_cuda

    class Calibrator(base):  # type: ignore
        """Feeds ``batches`` to TensorRT through one device buffer."""

        def __init__(self) -> None:
            base.__init__(self)
            self.batches = batches
            self.cache_path = cache_path
            self.device = None  # type: Any
            self.buffer = self.stream = self.event = None  # type: Any
            self.iterator = iter(batches) if batches is not None else None
            self.done = 0

        def open(self) -> None:
            """Open CUDA and allocate the batch buffer, stream and event (freed on failure)."""
            if self.batches is None or self.device is not None:
                return
            self.device = open_cuda()
            self.device.push()
            try:
                self.buffer = self.device.mem_alloc(self.batches.nbytes)
                self.stream = self.device.stream()
                self.event = self.device.event(blocking=True)
            except BaseException:
                self.device.pop()
                self.release()
                raise
            self.device.pop()

        def get_batch_size(self) -> int:
            return self.batches.batch_size if self.batches is not None else 1

        def get_batch(self, names: List[str]) -> Optional[List[int]]:
            if self.iterator is None or self.device is None:
                return None
            try:
                batch = next(self.iterator)
            except StopIteration:
                LOG.info('calibration: all %d batches fed', self.done)
                return None
            self.device.push()
            try:
                self.device.memcpy_htod_async(self.buffer, batch, self.stream)
                self.device.record(self.event, self.stream)
                self.device.synchronize(self.event)
            finally:
                self.device.pop()
            self.done += 1
            LOG.info('calibration batch %d/%d', self.done, len(self.batches))
            return [int(self.buffer)]

        def read_calibration_cache(self) -> Optional[bytes]:
            if not (self.cache_path and os.path.isfile(self.cache_path)):
                return None
            if self.batches is not None and source and _cache_source(self.cache_path) != source:
                LOG.warning('calibration cache %s was not written from these calibration '
                            'images: calibrating again (it is overwritten)', self.cache_path)
                return None
            LOG.info('using calibration cache %s', self.cache_path)
            with open(self.cache_path, 'rb') as f:
                return f.read()

        def write_calibration_cache(self, cache: Any) -> None:
            if self.cache_path:
                atomic_write_bytes(self.cache_path, bytes(cache))
                if self.batches is not None and source:
                    atomic_write_bytes(self.cache_path + '.source', source.encode('utf-8'))
                LOG.info('wrote calibration cache %s', self.cache_path)

        def release(self) -> None:
            """Free the buffer, stream and event and close CUDA; idempotent."""
            device, self.device = self.device, None
            if device is None:
                return
            made = [o for o in (self.buffer, self.event, self.stream) if o is not None]
            self.buffer = self.stream = self.event = None
            device.push()
            try:
                device.free(*made)
            finally:
                del made[:]  # pycuda's stream and event are destroyed here, context pushed
                device.pop()
                device.close()

    return Calibrator()


def _cache_source(cache_path: str) -> Optional[str]:
    """Return the digest of the images a calibration cache was written from, if recorded."""
    try:
        with open(cache_path + '.source', 'rb') as f:
            return f.read().decode('utf-8', 'replace').strip()
    except (IOError, OSError):
        return None
