"""fcntl and flock locks through the drive reach the server as SMB2 LOCKs: a lock held through
the drive stops another client's conflicting lock or write, and the reverse. The other client
is a second drive of another Unix user: its own SMB session, so the server sees two clients."""
import errno
import fcntl
import json
import os
import struct
import subprocess
import sys
import textwrap
import time

import pytest

NATIVE = ("-o", "engine=native")
OTHER = 60003


@pytest.fixture
def two_clients(daemon, user_share, user_ctl):
    """The same share as two SMB clients: root's drive Q: and another user's drive Q:."""
    ours = daemon.use("q", user_share, *NATIVE, "-o", "closetimeo=30")
    theirs = daemon.use("q", user_share, *NATIVE, as_user=OTHER, binary=user_ctl)
    (ours / "f").write_bytes(bytes(4096))
    return ours, theirs


def lock(fd, kind, start=0, length=100, wait=False):
    fcntl.fcntl(fd, fcntl.F_SETLKW if wait else fcntl.F_SETLK, struct.pack("hhqqi", kind, os.SEEK_SET, start, length, 0))


def holder(fd, start=0, length=100, kind=fcntl.F_WRLCK):
    """F_GETLK: the type of the lock in the way, F_UNLCK when there is none."""
    answer = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack("hhqqi", kind, os.SEEK_SET, start, length, 0))
    return struct.unpack("hhqqi", answer)[0]


def refused(call):
    try:
        call()
    except OSError as error:
        assert error.errno in (errno.EAGAIN, errno.EACCES), error
        return True
    return False


def test_a_lock_through_the_drive_stops_another_clients_lock_and_write_and_the_reverse(two_clients, user_share):
    ours, theirs = two_clients
    mine = os.open(ours / "f", os.O_RDWR)
    other = os.open(theirs / "f", os.O_RDWR)
    try:
        lock(mine, fcntl.F_WRLCK)
        assert refused(lambda: lock(other, fcntl.F_WRLCK))
        assert refused(lambda: lock(other, fcntl.F_RDLCK, start=50, length=10))
        assert holder(other) == fcntl.F_WRLCK
        lock(other, fcntl.F_WRLCK, start=100, length=100)  # the next bytes are free
        # Their write into our range is refused by the server: at the write, or at its fsync.
        assert refused(lambda: (os.pwrite(other, b"theirs", 10), os.fsync(other)))
        assert (user_share.path / "f").read_bytes()[10:16] == bytes(6)
        lock(mine, fcntl.F_UNLCK)
        lock(other, fcntl.F_WRLCK)
        assert holder(other) == fcntl.F_UNLCK, "a process's own locks never conflict"
        # And the reverse.
        assert refused(lambda: lock(mine, fcntl.F_RDLCK))
        assert holder(mine, start=0, length=1) == fcntl.F_WRLCK
        os.pwrite(other, b"theirs", 10)
        os.fsync(other)
        assert (user_share.path / "f").read_bytes()[10:16] == b"theirs"
    finally:
        os.close(other)
        os.close(mine)


def test_shared_locks_share_and_a_partial_unlock_splits(two_clients):
    ours, theirs = two_clients
    mine = os.open(ours / "f", os.O_RDWR)
    other = os.open(theirs / "f", os.O_RDWR)
    try:
        lock(mine, fcntl.F_RDLCK, 0, 300)
        lock(other, fcntl.F_RDLCK, 0, 300)
        lock(other, fcntl.F_UNLCK, 0, 300)
        assert holder(other, 0, 300) == fcntl.F_RDLCK
        # POSIX: unlocking the middle leaves two locks, [0, 100) and [200, 300).
        lock(mine, fcntl.F_UNLCK, 100, 100)
        lock(other, fcntl.F_WRLCK, 100, 100)
        assert refused(lambda: lock(other, fcntl.F_WRLCK, 0, 1))
        assert refused(lambda: lock(other, fcntl.F_WRLCK, 299, 1))
        # An upgrade of our own lock replaces it.
        lock(mine, fcntl.F_WRLCK, 0, 100)
        assert holder(other, 0, 1, fcntl.F_RDLCK) == fcntl.F_WRLCK
    finally:
        os.close(other)
        os.close(mine)


WAITER = textwrap.dedent("""\
    import fcntl, os, signal, struct, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR)
    request = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 100, 0)
    class Alarm(Exception):
        pass
    def ring(*_):
        raise Alarm()
    signal.signal(signal.SIGALRM, ring)
    signal.alarm(1)
    start = time.monotonic()
    try:
        fcntl.fcntl(fd, fcntl.F_SETLKW, request)
        print("granted at once", flush=True)
    except Alarm:
        print(f"interrupted after {time.monotonic() - start:.1f}", flush=True)
    print("waiting", flush=True)
    start = time.monotonic()
    fcntl.fcntl(fd, fcntl.F_SETLKW, request)
    print(f"granted after {time.monotonic() - start:.1f}", flush=True)
""")


def test_a_waiting_lock_is_interrupted_by_a_signal_and_granted_when_the_holder_lets_go(two_clients):
    ours, theirs = two_clients
    mine = os.open(ours / "f", os.O_RDWR)
    try:
        lock(mine, fcntl.F_WRLCK)
        waiter = subprocess.Popen([sys.executable, "-c", WAITER, str(theirs / "f")], stdout=subprocess.PIPE, text=True)
        try:
            assert waiter.stdout.readline().startswith("interrupted after 1.")
            assert waiter.stdout.readline() == "waiting\n"
            time.sleep(1)
            lock(mine, fcntl.F_UNLCK)
            granted = waiter.stdout.readline()
            assert granted.startswith("granted after"), granted
            assert 0.5 < float(granted.split()[-1]) < 5
            waiter.wait(timeout=10)
        finally:
            waiter.kill()
        assert refused(lambda: lock(mine, fcntl.F_WRLCK)) is False, "the waiter's lock ended with its process"
    finally:
        os.close(mine)


