"""NET USE's own spelling beside netusectl's: the same results, the same exit codes."""
import json
import os
import subprocess

from conftest import BIN, Samba


def net(daemon, *args, expect=None, stdin=None):
    result = subprocess.run([str(BIN / "netusectl"), *args, "--socket", str(daemon.socket)],
                            capture_output=True, text=True, timeout=60, input=stdin)
    if expect is not None:
        assert result.returncode == expect, result.stdout + result.stderr
    return result


def listing(daemon):
    return sorted((d["letter"], d["remote"]) for d in daemon.listing())


def test_use_and_delete_in_both_spellings_give_the_same_drives(daemon, local_share):
    net(daemon, "use", "Q:", str(local_share), "/persistent:no", expect=0)
    net(daemon, "use", "r", str(local_share), "--persistent", "no", expect=0)
    assert listing(daemon) == [("Q:", str(local_share)), ("R:", str(local_share))]
    net(daemon, "USE", "*", str(local_share), "/P:NO", expect=0)
    assert [letter for letter, _ in listing(daemon)] == ["Q:", "R:", "Z:"]
    net(daemon, "use", "q:", "/DELETE", expect=0)
    net(daemon, "delete", "r", expect=0)
    net(daemon, "use", "z:", "/d", "/y", expect=0)
    assert listing(daemon) == []
    # Deleting what is not there is 2250 both ways.
    assert "System error 2250" in net(daemon, "use", "q:", "/delete", expect=2).stderr
    assert "System error 2250" in net(daemon, "delete", "q", expect=2).stderr


def test_open_files_are_asked_about_and_y_answers_yes(daemon, local_share):
    net(daemon, "use", "q:", str(local_share), expect=0)
    drive = daemon.mountpoint("q")
    held = os.open(drive / "held.txt", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        # No terminal to ask on: the answer is no, as netusectl delete says 2401.
        refused = net(daemon, "use", "q:", "/delete", expect=2)
        assert "System error 2401" in refused.stderr
        assert "System error 2401" in net(daemon, "delete", "q", expect=2).stderr
        assert listing(daemon) == [("Q:", str(local_share))]
        net(daemon, "use", "q:", "/delete", "/y", expect=0)
        assert listing(daemon) == []
    finally:
        try:
            os.close(held)
        except OSError:
            pass  # the drive went while it was open: EIO


def test_every_drive_goes_with_star_delete_y(daemon, local_share):
    for letter in ("p", "q", "r"):
        net(daemon, "use", f"{letter}:", str(local_share), expect=0)
    net(daemon, "use", "*", "/delete", "/y", expect=0)
    assert listing(daemon) == []
    # Without /y and without a terminal, nothing goes.
    net(daemon, "use", "q:", str(local_share), expect=0)
    assert "System error 2401" in net(daemon, "use", "*", "/delete", expect=2).stderr
    assert len(listing(daemon)) == 1
    net(daemon, "use", "*", "/delete", "/yes", expect=0)


def test_a_password_on_the_command_line_is_refused(daemon, samba):
    unc = f"\\\\127.0.0.1:{samba.port}\\user"
    refused = net(daemon, "use", "q:", unc, Samba.PASSWORD, f"/user:{Samba.USER}", expect=2)
    assert "System error 87" in refused.stderr and "ps" in refused.stderr and Samba.PASSWORD not in refused.stderr
    assert listing(daemon) == []
    # * asks on a terminal; without one it says how to give the password instead.
    assert "--password-stdin" in net(daemon, "use", "q:", unc, "*", f"/user:{Samba.USER}", expect=2).stderr
    net(daemon, "use", "q:", unc, f"/user:{Samba.USER}", "--password-stdin", stdin=Samba.PASSWORD + "\n", expect=0)
    assert listing(daemon) == [("Q:", f"smb://127.0.0.1:{samba.port}/user")]
    net(daemon, "use", "q:", "/delete", expect=0)


def test_use_alone_lists_as_net_use_does(daemon, local_share, samba):
    net(daemon, "use", "q:", str(local_share), expect=0)
    net(daemon, "use", "g:", f"//127.0.0.1:{samba.port}/guest", expect=0)
    lines = net(daemon, "use", expect=0).stdout.splitlines()
    assert lines[0] == "New connections will not be remembered."
    header = next(line for line in lines if line.startswith("Status"))
    assert header.split() == ["Status", "Local", "Remote", "Network"]
    rows = {line.split()[1]: line for line in lines if line.startswith("OK")}
    assert rows["Q:"].rstrip().endswith("Local directory")
    assert rows["G:"].rstrip().endswith("Microsoft Windows Network")
    assert "The command completed successfully." in lines[-2:]
    net(daemon, "use", "*", "/delete", "/y", expect=0)
    assert "There are no entries in the list." in net(daemon, "use", expect=0).stdout
