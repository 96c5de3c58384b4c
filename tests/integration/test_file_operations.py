"""Each operation through drive Q: answers what the same operation on a plain directory does."""
import ctypes
import errno
import hashlib
import json
import multiprocessing
import os
import shutil
import stat
import subprocess
import sys
import time

import pytest

from conftest import NOBODY

libc = ctypes.CDLL(None, use_errno=True)
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
AT_FDCWD = -100


def renameat2(old, new, flags):
    if libc.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def attributes(path, follow=False):
    info = os.stat(path, follow_symlinks=follow)
    return {"mode": oct(info.st_mode), "size": info.st_size, "nlink": info.st_nlink,
            "uid": info.st_uid, "gid": info.st_gid}


def times(path):
    info = os.stat(path, follow_symlinks=False)
    return (info.st_atime_ns, info.st_mtime_ns)


def write(path, data, mode="wb"):
    with open(path, mode) as f:
        f.write(data)


def with_fd(path, flags, action):
    fd = os.open(path, flags)
    try:
        return action(fd)
    finally:
        os.close(fd)


def exercise(d):
    """A sequence of operations; each outcome is a value or the errno name it failed with."""
    record = []

    def step(label, action):
        try:
            outcome = ("ok", action())
        except OSError as error:
            outcome = ("error", errno.errorcode[error.errno])
        record.append((label, outcome))

    f = d / "dir" / "f.txt"
    step("mkdir", lambda: os.mkdir(d / "dir", 0o750))
    step("mkdir existing", lambda: os.mkdir(d / "dir"))
    step("stat dir", lambda: attributes(d / "dir"))
    step("create", lambda: write(f, b"hello world"))
    step("read", lambda: f.read_bytes())
    step("stat file", lambda: attributes(f))
    step("append", lambda: write(f, b"!", "ab"))
    step("read appended", lambda: f.read_bytes())
    step("write at offset", lambda: with_fd(f, os.O_WRONLY, lambda fd: os.pwrite(fd, b"HELLO", 0)))
    step("read at offset", lambda: f.read_bytes())
    step("chmod", lambda: os.chmod(f, 0o640))
    step("stat chmod", lambda: attributes(f))
    step("chown", lambda: os.chown(f, 1234, 5678))
    step("stat chown", lambda: attributes(f))
    step("truncate shorter", lambda: os.truncate(f, 5))
    step("read truncated", lambda: f.read_bytes())
    step("truncate longer", lambda: os.truncate(f, 100))
    step("read extended", lambda: f.read_bytes())
    step("ftruncate", lambda: with_fd(f, os.O_RDWR, lambda fd: os.ftruncate(fd, 7)))
    step("stat ftruncate", lambda: attributes(f))
    step("utime", lambda: os.utime(f, ns=(1_000_000_123, 2_000_000_456)))
    step("times after utime", lambda: times(f))
    # touch -m sets only mtime: atime travels as UTIME_OMIT; touch -a the reverse.
    step("touch -m", lambda: subprocess.run(["touch", "-m", "-d", "2001-02-03 04:05:06.5", str(f)], check=True) and None)
    step("times after touch -m", lambda: times(f))
    step("touch -a", lambda: subprocess.run(["touch", "-a", "-d", "2002-02-03 04:05:06.25", str(f)], check=True) and None)
    step("times after touch -a", lambda: times(f))
    step("touch now", lambda: subprocess.run(["touch", str(f)], check=True) and None)
    step("mtime is now", lambda: abs(time.time_ns() - os.stat(f).st_mtime_ns) < 10 * 10**9)
    step("symlink", lambda: os.symlink("f.txt", d / "dir" / "link"))
    step("readlink", lambda: os.readlink(d / "dir" / "link"))
    step("lstat link", lambda: stat.S_ISLNK(os.lstat(d / "dir" / "link").st_mode))
    step("read through link", lambda: (d / "dir" / "link").read_bytes())
    step("symlink existing", lambda: os.symlink("x", d / "dir" / "link"))
    step("hard link", lambda: os.link(f, d / "dir" / "hard"))
    step("nlink", lambda: os.stat(f).st_nlink)
    step("hard link existing", lambda: os.link(f, d / "dir" / "hard"))
    step("mkfifo", lambda: os.mkfifo(d / "dir" / "fifo", 0o644))
    step("fifo is a fifo", lambda: stat.S_ISFIFO(os.lstat(d / "dir" / "fifo").st_mode))
    step("open missing", lambda: open(d / "missing"))
    step("stat missing", lambda: os.stat(d / "dir" / "missing"))
    step("create exclusive existing", lambda: os.open(f, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    step("open dir for writing", lambda: os.open(d / "dir", os.O_WRONLY))
    step("file as directory", lambda: os.stat(f / "x"))
    step("rmdir a file", lambda: os.rmdir(f))
    step("unlink a directory", lambda: os.unlink(d / "dir"))
    step("rmdir not empty", lambda: os.rmdir(d / "dir"))
    step("mkdir sub", lambda: os.mkdir(d / "dir" / "sub"))
    step("rename file over dir", lambda: os.rename(f, d / "dir" / "sub"))
    step("rename dir over file", lambda: os.rename(d / "dir" / "sub", f))
    step("rename", lambda: os.rename(f, d / "dir" / "g.txt"))
    step("old name gone", lambda: os.path.exists(f))
    step("read renamed", lambda: (d / "dir" / "g.txt").read_bytes())
    step("write other", lambda: write(d / "dir" / "other.txt", b"other"))
    step("rename noreplace onto existing", lambda: renameat2(d / "dir" / "g.txt", d / "dir" / "other.txt", RENAME_NOREPLACE))
    step("rename noreplace", lambda: renameat2(d / "dir" / "g.txt", d / "dir" / "h.txt", RENAME_NOREPLACE))
    step("rename exchange", lambda: renameat2(d / "dir" / "h.txt", d / "dir" / "other.txt", RENAME_EXCHANGE))
    step("exchanged contents", lambda: ((d / "dir" / "h.txt").read_bytes(), (d / "dir" / "other.txt").read_bytes()))
    step("rename exchange missing", lambda: renameat2(d / "dir" / "h.txt", d / "dir" / "nothing", RENAME_EXCHANGE))
    step("rename directory", lambda: os.rename(d / "dir" / "sub", d / "moved"))
    step("write in moved", lambda: write(d / "moved" / "inner", b"inner"))
    step("read in moved", lambda: (d / "moved" / "inner").read_bytes())
    step("listdir", lambda: sorted(os.listdir(d / "dir")))
    step("scandir types", lambda: sorted((e.name, e.is_dir(follow_symlinks=False), e.is_symlink(), e.is_file(follow_symlinks=False))
                                         for e in os.scandir(d / "dir")))
    step("listdir top", lambda: sorted(os.listdir(d)))

    def read_after_unlink():
        fd = os.open(d / "dir" / "h.txt", os.O_RDONLY)
        try:
            os.unlink(d / "dir" / "h.txt")
            return (os.pread(fd, 100, 0), os.fstat(fd).st_size, os.path.exists(d / "dir" / "h.txt"))
        finally:
            os.close(fd)
    step("read after unlink", read_after_unlink)
    step("unlink missing", lambda: os.unlink(d / "dir" / "h.txt"))
    step("fsync", lambda: with_fd(d / "dir" / "other.txt", os.O_RDWR, os.fsync))
    step("statvfs", lambda: (lambda s: (s.f_frsize * s.f_blocks, s.f_namemax))(os.statvfs(d)))
    for name in ("fifo", "link", "hard", "other.txt"):
        step(f"unlink {name}", lambda name=name: os.unlink(d / "dir" / name))
    step("rmdir", lambda: os.rmdir(d / "dir"))
    step("rmdir missing", lambda: os.rmdir(d / "dir"))
    step("listdir end", lambda: sorted(os.listdir(d)))
    return record


# What SMB without POSIX extensions answers instead, as a mount.cifs user knows it (README).
SMB_ANSWERS = {
    "chown": ("error", "EPERM"),
    "symlink": ("error", "EPERM"),
    "symlink existing": ("error", "EPERM"),
    "hard link": ("error", "EPERM"),
    "hard link existing": ("error", "EPERM"),
    "mkfifo": ("error", "EPERM"),
    "rename exchange": ("error", "EINVAL"),
    "nlink": ("ok", 1),
}
# Follow from the above, or from attributes SMB synthesises: modes from DOS attributes,
# directories of size 0, times to the microsecond.
SMB_DIFFERENT_ATTRIBUTES = {
    "stat dir", "stat file", "stat chmod", "stat chown", "stat ftruncate", "times after utime",
    "times after touch -m", "exchanged contents", "lstat link", "readlink", "read through link",
    "fifo is a fifo", "listdir", "scandir types", "unlink fifo", "unlink hard", "unlink link",
    # The file's contents differ after the refused exchange; unlinking it while open is
    # test_a_file_unlinked_while_open_lives_on_for_its_holder's.
    "read after unlink",
}


def test_operations_match_a_plain_directory(base, drive, share):
    plain = base / "plain"
    plain.mkdir()
    expected = exercise(plain)
    actual = exercise(drive)
    assert [label for label, _ in actual] == [label for label, _ in expected]
    if share.kind == "smb":
        expected = [(label, SMB_ANSWERS.get(label, want)) for label, want in expected]
    for (label, want), (_, got) in zip(expected, actual):
        if share.kind == "smb" and label in SMB_DIFFERENT_ATTRIBUTES:
            continue
        assert got == want, f"{label}: the drive answered {got}, a plain directory {want}"


def test_large_file_is_byte_exact_and_copy_throughput(base, drive, share):
    source = base / "random.bin"
    source.write_bytes(os.urandom(64 << 20))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    plain = base / "plain.bin"

    def timed_copy(target):
        start = time.perf_counter()
        shutil.copyfile(source, target)
        with open(target, "rb+") as f:
            os.fsync(f.fileno())
        return time.perf_counter() - start

    plain_seconds = timed_copy(plain)
    drive_seconds = timed_copy(drive / "random.bin")
    assert hashlib.sha256((drive / "random.bin").read_bytes()).hexdigest() == digest
    assert hashlib.sha256((share / "random.bin").read_bytes()).hexdigest() == digest
    subprocess.run(["sh", "-c", "echo 3 > /proc/sys/vm/drop_caches"], capture_output=True)
    start = time.perf_counter()
    assert hashlib.sha256((drive / "random.bin").read_bytes()).hexdigest() == digest
    read_seconds = time.perf_counter() - start
    print(f"\n64 MiB copy: plain directory {64 / plain_seconds:.0f} MiB/s, "
          f"drive write {64 / drive_seconds:.0f} MiB/s, drive read+hash {64 / read_seconds:.0f} MiB/s", file=sys.stderr)


def _write_pattern(path, seed):
    block = bytes((seed + i) % 251 for i in range(1 << 16))
    with open(path, "wb") as f:
        for _ in range(128):  # 8 MiB
            f.write(block)


def test_eight_processes_write_different_files_at_once(drive):
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_write_pattern, args=(drive / f"w{n}.bin", n)) for n in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    for n in range(8):
        block = bytes((n + i) % 251 for i in range(1 << 16))
        assert (drive / f"w{n}.bin").read_bytes() == block * 128


NOBODY_SCRIPT = r"""
import errno, json, os, sys
d = sys.argv[1]
def outcome(action):
    try:
        value = action()
        return ["ok", value if isinstance(value, (int, str, list, bool)) or value is None else repr(value)]
    except OSError as error:
        return ["error", errno.errorcode[error.errno]]
print(json.dumps([
    outcome(lambda: open(os.path.join(d, "public")).read()),
    outcome(lambda: open(os.path.join(d, "public"), "a").write("x")),
    outcome(lambda: open(os.path.join(d, "secret")).read()),
    outcome(lambda: sorted(os.listdir(os.path.join(d, "locked")))),
    outcome(lambda: os.mkdir(os.path.join(d, "mine"))),
    outcome(lambda: os.unlink(os.path.join(d, "public"))),
    outcome(lambda: os.chmod(os.path.join(d, "public"), 0o777)),
    outcome(lambda: open(os.path.join(d, "open", "made-by-nobody"), "w").write("n")),
    outcome(lambda: (lambda s: [s.st_uid, s.st_gid])(os.stat(os.path.join(d, "open", "made-by-nobody")))),
]))
"""


def test_non_root_caller_gets_what_a_plain_directory_gives(base, daemon, share, user_ctl):
    # The drive is the non-root user's own: the system instance serves a drive to its owner only.
    drive = daemon.use("n", share, as_user=NOBODY, binary=user_ctl)
    plain = base / "plain"
    plain.mkdir(mode=0o755)
    plain.chmod(0o755)
    script = base / "as_nobody.py"
    script.write_text(NOBODY_SCRIPT)
    script.chmod(0o644)
    results = []
    for d in (plain, drive):
        (d / "public").write_text("public")
        (d / "public").chmod(0o644)
        (d / "secret").write_text("secret")
        (d / "secret").chmod(0o600)
        (d / "locked").mkdir(mode=0o700)
        (d / "open").mkdir()
        (d / "open").chmod(0o777)
        run = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              "/usr/bin/python3", str(script), str(d)], capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        results.append(json.loads(run.stdout))
    if share.kind == "smb":
        # SMB has no owners or modes to check: like mount.cifs with uid=/gid=, every file
        # shows as the drive owner's (0744, directories 0755), so its owner may do what the
        # share lets its SMB user do, and the share decides.
        assert results[1] == [["ok", "public"], ["ok", 1], ["ok", "secret"], ["ok", []], ["ok", None],
                              ["ok", None], ["error", "ENOENT"], ["ok", 1], ["ok", [NOBODY, NOBODY]]]
    else:
        assert results[1] == results[0]
    assert ["error", "EACCES"] in results[0]


