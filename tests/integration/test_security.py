"""The system instance acts as each caller: every attack here runs as unprivileged users
(setpriv) against a root netused, and gets what the same user gets without the drive."""
import json
import os
import signal
import socket
import stat
import subprocess
import textwrap
import threading
import time
from pathlib import Path

import pytest

from conftest import BIN, NOBODY, Daemon, Samba

ALICE, BOB = 60001, 60002


def as_user(uid, code, groups=None, env=None, timeout=30):
    """Runs Python as `uid` (no supplementary groups unless given); returns its stdout, parsed
    as JSON: the snippet prints {"ok": ..., ...}."""
    group_flag = ["--clear-groups"] if not groups else [f"--groups={','.join(map(str, groups))}"]
    prelude = textwrap.dedent("""\
        import errno, json, os, socket, sys
        def attempt(action):
            try:
                value = action()
                return {"ok": True, "value": value}
            except OSError as error:
                return {"ok": False, "errno": errno.errorcode.get(error.errno, str(error.errno))}
        """)
    result = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", *group_flag, "/usr/bin/python3", "-c",
                             prelude + textwrap.dedent(code)],
                            capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def read(path):
    return f"lambda: open({str(path)!r}).read()"


def ctl_as(daemon, uid, binary, *args, expect=None, env=None, stdin=None):
    command = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", str(binary), *args,
               "--socket", str(daemon.socket)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, input=stdin)
    if expect is not None:
        assert result.returncode == expect, result.stdout + result.stderr
    return result


def use_as(daemon, uid, binary, letter, remote, *options):
    """Maps as the user; returns the mountpoint the daemon reports."""
    result = ctl_as(daemon, uid, binary, "use", letter, str(remote), *options, "--json", expect=0)
    return Path(json.loads(result.stdout)["drive"]["mountpoint"])


def raw_request_as(daemon, uid, request: bytes):
    """Sends bytes on the control socket as the user; returns the parsed answer."""
    code = f"""
        connection = socket.socket(socket.AF_UNIX)
        connection.settimeout(20)
        connection.connect({str(daemon.socket)!r})
        connection.sendall({request!r})
        reply = b""
        while not reply.endswith(b"\\n"):
            chunk = connection.recv(65536)
            if not chunk:
                break
            reply += chunk
        print(reply.decode())
        """
    return as_user(uid, code)


def owned_dir(path, uid, mode=0o755):
    path.mkdir(mode=mode)
    os.chown(path, uid, uid)
    path.chmod(mode)
    return path


def mount_options(mountpoint):
    with open("/proc/self/mountinfo") as table:
        for line in table:
            fields = line.split()
            if fields[4] == str(mountpoint):
                dash = fields.index("-")
                return set(fields[5].split(",")), set(fields[dash + 3].split(",")), fields[dash + 2]
    raise AssertionError(f"{mountpoint} is not mounted")


# MARK: local root through a local share

