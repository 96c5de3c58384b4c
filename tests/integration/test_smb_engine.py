"""The native SMB2/3 engine against servers that ask for more: signing, encryption, old and
new dialects only. Each runs a private smbd with that policy; smbd refuses a client that does
not comply, so a drive that works proves the engine did what the server required."""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import Samba, Share, fuse_mounts_under

POLICIES = {
    "signing-gmac-3.1.1": {"server signing": "mandatory", "server smb3 signing algorithms": "AES-128-GMAC"},
    "signing-cmac-3.1.1": {"server signing": "mandatory", "server smb3 signing algorithms": "AES-128-CMAC"},
    "signing-2.0.2": {"server max protocol": "SMB2_02", "server signing": "mandatory"},
    "encryption-aes128gcm-3.1.1": {"server smb encrypt": "required", "server smb3 encryption algorithms": "AES-128-GCM"},
    "encryption-aes128ccm-3.1.1": {"server smb encrypt": "required", "server smb3 encryption algorithms": "AES-128-CCM"},
    "encryption-aes256gcm-3.1.1": {"server smb encrypt": "required", "server smb3 encryption algorithms": "AES-256-GCM"},
    "encryption-aes256ccm-3.1.1": {"server smb encrypt": "required", "server smb3 encryption algorithms": "AES-256-CCM"},
    "encryption-3.0": {"server max protocol": "SMB3_00", "server smb encrypt": "required"},
    "only-3.1.1": {"server min protocol": "SMB3_11"},
}

# An NT4-era server: SMB1 and nothing newer.
SMB1_ONLY = {"server min protocol": "NT1", "server max protocol": "NT1"}


@pytest.fixture
def strict_samba(request):
    base = Path(tempfile.mkdtemp(prefix="netuse-smbd-strict-", dir="/tmp"))
    base.chmod(0o755)
    server = Samba(base, settings={**POLICIES, "smb1-only": SMB1_ONLY}[request.param])
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def exercise(drive, share_path):
    """Writes, reads back, lists, renames and removes, and checks each against the server's disk."""
    data = os.urandom((3 << 20) + 12345)
    (drive / "dir").mkdir()
    (drive / "dir" / "big.bin").write_bytes(data)
    assert (share_path / "dir" / "big.bin").read_bytes() == data
    assert (drive / "dir" / "big.bin").read_bytes() == data
    assert sorted(os.listdir(drive / "dir")) == ["big.bin"]
    os.rename(drive / "dir" / "big.bin", drive / "dir" / "moved.bin")
    assert os.stat(drive / "dir" / "moved.bin").st_size == len(data)
    os.unlink(drive / "dir" / "moved.bin")
    os.rmdir(drive / "dir")
    assert not (share_path / "dir").exists()


@pytest.mark.parametrize("strict_samba", sorted(POLICIES), indirect=True)
def test_the_native_engine_meets_the_servers_policy(daemon, strict_samba):
    share = Share("smb", strict_samba.base / "user", strict_samba.url("user"), user=Samba.USER, password=Samba.PASSWORD)
    drive = daemon.use("q", share, "-o", "engine=native")
    exercise(drive, share.path)
    assert daemon.ctl("delete", "q").returncode == 0


@pytest.mark.parametrize("strict_samba", ["smb1-only"], indirect=True)
def test_an_smb1_only_server_is_handed_to_libsmbclient(daemon, strict_samba):
    share = Share("smb", strict_samba.base / "user", strict_samba.url("user"), user=Samba.USER, password=Samba.PASSWORD)
    drive = daemon.use("q", share, "-o", "engine=native")
    exercise(drive, share.path)
    workers = subprocess.run(["pgrep", "-P", str(daemon.process.pid), "netuse-smb-wor"], capture_output=True, text=True)
    assert workers.stdout.split(), "no libsmbclient worker serves the drive"


def test_seal_encrypts_where_the_server_does_not_ask(daemon, samba, user_share):
    drive = daemon.use("q", user_share, "-o", "engine=native", "-o", "seal=yes")
    exercise(drive, user_share.path)


def connections_to(port):
    result = subprocess.run(["ss", "-Htn", "state", "established", f"dport = :{port}"], capture_output=True, text=True)
    return [line for line in result.stdout.splitlines() if line.strip()]


def test_drives_to_one_server_share_one_session(daemon, samba, user_share):
    """Two drives of one user to one server: one connection, one session, a tree connect each;
    the last drive's delete logs off."""
    first = daemon.use("q", user_share, "-o", "engine=native")
    second = daemon.use("r", user_share, "-o", "engine=native")
    (first / "one").write_text("1")
    assert (second / "one").read_text() == "1"
    assert len(connections_to(samba.port)) == 1
    daemon.ctl("delete", "q")
    assert (second / "one").read_text() == "1"
    daemon.ctl("delete", "r")
    deadline = time.monotonic() + 5
    while connections_to(samba.port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert connections_to(samba.port) == []


def smbd_serving_connections(samba):
    """The smbd processes that serve a TCP connection (not notifyd or cleanupd, which smbd needs)."""
    result = subprocess.run(["ss", "-Htnp", "state", "established", f"sport = :{samba.port}"], capture_output=True, text=True)
    return sorted({int(pid) for pid in re.findall(r"pid=(\d+)", result.stdout)})


def test_a_lost_connection_is_set_up_again_and_open_files_go_on(daemon, samba, user_share):
    drive = daemon.use("q", user_share, "-o", "engine=native", "-o", "closetimeo=0")
    data = os.urandom(3 << 20)
    (drive / "big.bin").write_bytes(data)
    with open(drive / "big.bin", "rb", buffering=0) as f:
        first = f.read(1 << 20)
        before = smbd_serving_connections(samba)
        assert before
        # smbd serves each connection in a child of its own: killing it resets the connection.
        for pid in before:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        rest = None
        while rest is None:
            try:
                rest = f.read()
            except OSError:
                assert time.monotonic() < deadline, "the drive did not come back"
                time.sleep(0.2)
    assert first + rest == data
    assert daemon.listing()[0]["status"] == "OK"
    (drive / "after.txt").write_text("after")
    assert (user_share.path / "after.txt").read_text() == "after"
