"""Reused read buffers: arrays come back only when unreferenced, and large ones sit on transparent huge pages."""

from pathlib import Path

import numpy as np
import pytest

from geomind_cli.engine.buffers import BufferPool, empty_hugepages

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def _thp_eligible(array: np.ndarray) -> bool:
    """Whether the kernel may back the mapping holding ``array`` with huge pages (/proc/self/smaps)."""
    address, mapping, found = array.ctypes.data, None, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            start, end = (int(v, 16) for v in head.split("-"))
            mapping = start <= address < end
            found = found or mapping
        elif mapping and head == "THPeligible:":
            return line.split()[1] == "1"
    assert found, "the array's mapping is not in /proc/self/smaps"
    pytest.skip("this kernel's smaps has no THPeligible field")


@pytest.mark.skipif(not THP.exists() or "[never]" in THP.read_text(), reason="no transparent huge pages here")
def test_a_decoded_strip_is_eligible_for_huge_pages():
    # 1,024 columns x 160 rows x 12 uint16 bands: 3.9 MiB, under the 4 MiB from which numpy asks for huge pages
    # itself. Before empty_hugepages the reader's strips took ~960 page faults each on first use.
    strip = empty_hugepages((12, 160, 1024), np.uint16)
    assert _thp_eligible(strip)
    assert strip.ctypes.data % (2 * 2**20) == 0  # starts on a huge page: no 4 KiB pages before it


def test_hugepage_arrays_behave_like_numpy_arrays():
    big = empty_hugepages((3, 700, 1000), np.float32)
    assert big.shape == (3, 700, 1000) and big.dtype == np.float32 and big.flags.c_contiguous and big.flags.writeable
    big[:] = np.arange(1000, dtype=np.float32)
    assert big[2, 699, 999] == 999
    small = empty_hugepages((4, 4), np.uint8)  # too small for a huge page: a plain array
    assert small.shape == (4, 4) and small.base is None


def test_pool_reuses_an_array_only_when_nothing_refers_to_it():
    pool = BufferPool(4)
    first = pool.get((12, 160, 1024), np.uint16)
    view = first[:, :10]
    del first
    second = pool.get((12, 160, 1024), np.uint16)
    assert not np.shares_memory(second, view)  # the view still holds the first array
    del view
    third = pool.get((12, 160, 1024), np.uint16)
    assert len(pool.arrays) == 2 and any(third is a for a in pool.arrays)