def test_a_symlink_swapped_in_on_the_share_leads_nowhere(daemon, base, user_ctl):
    secret = base / "secret"
    secret.mkdir(mode=0o700)
    (secret / "shadow").write_text("root's secret")
    (secret / "shadow").chmod(0o600)
    share = owned_dir(base / "alice-share", ALICE)
    owned_dir(share / "sub", ALICE)
    (share / "sub" / "f").write_text("alice's")
    os.chown(share / "sub" / "f", ALICE, ALICE)
    q = use_as(daemon, ALICE, user_ctl, "q", share)

    assert as_user(ALICE, f"print(json.dumps(attempt({read(q / 'sub' / 'f')})))")["value"] == "alice's"
    # Directly on the share, not through the drive: the subdirectory becomes a symlink.
    as_user(ALICE, f"""
        os.rename({str(share / 'sub')!r}, {str(share / 'sub.old')!r})
        os.symlink({str(secret)!r}, {str(share / 'sub')!r})
        print(json.dumps({{"ok": True}}))""")
    direct = as_user(ALICE, f"print(json.dumps(attempt({read(share / 'sub' / 'shadow')})))")
    through = as_user(ALICE, f"print(json.dumps(attempt({read(q / 'sub' / 'shadow')})))")
    assert not direct["ok"] and not through["ok"], through
    wrote = as_user(ALICE, f"print(json.dumps(attempt(lambda: open({str(q / 'sub' / 'planted')!r}, 'w').write('x'))))")
    assert not wrote["ok"]
    assert not (secret / "planted").exists()
    # A symlink on the share is still a symlink through the drive, readable as one.
    as_user(ALICE, f"os.symlink({str(secret)!r}, {str(share / 'link')!r}); print(json.dumps({{'ok': True}}))")
    link = as_user(ALICE, f"print(json.dumps(attempt(lambda: os.readlink({str(q / 'link')!r}))))")
    assert link == {"ok": True, "value": str(secret)}
    # chmod by path, and listing, follow nothing either.
    chmod = as_user(ALICE, f"print(json.dumps(attempt(lambda: os.chmod({str(q / 'sub' / 'shadow')!r}, 0o666))))")
    assert not chmod["ok"]
    assert stat.S_IMODE((secret / "shadow").stat().st_mode) == 0o600
    listing = as_user(ALICE, f"print(json.dumps(attempt(lambda: os.listdir({str(q / 'sub')!r}))))")
    assert not listing["ok"]


def test_root_files_on_a_mapped_directory_stay_roots(daemon, base, user_ctl):
    """A share the user may read, holding a root-only file: the drive refuses what the
    directory refuses (the daemon is root, the kernel checks the caller)."""
    share = owned_dir(base / "mixed", ALICE)
    (share / "root-only").write_text("root's")
    (share / "root-only").chmod(0o600)
    owned_dir(share / "locked", 0, 0o700)
    q = use_as(daemon, ALICE, user_ctl, "q", share)
    for path_code in (read("{}/root-only"), "lambda: os.listdir({!r} + '/locked')",
                      "lambda: open({!r} + '/locked/new', 'w').close()"):
        direct = as_user(ALICE, f"print(json.dumps(attempt({path_code.format(str(share))})))")
        through = as_user(ALICE, f"print(json.dumps(attempt({path_code.format(str(q))})))")
        assert direct == through and not through["ok"], (path_code, direct, through)
    # What the user makes is theirs, group included, as directly.
    as_user(ALICE, f"open({str(q / 'mine')!r}, 'w').close(); print(json.dumps({{'ok': True}}))")
    assert ((share / "mine").stat().st_uid, (share / "mine").stat().st_gid) == (ALICE, ALICE)
    chown = as_user(ALICE, f"print(json.dumps(attempt(lambda: os.chown({str(q / 'mine')!r}, 0, 0))))")
    assert chown == {"ok": False, "errno": "EPERM"}


# MARK: mount options

def test_no_remote_can_change_the_mount_options(daemon, base, user_ctl):
    share = owned_dir(base / "opts", ALICE)
    tricky = owned_dir(share / "s\\,suid,dev", ALICE)
    q = use_as(daemon, ALICE, user_ctl, "q", tricky)
    per_mount, per_super, source = mount_options(q)
    assert {"nosuid", "nodev"} <= per_mount, per_mount
    assert {"allow_other", "default_permissions"} <= per_super, per_super
    assert "," not in source and "\\" not in source
    ctl_as(daemon, ALICE, user_ctl, "delete", "q", expect=0)
    for remote in (str(share) + "\x00,allow_other", str(share) + "\nforged log line", str(share) + "\x1b[31m"):
        answer = raw_request_as(daemon, ALICE, json.dumps({"v": 1, "op": "use", "letter": "q", "remote": remote}).encode() + b"\n")
        assert answer["ok"] is False and answer["error"]["code"] == 87, answer
    assert "forged log line" not in daemon.log_text().replace("\\x0a", "")
    for letter in ("\u212a", "q\u0301", "\u0071\u0307"):
        answer = raw_request_as(daemon, ALICE, json.dumps({"v": 1, "op": "use", "letter": letter, "remote": str(share)}).encode() + b"\n")
        assert answer["error"]["code"] == 87, (letter, answer)


