"""Data integrity: what a program reads back is what it wrote, whatever the caches hold.

Each test is a cut-down of an fsx failure (issue 11), against a local and an SMB share.
"""
import mmap
import os
import subprocess
import sys
import time

import pytest

from file_model import map_page, replay_fsx


def drop_caches():
    with open("/proc/sys/vm/drop_caches", "w") as control:
        control.write("3\n")


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
        (share / f"f{run}").write_bytes(data)
        os.chmod(share / f"f{run}", 0o666)
        drop_caches()
        fd = os.open(drive / f"f{run}", os.O_RDWR)
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
        # The same name each run: the open revives the last run's deferred handle, whose
        # read-ahead must not outlive the revalidation.
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


# fsx -N 20000 -S 5 -c 10 (mapped reads and writes on), its first 100 operations as
# --record-ops wrote them; what fsx could not do (fallocate, clone, ...) is left out but
# for the CLOSE/OPEN after it. On main the MAPREAD of operation 100, after a CLOSE/OPEN,
# read what the file held before.
FSX_SEED_5 = """
mapwrite 0x4cca 0x9140 0x0
read 0x1a5c 0x38d3 0xde0a
write 0x2c35b 0xae4a 0xde0a close_open *
mapwrite 0x7303 0x8c8 0x371a5
mapread 0x14583 0xa4bd 0x371a5
mapwrite 0x18386 0x21ae 0x371a5
read 0x1c324 0x4595 0x371a5 close_open
truncate 0x0 0x2ad8c 0x371a5 *
read 0x14a72 0x67f3 0x2ad8c
copy_range 0x9df1 0x6e62 0x1fb08 0x2ad8c
truncate 0x0 0x1621c 0x2ad8c
mapwrite 0x1c914 0x9fe7 0x1621c
copy_range 0x14a0d 0xf649 0x306d8 0x268fb
read 0x68ec 0xe088 0x3fd21 close_open
read 0x1d879 0x1a6f 0x3fd21
mapread 0x39db9 0x422 0x3fd21
mapwrite 0x1b72d 0x8a71 0x3fd21
mapwrite 0x309a9 0xf657 0x3fd21 close_open *
skip close_open
read 0x75f4 0x8164 0x40000
write 0xf02 0xaa9a 0x40000
copy_range 0x28566 0xfc20 0x10dd1 0x40000 *
write 0xf341 0xcab2 0x40000
skip close_open
write 0x2816e 0x248c 0x40000
truncate 0x0 0x1a315 0x40000 *
write 0x25452 0xc7d8 0x1a315 close_open *
mapread 0x24e90 0xa923 0x31c2a
skip close_open
mapread 0x207b1 0xe9ce 0x31c2a close_open
mapwrite 0xda9b 0xe85 0x31c2a
write 0x176f0 0x8d3e 0x31c2a
write 0x2e84a 0x8c36 0x31c2a *
mapread 0x3282e 0x4c52 0x37480
truncate 0x0 0x2e33b 0x37480 *
skip close_open
write 0x15176 0x85fd 0x2e33b
copy_range 0x15160 0xebb3 0x1ada 0x2e33b close_open
write 0x16c86 0x886e 0x2e33b
write 0x32c93 0xd1ba 0x2e33b *
truncate 0x0 0x12dc5 0x3fe4d *
write 0x3bbea 0x4416 0x12dc5 *
mapwrite 0x10d60 0x33 0x40000
read 0x32117 0x8592 0x40000
write 0x30ce6 0xf218 0x40000 *
skip close_open
read 0x6e22 0x6cea 0x40000
mapwrite 0x219da 0xf773 0x40000 *
skip close_open
mapread 0x2a4c2 0xc2a5 0x40000 *
"""


def test_fsx_seed_5_replayed(drive, share):
    replay_fsx(drive / "fsx", FSX_SEED_5)


MAP_PAST_THE_OLD_END = """
import mmap, os, sys
path, size, grown = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fd = os.open(path, os.O_RDWR)
for block in range(3):
    os.pread(fd, 1 << 20, (8 << 20) + (block << 20))
os.ftruncate(fd, grown)
start = size & ~(mmap.PAGESIZE - 1)
with mmap.mmap(fd, grown - start, offset=start) as mapped:
    mapped[size - start:size - start + 8192] = b"m" * 8192
    mapped.flush()
os.close(fd)
"""


