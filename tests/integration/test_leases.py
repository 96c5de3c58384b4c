"""Leases keep the handle cache coherent with the share's other clients: a close is deferred
only under a lease that lets the drive keep the handle, and the server's break closes it
before another client's delete, rename or open has to wait. A read lease lets a reopen skip
revalidation, and its break drops what the kernel cached. The other client here is smbclient,
a real second SMB client of the same share."""
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from conftest import Samba, Share

NATIVE = ("-o", "engine=native")


def written_and_read(drive, names, data="x"):
    """Each file is written (its writer's close deferred), then read (its reader's too)."""
    for name in names:
        (drive / name).write_text(data + name)
        assert (drive / name).read_text() == data + name


def serving(daemon, path):
    return [row for row in daemon.refs()["serverOpens"] if row["path"] == path]


def test_a_deferred_close_holds_a_lease_and_refs_shows_it(daemon, user_share):
    drive = daemon.use("q", user_share, *NATIVE, "-o", "closetimeo=30")
    written_and_read(drive, ["f.txt"])
    rows = serving(daemon, "/f.txt")
    assert {(row["state"], row["access"], row["lease"]) for row in rows} == {("deferred", "write", "RWH"), ("deferred", "read", "RH")} \
        or {row["lease"] for row in rows} <= {"RWH", "RH"}, rows
    counters = daemon.refs()["counters"]
    assert counters["deferredUnderLease"] >= 2, counters
    shown = daemon.ctl("refs", "q").stdout
    assert "Lease" in shown and "RH" in shown, shown


def test_another_clients_delete_rename_and_open_succeed_at_once(daemon, user_share, base):
    """100 files each, closed through the drive just before: the other client's delete,
    rename and overwrite all succeed, and take effect at once (the break closed the deferred
    handle; without it the deleted files would stay on disk until closetimeo)."""
    drive = daemon.use("q", user_share, *NATIVE, "-o", "closetimeo=60", "-o", "maxdeferred=1000")
    count = 100
    names = [f"d{index}" for index in range(count)]
    written_and_read(drive, names)
    assert daemon.refs()["counters"]["deferredUnderLease"] >= count
    user_share.other_client(";".join(f"del {name}" for name in names), check=True)
    assert not any((user_share.path / name).exists() for name in names), "a delete waited for a deferred close"
    counters = daemon.refs()["counters"]
    assert counters["closedByBreak"] >= count and counters["breaks"] >= count, counters

    names = [f"r{index}" for index in range(count)]
    written_and_read(drive, names)
    user_share.other_client(";".join(f"rename {name} {name}.moved" for name in names), check=True)
    assert all((user_share.path / f"{name}.moved").exists() for name in names)

    names = [f"w{index}" for index in range(count)]
    written_and_read(drive, names)
    staged = base / "staged"
    staged.write_text("other client's")
    user_share.other_client(";".join(f"put {staged} {name}" for name in names), check=True)
    for name in names:
        assert (drive / name).read_text() == "other client's", name


def test_another_clients_write_is_seen_at_once_under_a_read_lease(daemon, user_share, base):
    """The drive read the file (its pages cached, its handle deferred under RH); another
    client writes it: the break drops the pages, so the next read, at once, is the new data,
    both for a new open and for a descriptor held open throughout."""
    drive = daemon.use("q", user_share, *NATIVE, "-o", "closetimeo=30")
    (drive / "f.txt").write_text("first version.")
    held = os.open(drive / "f.txt", os.O_RDONLY)
    try:
        assert os.pread(held, 100, 0) == b"first version."
        assert (drive / "f.txt").read_text() == "first version."
        staged = base / "staged"
        for round, text in enumerate(["SECOND version", "third, longer version"]):
            staged.write_text(text)
            user_share.other_client(f"put {staged} f.txt", check=True)
            assert (drive / "f.txt").read_text() == text, round
            assert os.pread(held, 100, 0) == text.encode(), round
    finally:
        os.close(held)
    assert daemon.refs()["counters"]["breaks"] >= 2


def test_reopens_within_a_read_lease_skip_revalidation(daemon, user_share):
    """The KB's script, run again and again: each run reopens the file the last one closed,
    within its lease; delete still flushes the deferred handles."""
    drive = daemon.use("q", user_share, *NATIVE, "-o", "closetimeo=30")
    (drive / "run.bat").write_text("echo hello\n")
    for _ in range(20):
        assert (drive / "run.bat").read_text() == "echo hello\n"
    counters = daemon.refs()["counters"]
    assert counters["revivedUnderLease"] >= 19 and counters["backendOpens"] <= 3, counters
    flushed = daemon.ctl("delete", "q", "--json")
    assert '"flushed"' in flushed.stdout


def test_names_that_share_a_prefix_keep_their_deferred_handles(daemon, user_share):
    """cifs.ko once closed the deferred handles of every name starting with the one unlinked."""
    drive = daemon.use("q", user_share, *NATIVE, "-o", "closetimeo=30")
    written_and_read(drive, ["foo", "foobar", "foo.d"])
    os.unlink(drive / "foo")
    assert {row["path"] for row in daemon.refs()["serverOpens"]} == {"/foobar", "/foo.d"}


