"""copy_file_range within one SMB share is done by the server (FSCTL_SRV_COPYCHUNK_WRITE): the
data does not pass through the drive. What the drive still holds to write goes first, and a
copy stops at the source's end, as copy_file_range does."""
import os

import pytest

from conftest import SAMBA_POLICY

NATIVE = ("-o", "engine=native")
MiB = 1 << 20


def carried(pid):
    """Bytes the daemon read and wrote through system calls: sockets and /dev/fuse included."""
    fields = dict(line.split(": ") for line in open(f"/proc/{pid}/io").read().splitlines())
    return int(fields["rchar"]) + int(fields["wchar"])


def copy_all(source, destination, count, source_offset=None, destination_offset=None):
    copied = 0
    while copied < count:
        step = os.copy_file_range(source, destination, count - copied,
                                  None if source_offset is None else source_offset + copied,
                                  None if destination_offset is None else destination_offset + copied)
        if step == 0:
            break
        copied += step
    return copied


@pytest.mark.skipif(SAMBA_POLICY == "smb2.0.2", reason="SMB 2.0.2 has no COPYCHUNK_WRITE: the kernel copies")
def test_a_copy_within_the_share_moves_no_data_through_the_drive(daemon, user_share):
    drive = daemon.use("q", user_share, *NATIVE)
    data = os.urandom(40 * MiB + 12345)
    (user_share.path / "big").write_bytes(data)
    (user_share.path / "big").chmod(0o666)
    before = carried(daemon.process.pid)
    with open(drive / "big", "rb") as source, open(drive / "copy", "wb") as destination:
        assert copy_all(source.fileno(), destination.fileno(), len(data) + MiB) == len(data), "the copy stops at the end"
    moved = carried(daemon.process.pid) - before
    assert moved < MiB, f"{moved} bytes went through the daemon"
    assert (user_share.path / "copy").read_bytes() == data
    assert (drive / "copy").read_bytes() == data


def test_data_written_through_the_drive_goes_before_the_copy(daemon, user_share):
    drive = daemon.use("q", user_share, *NATIVE)
    head, middle = os.urandom(3 * MiB), os.urandom(2 * MiB)
    with open(drive / "source", "wb") as writer:
        writer.write(middle)
        writer.flush()
        fd = os.open(drive / "target", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.write(fd, head)  # still on its way (write-behind) when the copy starts
            with open(drive / "source", "rb") as source:
                assert copy_all(source.fileno(), fd, len(middle), 0, MiB) == len(middle)
            expected = head[:MiB] + middle + head[MiB + len(middle):]
            assert os.pread(fd, len(head) + 1, 0) == expected
        finally:
            os.close(fd)
    assert (user_share.path / "target").read_bytes() == expected


def test_a_copy_within_one_file_and_libsmbclients_copy_through_the_kernel(daemon, user_share):
    """Within one file (ranges apart, as copy_file_range wants them); and on the fallback
    engine, which has no server-side copy: the kernel copies through the drive instead."""
    data = os.urandom(3 * MiB)
    for letter, engine in (("q", "native"), ("r", "libsmbclient")):
        drive = daemon.use(letter, user_share, "-o", f"engine={engine}")
        (drive / f"{engine}.bin").write_bytes(data)
        fd = os.open(drive / f"{engine}.bin", os.O_RDWR)
        try:
            assert copy_all(fd, fd, MiB, 0, 4 * MiB) == MiB
        finally:
            os.close(fd)
        assert (user_share.path / f"{engine}.bin").read_bytes() == data + bytes(MiB) + data[:MiB]
