"""Data integrity: what a program reads back is what it wrote, whatever the caches hold.

Each test is a cut-down of an fsx failure (issue 11), against a local and an SMB share.
"""
import mmap
import os
import subprocess

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


def test_o_direct_reads_and_writes(drive, share):
    """dd oflag=direct: the kernel's buffers are not aligned for the backing file, and
    the share must not refuse them; what O_DIRECT reads is what the share holds."""
    block = 1 << 20
    data = os.urandom(4 * block)
    buffer = aligned(4 * block)
    buffer[:] = data
    fd = os.open(drive / "d", os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o666)
    try:
        assert os.pwritev(fd, [buffer], 0) == len(data)
        back = aligned(4 * block)
        assert os.preadv(fd, [back], 0) == len(data)
        assert back[:] == data
        # Unaligned offsets and lengths reach the share as they are.
        assert os.pwrite(fd, b"z" * 100, 4097) == 100
        data = data[:4097] + b"z" * 100 + data[4197:]
        assert os.pread(fd, 300, 4000) == data[4000:4300]
    finally:
        os.close(fd)
    assert (share / "d").read_bytes() == data
    result = subprocess.run(["dd", f"if={share / 'd'}", f"of={drive / 'dd'}", "bs=64k", "oflag=direct", "status=none"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (share / "dd").read_bytes() == data