# MARK: parents and ACLs

def test_a_directory_inside_anothers_private_home_cannot_be_mapped(daemon, base, user_ctl):
    home = owned_dir(base / "bob-home", BOB, 0o700)
    public = owned_dir(home / "pub", BOB, 0o755)
    (public / "f").write_text("bob's")
    assert not as_user(ALICE, f"print(json.dumps(attempt({read(public / 'f')})))")["ok"]
    result = ctl_as(daemon, ALICE, user_ctl, "use", "q", str(public), expect=2)
    assert "System error 5 has occurred." in result.stderr


def test_an_acl_that_denies_is_obeyed(daemon, base, user_ctl):
    share = owned_dir(base / "acl-share", 0, 0o755)
    (share / "f").write_text("readable by mode")
    (share / "f").chmod(0o644)
    subprocess.run(["setfacl", "-m", f"u:{ALICE}:---", str(share / "f")], check=True)
    q = use_as(daemon, ALICE, user_ctl, "q", share)
    direct = as_user(ALICE, f"print(json.dumps(attempt({read(share / 'f')})))")
    through = as_user(ALICE, f"print(json.dumps(attempt({read(q / 'f')})))")
    assert direct == through == {"ok": False, "errno": "EACCES"}
    # A group the process has counts, one it dropped does not.
    group_only = owned_dir(share / "team", 0, 0o770)
    os.chown(group_only, 0, 4242)
    code = f"print(json.dumps(attempt(lambda: os.listdir({str(q / 'team')!r}))))"
    assert as_user(ALICE, code, groups=[4242]) == {"ok": True, "value": []}
    assert as_user(ALICE, code) == {"ok": False, "errno": "EACCES"}


def test_revoked_permissions_stop_at_once_whatever_actimeo(daemon, base, user_ctl):
    share = owned_dir(base / "shared", 0, 0o755)
    target = share / "notes"
    target.write_text("first\n")
    os.chown(target, BOB, BOB)
    target.chmod(0o666)
    q = use_as(daemon, ALICE, user_ctl, "q", share, "-o", "actimeo=3600", "-o", "closetimeo=3600")
    warm = f"""
        for _ in range(3):
            open({str(q / 'notes')!r}).read()
            with open({str(q / 'notes')!r}, 'a') as f: f.write('alice\\n')
        print(json.dumps({{"ok": True}}))"""
    as_user(ALICE, warm)
    as_user(BOB, f"os.chmod({str(target)!r}, 0o600); print(json.dumps({{'ok': True}}))")
    for code in (read(q / "notes"), f"lambda: open({str(q / 'notes')!r}, 'a').write('late')"):
        assert as_user(ALICE, f"print(json.dumps(attempt({code})))") == {"ok": False, "errno": "EACCES"}, code
    assert "late" not in target.read_text()


# MARK: credentials

def test_a_credentials_file_the_caller_cannot_read_is_never_read_for_them(daemon, base, user_ctl):
    share = owned_dir(base / "creds-share", ALICE)
    root_file = base / "root-credentials"
    root_file.write_text("username=administrator\npassword=root-only-secret\n")
    root_file.chmod(0o600)
    fifo = share / "fifo"
    os.mkfifo(fifo)
    os.chown(fifo, ALICE, ALICE)
    fifo.chmod(0o600)
    for path in (root_file, fifo, Path("/proc/self/environ")):
        request = {"v": 1, "op": "use", "letter": "q", "remote": str(share), "persistent": True, "credentialsFile": str(path)}
        started = time.monotonic()
        answer = raw_request_as(daemon, ALICE, json.dumps(request).encode() + b"\n")
        assert answer["ok"] is False and answer["error"]["code"] in (5, 87), answer
        assert time.monotonic() - started < 5
    assert not (daemon.state / "drives.json").exists() or "credentials" not in (daemon.state / "drives.json").read_text()
    assert daemon.listing(all=True) == []


