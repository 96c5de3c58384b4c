"""Write-behind failures reach the right descriptors (Linux's errseq model): every open file
description open when data failed sees the error at its next fsync or close; one that did
not write must not eat it from another."""
import errno
import os
import subprocess
import sys

import pytest

from conftest import Samba, Share, empty


@pytest.fixture
def small_share(samba):
    """The user share with a 1 MiB tmpfs at small/: writes past it fail with ENOSPC on the server."""
    top = samba.base / "user"
    empty(top)
    small = top / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0777", "netuse-small", str(small)], check=True)
    try:
        yield Share("smb", top, samba.url("user"), user=Samba.USER, password=Samba.PASSWORD)
    finally:
        subprocess.run(["umount", "-l", str(small)], check=True)
        empty(top)


def test_a_child_closing_an_inherited_descriptor_does_not_eat_the_parents_error(daemon, small_share):
    drive = daemon.use("q", small_share)
    fd = os.open(drive / "small" / "out.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    closed = False
    try:
        for _ in range(2):
            os.write(fd, os.urandom(1 << 20))
        # fork and exec with the descriptor inherited: the child's exit closes it first.
        os.set_inheritable(fd, True)
        subprocess.run([sys.executable, "-c", "import os, sys; os.close(int(sys.argv[1]))", str(fd)],
                       close_fds=False, check=False)
        with pytest.raises(OSError) as closing:
            closed = True
            os.close(fd)
        assert closing.value.errno == errno.ENOSPC
    finally:
        if not closed:
            os.close(fd)


def test_a_descriptor_that_did_not_write_does_not_eat_the_writers_error(daemon, small_share):
    drive = daemon.use("q", small_share)
    path = drive / "small" / "out.bin"
    writer = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    bystander = os.open(path, os.O_RDWR)
    try:
        for _ in range(2):
            os.write(writer, os.urandom(1 << 20))
        # The bystander was open when the data failed: it may hear of it, and must leave
        # the writer's copy of the news alone.
        try:
            os.fsync(bystander)
        except OSError as error:
            assert error.errno == errno.ENOSPC
        with pytest.raises(OSError) as syncing:
            os.fsync(writer)
        assert syncing.value.errno == errno.ENOSPC
        # fsync reported it to the writer: its close has nothing more to say.
        os.close(writer)
        writer = None
        # A descriptor opened after the failure hears nothing of it.
        late = os.open(path, os.O_RDWR)
        os.fsync(late)
        os.close(late)
    finally:
        if writer is not None:
            os.close(writer)
        try:
            os.close(bystander)
        except OSError:
            pass