def test_flock_reaches_the_server(two_clients):
    ours, theirs = two_clients
    with open(ours / "f", "rb") as mine, open(theirs / "f", "rb") as other:
        fcntl.flock(mine, fcntl.LOCK_EX)
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(mine, fcntl.LOCK_UN)
        fcntl.flock(other, fcntl.LOCK_SH | fcntl.LOCK_NB)
    # The last close of their descriptor ended their flock.
    with open(ours / "f", "rb") as mine:
        fcntl.flock(mine, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_a_file_closed_with_a_lock_held_is_not_deferred_and_the_lock_ends(two_clients, daemon):
    """cifs.ko's 35866f3f779a: a handle that held locks is closed, not kept."""
    ours, theirs = two_clients
    mine = os.open(ours / "f", os.O_RDWR)
    lock(mine, fcntl.F_WRLCK)
    os.close(mine)
    assert [row for row in daemon.refs()["serverOpens"] if row["path"] == "/f"] == []
    other = os.open(theirs / "f", os.O_RDWR)
    try:
        lock(other, fcntl.F_WRLCK)
        lock(other, fcntl.F_UNLCK)
        # A read-only descriptor closes without a FLUSH: its locks end with its RELEASE,
        # which the kernel sends as close(2) returns.
        reader = os.open(ours / "f", os.O_RDONLY)
        lock(reader, fcntl.F_RDLCK)
        assert refused(lambda: lock(other, fcntl.F_WRLCK))
        os.close(reader)
        deadline = time.monotonic() + 2
        while refused(lambda: lock(other, fcntl.F_WRLCK)):
            assert time.monotonic() < deadline, "the reader's lock outlived its descriptor"
            time.sleep(0.01)
    finally:
        os.close(other)


def test_nobrl_keeps_locks_on_this_machine(daemon, user_share, user_ctl):
    ours = daemon.use("q", user_share, *NATIVE, "-o", "nobrl")
    theirs = daemon.use("q", user_share, *NATIVE, as_user=OTHER, binary=user_ctl)
    (theirs / "f").write_bytes(bytes(100))
    other = os.open(theirs / "f", os.O_RDWR)
    mine = os.open(ours / "f", os.O_RDWR)
    try:
        lock(other, fcntl.F_WRLCK)
        lock(mine, fcntl.F_WRLCK)  # the server never hears of it
    finally:
        os.close(mine)
        os.close(other)


def test_a_durable_handle_keeps_its_lock_across_a_lost_connection(daemon, user_ctl):
    """The connection breaks under a process that holds a file open with a lock: the drive
    reconnects and gets the same open back (a durable handle), lock and all, and the process
    writes on, noticing nothing. smbd keeps durable handles only without POSIX locking, and
    gives one back only while no other open of the file is left (Samba 4.17), so the other
    client here closes at once (closetimeo=0)."""
    import shutil
    import tempfile
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from latency_proxy import LatencyProxy
    from conftest import Samba, Share

    base = Path(tempfile.mkdtemp(prefix="netuse-smbd-durable-", dir="/tmp"))
    base.chmod(0o755)
    samba = Samba(base, settings={"posix locking": "no", "kernel share modes": "no", "kernel oplocks": "no"})
    proxy = LatencyProxy(samba.port, 0)

    def their_lock_is_refused():
        other = os.open(theirs / "f", os.O_RDWR)
        try:
            return refused(lambda: lock(other, fcntl.F_WRLCK))
        finally:
            os.close(other)

    try:
        through_proxy = Share("smb", base / "user", f"smb://127.0.0.1:{proxy.port}/user", user=Samba.USER, password=Samba.PASSWORD)
        direct = Share("smb", base / "user", samba.url("user"), user=Samba.USER, password=Samba.PASSWORD)
        ours = daemon.use("q", through_proxy, *NATIVE, "-o", "timeout=5")
        theirs = daemon.use("q", direct, *NATIVE, "-o", "closetimeo=0", as_user=OTHER, binary=user_ctl)
        fd = os.open(ours / "f", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.write(fd, b"before ")
            os.fsync(fd)
            lock(fd, fcntl.F_WRLCK)
            assert their_lock_is_refused()
            # Their close reaches the server after close(2) returns (FUSE's RELEASE); smbd
            # gives a durable open back only once it is gone.
            deadline = time.monotonic() + 5
            while json.loads(daemon.ctl("refs", "q", "--owner", str(OTHER), "--json").stdout)["references"]["serverOpens"]:
                assert time.monotonic() < deadline, "the other client's open stayed"
                time.sleep(0.05)
            proxy.cut()
            time.sleep(0.5)
            deadline = time.monotonic() + 10
            while True:
                try:
                    os.pwrite(fd, b"after", 7)
                    os.fsync(fd)
                    break
                except OSError:
                    assert time.monotonic() < deadline, "the drive did not come back"
                    time.sleep(0.2)
            assert their_lock_is_refused(), "the lock did not survive the reconnect"
            lock(fd, fcntl.F_UNLCK)
            assert not their_lock_is_refused()
        finally:
            os.close(fd)
        assert (base / "user" / "f").read_bytes() == b"before after"
    finally:
        proxy.stop()
        samba.stop()
        shutil.rmtree(base, ignore_errors=True)