def test_a_deleted_files_name_is_reused_at_once(daemon, user_share):
    drive = daemon.use("q", user_share, *NATIVE, "-o", "closetimeo=30")
    for round in range(20):
        (drive / "f").write_text(f"round {round}")
        assert (drive / "f").read_text() == f"round {round}"
        os.unlink(drive / "f")
        assert not (user_share.path / "f").exists()
    (drive / "f").write_text("last")
    assert (user_share.path / "f").read_text() == "last"


def test_delete_races_the_close_timer(daemon, user_share):
    """Delete while deferred handles expire: nothing is closed twice, nothing is left."""
    for round in range(6):
        drive = daemon.use("q", user_share, *NATIVE, "-o", "closetimeo=1")
        written_and_read(drive, [f"t{index}" for index in range(30)])
        time.sleep(0.9 + round * 0.05)
        daemon.ctl("delete", "q")
    assert daemon.listing() == []
    drive = daemon.use("q", user_share, *NATIVE)
    assert (drive / "t0").read_text() == "xt0"


@pytest.fixture
def server_without_leases(request):
    base = Path(tempfile.mkdtemp(prefix="netuse-smbd-nolease-", dir="/tmp"))
    base.chmod(0o755)
    server = Samba(base, settings=request.param)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("server_without_leases", [{"smb2 leases": "no"}, {"server max protocol": "SMB2_02"}],
                         indirect=True, ids=["leases-off", "smb2.0.2"])
def test_a_batch_oplock_serves_where_the_server_has_no_leases(daemon, server_without_leases):
    """Batch oplocks let a handle be kept as a handle lease does, and break the same way."""
    share = Share("smb", server_without_leases.base / "user", server_without_leases.url("user"),
                  user=Samba.USER, password=Samba.PASSWORD)
    drive = daemon.use("q", share, *NATIVE, "-o", "closetimeo=30")
    written_and_read(drive, ["f.txt", "g.txt"])
    assert {row["lease"] for row in daemon.refs()["serverOpens"]} <= {"RWH", "RH", "R"}
    share.other_client("del f.txt;rename g.txt h.txt", check=True)
    assert sorted(os.listdir(share.path)) == ["h.txt"]
    assert daemon.refs()["counters"]["closedByBreak"] >= 2


@pytest.mark.parametrize("server_without_leases", [{"smb2 leases": "no", "oplocks": "no"}], indirect=True, ids=["no-caching"])
def test_without_lease_or_oplock_nothing_is_deferred(daemon, server_without_leases):
    share = Share("smb", server_without_leases.base / "user", server_without_leases.url("user"),
                  user=Samba.USER, password=Samba.PASSWORD)
    drive = daemon.use("q", share, *NATIVE, "-o", "closetimeo=30")
    written_and_read(drive, ["f.txt"])
    assert daemon.refs()["serverOpens"] == []
    share.other_client("del f.txt", check=True)
    assert os.listdir(share.path) == []


def test_libsmbclient_holds_no_lease_so_defers_no_close(daemon, user_share):
    drive = daemon.use("q", user_share, "-o", "engine=libsmbclient", "-o", "closetimeo=30")
    written_and_read(drive, ["f.txt"])
    assert daemon.refs()["serverOpens"] == []
    user_share.other_client("del f.txt", check=True)
    assert not (user_share.path / "f.txt").exists()


def test_a_readers_open_brings_the_first_bytes_and_they_go_when_the_file_changes(daemon, user_share, base):
    """A read-only open is CREATE+READ in one round trip; the bytes it brought are served only
    while the read lease holds and nothing was written through the drive since."""
    drive = daemon.use("q", user_share, *NATIVE, "-o", "closetimeo=30")
    first = os.urandom(100_000)
    (drive / "f").write_bytes(first)
    reader = os.open(drive / "f", os.O_RDONLY)
    try:
        assert os.pread(reader, 200_000, 0) == first
        with open(drive / "f", "r+b") as writer:
            writer.write(b"ours")
        os.posix_fadvise(reader, 0, 0, os.POSIX_FADV_DONTNEED)  # the next read asks the daemon
        assert os.pread(reader, 8, 0) == b"ours" + first[4:8]
        staged = base / "staged"
        second = os.urandom(100_000)
        staged.write_bytes(second)
        user_share.other_client(f"put {staged} f", check=True)
        os.posix_fadvise(reader, 0, 0, os.POSIX_FADV_DONTNEED)
        assert os.pread(reader, 200_000, 0) == second
    finally:
        os.close(reader)
    for size in (0, 10, 65_536, 65_537):
        data = os.urandom(size)
        (user_share.path / f"s{size}").write_bytes(data)
        (user_share.path / f"s{size}").chmod(0o666)
        assert (drive / f"s{size}").read_bytes() == data
