"""Data integrity: what a program reads back is what it wrote, whatever the caches hold.

Each test is a cut-down of an fsx failure (issue 11), against a local and an SMB share.
"""
import mmap
import os

import pytest


def drop_caches():
    with open("/proc/sys/vm/drop_caches", "w") as control:
        control.write("3\n")


def pattern(seed, count):
    """Bytes that differ at every offset and between seeds, as fsx writes them."""
    return bytes((seed * 7 + n + (n >> 8)) % 251 + 1 for n in range(count))


def aligned(count):
    """A page-aligned buffer, as O_DIRECT wants."""
    return mmap.mmap(-1, count)


def test_a_read_after_a_write_is_never_served_from_read_ahead(drive, share):
    """Sequential reads start the read-ahead; a write lands where a fetch is on its way;
    the partial pages at both ends of the write are read from the drive again."""
    size = 16 << 20
    offset, count = (6 << 20) + 0x1234, 64 << 10
    buffer = aligned(1 << 20)
    for run in range(16):
        data = os.urandom(size)
        (share / "f").write_bytes(data)
        os.chmod(share / "f", 0o666)
        drop_caches()
        fd = os.open(drive / "f", os.O_RDWR)
        try:
            for block in range(2):
                assert os.preadv(fd, [buffer], block << 20) == 1 << 20
            new = os.urandom(count)
            assert os.pwrite(fd, new, offset) == count
            assert os.pread(fd, count, offset) == new, f"run {run}"
        finally:
            os.close(fd)


def test_reads_across_the_old_end_after_ftruncate_up(drive, share):
    """Read mid-file, ftruncate to a larger size, read across the old end: all of it,
    zeros past the old end, the new size, and copy_file_range across it."""
    size, grown = (16 << 20) + 12345, 20 << 20
    buffer = aligned(1 << 20)
    for run in range(12):
        data = os.urandom(size)
        (share / "t").write_bytes(data)
        os.chmod(share / "t", 0o666)
        drop_caches()
        fd = os.open(drive / "t", os.O_RDWR | os.O_DIRECT)
        try:
            for block in range(3):
                os.preadv(fd, [buffer], (8 << 20) + (block << 20))
            os.ftruncate(fd, grown)
            done = os.preadv(fd, [buffer], size - 5000)
            assert done == 1 << 20, f"run {run}: short read of {done}"
            assert buffer[:] == data[size - 5000:] + bytes((1 << 20) - 5000)
            assert os.fstat(fd).st_size == grown
        finally:
            os.close(fd)
    with open(drive / "t", "rb") as source, open(drive / "copy", "wb") as target:
        assert os.copy_file_range(source.fileno(), target.fileno(), 1 << 20, size - 5000, 0) == 1 << 20
    assert (share / "copy").read_bytes() == data[size - 5000:] + bytes((1 << 20) - 5000)
