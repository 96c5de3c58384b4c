"""netusectl on its own: help messages, usage errors, and no daemon to talk to."""
import json
import subprocess

from conftest import BIN


def run(*args):
    return subprocess.run([str(BIN / "netusectl"), *args], capture_output=True, text=True, timeout=30)


def test_helpmsg_prints_the_text():
    result = run("helpmsg", "2404")
    assert result.returncode == 0
    assert result.stdout.strip() == "The device is being accessed by an active process."


def test_helpmsg_of_an_unknown_number_fails():
    assert run("helpmsg", "9999").returncode == 2


def test_no_daemon_says_how_to_start_one(tmp_path):
    result = run("list", "--socket", str(tmp_path / "none.sock"))
    assert result.returncode == 2
    assert "System error 2138 has occurred." in result.stderr
    assert "Start one with `netused`" in result.stderr
    assert "Connection refused" not in result.stdout


def test_no_daemon_json(tmp_path):
    result = run("list", "--json", "--socket", str(tmp_path / "none.sock"))
    assert result.returncode == 2
    assert json.loads(result.stdout)["error"]["code"] == 2138


def test_socket_from_environment(tmp_path):
    result = subprocess.run([str(BIN / "netusectl"), "list"], capture_output=True, text=True, timeout=30,
                            env={"NETUSE_SOCKET": str(tmp_path / "env.sock"), "PATH": "/usr/bin:/bin"})
    assert str(tmp_path / "env.sock") in result.stderr


def test_bad_letter_is_a_usage_error():
    result = run("use", "qq", "/tmp")
    assert result.returncode == 64
    assert "not a drive letter" in result.stderr
