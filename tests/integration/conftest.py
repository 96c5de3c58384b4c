"""Fixtures that run the real netused and netusectl against real FUSE mounts.

Every daemon a test starts is stopped, and every mount it made is taken down, also when
the test fails; a leftover mount fails the test that left it.
"""
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
from netuse_harness import Samba, free_port, fuse_mounts_under  # noqa: E402  (shared with the benchmark)
BIN = Path(os.environ.get("NETUSE_BIN", REPO / ".build" / "debug")).resolve()
NOBODY = 65534


class Daemon:
    """One netused on a private root, and the CLI pointed at it."""

    def __init__(self, base):
        self.base = base
        self.root = base / "root"
        self.state = base / "state"
        self.socket = self.root / "control.sock"
        self.log_path = base / "netused.log"
        self.process = None

    def start(self, env=None, prefix=(), options=()):
        self.log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [*prefix, str(BIN / "netused"), "--root", str(self.root), "--state-dir", str(self.state), "--foreground",
             "--log-level", "debug", "--retry-interval", "0.5", *options],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, env=env)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "netused exited at start:\n" + self.log_text()
            try:
                with socket.socket(socket.AF_UNIX) as probe:
                    probe.connect(str(self.socket))
            except OSError:
                time.sleep(0.02)
                continue
            # The socket answers at once; persistent drives show as Restoring until tried.
            while time.monotonic() < deadline + 50:
                answer = self.request(b'{"v":1,"op":"list","all":true}\n', timeout=60)
                assert answer["ok"], answer
                if all(drive["status"] != "Restoring" for drive in answer["drives"]):
                    return self
                time.sleep(0.05)
            raise AssertionError("persistent drives were still being restored after 60 s")
        raise AssertionError("netused did not listen within 10 s:\n" + self.log_text())

    def log_text(self):
        return self.log_path.read_text(errors="replace")

    def ctl(self, *args, expect=0, as_user=None, binary=None):
        """Runs netusectl; checks its exit status against `expect` (None: any)."""
        command = [str(binary or BIN / "netusectl"), *args]
        if args and args[0] != "helpmsg":
            command += ["--socket", str(self.socket)]
        if as_user is not None:
            command = ["setpriv", f"--reuid={as_user}", f"--regid={as_user}", "--clear-groups"] + command
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if expect is not None:
            assert result.returncode == expect, (
                f"netusectl {' '.join(args)} exited {result.returncode}, not {expect}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}")
        return result

    def mountpoint(self, letter, uid=0):
        """Where a user's drive is mounted: ROOT/UID/letter (ROOT/global/letter for uid None)."""
        return self.root / ("global" if uid is None else str(uid)) / letter.lower().rstrip(":")

    def use(self, letter, share, *options, as_user=None, binary=None):
        """Maps a Share (or a plain directory) to the letter; returns the mountpoint."""
        arguments = share.use_arguments() if isinstance(share, Share) else [str(share)]
        command = [str(binary or BIN / "netusectl"), "use", letter, *arguments, *options, "--socket", str(self.socket)]
        if as_user is not None:
            command = ["setpriv", f"--reuid={as_user}", f"--regid={as_user}", "--clear-groups"] + command
        result = subprocess.run(command, capture_output=True, text=True, timeout=60,
                                input=share.password_input if isinstance(share, Share) else None)
        assert result.returncode == 0, f"use {letter} failed:\n{result.stdout}{result.stderr}"
        mountpoint = re.search(r"It is mounted at (.*)\.\n", result.stdout)
        return Path(mountpoint.group(1)) if mountpoint else self.mountpoint(letter, as_user or 0)

    def refs(self, letter="q"):
        return json.loads(self.ctl("refs", letter, "--json").stdout)["references"]

    def listing(self, all=False):
        return json.loads(self.ctl("list", "--json", *(["--all"] if all else [])).stdout)["drives"]

    def request(self, raw: bytes, timeout=10):
        """Sends raw bytes on the control socket and returns the first reply line, parsed."""
        with socket.socket(socket.AF_UNIX) as connection:
            # As netusectl does: a full accept queue makes connect wait (here, at most
            # `timeout`), where a non-blocking connect would fail at once with EAGAIN.
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                                  struct.pack("ll", int(timeout), int(timeout % 1 * 1e6)))
            connection.connect(str(self.socket))
            connection.settimeout(timeout)
            connection.sendall(raw)
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = connection.recv(65536)
                assert chunk, "the daemon closed the connection without answering"
                reply += chunk
            return json.loads(reply)

    def stop(self, sig=signal.SIGTERM):
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def cleanup(self):
        self.stop(signal.SIGKILL)
        for mountpoint in fuse_mounts_under(self.root):
            subprocess.run(["umount", "-l", mountpoint], capture_output=True)
        forget_utab_entries(self.root)


