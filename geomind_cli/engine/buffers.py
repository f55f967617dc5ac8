"""Reusable arrays for the read path: fresh large arrays cost page faults on every use.

Decoded strips and tile batches are tens of megabytes; numpy allocates arrays that large straight from the kernel,
which zeroes every page on first touch, so a fresh array per strip or batch costs about as much as filling it. A
:class:`BufferPool` hands an array out again once nothing refers to it any more. That is decided by reference count:
a batch, a view of it, a tensor sharing its memory or a result slicing it all hold a reference to the array, so an
array comes back only when every user is done with it, whatever the threads and queues in between.
"""

from __future__ import annotations

import sys
import threading
from typing import Callable

import numpy as np


def _references(arrays: list[np.ndarray], i: int) -> int:
    array = arrays[i]
    return sys.getrefcount(array)


# What _references says of an array held by the pool's list alone (calibrated: the count depends on the interpreter).
_UNREFERENCED = _references([np.empty(1)], 0)


class BufferPool:
    """Arrays of any shape and dtype, reused once unreferenced; at most ``limit`` are kept (beyond that, arrays are
    allocated and left to the garbage collector). ``alloc(shape, dtype)`` makes new ones (pinned memory, say)."""

    def __init__(self, limit: int, alloc: Callable = np.empty):
        self.limit, self.alloc = limit, alloc
        self.arrays: list[np.ndarray] = []
        self.lock = threading.Lock()

    def get(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        """An array of ``shape`` and ``dtype`` that nobody else refers to; its content is undefined."""
        shape, dtype = tuple(int(n) for n in shape), np.dtype(dtype)
        with self.lock:
            for i in range(len(self.arrays)):
                candidate = self.arrays[i]
                if candidate.shape == shape and candidate.dtype == dtype:
                    del candidate  # the loop's own reference must not count
                    if _references(self.arrays, i) <= _UNREFERENCED:
                        return self.arrays[i]
            array = self.alloc(shape, dtype)
            if len(self.arrays) < self.limit:
                self.arrays.append(array)
            return array
