"""Starting and stopping netused leaves no mount and no socket behind."""
import os
import signal
import socket
import subprocess

import pytest

from conftest import BIN, Daemon, fuse_mounts_under



@pytest.fixture
def share(local_share):
    """Letters, the CLI and the daemon's life do not depend on the kind of share."""
    return local_share.path

def test_sigterm_unmounts_every_drive_and_removes_the_socket(base, share):
    daemon = Daemon(base)
    try:
        daemon.start()
        daemon.use("q", share)
        daemon.use("r", share)
        (base / "root" / "0" / "q" / "kept").write_text("data")
        assert daemon.stop(signal.SIGTERM) == 0
        assert fuse_mounts_under(daemon.root) == []
        assert not daemon.socket.exists()
        assert (share / "kept").read_text() == "data"
    finally:
        daemon.cleanup()


def test_sigint_stops_too(base, share):
    daemon = Daemon(base)
    try:
        daemon.start()
        daemon.use("q", share)
        assert daemon.stop(signal.SIGINT) == 0
        assert fuse_mounts_under(daemon.root) == []
    finally:
        daemon.cleanup()


def test_sigterm_with_a_busy_drive_still_exits_and_leaves_no_mount(base, share):
    daemon = Daemon(base)
    sitter = None
    try:
        daemon.start()
        drive = daemon.use("q", share)
        sitter = subprocess.Popen(["sleep", "60"], cwd=drive)
        assert daemon.stop(signal.SIGTERM) == 0
        assert fuse_mounts_under(daemon.root) == []
    finally:
        if sitter:
            sitter.kill()
            sitter.wait()
        daemon.cleanup()


def test_a_new_daemon_cleans_the_stale_mount_of_a_killed_one(base, share):
    first = Daemon(base)
    second = Daemon(base)
    try:
        first.start()
        drive = first.use("q", share)
        first.stop(signal.SIGKILL)
        assert fuse_mounts_under(first.root) == [str(drive)]
        with pytest.raises(OSError) as dead:
            os.stat(drive / "anything")
        assert dead.value.errno == 107  # ENOTCONN: "Transport endpoint is not connected"
        second.start()
        assert fuse_mounts_under(second.root) == []
        assert "stale mount" in second.log_text()
        second.use("q", share)
        assert fuse_mounts_under(second.root) == [str(drive)]
        assert second.stop() == 0
    finally:
        first.cleanup()
        second.cleanup()


def test_a_second_daemon_on_the_same_root_refuses_to_start(daemon):
    result = subprocess.run([str(BIN / "netused"), "--root", str(daemon.root), "--state-dir", str(daemon.state), "--foreground"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "already listening" in result.stderr
    assert daemon.listing() == []


def test_background_start_returns_once_listening(base, share):
    root = base / "bg"
    result = subprocess.run([str(BIN / "netused"), "--root", str(root), "--state-dir", str(base / "bg-state")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    pid = int(result.stdout.split()[1])
    try:
        with socket.socket(socket.AF_UNIX) as probe:
            probe.connect(str(root / "control.sock"))
    finally:
        os.kill(pid, signal.SIGTERM)
        for _ in range(200):
            if not os.path.exists(f"/proc/{pid}"):
                break
            subprocess.run(["sleep", "0.05"])
    assert not (root / "control.sock").exists()