def forget_utab_entries(root):
    """Takes out the file-manager entries of mounts below `root` that a daemon killed, or
    one out of descriptors, could not take out itself (the next daemon on that root would)."""
    utab = "/run/mount/utab"
    if not os.path.exists(utab):
        return
    with open(utab + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with open(utab) as table:
            lines = table.readlines()
        prefix = f"TARGET={root}/"
        kept = [line for line in lines if not any(field.startswith(prefix) for field in line.split())]
        if kept != lines:
            with open(utab + ".netuse-test", "w") as replacement:
                replacement.writelines(kept)
            os.chmod(utab + ".netuse-test", 0o644)
            os.rename(utab + ".netuse-test", utab)


@pytest.fixture
def base():
    """A private directory everyone may traverse, so that setpriv'd users reach into it."""
    path = Path(tempfile.mkdtemp(prefix="netuse-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    leftovers = fuse_mounts_under(path)
    for mountpoint in leftovers:
        subprocess.run(["umount", "-l", mountpoint], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)
    assert not leftovers, f"mounts left behind: {leftovers}"


# Which engine SMB drives use in this run (make test runs the SMB tests with each).
SMB_ENGINE = os.environ.get("NETUSE_SMB_ENGINE", "native")

# The private smbd's policy for this run: make test runs the SMB tests again under each of
# the strict ones, which refuse a client that does not comply.
SAMBA_POLICIES = {
    "default": {},
    "signing": {"server signing": "mandatory"},
    "encryption": {"server smb encrypt": "required"},
    "smb2.0.2": {"server max protocol": "SMB2_02"},
    "smb3.1.1": {"server min protocol": "SMB3_11"},
}
SAMBA_POLICY = os.environ.get("NETUSE_SAMBA_POLICY", "default")


def defers_closes(share):
    """Whether the drive keeps closed files' handles: the libsmbclient engine holds no lease,
    so it defers no close (test_leases checks both)."""
    return not (share.kind == "smb" and SMB_ENGINE == "libsmbclient")


def deferred_per_file(share):
    """How many of a file's ServerOpens (a writer's, then a reader's) stay deferred. SMB 2.0.2
    has no leases: the native engine holds a batch oplock, which the file's next open breaks,
    so only the last one may keep its handle."""
    return 1 if share.kind == "smb" and SAMBA_POLICY == "smb2.0.2" and SMB_ENGINE == "native" else 2


class Share:
    """A share a drive maps, and the directory where its files really are."""

    def __init__(self, kind, path, remote, user=None, password=None):
        self.kind = kind
        self.path = path
        self.remote = remote
        self.user = user
        self.password = password

    @property
    def password_input(self):
        return None if self.password is None else self.password + "\n"

    def use_arguments(self):
        arguments = [self.remote]
        if self.kind == "smb" and os.environ.get("NETUSE_SMB_ENGINE"):
            arguments += ["-o", "engine=" + os.environ["NETUSE_SMB_ENGINE"]]
        if self.user:
            arguments += ["--user", self.user, "--password-stdin"]
        return arguments

    def other_client(self, command, check=False):
        """Runs smbclient commands (`;`-separated) as another SMB client of the share: its
        output and whether it succeeded."""
        host_port, share_name = self.remote.replace("smb://", "").split("/", 1)
        host, port = host_port.split(":")
        result = subprocess.run(["smbclient", "-p", port, "-U", f"{self.user}%{self.password}", f"//{host}/{share_name}",
                                 "-c", command], capture_output=True, text=True, timeout=60)
        output = result.stdout + result.stderr
        assert not check or (result.returncode == 0 and "NT_STATUS" not in output), output
        return output, result.returncode == 0

    def __truediv__(self, name):
        return self.path / name

    def __fspath__(self):
        return str(self.path)

    def __str__(self):
        return self.remote


@pytest.fixture(scope="session")
def samba():
    base = Path(tempfile.mkdtemp(prefix="netuse-smbd-", dir="/tmp"))
    base.chmod(0o755)
    server = Samba(base, settings=SAMBA_POLICIES[SAMBA_POLICY])
    yield server
    server.stop()
    if not os.environ.get("NETUSE_KEEP_SMBD"):
        shutil.rmtree(base, ignore_errors=True)


def empty(directory):
    for entry in directory.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


@pytest.fixture
def local_share(base):
    path = base / "share"
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    return Share("local", path, str(path))


@pytest.fixture(params=["local", "smb"])
def share(request, base):
    """The same tests against a local directory and against a real Samba share."""
    if request.param == "local":
        yield request.getfixturevalue("local_share")
        return
    samba = request.getfixturevalue("samba")
    path = samba.base / "user"
    empty(path)
    yield Share("smb", path, samba.url("user"), user=Samba.USER, password=Samba.PASSWORD)
    empty(path)


@pytest.fixture
def user_share(samba):
    """The SMB share with a user name, emptied before and after."""
    empty(samba.base / "user")
    yield Share("smb", samba.base / "user", samba.url("user"), user=Samba.USER, password=Samba.PASSWORD)
    empty(samba.base / "user")


@pytest.fixture
def daemon(base):
    instance = Daemon(base)
    try:
        yield instance.start()
        assert instance.stop() == 0, "netused did not exit 0 on SIGTERM:\n" + instance.log_text()
        assert fuse_mounts_under(instance.root) == [], "SIGTERM left mounts behind"
    finally:
        instance.cleanup()


@pytest.fixture
def drive(daemon, share):
    """Drive Q: on a fresh share, local or SMB."""
    return daemon.use("q", share)


@pytest.fixture
def user_ctl(base):
    """netusectl copied where an unprivileged user may run it (the checkout may be private)."""
    copy = base / "netusectl"
    shutil.copy2(BIN / "netusectl", copy)
    copy.chmod(0o755)
    return copy
