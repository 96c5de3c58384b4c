"""delete and the active-process check: the KB Q214563 scenario and its refusals."""
import ctypes
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import pytest

from conftest import NOBODY, defers_closes, fuse_mounts_under

LOGIN_SCRIPT = """\
# cmd.exe rereads a batch file line by line; this rereads its configuration the same way.
for i in 1 2 3 4 5 6 7 8 9 10; do
    cat config.txt > /dev/null
done
cat data/users.txt data/groups.txt > /dev/null
echo logged on
"""


def prepare_login_share(share):
    (share / "login.sh").write_text(LOGIN_SCRIPT)
    (share / "config.txt").write_text("server=files\n")
    (share / "data").mkdir()
    (share / "data" / "users.txt").write_text("alice\nbob\n")
    (share / "data" / "groups.txt").write_text("staff\n")


def test_kb_q214563_use_run_a_script_from_the_drive_and_delete_at_once_200_times(daemon, share):
    prepare_login_share(share)
    drive = daemon.mountpoint("q")
    latencies, flushed = [], []
    for attempt in range(200):
        daemon.use("q", share)
        # The logon script: cd into the drive, run the script stored there, cd out.
        run = subprocess.run(["bash", "-c", f"cd {drive} && bash ./login.sh && cd /"],
                             capture_output=True, text=True, timeout=30)
        assert run.stdout == "logged on\n", run.stderr
        if attempt == 0:
            counters = daemon.refs()["counters"]
        start = time.perf_counter()
        result = daemon.ctl("delete", "q", "--json", expect=None)
        latencies.append(time.perf_counter() - start)
        assert result.returncode == 0, f"attempt {attempt}: {result.stdout}{result.stderr}"
        flushed.append(json.loads(result.stdout)["flushed"])
        assert fuse_mounts_under(daemon.root) == []
    if defers_closes(share):
        assert counters["opens"] == 13 and counters["backendOpens"] == 4, counters
        assert min(flushed) >= 1
    else:
        assert counters["opens"] == 13 and counters["backendOpens"] == 13, counters
    print(f"\nKB scenario x200: opens {counters['opens']}, backend opens {counters['backendOpens']} "
          f"(saved {counters['opens'] - counters['backendOpens']}); flushed per delete {statistics.median(flushed)}; "
          f"delete latency median {statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms",
          file=sys.stderr)


def refused(daemon, code):
    result = daemon.ctl("delete", "q", expect=2)
    assert f"System error {code} has occurred." in result.stderr, result.stderr
    return result.stderr


def still_works_then_deletes(daemon, drive, process):
    (drive / "after").write_text("still here")
    assert (drive / "after").read_text() == "still here"
    assert [d["letter"] for d in daemon.listing()] == ["Q:"]
    process.kill()
    process.wait()
    daemon.ctl("delete", "q")
    assert fuse_mounts_under(daemon.root) == []


def test_a_cwd_on_the_drive_is_2404_naming_the_process(daemon, drive):
    (drive / "dir").mkdir()
    sitter = subprocess.Popen(["sleep", "60"], cwd=drive / "dir")
    try:
        detail = refused(daemon, 2404)
        assert f"pid {sitter.pid} (sleep): cwd {drive}/dir" in detail
        still_works_then_deletes(daemon, drive, sitter)
    finally:
        sitter.kill()


def test_an_open_file_is_2401_naming_the_process_and_path(daemon, drive):
    (drive / "held.txt").write_text("held")
    with open(drive / "held.txt") as held:
        sitter = subprocess.Popen(["sleep", "60"], stdin=held)
    try:
        detail = refused(daemon, 2401)
        assert f"pid {sitter.pid} (sleep): open {drive}/held.txt" in detail
        still_works_then_deletes(daemon, drive, sitter)
    finally:
        sitter.kill()


MAPPER = r"""
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
fd = os.open(sys.argv[1], os.O_RDONLY)
address = libc.mmap(None, 4096, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
assert address not in (None, ctypes.c_void_p(-1).value)
os.close(fd)  # only the mapping holds the file now
print("mapped", flush=True)
time.sleep(60)
"""


def test_a_mapped_file_whose_fd_is_closed_is_2401_mapped(daemon, drive, base):
    (drive / "mapped.bin").write_bytes(b"m" * 8192)
    script = base / "mapper.py"
    script.write_text(MAPPER)
    mapper = subprocess.Popen([sys.executable, str(script), str(drive / "mapped.bin")], stdout=subprocess.PIPE, text=True)
    try:
        assert mapper.stdout.readline() == "mapped\n"
        detail = refused(daemon, 2401)
        assert f"pid {mapper.pid} (python" in detail
        assert f"mapped {drive}/mapped.bin" in detail
        assert f"open {drive}/mapped.bin" not in detail
        still_works_then_deletes(daemon, drive, mapper)
    finally:
        mapper.kill()


