"""SMB drives against a real smbd: use-time errors, credentials, workers, server loss."""
import json
import mmap
import os
import signal
import subprocess
import time

import pytest

from conftest import BIN, SAMBA_POLICY, SMB_ENGINE, Samba, Share, empty, free_port, fuse_mounts_under

# smbd refuses a guest session when it requires encryption: a guest has no key to encrypt with.
needs_guest = pytest.mark.skipif(SAMBA_POLICY == "encryption", reason="no guest session where encryption is required")


def use(daemon, letter, remote, *arguments, password=None, expect=0):
    command = [str(BIN / "netusectl"), "use", letter, remote, *arguments, "--socket", str(daemon.socket)]
    result = subprocess.run(command, input=password, capture_output=True, text=True, timeout=120)
    assert result.returncode == expect, f"{result.stdout}{result.stderr}"
    return result


@needs_guest
def test_guest_share_needs_no_user(daemon, samba):
    drive = daemon.use("g", Share("smb", samba.base / "guest", samba.url("guest")))
    (drive / "hello.txt").write_text("hello")
    assert (samba.base / "guest" / "hello.txt").read_text() == "hello"
    os.unlink(drive / "hello.txt")


@pytest.mark.parametrize("form", ["unc", "backslashes", "url-with-user"])
def test_remote_forms(daemon, samba, form):
    remote = {
        "unc": f"//127.0.0.1:{samba.port}/user",
        "backslashes": f"\\\\127.0.0.1:{samba.port}\\user",
        "url-with-user": f"smb://{Samba.USER}@127.0.0.1:{samba.port}/user",
    }[form]
    arguments = ["--password-stdin"] if form == "url-with-user" else ["--user", Samba.USER, "--password-stdin"]
    use(daemon, "q", remote, *arguments, password=Samba.PASSWORD + "\n")
    assert daemon.listing()[0]["remote"] == f"smb://127.0.0.1:{samba.port}/user"


def test_bad_password_is_1326(daemon, samba):
    result = use(daemon, "q", samba.url("user"), "--user", Samba.USER, "--password-stdin",
                 password="wrong\n", expect=2)
    assert "System error 1326 has occurred." in result.stderr
    assert "The user name or password is incorrect." in result.stderr
    assert fuse_mounts_under(daemon.root) == []


def test_unknown_share_is_67(daemon, samba):
    result = use(daemon, "q", samba.url("nosuch"), "--user", Samba.USER, "--password-stdin",
                 password=Samba.PASSWORD + "\n", expect=2)
    assert "System error 67 has occurred." in result.stderr


def test_nothing_listening_is_53(daemon):
    result = use(daemon, "q", f"smb://127.0.0.1:{free_port()}/share", expect=2)
    assert "System error 53 has occurred." in result.stderr


def test_guest_on_a_users_share_is_5(daemon, samba):
    result = use(daemon, "q", samba.url("user"), expect=2)
    assert "System error 5 has occurred." in result.stderr


@needs_guest
def test_another_user_name_for_the_same_server_is_1219(daemon, samba, user_share):
    daemon.use("q", user_share)
    result = use(daemon, "g", samba.url("guest"), expect=2)
    assert "System error 1219 has occurred." in result.stderr
    # The same server under another name is another server, as on Windows.
    use(daemon, "g", samba.url("guest", host="localhost"))


@needs_guest
def test_read_only_share_refuses_writes(daemon, samba):
    drive = daemon.use("r", Share("smb", samba.base / "readonly", samba.url("readonly")))
    assert (drive / "notice.txt").read_text() == "read only\n"
    with pytest.raises(OSError) as refused:
        (drive / "new.txt").write_text("x")
    assert refused.value.errno in (13, 30)  # EACCES or EROFS


def test_credentials_file(daemon, samba, base):
    credentials = base / "credentials"
    credentials.write_text(f"username={Samba.USER}\npassword={Samba.PASSWORD}\ndomain=WORKGROUP\n")
    credentials.chmod(0o644)
    result = use(daemon, "q", samba.url("user"), "--credentials", str(credentials), expect=2)
    assert "chmod 600" in result.stderr
    assert daemon.listing() == []
    credentials.chmod(0o600)
    use(daemon, "q", samba.url("user"), "--credentials", str(credentials))
    assert (daemon.mountpoint("q")).is_dir()


