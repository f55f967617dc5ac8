"""Reusable arrays for the read path: fresh large arrays cost page faults on every use.

Decoded strips and tile batches are tens of megabytes; numpy allocates arrays that large straight from the kernel,
which zeroes every page on first touch, so a fresh array per strip or batch costs about as much as filling it. A
:class:`BufferPool` hands an array out again once nothing refers to it any more. That is decided by reference count:
a batch, a view of it, a tensor sharing its memory or a result slicing it all hold a reference to the array, so an
array comes back only when every user is done with it, whatever the threads and queues in between.

The first use of each pooled array still faults every page in, and on a virtual machine a 4 KiB page fault costs
about 4 us (measured: 10,240 faults in 43 ms). :func:`empty_hugepages` asks the kernel for 2 MiB pages instead (numpy
does so by itself only for arrays of 4 MiB or more; a decoded strip of 1,024 columns x 160 rows x 12 uint16 bands is
3.9 MiB). The one-decode-thread reader of a 4,096 px scene took 50,000-62,000 faults per run in the thread everything
waits for; with its strips on huge pages, 41,000-45,000 (the rest is GDAL's own block cache filling up).
"""

from __future__ import annotations

import mmap
import sys
import threading
from typing import Callable

import numpy as np


HUGEPAGE_BYTES = 2 * 2**20  # x86-64 and arm64 (4 KiB base pages)
HUGEPAGE_MIN_BYTES = 2**20  # below this, a huge page would be mostly waste


def empty_hugepages(shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialized array (like ``np.empty``) in anonymous memory the kernel may back with transparent huge
    pages (Linux ``MADV_HUGEPAGE``; elsewhere, or for small arrays, plain ``np.empty``). The memory is returned to
    the system when the array and every view of it are gone."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size < HUGEPAGE_MIN_BYTES or not hasattr(mmap, "MADV_HUGEPAGE"):
        return np.empty(shape, dtype)
    # Whole huge pages only: the kernel backs a range with them only where it covers an aligned 2 MiB, so the
    # array starts on such a boundary and the mapping is rounded up (at most 4 MiB more address space, untouched).
    pages = -(-size // HUGEPAGE_BYTES) * HUGEPAGE_BYTES
    memory = mmap.mmap(-1, pages + HUGEPAGE_BYTES, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # shared: no huge pages
    try:
        memory.madvise(mmap.MADV_HUGEPAGE)
    except OSError:  # transparent huge pages disabled: ordinary pages
        pass
    offset = -np.frombuffer(memory, np.uint8, count=1).ctypes.data % HUGEPAGE_BYTES
    # Built directly on the mapping, not as a reshaped view: numpy points every view's base at the first array
    # above the mapping, and BufferPool counts references to exactly the array it hands out.
    return np.ndarray(shape, dtype, buffer=memory, offset=offset)


def _references(arrays: list[np.ndarray], i: int) -> int:
    array = arrays[i]
    return sys.getrefcount(array)


# What _references says of an array held by the pool's list alone (calibrated: the count depends on the interpreter).
_UNREFERENCED = _references([np.empty(1)], 0)


class BufferPool:
    """Arrays of any shape and dtype, reused once unreferenced; at most ``limit`` are kept (beyond that, arrays are
    allocated and left to the garbage collector). ``alloc(shape, dtype)`` makes new ones (pinned memory, say)."""

    def __init__(self, limit: int, alloc: Callable = empty_hugepages):
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
