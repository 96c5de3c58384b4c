"""The FCB handle cache seen through refs: collapse, deferral, expiry, invalidation."""
import errno
import os
import subprocess
import time

import pytest

from conftest import defers_closes, deferred_per_file, fuse_mounts_under


def daemon_fds_on(daemon, share, name):
    """What the daemon's own descriptors point at, at or below `name` on a local share.
    An SMB share's handles live in its workers and on the server: the counters speak for them."""
    if share.kind != "local":
        return []
    path = share / name
    pid = daemon.process.pid
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target == str(path) or target.startswith(str(path) + " ") or target.startswith(str(path) + "/"):
            found.append(target)
    return found


def test_a_hundred_opens_of_one_file_reach_the_share_once(daemon, drive, share):
    if not defers_closes(share):
        pytest.skip("this engine defers no close")
    (drive / "batch.cmd").write_text("echo off\n")
    for _ in range(100):
        with open(drive / "batch.cmd") as f:
            assert f.read() == "echo off\n"
    counters = daemon.refs()["counters"]
    # The first open was the write's (another access mode); 100 reads reached the share once.
    assert counters["opens"] == 101
    assert counters["backendOpens"] == 2
    # An open may come before the RELEASE of the one before it: then it shares the open handle.
    assert counters["revived"] + counters["collapsed"] == 99
    rows = daemon.refs()["serverOpens"]
    expected = {("deferred", "/batch.cmd", 0, "read"), ("deferred", "/batch.cmd", 0, "write")}
    if deferred_per_file(share) == 1:
        expected = {("deferred", "/batch.cmd", 0, "read")}
    assert {(row["state"], row["path"], row["handles"], row["access"]) for row in rows} == expected


def test_opens_at_once_share_one_server_open(daemon, drive, share):
    (drive / "f").write_text("x")
    with open(drive / "f") as first, open(drive / "f") as second:
        [row] = [row for row in daemon.refs()["serverOpens"] if row["state"] == "open"]
        assert row["state"] == "open" and row["handles"] == 2 and row["pids"] == [os.getpid()]
        assert row["access"] == "read"
        assert daemon.listing()[0]["openHandles"] == 2
    assert daemon.refs()["counters"]["collapsed"] == 1


def test_other_access_modes_do_not_collapse(daemon, drive, share):
    (drive / "f").write_text("x")
    with open(drive / "f") as reader, open(drive / "f", "a") as writer:
        writer.write("y")
        rows = [row for row in daemon.refs()["serverOpens"] if row["state"] == "open"]
        assert sorted(row["access"] for row in rows) == ["read", "write"]
    assert (share / "f").read_text() == "xy"


def test_deferred_open_expires_after_closetimeo(daemon, share):
    if not defers_closes(share):
        pytest.skip("this engine defers no close")
    drive = daemon.use("q", share, "-o", "closetimeo=1")
    (drive / "f").write_text("x")
    (drive / "f").read_text()
    rows = daemon.refs()["serverOpens"]
    assert len(rows) == deferred_per_file(share)  # the write's and the read's
    assert all(row["state"] == "deferred" and 0 < row["secondsLeft"] <= 1 for row in rows)
    time.sleep(1.5)
    refs = daemon.refs()
    assert refs["serverOpens"] == []
    assert refs["counters"]["expired"] == deferred_per_file(share)
    assert daemon_fds_on(daemon, share, "f") == []


def test_closetimeo_zero_turns_deferral_off(daemon, share):
    drive = daemon.use("q", share, "-o", "closetimeo=0")
    (drive / "f").write_text("x")
    for _ in range(3):
        (drive / "f").read_text()
    refs = daemon.refs()
    assert refs["serverOpens"] == [] and refs["counters"]["backendOpens"] == 4


def test_the_deferred_list_is_bounded_oldest_first(daemon, share):
    if not defers_closes(share):
        pytest.skip("this engine defers no close")
    drive = daemon.use("q", share, "-o", "maxdeferred=3")
    for n in range(5):
        (share / f"f{n}").write_text(str(n))
        (share / f"f{n}").chmod(0o666)
        (drive / f"f{n}").read_text()
    refs = daemon.refs()
    assert sorted(row["path"] for row in refs["serverOpens"]) == ["/f2", "/f3", "/f4"]
    assert refs["counters"]["evicted"] == 2


