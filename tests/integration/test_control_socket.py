"""The control socket survives bad clients and keeps serving good ones."""
import json
import socket

import pytest

from conftest import fuse_mounts_under



@pytest.fixture
def share(local_share):
    """Letters, the CLI and the daemon's life do not depend on the kind of share."""
    return local_share.path

def error_code(reply):
    assert reply["v"] == 1 and reply["ok"] is False, reply
    return reply["error"]["code"]


def test_malformed_json_is_87(daemon):
    assert error_code(daemon.request(b"{not json\n")) == 87


def test_unknown_operation_is_50(daemon):
    reply = daemon.request(b'{"v":1,"op":"format-c"}\n')
    assert error_code(reply) == 50
    assert "format-c" in reply["error"]["detail"][0]


def test_missing_field_is_87(daemon):
    reply = daemon.request(b'{"v":1,"op":"use","letter":"q"}\n')
    assert error_code(reply) == 87
    assert "remote" in reply["error"]["detail"][0]
    assert error_code(daemon.request(b'{"op":"list"}\n')) == 87


def test_other_protocol_version_is_87(daemon):
    assert error_code(daemon.request(b'{"v":99,"op":"list"}\n')) == 87


def test_bad_letter_in_request_is_87(daemon):
    assert error_code(daemon.request(b'{"v":1,"op":"delete","letter":"qq"}\n')) == 87


def test_a_one_mebibyte_line_gets_an_error_and_the_connection_goes_on(daemon):
    with socket.socket(socket.AF_UNIX) as connection:
        connection.settimeout(10)
        connection.connect(str(daemon.socket))
        connection.sendall(b'{"v":1,"op":"list","pad":"' + b"x" * (1 << 20) + b'"}\n{"v":1,"op":"list"}\n')
        stream = connection.makefile("rb")
        first = json.loads(stream.readline())
        assert error_code(first) == 87 and "longer than" in first["error"]["detail"][0]
        second = json.loads(stream.readline())
        assert second["ok"] is True and second["drives"] == []


def test_several_requests_on_one_connection(daemon, share):
    with socket.socket(socket.AF_UNIX) as connection:
        connection.settimeout(10)
        connection.connect(str(daemon.socket))
        request = {"v": 1, "op": "use", "letter": "*", "remote": str(share)}
        connection.sendall((json.dumps(request) + "\n" + json.dumps({"v": 1, "op": "list"}) + "\n").encode())
        stream = connection.makefile("rb")
        used = json.loads(stream.readline())
        listed = json.loads(stream.readline())
    assert used["ok"] and used["drive"]["letter"] == "Z:"
    assert [d["letter"] for d in listed["drives"]] == ["Z:"]


def test_a_stalled_client_does_not_block_others(daemon):
    with socket.socket(socket.AF_UNIX) as stalled:
        stalled.connect(str(daemon.socket))
        stalled.sendall(b'{"v":1,"op":')
        assert daemon.listing() == []
        assert daemon.request(b'{"v":1,"op":"list"}\n')["ok"] is True


def test_daemon_answers_after_abuse(daemon, share):
    for raw in (b"\x00\xff\xfe\n", b"[]\n", b"null\n", b'{"v":"1","op":"list"}\n', b"\n"):
        with socket.socket(socket.AF_UNIX) as connection:
            connection.settimeout(5)
            connection.connect(str(daemon.socket))
            connection.sendall(raw)
            connection.shutdown(socket.SHUT_WR)
            connection.recv(65536)
    daemon.use("q", share)
    assert [d["letter"] for d in daemon.listing()] == ["Q:"]
    assert fuse_mounts_under(daemon.root) == [str(daemon.mountpoint("q"))]