def test_a_fifo_in_the_state_file_neither_blocks_start_nor_stop(base):
    share = owned_dir(base / "fifo-share", ALICE)
    fifo = share / "fifo"
    os.mkfifo(fifo)
    os.chown(fifo, ALICE, ALICE)
    fifo.chmod(0o600)
    instance = Daemon(base)
    instance.state.mkdir(mode=0o700)
    (instance.state / "drives.json").write_text(json.dumps({"version": 1, "drives": [{
        "letter": "q", "remote": str(share), "owner": ALICE, "ownerGroup": ALICE, "options": {},
        "credentialsFile": str(fifo)}]}))
    try:
        started = time.monotonic()
        instance.start()
        assert time.monotonic() - started < 10
        drives = instance.listing(all=True)
        assert [(d["letter"], d["status"]) for d in drives] == [("Q:", "Unavailable")]
        started = time.monotonic()
        assert instance.stop() == 0
        assert time.monotonic() - started < 10
    finally:
        instance.cleanup()


# MARK: the socket netusectl talks to

class StrangerSocket:
    """A socket someone else serves, recording what it receives."""

    def __init__(self, path, uid):
        self.path = path
        self.process = subprocess.Popen(
            ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "/usr/bin/python3", "-c", textwrap.dedent(f"""
                import os, socket, sys
                os.umask(0)
                server = socket.socket(socket.AF_UNIX)
                server.bind({str(path)!r})
                server.listen(4)
                print("ready", flush=True)
                while True:
                    connection, _ = server.accept()
                    connection.settimeout(2)
                    try:
                        data = connection.recv(65536)
                    except OSError:
                        data = b""
                    sys.stdout.write(repr(data) + "\\n")
                    sys.stdout.flush()
                    connection.close()
                """)], stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "ready"

    def received(self):
        self.process.kill()
        return self.process.communicate()[0]


def test_netusectl_sends_nothing_to_a_socket_a_stranger_serves(base, user_ctl):
    folder = owned_dir(base / "bobs", BOB)
    stranger = StrangerSocket(folder / "control.sock", BOB)
    result = subprocess.run(["setpriv", f"--reuid={ALICE}", f"--regid={ALICE}", "--clear-groups", str(user_ctl),
                             "use", "q", "//server/share", "--user", "alice", "--password-stdin",
                             "--socket", str(folder / "control.sock")],
                            capture_output=True, text=True, input="alice-password\n", timeout=30)
    assert result.returncode == 2 and "System error 5 has occurred." in result.stderr, result.stderr
    assert "alice-password" not in stranger.received()


def test_the_tmp_fallback_must_be_the_users_own(base, user_ctl):
    fallback = Path(f"/tmp/netuse-{ALICE}")
    subprocess.run(["rm", "-rf", str(fallback)])
    owned_dir(fallback, BOB, 0o777)
    try:
        stranger = StrangerSocket(fallback / "control.sock", BOB)
        env = {"PATH": os.environ["PATH"], "HOME": "/"}
        result = subprocess.run(["setpriv", f"--reuid={ALICE}", f"--regid={ALICE}", "--clear-groups", str(user_ctl),
                                 "use", "q", "//server/share", "--user", "alice", "--password-stdin"],
                                capture_output=True, text=True, input="alice-password\n", timeout=30, env=env)
        assert result.returncode == 2 and "System error 5 has occurred." in result.stderr, result.stderr
        assert "alice-password" not in stranger.received()
    finally:
        subprocess.run(["rm", "-rf", str(fallback)])


# MARK: one user cannot lock others out