def test_a_program_executed_from_the_drive_is_2404_exe(daemon, drive):
    shutil.copy2("/bin/sleep", drive / "napper")
    napper = subprocess.Popen([str(drive / "napper"), "60"], cwd="/")
    try:
        time.sleep(0.2)
        detail = refused(daemon, 2404)
        assert f"pid {napper.pid} (napper): exe {drive}/napper" in detail
        assert "mapped" not in detail.replace("(pid", "")
        still_works_then_deletes(daemon, drive, napper)
    finally:
        napper.kill()


def test_deferred_handles_never_count_as_active(daemon, drive, share):
    if not defers_closes(share):
        pytest.skip("this engine defers no close")
    for name in ("a", "b", "c"):
        (drive / name).write_text(name)
        (drive / name).read_text()
    assert daemon.listing()[0]["deferredHandles"] >= 3
    result = json.loads(daemon.ctl("delete", "q", "--json").stdout)
    assert result["flushed"] >= 3


def test_wait_succeeds_when_the_process_leaves_in_time(daemon, drive):
    (drive / "f").write_text("x")
    holder = subprocess.Popen(["bash", "-c", f"exec 3<{drive}/f; sleep 1"])
    try:
        time.sleep(0.2)
        refused(daemon, 2401)
        start = time.monotonic()
        waited = daemon.ctl("delete", "q", "--wait", "5")
        assert 0.3 < time.monotonic() - start < 5
        # What it waited for, as plain lines (no terminal here): the holder, by pid.
        assert "Waiting for Q:" in waited.stderr and f"pid {holder.pid}" in waited.stderr, waited.stderr
    finally:
        holder.kill()
        holder.wait()


def test_wait_that_runs_out_refuses_as_usual(daemon, drive):
    sitter = subprocess.Popen(["sleep", "60"], cwd=drive)
    try:
        start = time.monotonic()
        result = daemon.ctl("delete", "q", "--wait", "0.5", expect=2)
        assert time.monotonic() - start >= 0.5
        assert "System error 2404 has occurred." in result.stderr
    finally:
        sitter.kill()
        sitter.wait()


READER = r"""
import errno, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
print(os.pread(fd, 100, 0).decode(), flush=True)
sys.stdin.readline()
try:
    os.pread(fd, 100, 0)
    print("read ok", flush=True)
except OSError as error:
    print(errno.errorcode[error.errno], flush=True)
"""


def test_force_returns_at_once_and_the_holder_gets_eio(daemon, share, base):
    other = base / "other"
    other.mkdir()
    (share / "held.txt").write_text("held data")
    drive = daemon.use("q", share)
    r = daemon.use("r", other)
    script = base / "reader.py"
    script.write_text(READER)
    reader = subprocess.Popen([sys.executable, str(script), str(drive / "held.txt")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline() == "held data\n"
        refused(daemon, 2401)
        start = time.monotonic()
        result = daemon.ctl("delete", "q", "--force")
        assert time.monotonic() - start < 2
        assert "was deleted successfully" in result.stdout
        assert [d["letter"] for d in daemon.listing()] == ["R:"]
        assert str(drive) not in fuse_mounts_under(daemon.root)
        reader.stdin.write("go\n")
        reader.stdin.flush()
        assert reader.stdout.readline() == "EIO\n"
        (r / "still").write_text("serving")
        assert (other / "still").read_text() == "serving"
        assert (share / "held.txt").read_text() == "held data"
    finally:
        reader.kill()
        reader.wait()
    daemon.use("q", share)
    assert (drive / "held.txt").read_text() == "held data"


def test_refs_and_delete_of_another_users_drive_are_5(daemon, local_share, user_ctl):
    daemon.use("q", local_share)
    for command in (("delete", "q"), ("refs", "q")):
        # Letters are per user: nobody has no Q: of their own, and may not name root's.
        result = daemon.ctl(*command, expect=2, as_user=NOBODY, binary=user_ctl)
        assert "System error 2250 has occurred." in result.stderr
        result = daemon.ctl(*command, "--owner", "0", expect=2, as_user=NOBODY, binary=user_ctl)
        assert "System error 5 has occurred." in result.stderr
    daemon.ctl("refs", "q")
