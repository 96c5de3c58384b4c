"""fsx (xfstests' file-system exerciser) against a local and an SMB drive, for `make torture`.

fsx is not part of the repository: build it as the README says and pass it as
FSX=/path/to/fsx. Without FSX these tests are skipped. FSX_SEEDS (default "1 2 3") and
FSX_OPS (default 20000) choose the runs; each seed runs four flag sets (FSX_FLAGS to
choose: mmap closeopen large direct). FSX_DRIVE_OPTIONS maps the drive with options,
as "actimeo=0 closetimeo=0" (each becomes `-o key=value`).
"""
import os
import subprocess

import pytest

FSX = os.environ.get("FSX")
SEEDS = [int(seed) for seed in os.environ.get("FSX_SEEDS", "1 2 3").split()]
OPS = int(os.environ.get("FSX_OPS", "20000"))
DRIVE_OPTIONS = [argument for option in os.environ.get("FSX_DRIVE_OPTIONS", "").split() for argument in ("-o", option)]

# What issue 11 asks for: fsx's defaults (256 KiB, mapped reads and writes on), the same
# with mmap off, with CLOSE/OPEN (which drops the page cache), large files with read() and
# write() only, and O_DIRECT with page-aligned operations.
FLAG_SETS = {
    "mmap": [],
    "nommap": ["-R", "-W"],
    "closeopen": ["-c", "10"],
    "large": ["-R", "-W", "-l", str(64 << 20), "-o", str(8 << 20)],
    "direct": ["-Z", "-R", "-W", "-r", "4096", "-w", "4096", "-t", "4096"],
}

pytestmark = pytest.mark.skipif(not FSX, reason="FSX=/path/to/fsx runs fsx (make torture)")


@pytest.mark.parametrize("flags", os.environ.get("FSX_FLAGS", " ".join(FLAG_SETS)).split())
@pytest.mark.parametrize("seed", SEEDS)
def test_fsx(base, daemon, share, flags, seed):
    drive = daemon.use("q", share, *DRIVE_OPTIONS)
    logs = base / "fsx-logs"
    logs.mkdir(exist_ok=True)
    name = f"fsx-{flags}-{seed}"
    command = [FSX, "-q", "-N", str(OPS), "-S", str(seed), *FLAG_SETS[flags], "-P", str(logs), str(drive / name)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    log = logs / f"{name}.fsxlog"
    tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
    assert result.returncode == 0, (f"{' '.join(command)} exited {result.returncode}\n"
                                    f"{result.stdout[-2000:]}{result.stderr[-2000:]}\n{tail}")
    assert "All " in result.stdout and "A-OK" in result.stdout, result.stdout[-2000:]


@pytest.mark.parametrize("seed", SEEDS)
def test_two_fsx_at_once(base, daemon, share, seed):
    """Two fsx processes on different files of one drive: neither sees the other's bytes."""
    drive = daemon.use("q", share, *DRIVE_OPTIONS)
    logs = base / "fsx-logs"
    logs.mkdir(exist_ok=True)
    runs = [subprocess.Popen([FSX, "-q", "-N", str(OPS), "-S", str(seed + other), "-P", str(logs), str(drive / f"fsx-pair-{other}")],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for other in (0, 1000)]
    for run in runs:
        output, _ = run.communicate(timeout=3600)
        assert run.returncode == 0 and "A-OK" in output, output[-3000:]
