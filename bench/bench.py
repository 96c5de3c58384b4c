#!/usr/bin/env python3
"""make bench: netuse beside the FUSE limit and the SMB clients a Linux user would otherwise
pick, measured side by side in one run, at 0 and 2 ms round trip.

It starts its own smbd on loopback and a latency proxy, mounts one guest share with netuse,
rclone (vfs-cache-mode off and full) and smbnetfs, checks each mount, runs each workload
several times (the median counts), prints one table of netuse's ratio to each peer, and keeps
the raw figures in bench-results/results.json. Everything it starts, it stops."""
import argparse
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(0, str(REPO / "bench"))
from latency_proxy import LatencyProxy  # noqa: E402
from netuse_harness import Samba, fuse_mounts_under  # noqa: E402

BIN = Path(os.environ.get("NETUSE_BIN", REPO / ".build" / "release")).resolve()
MiB = 1 << 20


def drop_caches():
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def wait_for_mount(path, process=None, timeout=30):
    deadline = time.monotonic() + timeout
    while str(path) not in fuse_mounts_under(path):
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited while mounting {path}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} was not mounted within {timeout} s")
        time.sleep(0.05)


# MARK: the systems under test

class Netuse:
    name = "netuse"

    def __init__(self, work, remote, label="netuse", options=()):
        self.name = label
        self.options = list(options)
        self.root = work / f"{label}-root"
        self.socket = self.root / "control.sock"
        self.log = open(work / f"{label}.log", "ab")
        self.process = subprocess.Popen(
            [str(BIN / "netused"), "--root", str(self.root), "--state-dir", str(work / f"{label}-state"), "--foreground",
             "--log-level", "warning"], stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("netused did not start")
            time.sleep(0.02)
        time.sleep(0.1)
        self.remote = remote
        self.use()

    def ctl(self, *args):
        return subprocess.run([str(BIN / "netusectl"), *args, "--socket", str(self.socket)],
                              capture_output=True, text=True, check=True, timeout=120)

    def use(self):
        # Where the daemon says the drive is: the layout is its business.
        self.path = Path(json.loads(self.ctl("use", "q", self.remote, *self.options, "--json").stdout)["drive"]["mountpoint"])

    def delete(self):
        self.ctl("delete", "q")

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


class FuseProcess:
    """A peer that is one FUSE program: rclone, smbnetfs, bindfs."""

    def __init__(self, name, command, mountpoint, path, env=None):
        self.name = name
        self.mountpoint = mountpoint
        mountpoint.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                                        start_new_session=True)
        wait_for_mount(mountpoint, self.process)
        self.path = path
        deadline = time.monotonic() + 30
        while not path.is_dir():  # smbnetfs shows the share only once it has browsed to it
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: {path} did not appear")
            time.sleep(0.1)

    def stop(self):
        subprocess.run(["fusermount3", "-u", str(self.mountpoint)], capture_output=True)
        subprocess.run(["fusermount", "-u", str(self.mountpoint)], capture_output=True)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True)


def rclone(work, port, mode):
    mountpoint = work / f"rclone-{mode}"
    return FuseProcess(f"rclone {mode}", [
        "rclone", "mount", f":smb,host=127.0.0.1,port={port},user=benchguest:guest", str(mountpoint),
        "--config", "/notfound", "--vfs-cache-mode", mode, "--cache-dir", str(work / f"rclone-cache-{mode}")],
        mountpoint, mountpoint)


def smbnetfs(work, port):
    home = work / "smbnetfs-home"
    (home / ".smb").mkdir(parents=True, exist_ok=True)
    (home / ".smb" / "smb.conf").write_text("")
    config = home / ".smb" / "smbnetfs.conf"
    config.write_text('auth "benchguest" "guest"\n')
    config.chmod(0o600)
    mountpoint = work / "smbnetfs"
    env = {**os.environ, "HOME": str(home)}
    return FuseProcess("smbnetfs", ["smbnetfs", str(mountpoint), "-f", "-o", "big_writes,max_write=131072"],
                       mountpoint, mountpoint / f"127.0.0.1:{port}" / "guest", env=env)