def test_mmap_write_past_the_old_end_after_ftruncate_up(drive, share):
    """fsx's MAPWRITE after a TRUNCATE UP took SIGBUS: a short read had told the kernel
    that the file still ended at the old size."""
    size, grown = (16 << 20) + 12345, 20 << 20
    for run in range(12):
        data = os.urandom(size)
        (share / f"m{run}").write_bytes(data)
        os.chmod(share / f"m{run}", 0o666)
        drop_caches()
        # SIGBUS kills the process: the mapping is written by a child.
        result = subprocess.run([sys.executable, "-c", MAP_PAST_THE_OLD_END, str(drive / f"m{run}"), str(size), str(grown)],
                                capture_output=True, text=True)
        assert result.returncode == 0, f"run {run}: exit {result.returncode}\n{result.stderr[-2000:]}"
        assert (share / f"m{run}").read_bytes() == data + b"m" * 8192 + bytes(grown - size - 8192)


def test_mapped_read_after_truncate_down_is_zero_past_eof(drive, share):
    """fsx's "Mapped Read: non-zero data past EOF": after a truncate down, the rest of the
    page that holds the new end must read as zeros, not as what the file held there."""
    size, cut = (16 << 20) + 12345, (12 << 20) + 100
    for run in range(12):
        data = os.urandom(size)
        # A new name each run: the kernel may trust what it knew of a name for actimeo.
        (share / f"z{run}").write_bytes(data)
        os.chmod(share / f"z{run}", 0o666)
        drop_caches()
        fd = os.open(drive / f"z{run}", os.O_RDWR)
        try:
            for block in range(3):
                os.pread(fd, 1 << 20, (8 << 20) + (block << 20))
            os.ftruncate(fd, cut)
            page = map_page(fd, cut & ~(mmap.PAGESIZE - 1))
            assert page[:100] == data[cut - 100:cut]
            assert page[100:] == bytes(mmap.PAGESIZE - 100), f"run {run}: non-zero data past EOF"
            assert os.pread(fd, 1 << 20, cut - 100) == data[cut - 100:cut]
        finally:
            os.close(fd)


def test_another_clients_same_size_overwrite_shows_within_actimeo(daemon, share):
    """A file the drive wrote and read keeps deferred handles; someone else overwrites it
    in place on the server's disk, same size. Past actimeo the drive shows the new bytes and
    a new mtime: while the drive holds a file open, Samba reports the write time it had when
    opened. Without leases (`nolease`) this is all the drive has to go by; a lease is broken
    by another SMB client's write (test_leases), but smbd sees no write made to its disk."""
    drive = daemon.use("q", share, "-o", "actimeo=1", "-o", "nolease")
    for run in range(2):
        old, new = os.urandom(10000), os.urandom(10000)
        (drive / "same").write_bytes(old)
        with open(drive / "same", "rb") as reader:
            assert reader.read() == old
            before = os.fstat(reader.fileno()).st_mtime_ns
        start = time.monotonic()
        with open(share / "same", "r+b") as theirs:
            theirs.write(new)
        for at in (1.2, 1.6):
            time.sleep(max(0, start + at - time.monotonic()))
            with open(drive / "same", "rb") as reader:
                assert reader.read() == new, f"run {run}: old data at {at} s"
                assert os.fstat(reader.fileno()).st_mtime_ns != before, f"run {run}: old mtime at {at} s"
            assert os.stat(drive / "same").st_mtime_ns != before


def test_mapped_pages_written_back_through_an_append_descriptor_stay_in_place(drive, share):
    """The kernel writes a mapping's pages back through any descriptor of the file that can
    write, an O_APPEND one too, at the pages' own offsets: they must land there."""
    data = os.urandom(64 << 10)
    (drive / "a").write_bytes(data)
    appender = os.open(drive / "a", os.O_RDWR | os.O_APPEND)
    try:
        with mmap.mmap(appender, len(data)) as mapped:
            mapped[5000:5100] = b"m" * 100
            mapped.flush()
        data = data[:5000] + b"m" * 100 + data[5100:]
        assert os.write(appender, b"tail") == 4
        data += b"tail"
        assert os.fstat(appender).st_size == len(data)
    finally:
        os.close(appender)
    assert (share / "a").read_bytes() == data


def test_a_file_closed_while_read_ahead_is_queued_leaves_nothing_open(daemon, share):
    """A fetch ahead still queued on a courier when the file closes must not open it again
    on its worker: nobody would close that, and the share would refuse the unlink (EBUSY)."""
    drive = daemon.use("q", share, "-o", "closetimeo=0")
    buffer = aligned(1 << 20)
    for run in range(20):
        (share / f"r{run}").write_bytes(os.urandom(24 << 20))
        os.chmod(share / f"r{run}", 0o666)
        fd = os.open(drive / f"r{run}", os.O_RDONLY | os.O_DIRECT)
        for block in range(3):
            os.preadv(fd, [buffer], block << 20)
        os.close(fd)
        os.unlink(drive / f"r{run}")
