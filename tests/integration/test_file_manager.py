"""Drives in file managers: the system instance gives each mount the x-gvfs-show and
x-gvfs-name options in libmount's utab, where `mount`, `findmnt -m` and GIO read them
(gvfs's udisks2 volume monitor, which GNOME Files uses, lists a mount by those options)."""
import signal
import subprocess
import urllib.parse

from conftest import Daemon

UTAB = "/run/mount/utab"


def user_options(mountpoint):
    """The mount's options as libmount merges them from the kernel's table and utab."""
    result = subprocess.run(["findmnt", "-m", "-n", "-M", str(mountpoint), "-o", "OPTIONS"],
                            capture_output=True, text=True)
    return result.stdout.strip().split(",") if result.returncode == 0 else []


def gio_options(mountpoint):
    """The mount's options as GIO (which gvfs file managers use) reads them."""
    code = ("import sys\nfrom gi.repository import Gio\n"
            "for m in Gio.unix_mounts_get()[0]:\n"
            "    if Gio.unix_mount_get_mount_path(m) == sys.argv[1]: print(Gio.unix_mount_get_options(m))\n")
    # The system's python3, where Debian's python3-gi lives.
    result = subprocess.run(["/usr/bin/python3", "-c", code, str(mountpoint)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().split(",")


def utab_targets():
    try:
        with open(UTAB) as table:
            return [field[len("TARGET="):] for line in table for field in line.split() if field.startswith("TARGET=")]
    except FileNotFoundError:
        return []


def gvfs_name(options):
    names = [option[len("x-gvfs-name="):] for option in options if option.startswith("x-gvfs-name=")]
    assert len(names) == 1, options
    return urllib.parse.unquote(names[0])


def test_a_drive_is_shown_with_its_letter_and_share_until_deleted(daemon, share):
    drive = daemon.use("q", share)
    options = user_options(drive)
    assert "x-gvfs-show" in options
    name = gvfs_name(options)
    assert name.startswith("Q: (") and name.endswith(")")
    assert (" on 127.0.0.1:" in name) if share.kind == "smb" else name == "Q: (share on this computer)"
    seen_by_gio = gio_options(drive)
    assert "x-gvfs-show" in seen_by_gio and gvfs_name(seen_by_gio) == name
    daemon.ctl("delete", "q")
    assert str(drive) not in utab_targets()


def test_a_hostile_share_name_stays_one_option(daemon, base):
    hostile = base / "a,b c\\d x-gvfs-hide"
    hostile.mkdir()
    drive = daemon.use("h", hostile)
    options = user_options(drive)
    assert "x-gvfs-hide" not in options and "b c" not in ",".join(options)
    assert gvfs_name(options) == "H: (a,b c\\d x-gvfs-hide on this computer)"
    daemon.ctl("delete", "h")


def test_stop_and_force_take_the_entries_away(base, share):
    daemon = Daemon(base)
    try:
        daemon.start()
        kept = daemon.use("k", share)
        forced = daemon.use("f", share)
        assert {str(kept), str(forced)} <= set(utab_targets())
        daemon.ctl("delete", "f", "--force")
        assert str(forced) not in utab_targets()
        assert daemon.stop(signal.SIGTERM) == 0
        assert str(kept) not in utab_targets()
    finally:
        daemon.cleanup()


def test_entries_a_killed_daemon_left_go_at_the_next_start(base, share):
    first = Daemon(base)
    try:
        first.start()
        drive = first.use("q", share)
        first.stop(signal.SIGKILL)
        assert str(drive) in utab_targets()
        second = Daemon(base)
        try:
            second.start()
            assert str(drive) not in utab_targets()
            assert second.stop(signal.SIGTERM) == 0
        finally:
            second.cleanup()
    finally:
        first.cleanup()
