"""Tiled inference through the executor: a frame's tiles as rows of one batch, merged per frame.

``Tiler`` sits between ``Detector.submit`` and the executor. A camera frame becomes one
executor frame per tile (``core.tiles.TileGrid``), each its own *sub-source* ``(camera,
tile index)``, submitted together (``submit_many``); the executor puts the tiles into the
rows of the slot being filled, so with a
model that batches (``batch_size`` >= the tiles) a frame's tiles run as **one** inference, and
with a model of batch 1 they run one after another on the executor's slots. Each tile's
detections come back in frame pixels with the sides the tile cut (``Detector._finish``);
when a frame's last tile is in, ``core.tiles.merge_tiles`` merges them and the frame's
``on_result`` is called once, with the merged detections and the frame's cost.

One frame per camera is in the executor at a time. A camera's newer frame waits as its
pending frame (a newer one replaces it: ``superseded``) and goes in when the frame before it
is merged. This is what keeps frames whole: were the tiles of two frames of a camera queued
together, the executor's newest-wins rule would replace single tiles, and above the model's
rate no frame would ever have all of its tiles.
"""

import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from tx2_inference.core.decoders import Detections
from tx2_inference.core.stats import RecentValues
from tx2_inference.core.tiles import merge_tiles, TileGrid
from tx2_inference.errors import FrameError

# submit_many([(frame, tag, source), ...]) of the executor.
SubmitTiles = Callable[[List[Tuple[Any, Any, Any]]], None]

DROP_REASONS = ('superseded', 'error', 'closed')


class TileResult(object):
    """One tile's detections in frame pixels, and which of their sides the tile cut."""

    __slots__ = ('detections', 'cut')

    def __init__(self, detections: Detections, cut: np.ndarray) -> None:
        """Store the detections (frame pixels) and their [N, 4] cut sides."""
        self.detections = detections
        self.cut = cut


class TileTag(object):
    """What a tile carries through the executor: its frame and its index."""

    __slots__ = ('frame', 'index')

    def __init__(self, frame: '_Frame', index: int) -> None:
        """Name the frame and the tile."""
        self.frame = frame
        self.index = index


class _Frame(object):
    """One camera frame whose tiles are in the executor."""

    __slots__ = ('tag', 'source', 'submitted', 'results', 'timings', 'remaining', 'error')

    def __init__(self, tag: Any, source: Any, submitted: float, count: int) -> None:
        self.tag = tag
        self.source = source
        self.submitted = submitted
        self.results = [None] * count  # type: List[Optional[TileResult]]
        self.timings = [None] * count  # type: List[Optional[Dict[str, float]]]
        self.remaining = count
        self.error = None  # type: Optional[BaseException]


class _Camera(object):
    """A camera's frame in the executor, its pending frame and its counts."""

    __slots__ = ('inflight', 'pending', 'received', 'completed', 'dropped', 'latency')

    def __init__(self) -> None:
        self.inflight = None  # type: Optional[_Frame]
        self.pending = None  # type: Optional[Tuple[np.ndarray, str, Any, float]]
        self.received = 0
        self.completed = 0
        self.dropped = dict.fromkeys(DROP_REASONS, 0)
        self.latency = RecentValues(256)