def test_one_user_cannot_hold_every_control_slot(daemon, base, user_ctl):
    holder = subprocess.Popen(
        ["setpriv", f"--reuid={ALICE}", f"--regid={ALICE}", "--clear-groups", "/usr/bin/python3", "-c", textwrap.dedent(f"""
            import socket, sys, time
            held, refused = [], 0
            for _ in range(60):
                connection = socket.socket(socket.AF_UNIX)
                connection.connect({str(daemon.socket)!r})
                connection.setblocking(False)
                time.sleep(0.01)
                try:
                    if connection.recv(4096):
                        refused += 1
                        continue
                except BlockingIOError:
                    pass
                connection.send(b" ")
                held.append(connection)
            print(len(held), refused, flush=True)
            time.sleep(30)
            """)], stdout=subprocess.PIPE, text=True)
    try:
        held, refused = map(int, holder.stdout.readline().split())
        assert held <= 32 and refused >= 28, (held, refused)
        started = time.monotonic()
        ctl_as(daemon, BOB, user_ctl, "list", expect=0)
        assert time.monotonic() - started < 2
    finally:
        holder.kill()
        holder.wait()


def test_a_long_line_is_refused_however_it_arrives(daemon):
    line = b'{"v":1,"op":"list","pad":"' + b"x" * (65 * 1024) + b'"}\n'
    answer = raw_request_as(daemon, ALICE, line)
    assert answer["ok"] is False and answer["error"]["code"] == 87, answer


def test_descriptor_hungry_options_are_bounded(daemon, base, user_ctl):
    share = owned_dir(base / "fd-share", ALICE)
    result = ctl_as(daemon, ALICE, user_ctl, "use", "q", str(share), "-o", "maxdeferred=65536", expect=2)
    assert "System error 87 has occurred." in result.stderr


# MARK: letters per user

def test_every_user_has_letters_of_their_own(daemon, base, user_ctl):
    shares = {uid: owned_dir(base / f"letters-{uid}", uid) for uid in (ALICE, BOB)}
    for uid, share in shares.items():
        (share / "who").write_text(str(uid))
    mounts = {uid: use_as(daemon, uid, user_ctl, "q", share) for uid, share in shares.items()}
    assert mounts[ALICE] != mounts[BOB]
    for uid, mountpoint in mounts.items():
        assert as_user(uid, f"print(json.dumps(attempt({read(mountpoint / 'who')})))")["value"] == str(uid)
    # One user's `use *` takes none of another's letters.
    taken = [json.loads(ctl_as(daemon, ALICE, user_ctl, "use", "*", str(shares[ALICE]), "--json", expect=0).stdout)["drive"]["letter"]
             for _ in range(3)]
    assert taken == ["Z:", "Y:", "X:"]
    assert json.loads(ctl_as(daemon, BOB, user_ctl, "use", "*", str(shares[BOB]), "--json", expect=0).stdout)["drive"]["letter"] == "Z:"
    mine = json.loads(ctl_as(daemon, BOB, user_ctl, "list", "--json", expect=0).stdout)["drives"]
    assert sorted(d["letter"] for d in mine) == ["Q:", "Z:"]
    for uid, letters in ((ALICE, "qzyx"), (BOB, "qz")):
        for letter in letters:
            ctl_as(daemon, uid, user_ctl, "delete", letter, expect=0)


def test_one_user_name_per_server_holds_within_one_users_session(daemon, samba, user_ctl):
    samba_user = Samba.USER
    first = ctl_as(daemon, ALICE, user_ctl, "use", "q", samba.url("user"), "--user", samba_user, "--password-stdin",
                   stdin=Samba.PASSWORD + "\n", expect=0)
    # Bob is another session: his guest drive to the same server is his business.
    ctl_as(daemon, BOB, user_ctl, "use", "q", samba.url("guest"), expect=0)
    refused = ctl_as(daemon, ALICE, user_ctl, "use", "r", samba.url("guest"), expect=2)
    assert "System error 1219 has occurred." in refused.stderr
    for uid in (ALICE, BOB):
        ctl_as(daemon, uid, user_ctl, "delete", "q", expect=0)
    assert first.returncode == 0


# MARK: global drives

