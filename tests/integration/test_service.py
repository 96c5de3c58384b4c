"""netused as a service: systemd units, readiness, persistent drives, per-user isolation,
a control socket that holds up under abuse, and a stop that loses nothing."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import BIN, NOBODY, REPO, Daemon, Samba, Share, fuse_mounts_under


@pytest.fixture
def share(local_share):
    return local_share.path


# MARK: units

@pytest.mark.parametrize("unit", ["netused.service", "user/netused.service"])
def test_units_pass_systemd_analyze_verify(tmp_path, unit):
    source = (REPO / "systemd" / unit).read_text()
    assert "ExecStart=/usr/local/bin/netused --foreground" in source
    checked = tmp_path / Path(unit).name
    checked.write_text(source.replace("/usr/local/bin/netused", str(BIN / "netused")))
    command = ["systemd-analyze"] + (["--user"] if unit.startswith("user/") else []) + ["verify", "--man=no", str(checked)]
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    result = subprocess.run(command, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)})
    assert result.returncode == 0 and result.stderr == "", result.stderr


# MARK: readiness

class NotifySocket:
    def __init__(self, path):
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(path))
        self.path = path

    def wait_for(self, message, timeout=20):
        self.socket.settimeout(timeout)
        while True:
            datagram = self.socket.recv(4096).decode()
            if message in datagram.split("\n"):
                return datagram


def test_ready_only_once_list_answers_and_stopping_on_sigterm(base, share):
    notify = NotifySocket(base / "notify.sock")
    first = Daemon(base)
    second = Daemon(base)
    try:
        first.start()
        first.use("q", share, "--persistent")
        first.stop(signal.SIGKILL)
        process = subprocess.Popen(
            [str(BIN / "netused"), "--root", str(second.root), "--state-dir", str(second.state), "--foreground"],
            env={**os.environ, "NOTIFY_SOCKET": str(notify.path)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        second.process = process
        notify.wait_for("READY=1")
        # Ready means answering, with the persistent drive already back.
        assert [(d["letter"], d["status"]) for d in second.listing()] == [("Q:", "OK")]
        process.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1")
        assert process.wait(timeout=20) == 0
    finally:
        first.cleanup()
        second.cleanup()


# MARK: persistence

def state_records(daemon):
    path = daemon.state / "drives.json"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    return {record["letter"]: record for record in json.loads(path.read_text())["drives"]}


def test_persistent_drives_come_back_after_a_kill(base):
    shares = {}
    for letter in "qrs":
        shares[letter] = base / f"share-{letter}"
        shares[letter].mkdir()
        (shares[letter] / "name").write_text(letter)
    first, second = Daemon(base), Daemon(base)
    try:
        first.start()
        first.use("q", shares["q"], "--persistent")
        first.use("r", shares["r"], "--persistent", "yes", "-o", "closetimeo=1")
        first.use("s", shares["s"], "--persistent", "no")
        assert set(state_records(first)) == {"q", "r"}
        assert state_records(first)["r"]["options"] == {"closetimeo": "1"}
        first.stop(signal.SIGKILL)
        second.start()
        assert [(d["letter"], d["status"]) for d in second.listing()] == [("Q:", "OK"), ("R:", "OK")]
        for letter in "qr":
            assert (second.mountpoint(letter) / "name").read_text() == letter
        assert not (second.mountpoint("s")).exists()
        second.ctl("delete", "q")
        assert set(state_records(second)) == {"r"}
        assert second.stop() == 0
    finally:
        first.cleanup()
        second.cleanup()


def test_an_unreachable_persistent_share_is_unavailable_then_retried(base):
    share = base / "share"
    share.mkdir()
    (share / "name").write_text("back")
    first, second = Daemon(base), Daemon(base)
    try:
        first.start()
        first.use("q", share, "--persistent")
        first.stop()
        share.rename(base / "away")
        second.start()
        assert [(d["letter"], d["status"]) for d in second.listing()] == [("Q:", "Unavailable")]
        assert "Unavailable" in second.ctl("list").stdout
        result = second.ctl("use", "q", str(base / "away"), expect=2)
        assert "System error 85 has occurred." in result.stderr
        (base / "away").rename(share)
        deadline = time.monotonic() + 20
        while second.listing()[0]["status"] != "OK":
            assert time.monotonic() < deadline, "the drive was not retried"
            time.sleep(0.1)
        assert (second.mountpoint("q") / "name").read_text() == "back"
        share.rename(base / "away")
        second.ctl("delete", "q")
        second.stop()
        (base / "away").rename(share)
        third = Daemon(base)
        try:
            third.start()
            assert third.listing() == []
        finally:
            third.cleanup()
    finally:
        first.cleanup()
        second.cleanup()


def test_deleting_an_unavailable_drive_forgets_it(base):
    share = base / "share"
    share.mkdir()
    first, second = Daemon(base), Daemon(base)
    try:
        first.start()
        first.use("q", share, "--persistent")
        first.stop()
        share.rmdir()
        second.start()
        assert second.listing()[0]["status"] == "Unavailable"
        second.ctl("delete", "q")
        assert second.listing() == [] and state_records(second) == {}
    finally:
        first.cleanup()
        second.cleanup()


def test_a_corrupt_state_file_is_kept_aside_and_the_daemon_starts(base, share):
    daemon = Daemon(base)
    try:
        daemon.state.mkdir()
        (daemon.state / "drives.json").write_text("{ this is not json")
        daemon.start()
        listing = daemon.ctl("list").stdout
        assert "was corrupt" in listing and "There are no entries in the list." in listing
        kept = list(daemon.state.glob("drives.json.corrupt-*"))
        assert len(kept) == 1 and kept[0].read_text() == "{ this is not json"
        assert "corrupt" in json.loads(daemon.ctl("list", "--json").stdout)["notice"]
        daemon.use("q", share, "--persistent")
        assert set(state_records(daemon)) == {"q"}
        assert daemon.stop() == 0
    finally:
        daemon.cleanup()


def test_a_persistent_smb_drive_keeps_no_password(base, samba):
    daemon = Daemon(base)
    credentials = base / "smb-credentials"
    credentials.write_text(f"username={Samba.USER}\npassword={Samba.PASSWORD}\n")
    credentials.chmod(0o600)
    smb = Share("smb", samba.base / "user", samba.url("user"), user=Samba.USER, password=Samba.PASSWORD)
    try:
        daemon.start()
        result = subprocess.run([str(BIN / "netusectl"), "use", "q", smb.remote, "--user", Samba.USER, "--password-stdin",
                                 "--persistent", "--socket", str(daemon.socket)],
                                input=Samba.PASSWORD + "\n", capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and "--credentials" in result.stderr
        daemon.ctl("use", "q", smb.remote, "--credentials", str(credentials), "--persistent")
        assert Samba.PASSWORD not in (daemon.state / "drives.json").read_text()
        assert state_records(daemon)["q"]["credentialsFile"] == str(credentials)
        (daemon.mountpoint("q") / "persisted.txt").write_text("smb")
        daemon.stop(signal.SIGKILL)
        daemon.start()
        assert (daemon.mountpoint("q") / "persisted.txt").read_text() == "smb"
        daemon.ctl("delete", "q")
    finally:
        daemon.cleanup()
        for leftover in (samba.base / "user").iterdir():
            leftover.unlink()


# MARK: isolation

def test_users_are_isolated_from_each_others_drives(daemon, base, share, user_ctl):
    (share / "secret.txt").write_text("root's")
    mine = base / "nobody-share"
    mine.mkdir()
    os.chown(mine, NOBODY, NOBODY)
    q = daemon.use("q", share)
    daemon.ctl("use", "n", str(mine), as_user=NOBODY, binary=user_ctl)
    for command in (("delete", "q"), ("refs", "q")):
        result = daemon.ctl(*command, expect=2, as_user=NOBODY, binary=user_ctl)
        assert "System error 2250 has occurred." in result.stderr
        result = daemon.ctl(*command, "--owner", "0", expect=2, as_user=NOBODY, binary=user_ctl)
        assert "System error 5 has occurred." in result.stderr
    for action in (f"import os; os.listdir('{q}')", f"open('{q}/secret.txt').read()", f"os.stat('{q}/secret.txt')"):
        run = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                              "/usr/bin/python3", "-c", "import os\n" + action], capture_output=True, text=True)
        assert "PermissionError" in run.stderr, (action, run.stderr)
    own = json.loads(daemon.ctl("list", "--json", as_user=NOBODY, binary=user_ctl).stdout)["drives"]
    assert [d["letter"] for d in own] == ["N:"]
    assert "System error 5" in daemon.ctl("list", "--all", expect=2, as_user=NOBODY, binary=user_ctl).stderr
    assert [d["letter"] for d in daemon.listing()] == ["Q:"]
    assert [(d["letter"], d["owner"]) for d in daemon.listing(all=True)] == [("N:", NOBODY), ("Q:", 0)]
    (daemon.mountpoint("n", NOBODY) / "made-by-nobody").write_text("root may")
    daemon.ctl("delete", "n", "--owner", str(NOBODY))


# MARK: abuse

def test_the_control_socket_holds_up_under_abuse(daemon, share):
    daemon.use("q", share)
    idle, stalled = [], []
    try:
        for _ in range(200):
            connection = socket.socket(socket.AF_UNIX)
            connection.connect(str(daemon.socket))
            idle.append(connection)
        for _ in range(50):
            connection = socket.socket(socket.AF_UNIX)
            connection.connect(str(daemon.socket))
            connection.sendall(b'{"v":1,"op":"li')
            stalled.append(connection)

        def flood():
            with socket.socket(socket.AF_UNIX) as connection:
                connection.connect(str(daemon.socket))
                try:
                    connection.sendall(b'{"v":1,"op":"list","x":"' + b"x" * (10 << 20) + b'"}\n')
                    connection.recv(4096)
                except OSError:
                    pass
        flooder = threading.Thread(target=flood)
        flooder.start()
        for _ in range(5):
            start = time.monotonic()
            reply = daemon.request(b'{"v":1,"op":"list"}\n', timeout=5)
            assert time.monotonic() - start < 1.0
            assert [d["letter"] for d in reply["drives"]] == ["Q:"]
        flooder.join(30)
    finally:
        for connection in idle + stalled:
            connection.close()
    assert daemon.listing()[0]["letter"] == "Q:"


# MARK: stopping

def test_sigterm_with_a_file_held_open_loses_no_data(base, share):
    daemon = Daemon(base)
    writer = None
    try:
        daemon.start()
        drive = daemon.use("q", share)
        script = ("import os, sys, time\n"
                  f"fd = os.open('{drive}/held.txt', os.O_WRONLY | os.O_CREAT, 0o644)\n"
                  "os.write(fd, b'written, not closed')\n"
                  "print('written', flush=True)\n"
                  "sys.stdin.readline()\n"
                  "try:\n    os.write(fd, b'more')\n    print('ok', flush=True)\n"
                  "except OSError as error:\n    print(error.errno, flush=True)\n")
        writer = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert writer.stdout.readline() == "written\n"
        assert daemon.stop(signal.SIGTERM) == 0
        assert fuse_mounts_under(daemon.root) == []
        assert (share / "held.txt").read_text() == "written, not closed"
        writer.stdin.write("go\n")
        writer.stdin.flush()
        assert writer.stdout.readline().strip() in ("5", "107", "103")  # EIO, ENOTCONN, ECONNABORTED
    finally:
        if writer:
            writer.kill()
            writer.wait()
        daemon.cleanup()
