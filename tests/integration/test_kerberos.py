"""-o sec=krb5: a drive logs on with its user's Kerberos ticket (GSSAPI, SPNEGO), against a
private Samba Active Directory domain controller. The ticket cache is read as the user who
asks, so nobody logs on with a ticket they could not read themselves."""
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import Daemon
from kerberos_realm import KerberosRealm

ALICE, MALLORY = 60010, 60011


@pytest.fixture(scope="module")
def realm():
    base = Path(tempfile.mkdtemp(prefix="netuse-krb-", dir="/tmp"))
    base.chmod(0o755)
    instance = None
    try:
        instance = KerberosRealm(base)
        yield instance
    finally:
        if instance:
            instance.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def daemon(base, realm):
    """netused with the realm's krb5.conf, as /etc/krb5.conf would be on a real machine."""
    instance = Daemon(base)
    try:
        yield instance.start(env=realm.environment)
        assert instance.stop() == 0, "netused did not exit 0 on SIGTERM:\n" + instance.log_text()
    finally:
        instance.cleanup()


@pytest.fixture
def share(realm):
    for entry in realm.share.iterdir():
        entry.unlink()
    yield realm.share


def use(daemon, realm, user_ctl, uid, cache, *options, expect=0):
    """`netusectl use q: //localhost/share -o sec=krb5` as `uid`, with KRB5CCNAME=`cache`."""
    environment = {**realm.environment, "KRB5CCNAME": cache} if cache else realm.environment
    result = subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", str(user_ctl), "use", "q", realm.url(),
         "-o", "sec=krb5", *options, "--socket", str(daemon.socket)],
        env=environment, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == expect, f"use exited {result.returncode}:\n{result.stdout}{result.stderr}"
    return result


def as_user(uid, *command):
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *command],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("options", [[], ["-o", "seal"]], ids=["signed", "sealed"])
def test_a_drive_logs_on_with_the_users_ticket(daemon, realm, share, base, user_ctl, options):
    """No password is given: only the ticket can log on. The domain controller requires
    signing, so every answer is checked with keys derived from the Kerberos session key;
    sealed, every message is encrypted with them too."""
    cache = base / "alice.cc"
    realm.kinit(cache, uid=ALICE)
    use(daemon, realm, user_ctl, ALICE, f"FILE:{cache}", *options)
    drive = daemon.mountpoint("q", ALICE)
    written = as_user(ALICE, "sh", "-c", f"printf 'from a ticket' > {drive}/note.txt && cat {drive}/note.txt")
    assert written.returncode == 0 and written.stdout == "from a ticket", written
    assert (share / "note.txt").read_text() == "from a ticket"
    # The ticket was needed to log on, not afterwards.
    cache.unlink()
    listed = as_user(ALICE, "ls", str(drive))
    assert listed.stdout.split() == ["note.txt"], listed
    daemon.ctl("delete", "q", "--owner", str(ALICE))


def test_another_users_ticket_cache_is_not_read_for_them(daemon, realm, share, base, user_ctl):
    """Mallory names Alice's cache: the daemon reads it as Mallory, and so cannot, as
    Mallory cannot read it without the drive."""
    cache = base / "alice.cc"
    realm.kinit(cache, uid=ALICE)
    assert as_user(MALLORY, "cat", str(cache)).returncode != 0
    refused = use(daemon, realm, user_ctl, MALLORY, f"FILE:{cache}", expect=2)
    assert "System error 1326 has occurred." in refused.stderr, refused.stderr
    assert "kinit" in refused.stderr
    assert daemon.listing(all=True) == []
    # Alice, whose it is, logs on with it.
    use(daemon, realm, user_ctl, ALICE, f"FILE:{cache}")
    daemon.ctl("delete", "q", "--owner", str(ALICE))


def test_without_a_ticket_use_is_1326_and_says_kinit(daemon, realm, share, base, user_ctl):
    refused = use(daemon, realm, user_ctl, ALICE, f"FILE:{base}/no-such.cc", expect=2)
    assert "System error 1326 has occurred." in refused.stderr and "kinit" in refused.stderr, refused.stderr
    # The default cache is the user's own, /tmp/krb5cc_UID, which Alice does not have either.
    refused = use(daemon, realm, user_ctl, ALICE, None, expect=2)
    assert f"FILE:/tmp/krb5cc_{ALICE}" in refused.stderr, refused.stderr
    assert daemon.listing(all=True) == []


@pytest.mark.parametrize("cache", ["KEYRING:persistent:60010", "MEMORY:x", "FILE:relative.cc", "FILE:/tmp/../etc/x"])
def test_a_cache_that_cannot_be_read_as_the_user_is_87(daemon, realm, share, user_ctl, cache):
    refused = use(daemon, realm, user_ctl, ALICE, cache, expect=2)
    assert "System error 87 has occurred." in refused.stderr, refused.stderr