def test_the_password_shows_nowhere(daemon, samba, base, user_share):
    drive = daemon.use("q", user_share)
    (drive / "f").write_text("x")
    secret = Samba.PASSWORD.encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        for name in ("cmdline", "environ"):
            try:
                content = open(f"/proc/{pid}/{name}", "rb").read()
            except OSError:
                continue
            assert secret not in content, f"the password is in /proc/{pid}/{name}"
    for command in (("list", "--json"), ("refs", "q", "--json"), ("list",), ("refs", "q")):
        assert Samba.PASSWORD not in daemon.ctl(*command).stdout
    use(daemon, "p", samba.url("user"), "--user", Samba.USER, "--password-stdin", password="wrong\n", expect=2)
    daemon.ctl("delete", "q")
    assert Samba.PASSWORD not in daemon.log_text()
    assert "wrong" not in daemon.log_text()


def workers_of(daemon):
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = open(f"/proc/{pid}/status").read()
            command = open(f"/proc/{pid}/comm").read().strip()
        except OSError:
            continue
        parent = int(status.split("PPid:")[1].split()[0])
        if parent == daemon.process.pid and command.startswith("netuse-smb-wor"):
            found.append(int(pid))
    return found


@pytest.mark.skipif(SMB_ENGINE == "native", reason="the native engine has no workers")
def test_a_killed_worker_is_replaced_and_open_files_go_on(daemon, user_share):
    drive = daemon.use("q", user_share, "-o", "closetimeo=0")
    data = os.urandom(3 << 20)
    (drive / "big.bin").write_bytes(data)
    with open(drive / "big.bin", "rb", buffering=0) as f:
        first = f.read(1 << 20)
        victims = workers_of(daemon)
        assert victims
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        # Past the page cache: O_DIRECT-like reads are not needed, the rest was never read.
        rest = f.read()
    assert first + rest == data
    assert sorted(os.listdir(drive)) == ["big.bin"]
    assert set(workers_of(daemon)).isdisjoint(victims)
    assert daemon.listing()[0]["status"] == "OK"


