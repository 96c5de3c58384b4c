"""One memory budget for every cache: eight readers of eight large files at once stay
within it, and the daemon gives the memory back afterwards."""
import os
import subprocess
import threading
import time

import pytest

from conftest import Daemon

SIZE = 64 << 20


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def eight_readers(daemon, drive, names):
    """Reads the files at once; returns the daemon's peak RSS, sampled every 20 ms."""
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_kib(daemon.process.pid))
            time.sleep(0.02)

    def read(name):
        with open(drive / name, "rb", buffering=0) as f:
            while f.read(1 << 20):
                pass

    sampler = threading.Thread(target=sample)
    sampler.start()
    readers = [threading.Thread(target=read, args=(name,)) for name in names]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    done.set()
    sampler.join()
    return peak[0]


@pytest.mark.parametrize("budget_mib", [32])
def test_eight_readers_stay_within_the_budget_and_memory_goes_back(base, samba, user_share, budget_mib):
    names = [f"big{index}.bin" for index in range(8)]
    block = os.urandom(1 << 20)
    for name in names:
        with open(user_share.path / name, "wb") as f:
            for _ in range(SIZE >> 20):
                f.write(block)
    daemon = Daemon(base)
    try:
        daemon.start(options=["--cache-memory", str(budget_mib)])
        drive = daemon.use("q", user_share)
        (drive / names[0]).stat()
        subprocess.run(["sh", "-c", "echo 3 > /proc/sys/vm/drop_caches"], check=True)
        idle = rss_kib(daemon.process.pid)
        peak = eight_readers(daemon, drive, names)
        # The budget, plus what is not cache: request buffers and frames on their way.
        overhead_mib = 24
        print(f"idle {idle >> 10} MiB, peak {peak >> 10} MiB, budget {budget_mib} MiB")
        assert peak - idle <= (budget_mib + overhead_mib) << 10, f"peak {peak >> 10} MiB over idle {idle >> 10} MiB"
        deadline = time.monotonic() + 5
        while rss_kib(daemon.process.pid) - idle > 16 << 10 and time.monotonic() < deadline:
            time.sleep(0.1)
        after = rss_kib(daemon.process.pid)
        assert after - idle <= 16 << 10, f"{after >> 10} MiB five seconds after, idle was {idle >> 10} MiB"
        daemon.ctl("delete", "q")
    finally:
        daemon.cleanup()


def test_eight_writers_wait_for_the_share_rather_than_grow_the_daemon(base, samba, user_share):
    budget_mib = 32
    daemon = Daemon(base)
    try:
        daemon.start(options=["--cache-memory", str(budget_mib)])
        drive = daemon.use("q", user_share)
        idle = rss_kib(daemon.process.pid)
        peak = [0]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], rss_kib(daemon.process.pid))
                time.sleep(0.02)

        block = os.urandom(1 << 20)

        def write(index):
            with open(drive / f"w{index}.bin", "wb", buffering=0) as f:
                for _ in range(SIZE >> 20):
                    f.write(block)

        sampler = threading.Thread(target=sample)
        sampler.start()
        writers = [threading.Thread(target=write, args=(index,)) for index in range(8)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
        done.set()
        sampler.join()
        print(f"writers: idle {idle >> 10} MiB, peak {peak[0] >> 10} MiB, budget {budget_mib} MiB")
        assert peak[0] - idle <= (budget_mib + 32) << 10, f"peak {peak[0] >> 10} MiB over idle {idle >> 10} MiB"
        for index in range(8):
            assert (user_share.path / f"w{index}.bin").stat().st_size == SIZE
        daemon.ctl("delete", "q")
    finally:
        daemon.cleanup()