class Tiler(object):
    """Run each frame as its grid's tiles and deliver it once, merged; see the module.

    :param grid: the tiles of every frame.
    :param submit_tiles: the executor's ``submit_many([(frame, tag, source), ...])``: a
        frame's tiles go in together, so one batch takes them all. A tile's frame is
        ``(crop, color, (x1, y1, x2, y2, frame height, frame width))``, its tag a
        ``TileTag``, its source ``(camera, index)``.
    :param deliver: ``deliver(tag, detections, timing)``: a frame's merged result.
    :param on_error: ``on_error(tag, error)``: a frame one of whose tiles failed (once).
    :param params: returns the live ``DetectionParams`` (NMS threshold, max detections).
    :param ios_threshold: how much of a cut box another box must cover to be the same object.

    ``cut_aware`` (True): merge with the tile cuts; False: a plain NMS over every tile's boxes
    (the recall tool's comparison).
    """

    def __init__(self, grid: TileGrid, submit_tiles: SubmitTiles,
                 deliver: Callable[[Any, Detections, Dict[str, float]], None],
                 on_error: Callable[[Any, BaseException], None], params: Callable[[], Any],
                 ios_threshold: float = 0.7) -> None:
        """Start with no camera."""
        self.grid = grid
        self.ios_threshold = ios_threshold
        self.cut_aware = True
        self._submit_tiles = submit_tiles
        self._deliver = deliver
        self._on_error = on_error
        self._params = params
        self._lock = threading.Lock()
        self._cameras = {}  # type: Dict[Any, _Camera]
        self._closed = False
        self._frames = 0
        self._inferences = 0
        self._merge_ms = RecentValues(256)
        self._frame_ms = RecentValues(256)
        self._infer_ms = RecentValues(256)

    def sources(self, camera: Any) -> List[Tuple[Any, int]]:
        """Return the executor sources of a camera's tiles."""
        return [(camera, index) for index in range(len(self.grid))]

    def submit(self, image: np.ndarray, color: str, tag: Any, source: Any) -> None:
        """Queue a frame: its tiles go to the executor now, or once its camera's frame is out.

        An image that cannot be cut (no height or width) fails like a bad frame: ``on_error``
        with a ``FrameError``.
        """
        now = time.perf_counter()
        with self._lock:
            if self._closed:
                raise RuntimeError('submit on a closed detector')
            camera = self._cameras.get(source)
            if camera is None:
                camera = self._cameras[source] = _Camera()
            camera.received += 1
            if camera.inflight is not None:
                if camera.pending is not None:
                    camera.dropped['superseded'] += 1
                camera.pending = (image, color, tag, now)
                return
            frame = camera.inflight = _Frame(tag, source, now, len(self.grid))
        self._start(frame, image, color)

    def _start(self, frame: _Frame, image: np.ndarray, color: str) -> None:
        """Hand a frame's tiles to the executor (no lock held: it may prepare them here)."""
        shape = getattr(image, 'shape', ())
        if len(shape) < 2 or not shape[0] or not shape[1]:
            error = FrameError('image of shape {} has no rows and columns to cut into tiles.'
                               .format(shape))
            for index in range(len(self.grid)):
                self.failed(TileTag(frame, index), error)
            return
        height, width = int(shape[0]), int(shape[1])
        tiles = self.grid.tiles(height, width)
        items = [((image[tile[1]:tile[3], tile[0]:tile[2]], color, tile + (height, width)),
                  TileTag(frame, index), (frame.source, index))
                 for index, tile in enumerate(tiles)]
        try:
            self._submit_tiles(items)
        except Exception as error:  # closed meanwhile: no tile of the frame runs
            for index in range(len(tiles)):
                self.failed(TileTag(frame, index), error)

    def collect(self, tag: TileTag, result: TileResult, timing: Dict[str, float]) -> None:
        """Take a tile's result (executor's completion thread); merge and deliver when whole."""
        frame = tag.frame
        frame.results[tag.index] = result
        frame.timings[tag.index] = timing
        self._tile_done(frame)

    def failed(self, tag: TileTag, error: BaseException) -> None:
        """Take a tile that failed: its frame fails (reported once, when its tiles are in)."""
        frame = tag.frame
        if frame.error is None:
            frame.error = error
        self._tile_done(frame)

    def _tile_done(self, frame: _Frame) -> None:
        with self._lock:
            frame.remaining -= 1
            if frame.remaining > 0:
                return
        if frame.error is None:
            detections, timing = self._merge(frame)
        with self._lock:
            camera = self._cameras[frame.source]
            camera.inflight = None
            if frame.error is None:
                camera.completed += 1
                camera.latency.add(timing['latency_ms'])
                self._frames += 1
                self._inferences += int(timing['tile_inferences'])
                self._merge_ms.add(timing['merge_ms'])
                self._frame_ms.add(timing['latency_ms'])
                self._infer_ms.add(timing['infer_ms'])
            else:
                camera.dropped['error'] += 1
            following = camera.pending
            camera.pending = None
            if following is not None:
                if self._closed:
                    camera.dropped['closed'] += 1
                    following = None
                else:
                    image, color, tag, submitted = following
                    camera.inflight = _Frame(tag, frame.source, submitted, len(self.grid))
        try:
            if frame.error is None:
                self._deliver(frame.tag, detections, timing)
            else:
                self._on_error(frame.tag, frame.error)
        finally:
            if following is not None:
                self._start(camera.inflight, following[0], following[1])

    def _merge(self, frame: _Frame) -> Tuple[Detections, Dict[str, float]]:
        """Return a frame's merged detections and its cost, from its tiles'."""
        start = time.perf_counter()
        results = [r for r in frame.results if r is not None]
        boxes = np.concatenate([r.detections.boxes for r in results])
        scores = np.concatenate([r.detections.scores for r in results])
        class_ids = np.concatenate([r.detections.class_ids for r in results])
        labels = [label for r in results for label in r.detections.labels]
        cut = np.concatenate([r.cut for r in results])
        if not self.cut_aware:
            cut[:] = False
        params = self._params()
        keep, merged = merge_tiles(boxes, scores, class_ids, cut, params.iou_threshold,
                                   self.ios_threshold, params.max_detections,
                                   params.class_agnostic_nms)
        detections = Detections(merged, scores[keep], class_ids[keep],
                                [labels[i] for i in keep])
        done = time.perf_counter()
        timings = [t for t in frame.timings if t is not None]
        # Tiles in one batch share their inference: count each launch (its end) once.
        launches = {}  # type: Dict[float, float]
        for t in timings:
            launches[t['infer_end']] = t['infer_ms']
        timing = {
            'prepare_ms': sum(t['prepare_ms'] for t in timings),
            'infer_ms': sum(launches.values()),
            'decode_ms': sum(t['decode_ms'] for t in timings) + (done - start) * 1e3,
            'merge_ms': (done - start) * 1e3,
            'latency_ms': (done - frame.submitted) * 1e3,
            'tiles': float(len(timings)),
            'tile_inferences': float(len(launches)),
            'batch_frames': max(t['batch_frames'] for t in timings),
            'submitted': frame.submitted,
            'infer_end': max(launches),
            'collected': max(t['collected'] for t in timings),
            'decoded': done}
        return detections, timing

    def busy(self) -> bool:
        """Return whether a frame is in the executor or waiting for one."""
        with self._lock:
            return any(c.inflight is not None or c.pending is not None
                       for c in self._cameras.values())

    def close(self) -> None:
        """Take no more frames; drop the pending ones (counted ``closed``)."""
        with self._lock:
            self._closed = True
            for camera in self._cameras.values():
                if camera.pending is not None:
                    camera.pending = None
                    camera.dropped['closed'] += 1

    def stats(self, executor_sources: Dict[Any, Dict[str, Any]]) -> Tuple[
            Dict[str, Any], Dict[Any, Dict[str, Any]]]:
        """Return the tiling figures and the per-camera counts (frames, not tiles).

        :param executor_sources: the executor's ``stats()['sources']`` (per tile source):
            tiles its camera's newer tiles replaced count for the camera's frames.
        :returns: (``stats()['tiling']``, ``stats()['sources']`` by camera).
        """
        with self._lock:
            frames, inferences = self._frames, self._inferences
            tiling = {
                'grid': '{}x{}'.format(self.grid.columns, self.grid.rows),
                'overlap': self.grid.overlap,
                'whole_frame': self.grid.whole_frame,
                'tiles_per_frame': len(self.grid),
                'frames': frames,
                'inferences_per_frame_mean': inferences / frames if frames else float('nan'),
                'frame_ms_p50': self._frame_ms.percentile(50),
                'frame_ms_p99': self._frame_ms.percentile(99),
                'infer_ms_per_frame_p50': self._infer_ms.percentile(50),
                'merge_ms_p50': self._merge_ms.percentile(50)}
            sources = {}
            for key, camera in self._cameras.items():
                dropped = dict(camera.dropped)
                sources[key] = {
                    'received': camera.received, 'completed': camera.completed,
                    'dropped': sum(dropped.values()), 'dropped_reasons': dropped,
                    'pending': int(camera.pending is not None),
                    'latency_ms_p50': camera.latency.percentile(50),
                    'latency_ms_p99': camera.latency.percentile(99)}
        for key, entry in executor_sources.items():
            if not (isinstance(key, tuple) and len(key) == 2 and key[0] in sources):
                sources.setdefault(key, entry)  # not a tile (the synchronous path's, none)
        return tiling, sources


def tile_of(frame: Any) -> Optional[Tuple[int, ...]]:
    """Return the tile of an executor frame ``(image, color[, tile and frame size])``, or None."""
    return frame[2] if len(frame) > 2 else None