def smbclient_wire(work, port, repeats):
    """What one smbclient moves through the same proxy: the ceiling of the wire, not a mount."""
    source = work / "smbclient-put.bin"
    with open(source, "wb") as f:
        for _ in range(256):
            f.write(os.urandom(MiB))

    def rate(command):
        result = subprocess.run(["smbclient", "-p", str(port), "-N", "//127.0.0.1/guest", "-c", command],
                                capture_output=True, text=True, timeout=300)
        found = re.search(r"\(([0-9.]+) (?:KiloBytes/sec|kb/s)\)", result.stdout + result.stderr)
        if not found:
            raise RuntimeError(f"smbclient {command}: {result.stdout}{result.stderr}")
        return float(found.group(1)) * 1024 / 1e6

    results = {}
    runs = (("seqread", "get big.bin /dev/null", True), ("seqread warm", "get big.bin /dev/null", False),
            ("seqwrite", f"put {source} smbclient-put.bin", True))
    for name, command, cold in runs:
        values = []
        for _ in range(repeats):
            if cold:
                drop_caches()
            values.append(rate(command))
        results[name] = {"unit": "MB/s", "values": values, "median": statistics.median(values)}
        print(f"  {'smbclient':18} {name:15} {results[name]['median']:.3g} MB/s", file=sys.stderr, flush=True)
    source.unlink()
    return results


# MARK: workloads, each on a directory, each answering (value, unit)

def seed(directory, repeat=200):
    path = directory / "seed.cmd"
    start = time.perf_counter()
    for _ in range(repeat):
        fd = os.open(path, os.O_RDONLY)
        os.read(fd, 2048)
        os.close(fd)
    return repeat / (time.perf_counter() - start)


def openclose(directory, repeat=500):
    names = [directory / "oc" / f"f{n}" for n in range(50)]
    start = time.perf_counter()
    for index in range(repeat):
        os.close(os.open(names[index % 50], os.O_RDONLY))
    return repeat / (time.perf_counter() - start)


def seqread(directory, warm=False):
    """`warm`: only the drive's own pages are dropped, so the server reads from its cache
    and the client, not the server's disk, bounds the figure."""
    if warm:
        fd = os.open(directory / "big.bin", os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
    else:
        drop_caches()
    start = time.perf_counter()
    with open(directory / "big.bin", "rb", buffering=0) as f:
        while f.read(MiB):
            pass
    return 256 / (time.perf_counter() - start)


def seqwrite(directory, sync=False):
    block = os.urandom(MiB)
    target = directory / f"written-{os.getpid()}-{time.monotonic_ns()}.bin"
    start = time.perf_counter()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for _ in range(256):
        os.write(fd, block)
    if sync:
        os.fsync(fd)
    os.close(fd)
    elapsed = time.perf_counter() - start
    os.unlink(target)
    return 256 / elapsed


def tree(directory):
    drop_caches()
    start = time.perf_counter()
    count = 0
    for folder, _, files in os.walk(directory / "tree"):
        for name in files:
            os.stat(os.path.join(folder, name))
            count += 1
    assert count == 2000, count
    return time.perf_counter() - start


def parallel(directory):
    read, write = os.pipe()
    children = []
    start = time.perf_counter()
    for n in range(4):
        pid = os.fork()
        if pid == 0:
            path = directory / f"par{n}.cmd"
            for _ in range(200):
                fd = os.open(path, os.O_RDONLY)
                os.read(fd, 2048)
                os.close(fd)
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    return 800 / (time.perf_counter() - start)


COLD_BATCHES, COLD_FILES = 80, 50
cold_batches = iter(range(COLD_BATCHES))


def cold(directory, listed=False):
    """Open, read 2 KiB and close each of 50 files the drive has never touched: milliseconds
    per file. `listed`: after listing their directory (the kernel then has their entries)."""
    folder = directory / "cold" / f"b{next(cold_batches)}"
    names = sorted(os.listdir(folder)) if listed else [f"f{n}" for n in range(COLD_FILES)]
    start = time.perf_counter()
    for name in names:
        fd = os.open(folder / name, os.O_RDONLY)
        assert len(os.read(fd, 2048)) == 2048
        os.close(fd)
    return (time.perf_counter() - start) * 1000 / len(names)


WORKLOADS = {
    "seed": (seed, "ops/s", True),
    "openclose": (openclose, "ops/s", True),
    "seqread": (seqread, "MB/s", True),
    "seqread warm": (lambda d: seqread(d, warm=True), "MB/s", True),
    "seqwrite": (seqwrite, "MB/s", True),
    "seqwrite+fsync": (lambda d: seqwrite(d, sync=True), "MB/s", True),
    "tree": (tree, "s", False),
    "parallel": (parallel, "ops/s", True),
    "cold": (cold, "ms/file", False),
    "cold listed": (lambda d: cold(d, listed=True), "ms/file", False),
}


def prepare(share, small=False):
    """The files every workload reads, put on the share itself (`small`: not big.bin)."""
    (share / "seed.cmd").write_bytes(b"@echo off\r\n" * 200)
    (share / "login.sh").write_text("for i in 1 2 3 4 5 6 7 8 9 10; do cat seed.cmd > /dev/null; done\n")
    for n in range(4):
        (share / f"par{n}.cmd").write_bytes(b"rem\r\n" * 400)
    (share / "oc").mkdir(exist_ok=True)
    for n in range(50):
        (share / "oc" / f"f{n}").write_bytes(b"x")
    with open(share / "big.bin", "wb") as f:
        for _ in range(0 if small else 256):
            f.write(os.urandom(MiB))
    for batch in range(COLD_BATCHES):
        folder = share / "cold" / f"b{batch}"
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(COLD_FILES):
            (folder / f"f{n}").write_bytes(os.urandom(4096))
    for d in range(20):
        folder = share / "tree" / f"d{d}"
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(100):
            (folder / f"f{n}").write_bytes(b"t")
    for path in share.rglob("*"):
        path.chmod(0o777 if path.is_dir() else 0o666)


def measure(system, workloads, repeats):
    results = {}
    for name in (workload for workload in workloads if workload in WORKLOADS):
        function, unit, _ = WORKLOADS[name]
        values = []
        for _ in range(repeats):
            try:
                values.append(function(system.path))
            except Exception as error:  # a peer that cannot do a workload says so in the table
                print(f"  {system.name} {name}: {error}", file=sys.stderr)
                values = []
                break
        results[name] = {"unit": unit, "values": values, "median": statistics.median(values) if values else None}
        shown = f"{results[name]['median']:.3g}" if values else "failed"
        print(f"  {system.name:18} {name:15} {shown} {unit}", file=sys.stderr, flush=True)
    return results


def copy_on_share(system, proxy, repeats):
    """A copy of big.bin (256 MiB) within the share through the drive: by cp, whose
    copy_file_range the native engine hands to the server (FSCTL_SRV_COPYCHUNK_WRITE), and
    by dd, whose reads and writes cross the wire. Seconds, and MiB the proxy carried.
    (Debian 12's cp 9.1 with --reflink=never reads and writes, as dd does.)"""
    rows = {}
    for name, command in (("copy cp", ["cp"]), ("copy dd", None)):
        seconds, wire = [], []
        for _ in range(repeats):
            drop_caches()
            source, target = system.path / "big.bin", system.path / "copy.bin"
            before = proxy.carried if proxy else 0
            start = time.perf_counter()
            if command:
                subprocess.run(command + [str(source), str(target)], check=True)
            else:
                subprocess.run(["dd", f"if={source}", f"of={target}", "bs=1M", "status=none"], check=True)
            seconds.append(time.perf_counter() - start)
            wire.append(((proxy.carried if proxy else 0) - before) / MiB)
            os.unlink(target)
        rows[name] = {"unit": "s", "values": seconds, "median": statistics.median(seconds)}
        if proxy:
            rows[name + " wire"] = {"unit": "MiB", "values": wire, "median": statistics.median(wire)}
        print(f"  {system.name:18} {name:15} {rows[name]['median']:.3g} s", file=sys.stderr, flush=True)
    return rows


def process_cpu_seconds(pid):
    """User and system CPU time of a process (its threads included), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proxy_cost(system, proxy):
    """CPU seconds the proxy and the client under test (netused) spend on seqread and
    seqwrite: the proxy must not be what bounds the figures."""
    rows = {}
    for name in ("seqread", "seqwrite"):
        proxy_before, client_before = proxy.cpu_seconds, process_cpu_seconds(system.process.pid)
        WORKLOADS[name][0](system.path)
        rows[f"{name} cpu: proxy"] = {"unit": "s", "values": [proxy.cpu_seconds - proxy_before],
                                      "median": proxy.cpu_seconds - proxy_before}
        spent = process_cpu_seconds(system.process.pid) - client_before
        rows[f"{name} cpu: netused"] = {"unit": "s", "values": [spent], "median": spent}
    return rows


def cold_round_trips(system, proxy):
    """Round trips per file of `cold` and `cold listed` (the listing's own included): the
    times netused spoke to the server after it had answered, as the proxy counts them."""
    rows = {}
    for name, listed in (("cold", False), ("cold listed", True)):
        before = proxy.turns
        cold(system.path, listed=listed)
        trips = (proxy.turns - before) / COLD_FILES
        rows[f"{name} round trips"] = {"unit": "per file", "values": [trips], "median": trips}
        print(f"  {system.name:18} {name + ' round trips':15} {trips:.3g} per file", file=sys.stderr, flush=True)
    return rows


def delete_after_use(netuse, repeats):
    times = []
    for _ in range(repeats):
        subprocess.run(["bash", "-c", f"cd {netuse.path} && bash ./login.sh && cd /"], check=True)
        start = time.perf_counter()
        netuse.delete()
        times.append((time.perf_counter() - start) * 1000)
        netuse.use()
    return {"unit": "ms", "values": times, "median": statistics.median(times)}


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def memory(work):
    share = work / "memory-share"
    share.mkdir()
    for n in range(100):
        (share / f"f{n}").write_bytes(b"m")
    netuse = Netuse(work, str(share), label="memory")
    try:
        time.sleep(0.5)
        idle = rss_kib(netuse.process.pid)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 20000), max(hard, 20000)))
        held = [os.open(netuse.path / f"f{n % 100}", os.O_RDONLY) for n in range(10000)]
        with_handles = rss_kib(netuse.process.pid)
        for fd in held:
            os.close(fd)
        time.sleep(0.5)
        for n in range(100):
            os.close(os.open(netuse.path / f"f{n}", os.O_WRONLY))  # another access mode: more ServerOpens
        time.sleep(0.2)
        deferred_full = rss_kib(netuse.process.pid)
        return {"idle_kib": idle, "with_10000_handles_kib": with_handles, "deferred_list_full_kib": deferred_full,
                "per_handle_bytes": (with_handles - idle) * 1024 / 10000}
    finally:
        netuse.stop()


def tree_rss_kib(pid):
    """netused and the worker processes it started."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return rss_kib(pid) + sum(rss_kib(int(child)) for child in children)


def drive_memory(work, port):
    """What a second and a third drive to the same server cost, with each engine: the native
    engine shares one session among them, libsmbclient starts workers per drive."""
    results = {}
    remote = f"smb://127.0.0.1:{port}/guest"
    for engine in ("native", "libsmbclient"):
        netuse = Netuse(work, remote, label=f"memory-{engine}", options=["-o", f"engine={engine}"])
        try:
            sizes = []
            for letter in ("q", "r", "s"):
                if letter != "q":
                    path = json.loads(netuse.ctl("use", letter, remote, "-o", f"engine={engine}", "--json").stdout)["drive"]["mountpoint"]
                else:
                    path = netuse.path
                (Path(path) / "seed.cmd").read_bytes()
                os.listdir(path)
                time.sleep(0.5)
                sizes.append(tree_rss_kib(netuse.process.pid))
            results[engine] = {"one_drive_kib": sizes[0], "second_drive_kib": sizes[1] - sizes[0],
                               "third_drive_kib": sizes[2] - sizes[1]}
        finally:
            netuse.stop()
    return results


def local_limit(work, workloads, repeats):
    """The local share against the FUSE limit: netuse, bindfs (C passthrough), the directory."""
    plain = work / "local-share"
    plain.mkdir()
    prepare(plain)

    class Plain:
        name = "plain directory"
        path = plain

        def stop(self):
            pass

    systems = [Plain()]
    results = {}
    try:
        systems.append(Netuse(work, str(plain), label="netuse-local"))
        systems.append(FuseProcess("bindfs", ["bindfs", "-f", str(plain), str(work / "bindfs")], work / "bindfs", work / "bindfs"))
        for system in systems:
            results[system.name] = measure(system, workloads, repeats)
    finally:
        for system in systems:
            system.stop()
    return results


def table(rows, peers, title):
    lines = [title, ""]
    header = ["workload", "netuse"] + [f"vs {peer}" for peer in peers]
    body = []
    for workload, figures in rows.items():
        ours = figures.get("netuse", {}).get("median")
        unit = figures.get("netuse", {}).get("unit", "")
        cells = [workload, f"{ours:.3g} {unit}" if ours is not None else "-"]
        higher_is_better = WORKLOADS.get(workload, (None, None, False))[2]
        for peer in peers:
            theirs = figures.get(peer, {}).get("median")
            if ours is None or theirs in (None, 0):
                cells.append("-")
            else:
                ratio = ours / theirs if higher_is_better else theirs / ours
                cells.append(f"{ratio:.2f}x ({theirs:.3g})")
        body.append(cells)
    widths = [max(len(row[i]) for row in [header] + body) for i in range(len(header))]
    for row in [header] + body:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rtt", type=float, nargs="*", default=[0, 2], help="round trips to emulate, ms (none: local share only)")
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS) + ["copy"])
    parser.add_argument("--output", default=str(REPO / "bench-results"))
    arguments = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("make bench mounts filesystems and drops caches: run it as root")

    work = Path(tempfile.mkdtemp(prefix="netuse-bench-", dir="/tmp"))
    work.chmod(0o755)
    (work / "smbd").mkdir()
    (work / "smbd").chmod(0o755)
    samba = Samba(work / "smbd")
    unleased = None
    if {"seed", "openclose"} & set(arguments.workloads):
        (work / "smbd-unleased").mkdir()
        (work / "smbd-unleased").chmod(0o755)
        unleased = Samba(work / "smbd-unleased", settings={"smb2 leases": "no"})
        prepare(unleased.base / "guest", small=True)
    report = {"machine": {"cores": os.cpu_count(), "kernel": os.uname().release}, "runs": {}}
    texts = []
    try:
        prepare(samba.base / "guest")
        for rtt in arguments.rtt:
            proxy = LatencyProxy(samba.port, rtt / 2) if rtt > 0 else None
            port = proxy.port if proxy else samba.port
            unleased_proxy = LatencyProxy(unleased.port, rtt / 2) if rtt > 0 and unleased else None
            print(f"== {rtt} ms round trip", file=sys.stderr, flush=True)
            systems, rows = [], {}
            try:
                for make in (lambda: Netuse(work, f"smb://127.0.0.1:{port}/guest", label=f"netuse-{rtt}"),
                             lambda: Netuse(work, f"smb://127.0.0.1:{port}/guest", label=f"libsmbclient-{rtt}",
                                            options=["-o", "engine=libsmbclient"]),
                             lambda: rclone(work, port, "off"), lambda: rclone(work, port, "full"),
                             lambda: smbnetfs(work, port)):
                    try:
                        systems.append(make())
                    except Exception as error:
                        print(f"  a peer did not mount: {error}", file=sys.stderr)
                for system in systems:
                    label = system.name.rsplit("-", 1)[0] if isinstance(system, Netuse) else system.name
                    for workload, figures in measure(system, arguments.workloads, arguments.repeats).items():
                        rows.setdefault(workload, {})[label] = figures
                    if isinstance(system, Netuse):
                        # Before the peers run: rclone's write-back uploads in the background.
                        rows.setdefault("delete-after-use", {})[label] = delete_after_use(system, arguments.repeats)
                        if proxy and {"seqread", "seqwrite"} & set(arguments.workloads):
                            for workload, figures in proxy_cost(system, proxy).items():
                                rows.setdefault(workload, {})[label] = figures
                        if proxy and "cold" in arguments.workloads:
                            for workload, figures in cold_round_trips(system, proxy).items():
                                rows.setdefault(workload, {})[label] = figures
                        if "copy" in arguments.workloads:
                            for workload, figures in copy_on_share(system, proxy, arguments.repeats).items():
                                rows.setdefault(workload, {})[label] = figures
                # The server without leases (batch oplocks instead): the handle cache's figures.
                if unleased:
                    try:
                        system = Netuse(work, f"smb://127.0.0.1:{unleased_proxy.port if unleased_proxy else unleased.port}/guest",
                                        label=f"leases-off-{rtt}")
                        systems.append(system)
                        for workload, figures in measure(system, [w for w in ("seed", "openclose") if w in arguments.workloads],
                                                         arguments.repeats).items():
                            rows.setdefault(workload, {})["leases off"] = figures
                    except Exception as error:
                        print(f"  the server without leases: {error}", file=sys.stderr)
                if {"seqread", "seqwrite"} & set(arguments.workloads):
                    for workload, figures in smbclient_wire(work, port, arguments.repeats).items():
                        rows.setdefault(workload, {})["smbclient"] = figures
            finally:
                for system in systems:
                    system.stop()
                if proxy:
                    proxy.stop()
                if unleased_proxy:
                    unleased_proxy.stop()
            report["runs"][f"{rtt}ms"] = rows
            texts.append(table(rows, ["libsmbclient", "leases off", "rclone off", "rclone full", "smbnetfs", "smbclient"],
                               f"SMB share, {rtt} ms round trip (smbclient: get/put, no mount, the wire's ceiling)"))
        report["drive_memory"] = drive_memory(work, samba.port)
        texts.append("Memory of drives to one server (netused and its workers, KiB): " + "; ".join(
            f"{engine}: first {m['one_drive_kib']}, second +{m['second_drive_kib']}, third +{m['third_drive_kib']}"
            for engine, m in report["drive_memory"].items()))
        local = local_limit(work, ["seqread", "seqwrite", "openclose"], arguments.repeats)
        rows = {w: {("netuse" if name == "netuse-local" else name): local[name][w] for name in local}
                for w in ["seqread", "seqwrite", "openclose"]}
        report["local"] = rows
        texts.append(table(rows, ["bindfs", "plain directory"], "Local share against the FUSE limit"))
        report["memory"] = memory(work)
        texts.append("Memory (netused RSS): " + ", ".join(f"{k} {v:.0f}" for k, v in report["memory"].items()))
    finally:
        samba.stop()
        if unleased:
            unleased.stop()
        for mountpoint in fuse_mounts_under(work):
            subprocess.run(["umount", "-l", mountpoint], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    output = Path(arguments.output)
    output.mkdir(exist_ok=True)
    (output / "results.json").write_text(json.dumps(report, indent=2))
    text = "\n\n".join(texts)
    (output / "results.txt").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
