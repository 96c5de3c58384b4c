"""use / list / delete through the real CLI, and the NET HELPMSG errors they answer."""
import os
import subprocess
import time

import pytest

from conftest import NOBODY, fuse_mounts_under



@pytest.fixture
def share(local_share):
    """Letters, the CLI and the daemon's life do not depend on the kind of share."""
    return local_share.path

def test_use_prints_the_drive_and_its_mount(daemon, share):
    result = daemon.ctl("use", "Q:", str(share))
    assert f"Drive Q: is now connected to {share}." in result.stdout
    assert str(daemon.mountpoint("q")) in result.stdout
    assert fuse_mounts_under(daemon.root) == [str(daemon.mountpoint("q"))]
    [entry] = daemon.listing()
    assert entry["letter"] == "Q:" and entry["remote"] == str(share) and entry["status"] == "OK"


def test_list_table_and_empty_list(daemon, share):
    assert "There are no entries in the list." in daemon.ctl("list").stdout
    daemon.use("q", share)
    lines = daemon.ctl("list").stdout.splitlines()
    assert lines[0].split() == ["Status", "Local", "Remote", "Mounted", "at", "Open", "Deferred"]
    assert lines[2].split() == ["OK", "Q:", str(share), str(daemon.mountpoint("q")), "0", "0"]


def test_open_handles_are_counted(daemon, drive):
    (drive / "f").write_text("x")
    with open(drive / "f") as held:
        assert daemon.listing()[0]["openHandles"] == 1
    deadline = time.monotonic() + 5
    while daemon.listing()[0]["openHandles"] != 0:
        assert time.monotonic() < deadline, "the release never arrived"
        time.sleep(0.01)


def test_file_url_and_letter_spellings(daemon, share):
    daemon.ctl("use", "q", f"file://{share}")
    daemon.ctl("use", "r:", f"file://localhost{share}/")
    assert [d["remote"] for d in daemon.listing()] == [str(share), str(share)]


def test_two_drives_serve_their_own_shares(daemon, base):
    first, second = base / "one", base / "two"
    first.mkdir()
    second.mkdir()
    (first / "name").write_text("one")
    (second / "name").write_text("two")
    q = daemon.use("q", first)
    r = daemon.use("r", second)
    assert (q / "name").read_text() == "one"
    assert (r / "name").read_text() == "two"
    with pytest.raises(OSError) as crossing:
        os.rename(q / "name", r / "moved")
    assert crossing.value.errno == 18  # EXDEV: two drives are two filesystems


def test_taken_letter_is_85(daemon, share):
    daemon.use("q", share)
    result = daemon.ctl("use", "q", str(share), expect=2)
    assert "System error 85 has occurred." in result.stderr
    assert "The local device name is already in use." in result.stderr


def test_star_counts_down_from_z(daemon, share):
    assert "Drive Z:" in daemon.ctl("use", "*", str(share)).stdout
    assert "Drive Y:" in daemon.ctl("use", "*", str(share)).stdout
    assert [d["letter"] for d in daemon.listing()] == ["Y:", "Z:"]


def test_delete_unknown_letter_is_2250(daemon):
    result = daemon.ctl("delete", "m", expect=2)
    assert "System error 2250 has occurred." in result.stderr
    assert "The network connection could not be found." in result.stderr


def test_missing_directory_is_53_and_a_file_is_67(daemon, base):
    result = daemon.ctl("use", "q", str(base / "missing"), expect=2)
    assert "System error 53 has occurred." in result.stderr
    (base / "file").write_text("")
    result = daemon.ctl("use", "q", str(base / "file"), expect=2)
    assert "System error 67 has occurred." in result.stderr
    result = daemon.ctl("use", "q", "relative/path", expect=2)
    assert "System error 67 has occurred." in result.stderr
    assert daemon.listing() == []
    assert fuse_mounts_under(daemon.root) == []


def test_unknown_option_is_87(daemon, share):
    result = daemon.ctl("use", "q", str(share), "-o", "nosuch=1", expect=2)
    assert "System error 87 has occurred." in result.stderr
    assert "nosuch" in result.stderr


def test_delete_with_a_cwd_on_the_drive_is_2404_and_the_drive_keeps_working(daemon, drive):
    (drive / "f").write_text("before")
    sitter = subprocess.Popen(["sleep", "60"], cwd=drive)
    try:
        result = daemon.ctl("delete", "q", expect=2)
        assert "System error 2404 has occurred." in result.stderr
        assert "The device is being accessed by an active process." in result.stderr
        assert (drive / "f").read_text() == "before"
        (drive / "g").write_text("after")
        assert [d["letter"] for d in daemon.listing()] == ["Q:"]
    finally:
        sitter.kill()
        sitter.wait()
    result = daemon.ctl("delete", "q")
    assert "Q: was deleted successfully." in result.stdout
    assert fuse_mounts_under(daemon.root) == []
    assert not (daemon.mountpoint("q")).exists()
    assert daemon.listing() == []


def test_delete_then_use_again(daemon, share):
    for _ in range(3):
        daemon.use("q", share)
        daemon.ctl("delete", "q")
    assert fuse_mounts_under(daemon.root) == []


def test_only_the_owner_or_root_deletes_and_the_owner_is_recorded(daemon, share, user_ctl):
    daemon.ctl("use", "n", str(share), as_user=NOBODY, binary=user_ctl)
    daemon.use("q", share)
    owners = {d["letter"]: d["owner"] for d in daemon.listing(all=True)}
    assert owners == {"N:": NOBODY, "Q:": 0}
    result = daemon.ctl("delete", "q", "--owner", "0", expect=2, as_user=NOBODY, binary=user_ctl)
    assert "System error 5 has occurred." in result.stderr
    assert "Access is denied." in result.stderr
    # Root names another user's drive by its owner.
    daemon.ctl("refs", "n", "--owner", str(NOBODY))
    daemon.ctl("delete", "n", "--owner", str(NOBODY))
    daemon.ctl("delete", "q")


def test_a_share_the_caller_cannot_read_is_5(daemon, base, user_ctl):
    private = base / "private"
    private.mkdir(mode=0o700)
    result = daemon.ctl("use", "q", str(private), expect=2, as_user=NOBODY, binary=user_ctl)
    assert "System error 5 has occurred." in result.stderr


def read_ahead_of(mountpoint):
    with open("/proc/self/mountinfo") as table:
        device = next(line.split()[2] for line in table if line.split()[4] == str(mountpoint))
    return int(open(f"/sys/class/bdi/{device}/read_ahead_kb").read())


def test_sequential_reads_get_a_large_read_ahead_window(daemon, share, base):
    assert read_ahead_of(daemon.use("q", share)) == 4096
    assert read_ahead_of(daemon.use("r", share, "-o", "readahead=512")) == 512