def second_client_listing(share):
    """What another SMB client (smbclient) lists at the top of the share."""
    host_port, share_name = share.remote.replace("smb://", "").split("/", 1)
    host, port = host_port.split(":")
    result = subprocess.run(["smbclient", "-p", port, "-U", f"{share.user}%{share.password}", f"//{host}/{share_name}",
                             "-c", "ls"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_file_unlinked_while_open_lives_on_for_its_holder(base, drive, share):
    """As on Linux: the name goes at once, the holder reads and writes on, and the file is
    gone from the share when it closes. SMB refuses to remove an open file (libsmbclient
    opens without FILE_SHARE_DELETE): the drive deletes it pending, as Windows does."""
    outcomes = []
    for where in (base / "plain", drive):
        where.mkdir(exist_ok=True)
        path = where / "scratch.tmp"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        os.write(fd, b"before")
        os.unlink(path)
        gone = not path.exists() and "scratch.tmp" not in os.listdir(where)
        os.pwrite(fd, b" after", 6)
        kept = os.pread(fd, 100, 0)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            os.unlink(path)
            recreated = "created"
        except OSError as error:
            recreated = errno.errorcode[error.errno]
        os.close(fd)
        outcomes.append((gone, kept))
    assert outcomes[0] == outcomes[1] == (True, b"before after")
    deadline = time.monotonic() + 5
    while (share.path / "scratch.tmp").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not (share.path / "scratch.tmp").exists(), "the share still has the file after its last close"
    if share.kind == "smb":
        assert "scratch.tmp" not in second_client_listing(share), "another SMB client still sees the file"
    # Created anew on a plain directory; on SMB refused while the share still has the old file.
    assert recreated == "created" if share.kind == "local" else recreated in ("created", "EBUSY")
    fd = os.open(drive / "scratch.tmp", os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)