def test_unlink_of_a_file_with_a_deferred_open_closes_it_first(daemon, drive, share):
    if not defers_closes(share):
        pytest.skip("this engine defers no close")
    (drive / "doomed").write_text("x")
    (drive / "doomed").read_text()
    if share.kind == "local":
        assert daemon_fds_on(daemon, share, "doomed") != []
    os.unlink(drive / "doomed")
    # Had the close come after the unlink, the daemon would hold "doomed (deleted)" now.
    assert daemon_fds_on(daemon, share, "doomed") == []
    assert not (share / "doomed").exists()
    # Two ServerOpens were deferred: the write's and the read's.
    assert daemon.refs()["counters"]["invalidated"] == deferred_per_file(share)


def test_rename_of_a_file_with_a_deferred_open_closes_it_and_spares_the_sibling(daemon, drive, share):
    if not defers_closes(share):
        pytest.skip("this engine defers no close")
    for name in ("foo", "foo.tmp"):
        (drive / name).write_text(name)
        (drive / name).read_text()
    os.rename(drive / "foo", drive / "bar")
    assert daemon_fds_on(daemon, share, "foo") == [] and daemon_fds_on(daemon, share, "bar") == []
    assert {row["path"] for row in daemon.refs()["serverOpens"]} == {"/foo.tmp"}
    assert (drive / "bar").read_text() == "foo"


def test_rename_of_a_directory_closes_deferred_opens_below_it(daemon, drive, share):
    if not defers_closes(share):
        pytest.skip("this engine defers no close")
    (drive / "dir").mkdir()
    (drive / "dir" / "inner").write_text("x")
    (drive / "dir" / "inner").read_text()
    (drive / "dir.txt").write_text("sibling")
    (drive / "dir.txt").read_text()
    os.rename(drive / "dir", drive / "moved")
    assert {row["path"] for row in daemon.refs()["serverOpens"]} == {"/dir.txt"}
    assert (drive / "moved" / "inner").read_text() == "x"


def test_an_open_file_follows_a_rename(daemon, drive, share):
    (drive / "old").write_text("x")
    with open(drive / "old", "r+") as f:
        if share.kind == "smb":
            # Windows semantics: a file open elsewhere cannot be renamed.
            with pytest.raises(OSError) as busy:
                os.rename(drive / "old", drive / "new")
            assert busy.value.errno == errno.EBUSY
            return
        os.rename(drive / "old", drive / "new")
        f.write("y")
        f.flush()
        [row] = daemon.refs()["serverOpens"]
        assert row["path"] == "/new" and row["state"] == "open"
    assert (share / "new").read_text() == "y"


def test_truncate_closes_deferred_opens(daemon, drive, share):
    (drive / "f").write_text("long content")
    (drive / "f").read_text()
    os.truncate(drive / "f", 4)
    assert daemon_fds_on(daemon, share, "f") == []
    assert (drive / "f").read_text() == "long"


def write_behind(share, base, name, data):
    """Another writer changes the file: on a local share the directory itself, on an SMB
    share another SMB client (smbd does not see a change made to its disk under an open file)."""
    if share.kind == "local":
        (share / name).write_bytes(data)
        return
    staged = base / "staged"
    staged.write_bytes(data)
    share.other_client(f"put {staged} {name}", check=True)


def test_a_change_behind_the_drives_back_is_seen_on_reopen(daemon, drive, share, base):
    write_behind(share, base, "f", b"first version")
    assert (drive / "f").read_text() == "first version"
    # Another writer replaces the file while the drive holds a deferred handle on it.
    write_behind(share, base, "f.new", b"second, longer version")
    if share.kind == "local":
        os.rename(share / "f.new", share / "f")
    else:
        os.unlink(drive / "f")
        os.rename(drive / "f.new", drive / "f")
    time.sleep(1.2)  # past the kernel's attribute timeout
    assert (drive / "f").read_text() == "second, longer version"
    (drive / "f").read_text()
    # And a change of the same file in place, same size.
    write_behind(share, base, "f", b"THIRD!, longer version")
    time.sleep(1.2)
    assert (drive / "f").read_text() == "THIRD!, longer version"


def test_list_shows_open_and_deferred_counts(daemon, drive):
    (drive / "f").write_text("x")
    with open(drive / "f"):
        entry = daemon.listing()[0]
        assert entry["openHandles"] == 1
    lines = daemon.ctl("list").stdout.splitlines()
    assert lines[0].split() == ["Status", "Local", "Remote", "Mounted", "at", "Open", "Deferred"]
    assert fuse_mounts_under(daemon.root)
