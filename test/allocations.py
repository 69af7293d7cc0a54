"""Measure what the hot path allocates per frame, with tracemalloc."""

import tracemalloc
from typing import Callable, Tuple


def allocations_over_frames(warm_up: Callable[[], None], submit: Callable[[int], None],
                            drain: Callable[[float], bool],
                            frames: int = 1000) -> Tuple[int, int]:
    """Submit `frames` frames (draining every other one); return (growth, peak) in bytes.

    Both are relative to the traced memory after `warm_up`, which runs under tracemalloc too so
    that its own first-use costs are not counted as the hot path's.
    """
    tracemalloc.start()
    try:
        warm_up()
        if hasattr(tracemalloc, 'reset_peak'):
            base, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
        else:  # Python < 3.9 (the robot's 3.6): trace afresh from here, the same measure
            tracemalloc.stop()
            tracemalloc.start()
            base = 0
        for frame in range(frames):
            submit(frame)
            if frame % 2:
                assert drain(30)
        assert drain(30)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return current - base, peak - base