def test_a_global_drive_serves_every_user_as_themself(daemon, base, user_ctl):
    share = owned_dir(base / "global-share", 0, 0o1777)
    refused = ctl_as(daemon, ALICE, user_ctl, "use", "g", str(share), "--global", expect=2)
    assert "System error 5 has occurred." in refused.stderr
    g = daemon.use("g", share, "--global")
    assert g == daemon.mountpoint("g", None)
    for uid in (ALICE, BOB):
        as_user(uid, f"""
            with open({str(g / f'by-{uid}')!r}, 'w') as f: f.write('{uid}')
            os.chmod({str(g / f'by-{uid}')!r}, 0o644)
            print(json.dumps({{"ok": True}}))""")
        assert (share / f"by-{uid}").stat().st_uid == uid
    # Bob may read Alice's file but neither change nor remove it (sticky directory), as directly.
    for code in ("lambda: open({!r}).read()", "lambda: open({!r}, 'a').write('bob')", "lambda: os.unlink({!r})"):
        direct = as_user(BOB, f"print(json.dumps(attempt({code.format(str(share / f'by-{ALICE}'))})))")
        through = as_user(BOB, f"print(json.dumps(attempt({code.format(str(g / f'by-{ALICE}'))})))")
        assert direct == through, (code, direct, through)
    # A write by someone else clears set-user-ID and set-group-ID bits, as directly; a chmod
    # by someone else is refused, as directly.
    for where in (share, g):
        as_user(ALICE, f"os.chmod({str(share / f'by-{ALICE}')!r}, 0o6777); print(json.dumps({{'ok': True}}))")
        wrote = as_user(BOB, f"print(json.dumps(attempt(lambda: open({str(where / f'by-{ALICE}')!r}, 'a').write('b'))))")
        assert wrote == {"ok": True, "value": 1}, (where, wrote)
        assert stat.S_IMODE((share / f"by-{ALICE}").stat().st_mode) == 0o777, where
        chmod = as_user(BOB, f"print(json.dumps(attempt(lambda: os.chmod({str(where / f'by-{ALICE}')!r}, 0o777))))")
        assert chmod == {"ok": False, "errno": "EPERM"}, where
    # Alice sees it in her list, may not delete it; her own G: is refused while it is global.
    listed = json.loads(ctl_as(daemon, ALICE, user_ctl, "list", "--json", expect=0).stdout)["drives"]
    assert [(d["letter"], d.get("global")) for d in listed] == [("G:", True)]
    assert "System error 5" in ctl_as(daemon, ALICE, user_ctl, "delete", "g", expect=2).stderr
    assert "System error 85" in ctl_as(daemon, ALICE, user_ctl, "use", "g", str(base), expect=2).stderr
    daemon.ctl("delete", "g")


def test_a_daemon_out_of_descriptors_answers_and_does_not_spin(base, user_ctl):
    """Deferred handles can take every descriptor the daemon has; it still answers every
    client (error 170 when it must) instead of leaving them queued while accept spins."""
    share = owned_dir(base / "fd-hog", ALICE)
    for index in range(120):
        (share / f"f{index}").write_text("x")
    daemon = Daemon(base)
    try:
        daemon.start(prefix=["prlimit", "--nofile=80:80"])
        q = use_as(daemon, ALICE, user_ctl, "q", share, "-o", "maxdeferred=1024", "-o", "closetimeo=3600")
        as_user(ALICE, f"""
            for index in range(120):
                try:
                    open({str(q)!r} + f"/f{{index}}").read()
                except OSError:
                    pass
            print(json.dumps({{"ok": True}}))""")
        def cpu():
            fields = open(f"/proc/{daemon.process.pid}/stat").read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        before, started = cpu(), time.monotonic()
        answers = [ctl_as(daemon, BOB, user_ctl, "list", "--json") for _ in range(5)]
        assert time.monotonic() - started < 5
        for answer in answers:
            parsed = json.loads(answer.stdout)
            assert parsed["ok"] or parsed["error"]["code"] == 170, parsed
        time.sleep(1)
        assert cpu() - before < 0.5 * (time.monotonic() - started), "the daemon spins"
        assert daemon.stop() == 0
    finally:
        daemon.cleanup()
