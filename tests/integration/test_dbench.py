"""dbench (Debian's package: a file-server load of creates, writes, reads, renames, deletes
and locks from several clients at once) on a plain directory, a local drive and an SMB
drive, for `make torture`. DBENCH_SECONDS (unset: skipped) says how long each runs; each
must end without an error, and its throughput is printed beside the plain directory's."""
import os
import re
import shutil
import subprocess

import pytest

SECONDS = int(os.environ.get("DBENCH_SECONDS", "0"))
CLIENTS = int(os.environ.get("DBENCH_CLIENTS", "4"))
LOADFILE = "/usr/share/dbench/client.txt"

pytestmark = pytest.mark.skipif(not SECONDS or not shutil.which("dbench"),
                                reason="DBENCH_SECONDS=60 runs dbench (make torture)")

# The plain directory's figure, once measured, for the ratio.
baseline = {}


def dbench(directory):
    result = subprocess.run(["dbench", "-c", LOADFILE, "-D", str(directory), "-t", str(SECONDS), str(CLIENTS)],
                            capture_output=True, text=True, timeout=SECONDS * 10 + 120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert not re.search(r"\bERROR\b|failed", output), output[:3000]
    throughput = re.search(r"Throughput ([\d.]+) MB/sec", output)
    assert throughput, output[-3000:]
    return float(throughput.group(1))


def test_dbench(base, daemon, share, capsys):
    plain = base / "plain"
    plain.mkdir()
    if "plain" not in baseline:
        baseline["plain"] = dbench(plain)
    drive = daemon.use("q", share)
    figure = dbench(drive)
    with capsys.disabled():
        print(f"\ndbench {CLIENTS} clients {SECONDS} s: plain directory {baseline['plain']:.1f} MB/s, "
              f"{share.kind} drive {figure:.1f} MB/s ({figure / baseline['plain']:.2f} of plain)")
