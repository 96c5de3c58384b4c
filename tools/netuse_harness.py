"""What the tests and the benchmark both need: a private smbd and a look at the mount table."""
import os
import signal
import socket
import subprocess
import time


def fuse_mounts_under(root):
    root = str(root)
    found = []
    with open("/proc/self/mountinfo") as table:
        for line in table:
            fields = line.split()
            mountpoint = fields[4].replace("\\040", " ")
            fstype = fields[fields.index("-") + 1]
            if fstype.startswith("fuse") and (mountpoint == root or mountpoint.startswith(root + "/")):
                found.append(mountpoint)
    return sorted(found, key=len, reverse=True)


class Samba:
    """A private smbd on a free loopback port: a user share, a guest share, a read-only share."""

    USER, PASSWORD = "nobody", "netuse-secret"

    def __init__(self, base, settings=None):
        """`settings`: more [global] lines (name: value), as a test of a server's policy needs."""
        self.base = base
        self.port = free_port()
        for name in ("private", "lock", "state", "cache", "pid", "log", "user", "guest", "readonly"):
            (base / name).mkdir()
        for name in ("user", "guest"):
            (base / name).chmod(0o777)
        (base / "readonly" / "notice.txt").write_text("read only\n")
        self.config = base / "smb.conf"
        self.config.write_text(f"""[global]
  smb ports = {self.port}
  interfaces = 127.0.0.1
  bind interfaces only = yes
  private dir = {base}/private
  lock directory = {base}/lock
  state directory = {base}/state
  cache directory = {base}/cache
  pid directory = {base}/pid
  log file = {base}/log/smbd.log
  passdb backend = tdbsam:{base}/private/passdb.tdb
  map to guest = Bad User
  guest account = nobody
  server role = standalone server
  load printers = no
  printing = bsd
  printcap name = /dev/null
  disable spoolss = yes
""" + "".join(f"  {name} = {value}\n" for name, value in (settings or {}).items()) + f"""[user]
  path = {base}/user
  read only = no
  valid users = {self.USER}
[guest]
  path = {base}/guest
  read only = no
  guest ok = yes
[readonly]
  path = {base}/readonly
  read only = yes
  guest ok = yes
""")
        subprocess.run(["smbpasswd", "-c", str(self.config), "-s", "-a", self.USER],
                       input=f"{self.PASSWORD}\n{self.PASSWORD}\n", text=True, check=True, capture_output=True)
        self.start()

    def start(self):
        """Starts smbd on its port (again, after `stop`: the soak restarts it)."""
        self.process = subprocess.Popen(
            ["smbd", "--foreground", "--no-process-group", "-s", str(self.config), "-d", "1"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            # smbd signals its whole process group when it stops: give it one of its own.
            start_new_session=True)
        deadline = time.monotonic() + 20
        while True:
            assert self.process.poll() is None, "smbd exited at start"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "smbd did not listen within 20 s"
                time.sleep(0.05)

    def url(self, share, host="127.0.0.1"):
        return f"smb://{host}:{self.port}/{share}"

    def stop(self):
        # smbd forks a child per client; its session holds them all.
        end_session(self.process)


def end_session(process):
    """Ends a server started in a session of its own, and every process it started: SIGTERM
    to them all, then SIGKILL to what is left after 10 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
