"""Frames for `tx2-convert evaluate`: a folder of images or every Nth frame of a video.

Robot teams have video, not labels: the reference mode scores every variant against the FP32
model on these frames. Frames are RGB uint8 HxWx3 arrays, named ``<video>#<index>`` or by file.
"""

import os
from typing import List, Optional, Tuple

import numpy as np

from tx2_inference.core import images as imgs
from tx2_inference.errors import UserError

Frame = Tuple[str, np.ndarray]

VIDEO_EXTENSIONS = ('.avi', '.mp4', '.mkv', '.mov', '.webm', '.mpg', '.mpeg', '.m4v')


def is_video(path: str) -> bool:
    """Return True if ``path`` is a file with a video extension."""
    return os.path.isfile(path) and path.lower().endswith(VIDEO_EXTENSIONS)


def read_frames(source: str, every: int = 1, limit: Optional[int] = None,
                start: int = 0) -> List[Frame]:
    """Return ``(name, rgb)`` frames of a folder of images or a video file.

    Frames ``start``, ``start + every``, ... (files in name order), at most ``limit``.

    :raises UserError: a missing source, a file that is not a video OpenCV can open, a bad
        ``every``, or no frame at all.
    """
    if every < 1:
        raise UserError('--every {}: take every Nth frame with N >= 1.'.format(every))
    if os.path.isdir(source):
        paths = imgs.list_images(source)[start::every]
        return [(os.path.basename(p), imgs.read_rgb(p)) for p in paths[:limit]]
    if not os.path.isfile(source):
        raise UserError('Footage {!r} does not exist: pass a folder of images or a video '
                        'file ({}).'.format(source, ', '.join(VIDEO_EXTENSIONS)))
    import cv2
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        raise UserError('OpenCV cannot open {!r} as a video: pass a video file ({}) or a folder '
                        'of images.'.format(source, ', '.join(VIDEO_EXTENSIONS)))
    frames = []  # type: List[Frame]
    name = os.path.basename(source)
    index = 0
    try:
        while limit is None or len(frames) < limit:
            ok, bgr = cap.read()
            if not ok:
                break
            if index >= start and (index - start) % every == 0:
                frames.append(('{}#{}'.format(name, index), cv2.cvtColor(bgr,
                                                                          cv2.COLOR_BGR2RGB)))
            index += 1
    finally:
        cap.release()
    if not frames:
        raise UserError('{!r} gave no frame (from frame {}, every {}): is it an empty or '
                        'truncated video?'.format(source, start, every))
    return frames


def write_frames(frames: List[Frame], folder: str, scale: float = 1.0) -> List[str]:
    """Write frames as JPEG files (optionally scaled) into ``folder``; return the paths."""
    import cv2
    os.makedirs(folder, exist_ok=True)
    paths = []
    for k, (_, rgb) in enumerate(frames):
        if scale != 1.0:
            rgb = cv2.resize(rgb, (int(round(rgb.shape[1] * scale)),
                                   int(round(rgb.shape[0] * scale))),
                             interpolation=cv2.INTER_AREA)
        path = os.path.join(folder, 'frame_{:04d}.jpg'.format(k))
        cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths
