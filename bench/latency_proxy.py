"""A TCP proxy that delays every chunk by a set time in each direction, keeping order: a
2 ms round trip without kernel modules (tc netem is not available here).

The relay is `latency_proxy.c`, built on first use with the C compiler at hand (the Swift
toolchain's clang will do) into the build folder: the proxy must not be what bounds the
figures, and the Python relay it replaces came to cost as much CPU as netused itself on a
sequential read. Its cost is its process's CPU time (`cpu_seconds`)."""
import os
import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).resolve().with_name("latency_proxy.c")
BINARY = SOURCE.parents[1] / ".build" / "latency-proxy"


def build():
    if BINARY.exists() and BINARY.stat().st_mtime >= SOURCE.stat().st_mtime:
        return BINARY
    compiler = next(filter(None, map(shutil.which, ("cc", "clang", "gcc", "/opt/swift/usr/bin/clang"))), None)
    if compiler is None:
        raise RuntimeError("latency_proxy.c needs a C compiler (cc, clang or gcc)")
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    building = BINARY.with_name(f"latency-proxy.{os.getpid()}")
    subprocess.run([compiler, "-O2", "-pthread", "-o", str(building), str(SOURCE)], check=True)
    building.rename(BINARY)
    return BINARY


class LatencyProxy:
    def __init__(self, upstream_port, one_way_ms):
        self.process = subprocess.Popen([str(build()), str(upstream_port), str(int(one_way_ms * 1000))],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.port = int(self.process.stdout.readline())

    def _ask(self, command):
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    @property
    def carried(self):
        """Bytes carried both ways on every connection so far: what workloads put on the wire."""
        return int(self._ask("carried"))

    @property
    def turns(self):
        """Times a client spoke after its server had, on every connection so far: the round
        trips a client that waits for each answer made."""
        return int(self._ask("turns"))

    @property
    def cpu_seconds(self):
        """CPU time the relay has used so far: what the proxy costs."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def cut(self):
        """Breaks every connection so far, as a network failure would; new ones still come."""
        self._ask("cut")

    def stop(self):
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
