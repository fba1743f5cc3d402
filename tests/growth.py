"""Linear-time checks that hold on a loaded machine: compare an input with one eight times its
size in the same run, instead of asserting a wall-clock bound. Linear work grows about 8x,
quadratic work 64x; other load on the machine only ever adds time to both."""

from __future__ import annotations

import timeit
from collections.abc import Callable
from typing import Any

SCALE = 8
# Allowed growth for SCALE x the input: linear plus generous noise, far below quadratic (64x).
MAX_GROWTH = 24.0
# Below this a timing is mostly noise; pad the small side so the ratio means something.
FLOOR_SECONDS = 0.002


def best_of(fn: Callable[[], Any], repeat: int = 3) -> float:
    return min(timeit.repeat(fn, number=1, repeat=repeat))


def growth(fn: Callable[[str], Any], text: str) -> float:
    """How much longer `fn` takes on `text` than on its first eighth."""
    small = text[: len(text) // SCALE]
    small_seconds = max(best_of(lambda: fn(small)), FLOOR_SECONDS)
    return best_of(lambda: fn(text)) / small_seconds
