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


def peak_rss_while(daemon, work, items):
    """Runs work(item) for every item at once; returns the daemon's peak RSS (sampled every 20 ms)."""
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_kib(daemon.process.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    workers = [threading.Thread(target=work, args=(item,)) for item in items]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    done.set()
    sampler.join()
    return peak[0]


def read_whole(path):
    with open(path, "rb", buffering=0) as f:
        while f.read(1 << 20):
            pass


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
        peak = peak_rss_while(daemon, lambda name: read_whole(drive / name), names)
        # The budget, plus what is not cache: request buffers and frames on their way.
        overhead_mib = 32
        print(f"idle {idle >> 10} MiB, peak {peak >> 10} MiB, budget {budget_mib} MiB")
        assert peak - idle <= (budget_mib + overhead_mib) << 10, f"peak {peak >> 10} MiB over idle {idle >> 10} MiB"
        # Back near idle within 5 s: what stays is each FUSE worker's 1 MiB read buffer
        # (16 workers at most), not cache.
        kept_mib = 16 + 16
        deadline = time.monotonic() + 5
        while rss_kib(daemon.process.pid) - idle > kept_mib << 10 and time.monotonic() < deadline:
            time.sleep(0.1)
        after = rss_kib(daemon.process.pid)
        print(f"after 5 s: {after >> 10} MiB")
        assert after - idle <= kept_mib << 10, f"{after >> 10} MiB five seconds after, idle was {idle >> 10} MiB"
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
        block = os.urandom(1 << 20)

        def write(index):
            with open(drive / f"w{index}.bin", "wb", buffering=0) as f:
                for _ in range(SIZE >> 20):
                    f.write(block)

        peak = peak_rss_while(daemon, write, range(8))
        print(f"writers: idle {idle >> 10} MiB, peak {peak >> 10} MiB, budget {budget_mib} MiB")
        assert peak - idle <= (budget_mib + 32) << 10, f"peak {peak >> 10} MiB over idle {idle >> 10} MiB"
        for index in range(8):
            assert (user_share.path / f"w{index}.bin").stat().st_size == SIZE
        daemon.ctl("delete", "q")
    finally:
        daemon.cleanup()
