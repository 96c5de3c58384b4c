"""A hung server never holds up `delete --force` or a stop: `net use /d /y` and `umount -f`
return at once whatever the server does, and so must netuse."""
import os
import signal
import subprocess
import time

import pytest

from conftest import Daemon

TIMEOUT = 6


@pytest.fixture
def hung(samba):
    """Stops smbd (every connection process) on request; lets it go again afterwards."""
    stopped = []

    def stop():
        os.killpg(samba.process.pid, signal.SIGSTOP)
        stopped.append(True)

    yield stop
    if stopped:
        os.killpg(samba.process.pid, signal.SIGCONT)


def busy_drive(daemon, share):
    """A drive with a file a process holds open, another written, and deferred handles."""
    drive = daemon.use("q", share, "-o", f"timeout={TIMEOUT}", "-o", "closetimeo=60")
    for index in range(4):
        (drive / f"f{index}.txt").write_text("deferred")
        (drive / f"f{index}.txt").read_text()
    held = open(drive / "held.txt", "w")
    held.write("x")
    held.flush()
    refs = daemon.refs("q")
    assert refs["drive"]["deferredHandles"] >= 1 and refs["drive"]["openHandles"] >= 1, refs
    return drive, held


def test_force_delete_answers_at_once_with_the_server_hung(daemon, user_share, hung):
    drive, held = busy_drive(daemon, user_share)
    hung()
    started = time.monotonic()
    daemon.ctl("delete", "q", "--force")
    elapsed = time.monotonic() - started
    assert elapsed < 1, f"delete --force took {elapsed:.1f} s with the server hung"
    started = time.monotonic()
    assert daemon.listing() == []
    assert time.monotonic() - started < 1
    with pytest.raises(OSError):
        held.write("more")
        held.flush()
    with pytest.raises(OSError):  # what was written after the delete is lost, and close says so
        held.close()


def test_sigterm_stops_within_the_timeout_with_the_server_hung(base, user_share, hung):
    daemon = Daemon(base)
    try:
        daemon.start()
        drive, held = busy_drive(daemon, user_share)
        daemon.use("r", user_share, "-o", f"timeout={TIMEOUT}", "-o", "closetimeo=60")
        hung()
        started = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        daemon.process.wait(timeout=TIMEOUT + 20)
        elapsed = time.monotonic() - started
        assert elapsed < TIMEOUT + 5, f"SIGTERM took {elapsed:.1f} s with a {TIMEOUT} s timeout"
        with pytest.raises(OSError):  # the daemon is gone: ENOTCONN
            held.close()
    finally:
        daemon.cleanup()


def test_a_hung_server_holds_up_no_other_drives_deferred_close(daemon, user_share, local_share, hung):
    """Each drive closes its own expired handles: the one scavenger is not stuck behind a
    close that a hung server does not answer."""
    smb = daemon.use("q", user_share, "-o", f"timeout={TIMEOUT}", "-o", "closetimeo=1")
    (smb / "deferred.txt").write_text("x")
    (smb / "deferred.txt").read_text()
    assert daemon.refs("q")["drive"]["deferredHandles"] >= 1
    hung()
    time.sleep(1.5)  # the SMB drive's deferred handle has expired, and its close hangs
    local = daemon.use("l", local_share, "-o", "closetimeo=1")
    (local / "deferred.txt").write_text("y")
    assert daemon.refs("l")["drive"]["deferredHandles"] == 1
    deadline = time.monotonic() + 3
    while daemon.refs("l")["drive"]["deferredHandles"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert daemon.refs("l")["drive"]["deferredHandles"] == 0, "the local drive's deferred close waited for the hung server"
    daemon.ctl("delete", "l")
    daemon.ctl("delete", "q", "--force")