def test_server_loss_fails_within_the_timeout_and_the_drive_comes_back(daemon, samba, user_share, local_share):
    drive = daemon.use("q", user_share, "-o", "timeout=2", "-o", "closetimeo=0", "-o", "readahead=128")
    other = daemon.use("l", local_share)
    data = os.urandom(32 << 20)
    with open(drive / "big.bin", "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    # What fsync acknowledged is on the server.
    assert (samba.base / "user" / "big.bin").read_bytes() == data
    subprocess.run(["sh", "-c", "echo 3 > /proc/sys/vm/drop_caches"], check=True)
    with open(drive / "big.bin", "rb", buffering=0) as reader:
        assert reader.read(1 << 20) == data[:1 << 20]
        os.killpg(samba.process.pid, signal.SIGSTOP)
        try:
            start = time.monotonic()
            with pytest.raises(OSError) as lost:
                reader.seek(16 << 20)
                reader.read(1 << 20)
            elapsed = time.monotonic() - start
            assert lost.value.errno == 5, lost.value  # EIO
            # One try and one retry on a fresh worker, each bounded by the 2 s timeout.
            assert elapsed < 10, f"took {elapsed:.1f} s with a 2 s timeout"
            status = {d["letter"]: d["status"] for d in daemon.listing()}
            assert status["Q:"] in ("Disconnected", "Reconnecting") and status["L:"] == "OK"
            (other / "fine.txt").write_text("other drives are fine")
            assert (local_share / "fine.txt").read_text() == "other drives are fine"
        finally:
            os.killpg(samba.process.pid, signal.SIGCONT)
    # The next operation reconnects, as the Windows redirector does: no new `use`.
    deadline = time.monotonic() + 30
    while True:
        try:
            with open(drive / "big.bin", "rb") as again:
                again.seek(16 << 20)
                assert again.read(1 << 20) == data[16 << 20:17 << 20]
            break
        except OSError:
            assert time.monotonic() < deadline, "the drive did not come back"
            time.sleep(0.5)
    (drive / "after.txt").write_text("back")
    assert [d["status"] for d in daemon.listing()] == ["OK", "OK"]


def test_written_and_closed_data_is_on_the_server_at_once(daemon, samba, user_share):
    """Write-behind may hold data while the descriptor is open, never past close(2)."""
    drive = daemon.use("q", user_share)
    blocks = [os.urandom(1 << 20) for _ in range(40)]
    fd = os.open(drive / "out.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for block in blocks:
        assert os.write(fd, block) == len(block)
    os.close(fd)
    assert (samba.base / "user" / "out.bin").read_bytes() == b"".join(blocks)
    # A rewrite in the middle, then an fsync: on the server before fsync returns.
    with open(drive / "out.bin", "r+b", buffering=0) as f:
        f.seek(5 << 20)
        f.write(b"x" * 4096)
        os.fsync(f.fileno())
        assert (samba.base / "user" / "out.bin").read_bytes()[5 << 20:(5 << 20) + 4097] == b"x" * 4096 + blocks[5][4096:4097]
    assert os.stat(drive / "out.bin").st_size == 40 << 20


def direct_read(fd, offset, count):
    """A read past the kernel's page cache, so that it reaches netused."""
    buffer = mmap.mmap(-1, count)
    done = os.preadv(fd, [buffer], offset)
    return bytes(buffer[:done])


def test_read_ahead_never_shows_stale_data(daemon, samba, user_share):
    drive = daemon.use("q", user_share)
    data = os.urandom(24 << 20)
    (samba.base / "user" / "data.bin").write_bytes(data)
    (samba.base / "user" / "data.bin").chmod(0o666)
    fd = os.open(drive / "data.bin", os.O_RDONLY | os.O_DIRECT)
    try:
        # Sequential reads start the read-ahead.
        assert b"".join(direct_read(fd, n << 20, 1 << 20) for n in range(4)) == data[:4 << 20]
        # A write through the drive, on another descriptor, is seen at once.
        with open(drive / "data.bin", "r+b", buffering=0) as writer:
            writer.seek(6 << 20)
            writer.write(b"w" * (1 << 20))
        assert direct_read(fd, 6 << 20, 1 << 20) == b"w" * (1 << 20)
        # A change made on the server by someone else is seen within a second.
        with open(samba.base / "user" / "data.bin", "r+b") as server:
            server.seek(10 << 20)
            server.write(b"s" * (1 << 20))
        time.sleep(1.2)
        assert direct_read(fd, 10 << 20, 1 << 20) == b"s" * (1 << 20)
        assert direct_read(fd, 11 << 20, 1 << 20) == data[11 << 20:12 << 20]
    finally:
        os.close(fd)


def test_write_behind_failure_is_answered_by_close(daemon, samba, user_share):
    """Data the share never got must not look written: close(2) says so."""
    drive = daemon.use("q", user_share, "-o", "timeout=2")
    fd = os.open(drive / "lost.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, os.urandom(1 << 20))
    os.fsync(fd)
    os.killpg(samba.process.pid, signal.SIGSTOP)
    try:
        failures = []
        for _ in range(8):
            try:
                os.write(fd, os.urandom(1 << 20))
            except OSError as error:  # a write after a failed batch may answer it already
                failures.append(error.errno)
        with pytest.raises(OSError) as closing:
            os.close(fd)
        assert closing.value.errno == 5 or failures, closing.value
        assert set(failures) <= {5}
    finally:
        os.killpg(samba.process.pid, signal.SIGCONT)


def test_listings_fetched_ahead_never_hide_a_change(daemon, samba, user_share):
    drive = daemon.use("q", user_share)
    for name in ("a", "b", "c"):
        (drive / "top" / name).mkdir(parents=True)
        (drive / "top" / name / "old.txt").write_text("old")
    for round in range(3):
        # Listing top fetches a, b and c ahead; changes through the drive must show at once.
        assert sorted(os.listdir(drive / "top")) == ["a", "b", "c"]
        (drive / "top" / "a" / f"new{round}.txt").write_text("new")
        with open(drive / "top" / "b" / "old.txt", "a") as f:
            f.write(" and more")
        os.rename(drive / "top" / "c" / "old.txt", drive / "top" / "c" / f"moved{round}.txt")
        assert f"new{round}.txt" in os.listdir(drive / "top" / "a")
        assert {e.name: e.stat().st_size for e in os.scandir(drive / "top" / "b")}["old.txt"] == 3 + 9 * (round + 1)
        assert os.listdir(drive / "top" / "c") == [f"moved{round}.txt"]
        os.rename(drive / "top" / "c" / f"moved{round}.txt", drive / "top" / "c" / "old.txt")
    # A change on the server by someone else shows within a second.
    os.listdir(drive / "top")
    (samba.base / "user" / "top" / "a" / "theirs.txt").write_text("theirs")
    time.sleep(1.2)
    assert "theirs.txt" in os.listdir(drive / "top" / "a")


def test_o_sync_writes_are_on_the_server_when_write_returns(daemon, samba, user_share):
    drive = daemon.use("q", user_share)
    fd = os.open(drive / "sync.bin", os.O_WRONLY | os.O_CREAT | os.O_SYNC, 0o644)
    try:
        for n in range(3):
            block = os.urandom(1 << 20)
            os.write(fd, block)
            # Before any close or fsync: no write-behind for O_SYNC.
            assert (samba.base / "user" / "sync.bin").read_bytes()[n << 20:] == block
    finally:
        os.close(fd)
