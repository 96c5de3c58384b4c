#!/usr/bin/env python3
"""make soak: several drives under mixed load while the SMB server stalls and restarts.

Readers and writers check every byte they read against what was last written and closed
without error; walkers stat whole trees; a KB loop maps a drive, runs a batch file from it
and deletes it. Meanwhile smbd is stopped (SIGSTOP) and continued, and restarted, at random
moments. Once a second the daemon's RSS, descriptors, threads and SMB worker processes are
sampled. It fails if a byte read is wrong, if an operation outlasts the drive's timeout
plus a margin, or if a sample grows without bound after warm-up. Run as root.

    python3 tools/soak.py --duration 1800 [--seed N] [--table FILE]
"""
import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from netuse_harness import Samba, fuse_mounts_under  # noqa: E402

BIN = Path(os.environ.get("NETUSE_BIN", Path(__file__).resolve().parents[1] / ".build" / "debug")).resolve()
TIMEOUT = 4          # the SMB drives' -o timeout
MARGIN = 2 * TIMEOUT + 4  # one try and one retry, each bounded by the timeout, and slack


class Soak:
    def __init__(self, work, duration, seed):
        self.work = work
        self.duration = duration
        self.random = random.Random(seed)
        self.seed = seed
        self.stop_at = time.monotonic() + duration
        self.failures = []
        self.samples = []
        self.counts = {"reads": 0, "writes": 0, "walks": 0, "kb": 0, "stalls": 0, "restarts": 0}
        self.lock = threading.Lock()
        self.root = work / "root"
        self.socket = self.root / "control.sock"
        (work / "smbd").mkdir(mode=0o755)
        self.samba = Samba(work / "smbd")
        self.stalled = threading.Event()

    # MARK: plumbing

    def ctl(self, *args, check=True):
        result = subprocess.run([str(BIN / "netusectl"), *args, "--socket", str(self.socket), "--json"],
                                capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise RuntimeError(f"netusectl {' '.join(args)}: {result.stdout}{result.stderr}")
        return json.loads(result.stdout) if result.stdout.strip() else {}

    def use(self, letter, remote, *options, password=None):
        arguments = ["use", letter, remote, *options]
        if password is not None:
            arguments += ["--user", Samba.USER, "--password-stdin"]
        result = subprocess.run([str(BIN / "netusectl"), *arguments, "--socket", str(self.socket), "--json"],
                                capture_output=True, text=True, timeout=120, input=(password + "\n") if password else None)
        if result.returncode != 0:
            raise RuntimeError(f"use {letter}: {result.stdout}{result.stderr}")
        return Path(json.loads(result.stdout)["drive"]["mountpoint"])

    def fail(self, what):
        with self.lock:
            self.failures.append(what)

    def count(self, key):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1

    def running(self):
        return time.monotonic() < self.stop_at and len(self.failures) < 20

    def timed(self, what, operation):
        """Runs an operation; an error is allowed (the server may be away), overtime is not."""
        started = time.monotonic()
        try:
            return operation()
        except FileNotFoundError:
            raise  # a name not written yet
        except OSError as error:
            self.count(f"{what.split()[1].split('/')[-2]}:errno{error.errno}")
            raise
        finally:
            elapsed = time.monotonic() - started
            if elapsed > MARGIN:
                self.fail(f"{what} took {elapsed:.1f} s (bound {MARGIN} s)")

    # MARK: load

    def writer_reader(self, drive, name):
        """Writes whole files and reads them back. What a successful close vouched for must
        be what every later read returns; after a failed write or close nothing is assumed."""
        known = {}
        rng = random.Random(f"{self.seed}-{name}")
        while self.running():
            path = drive / f"{name}-{rng.randrange(4)}.bin"
            if rng.random() < 0.5:
                data = rng.randbytes(rng.choice([1, 4096, 65536, 1 << 20, 3 << 20]))
                try:
                    def write():
                        with open(path, "wb") as f:
                            f.write(data)
                    self.timed(f"write {path}", write)
                    known[path] = hashlib.sha256(data).hexdigest()
                    self.count("writes")
                except OSError:
                    known.pop(path, None)
                    time.sleep(0.05)  # the server is away: a program would not spin either
            else:
                try:
                    got = self.timed(f"read {path}", lambda: path.read_bytes())
                except FileNotFoundError:
                    continue
                except OSError:
                    time.sleep(0.05)
                    continue
                self.count("reads")
                if path in known and hashlib.sha256(got).hexdigest() != known[path]:
                    self.fail(f"wrong bytes in {path} ({len(got)} bytes read)")

    def walker(self, drive):
        while self.running():
            def walk():
                for top, directories, files in os.walk(drive):
                    for entry in files + directories:
                        os.lstat(os.path.join(top, entry))
            try:
                self.timed(f"walk {drive}", walk)
                self.count("walks")
            except OSError:
                pass
            time.sleep(0.2)

    def kb_loop(self, share):
        """The KB Q214563 scenario: map, run a batch file from the drive, leave it, delete."""
        (share / "login.sh").write_text("#!/bin/sh\nfor i in 1 2 3; do read line < login.sh; done\necho done\n")
        (share / "login.sh").chmod(0o755)
        while self.running():
            try:
                drive = self.use("k", str(share))
                run = subprocess.run(["sh", "-c", f"cd {drive} && ./login.sh && cd /"], capture_output=True, text=True, timeout=30)
                if run.stdout.strip() != "done":
                    self.fail(f"KB batch file: {run.stdout!r} {run.stderr!r}")
                started = time.monotonic()
                answer = self.ctl("delete", "k", "--wait", "5", check=False)
                if not answer.get("ok"):
                    self.fail(f"KB delete refused: {answer}")
                    self.ctl("delete", "k", "--force", check=False)
                elif time.monotonic() - started > 6:
                    self.fail(f"KB delete took {time.monotonic() - started:.1f} s")
                self.count("kb")
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                self.fail(f"KB loop: {error}")
                self.ctl("delete", "k", "--force", check=False)
            time.sleep(0.1)

    # MARK: chaos

    def chaos(self):
        while self.running():
            time.sleep(self.random.uniform(3, 8))
            if not self.running():
                break
            if self.random.random() < 0.75:
                pause = self.random.uniform(0.5, TIMEOUT + 1)
                os.killpg(self.samba.process.pid, signal.SIGSTOP)
                time.sleep(pause)
                os.killpg(self.samba.process.pid, signal.SIGCONT)
                self.count("stalls")
            else:
                self.samba.stop()
                time.sleep(self.random.uniform(0.2, 2))
                self.samba.start()
                self.count("restarts")

    # MARK: samples

    def daemon_pid(self):
        return self.daemon.pid

    def sample(self):
        pid = self.daemon_pid()
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
        rss = int(status["VmRSS"].split()[0])
        threads = int(status["Threads"])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        # Workers are children of whichever thread started them.
        workers = sum(len((task / "children").read_text().split()) for task in Path(f"/proc/{pid}/task").iterdir()
                      if (task / "children").exists())
        return {"t": round(time.monotonic() - self.started, 1), "rss_kib": rss, "fds": fds, "threads": threads, "workers": workers}

    def sampler(self):
        while self.running():
            try:
                self.samples.append(self.sample())
            except (OSError, KeyError, ValueError):
                pass
            time.sleep(1)

    def check_growth(self):
        """After warm-up (the first fifth), the last fifth may not have grown without bound."""
        if len(self.samples) < 10:
            return
        fifth = max(2, len(self.samples) // 5)
        warm, late = self.samples[fifth:2 * fifth], self.samples[-fifth:]
        limits = {"rss_kib": lambda base: base * 1.5 + 32 * 1024, "fds": lambda base: base + 64,
                  "threads": lambda base: base + 48, "workers": lambda base: base + 8}
        for key, limit in limits.items():
            base = max(sample[key] for sample in warm)
            peak = max(sample[key] for sample in late)
            if peak > limit(base):
                self.fail(f"{key} grew from {base} after warm-up to {peak} at the end")

    # MARK: run

    def run(self):
        self.root.mkdir()
        log = open(self.work / "netused.log", "wb")
        self.daemon = subprocess.Popen([str(BIN / "netused"), "--root", str(self.root), "--foreground", "--log-level", "warning"],
                                       stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            assert time.monotonic() < deadline, "netused did not start"
            time.sleep(0.05)
        local = self.work / "local"
        local.mkdir()
        kb = self.work / "kb"
        kb.mkdir()
        (self.samba.base / "user" / "tree").mkdir(exist_ok=True)
        for index in range(100):
            (self.samba.base / "user" / "tree" / f"t{index}").write_text("x")
        self.started = time.monotonic()
        drives = {
            "q": self.use("q", str(local)),
            "s": self.use("s", self.samba.url("user"), "-o", f"timeout={TIMEOUT}", password=Samba.PASSWORD),
            "t": self.use("t", self.samba.url("user") + "/tree", "-o", f"timeout={TIMEOUT}", "-o", "workers=2",
                          password=Samba.PASSWORD),
        }
        threads = [threading.Thread(target=self.sampler), threading.Thread(target=self.chaos),
                   threading.Thread(target=self.kb_loop, args=(kb,)),
                   threading.Thread(target=self.walker, args=(drives["t"],)),
                   threading.Thread(target=self.walker, args=(drives["q"],))]
        for letter in ("q", "s"):
            for index in range(2):
                threads.append(threading.Thread(target=self.writer_reader, args=(drives[letter], f"w{index}")))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.check_growth()
        started = time.monotonic()
        self.daemon.send_signal(signal.SIGTERM)
        try:
            self.daemon.wait(timeout=TIMEOUT + 10)
        except subprocess.TimeoutExpired:
            self.fail(f"SIGTERM did not stop netused within {TIMEOUT + 10} s")
            self.daemon.kill()
        if self.daemon.returncode not in (0, None) and not self.failures:
            self.fail(f"netused exited {self.daemon.returncode} on SIGTERM after {time.monotonic() - started:.1f} s")

    def cleanup(self):
        if getattr(self, "daemon", None) and self.daemon.poll() is None:
            self.daemon.kill()
            self.daemon.wait()
        try:
            os.killpg(self.samba.process.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
        self.samba.stop()
        for mountpoint in fuse_mounts_under(self.work):
            subprocess.run(["umount", "-l", mountpoint], capture_output=True)


def table(samples, rows=12):
    """Every n-th sample, so that a long run fits on a screen."""
    step = max(1, len(samples) // rows)
    lines = ["t (s)    RSS (MiB)  fds  threads  workers"]
    for sample in samples[::step] + ([samples[-1]] if samples and (len(samples) - 1) % step else []):
        lines.append(f"{sample['t']:<8} {sample['rss_kib'] / 1024:<10.1f} {sample['fds']:<4} {sample['threads']:<8} {sample['workers']}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60, help="seconds of load")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--table", help="write the samples here as JSON")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("the soak mounts filesystems and stops smbd: run it as root")
    work = Path(tempfile.mkdtemp(prefix="netuse-soak-", dir="/tmp"))
    work.chmod(0o755)
    soak = Soak(work, args.duration, args.seed)
    try:
        soak.run()
    finally:
        soak.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    print(table(soak.samples))
    print(" ".join(f"{key}={value}" for key, value in soak.counts.items()))
    if args.table:
        Path(args.table).write_text(json.dumps(soak.samples))
    for failure in soak.failures:
        print("FAILED:", failure)
    print(f"soak: {1 if soak.failures else 0} failed, {0 if soak.failures else 1} passed")
    sys.exit(1 if soak.failures else 0)


if __name__ == "__main__":
    main()
