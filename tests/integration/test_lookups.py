"""Names looked up from a listing (native engine): the first lookup in a directory never
listed fetches its listing in the same round trip, and the names after it are found there.
What must hold: it saves round trips, it is never older than the attribute timeout allows,
a change through the drive is never hidden by it, and a directory too large for it is
still listed and looked up whole."""
import os
import sys
import time
from pathlib import Path

import pytest

from conftest import Samba, Share

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from latency_proxy import LatencyProxy  # noqa: E402

NATIVE = ("-o", "engine=native")


def fill(directory, count, size=4096):
    directory.mkdir()
    for n in range(count):
        (directory / f"f{n}").write_bytes(os.urandom(size))
    for path in (directory, *directory.iterdir()):
        path.chmod(0o777 if path.is_dir() else 0o666)


@pytest.fixture
def proxy(samba):
    relay = LatencyProxy(samba.port, 0)
    yield relay
    relay.stop()


def test_each_file_of_a_never_listed_directory_costs_one_round_trip(daemon, samba, user_share, proxy):
    fill(user_share.path / "cold", 40)
    through_proxy = Share("smb", user_share.path, f"smb://127.0.0.1:{proxy.port}/user", user=Samba.USER, password=Samba.PASSWORD)
    drive = daemon.use("q", through_proxy, *NATIVE)
    os.stat(drive)
    before = proxy.turns
    for n in range(40):
        with open(drive / "cold" / f"f{n}", "rb", buffering=0) as f:
            assert f.read(2048) == (user_share.path / "cold" / f"f{n}").read_bytes()[:2048]
    # The directory's own lookup, the listing's, then one open per file.
    assert (proxy.turns - before) / 40 <= 1.2


def test_a_name_found_in_a_listing_is_trusted_no_longer_than_the_attribute_timeout(daemon, user_share):
    fill(user_share.path / "d", 3, size=1)
    drive = daemon.use("q", user_share, *NATIVE, "-o", "actimeo=1")
    fetched = time.monotonic()
    os.stat(drive / "d" / "f0")  # the listing comes with this answer
    (user_share.path / "d" / "f1").write_bytes(b"12345")
    time.sleep(max(0, fetched + 0.6 - time.monotonic()))
    os.stat(drive / "d" / "f1")  # may come from the listing, which is 0.6 s old
    time.sleep(max(0, fetched + 1.2 - time.monotonic()))
    assert os.stat(drive / "d" / "f1").st_size == 5


def test_with_actimeo_0_every_lookup_asks_the_server(daemon, user_share):
    fill(user_share.path / "d", 3, size=1)
    drive = daemon.use("q", user_share, *NATIVE, "-o", "actimeo=0")
    os.stat(drive / "d" / "f0")
    (user_share.path / "d" / "f1").write_bytes(b"12345")
    assert os.stat(drive / "d" / "f1").st_size == 5


def forget_names():
    """The kernel forgets the names it knows: the next stats are LOOKUPs again."""
    with open("/proc/sys/vm/drop_caches", "w") as control:
        control.write("2")


def test_a_write_through_the_drive_is_never_hidden_by_a_listing(daemon, user_share):
    fill(user_share.path / "d", 3, size=1)
    drive = daemon.use("q", user_share, *NATIVE, "-o", "actimeo=30")
    os.stat(drive / "d" / "f0")
    with open(drive / "d" / "f1", "ab") as f:
        f.write(b"2345")
    forget_names()
    assert os.stat(drive / "d" / "f1").st_size == 5


def test_a_file_made_through_the_drive_is_listed_at_once(daemon, user_share):
    fill(user_share.path / "d", 3, size=1)
    drive = daemon.use("q", user_share, *NATIVE, "-o", "actimeo=30")
    os.stat(drive / "d" / "f0")
    (drive / "d" / "new").write_bytes(b"new")
    forget_names()
    assert sorted(os.listdir(drive / "d")) == ["f0", "f1", "f2", "new"]
    assert os.stat(drive / "d" / "new").st_size == 3


def test_a_directory_too_large_for_one_answer_is_listed_and_looked_up_whole(daemon, user_share):
    directory = user_share.path / "big"
    directory.mkdir()
    # 6000 entries of 48-character names pass 1 MiB of FileIdFullDirectoryInformation.
    names = {f"{n:06d}-{'x' * 41}" for n in range(6000)}
    for name in names:
        (directory / name).touch()
    directory.chmod(0o777)
    drive = daemon.use("q", user_share, *NATIVE)
    some = sorted(names)[::1000]
    for name in some:
        assert os.stat(drive / "big" / name).st_size == 0
    assert set(os.listdir(drive / "big")) == names


def test_a_name_the_listing_does_not_hold_is_asked_for(daemon, user_share):
    """The server matches names in ways a listing does not show: smbd finds "F0" for "f0"."""
    fill(user_share.path / "d", 3, size=1)
    drive = daemon.use("q", user_share, *NATIVE)
    os.stat(drive / "d" / "f1")
    assert os.stat(drive / "d" / "F0").st_size == 1
    with pytest.raises(FileNotFoundError):
        os.stat(drive / "d" / "missing")
