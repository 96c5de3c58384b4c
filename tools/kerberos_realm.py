"""A private Kerberos realm with an SMB server in it, for the tests of `-o sec=krb5`: Samba as
an Active Directory domain controller (its own KDC, smbd and winbindd), provisioned in a
temporary directory and listening on free loopback ports only.

Limits found by trial: smbd needs winbindd to map a ticket's user to a Unix uid, and finds it
only at the built-in /run/samba/winbindd, so one realm runs at a time on a machine, and no
system winbindd may be running. smbclient will not use Kerberos to reach "localhost"; MIT's
GSSAPI (which netused uses) will, so the server is named localhost, a name every machine
resolves, with a cifs/localhost service principal added."""
import os
import socket
import subprocess
import time

from netuse_harness import end_session, free_port


class KerberosRealm:
    REALM, DOMAIN, HOST = "NETUSE.TEST", "NETUSE", "DC1"
    ADMIN_PASSWORD = "Adm1n-Secret-23"
    USER, PASSWORD = "alice", "Al1ce-Secret-23"

    def __init__(self, base):
        self.base = base
        self.smb_port, self.kdc_port, self.kpasswd_port = free_port(), free_port(), free_port()
        self.config = base / "etc" / "smb.conf"
        self.krb5_config = base / "krb5.conf"
        self.share = base / "share"
        self.process = None
        subprocess.run(
            ["samba-tool", "domain", "provision", "--configfile=/dev/null", f"--targetdir={base}",
             f"--realm={self.REALM}", f"--domain={self.DOMAIN}", f"--host-name={self.HOST}",
             f"--adminpass={self.ADMIN_PASSWORD}", "--server-role=dc", "--dns-backend=NONE", "--use-rfc2307",
             "--option=interfaces=127.0.0.1", "--option=bind interfaces only=yes"],
            check=True, capture_output=True, text=True)
        for name in ("share", "run", "log", "cache"):
            (base / name).mkdir(exist_ok=True)
        # The users the tickets map to are winbind's (uids from 3000000): any may write here.
        self.share.chmod(0o777)
        self.config.write_text(f"""[global]
  netbios name = {self.HOST}
  workgroup = {self.DOMAIN}
  realm = {self.REALM}
  server role = active directory domain controller
  server services = s3fs, kdc, winbindd
  interfaces = 127.0.0.1
  bind interfaces only = yes
  smb ports = {self.smb_port}
  krb5 port = {self.kdc_port}
  kpasswd port = {self.kpasswd_port}
  disable netbios = yes
  private dir = {base}/private
  lock directory = {base}
  state directory = {base}/state
  cache directory = {base}/cache
  pid directory = {base}/run
  ncalrpc dir = {base}/run/ncalrpc
  ntp signd socket directory = {base}/run/ntp_signd
  binddns dir = {base}/bind-dns
  log file = {base}/log/samba.log
  log level = 1
  idmap_ldb:use rfc2307 = yes
  # Sealed sessions derive their keys from the whole Kerberos key (32 bytes) only with the
  # 256-bit ciphers; signing always takes its first 16 bytes.
  server smb3 encryption algorithms = AES-256-GCM, AES-256-CCM
  load printers = no
  printing = bsd
  printcap name = /dev/null
[share]
  path = {self.share}
  read only = no
""")
        self.krb5_config.write_text(f"""[libdefaults]
  default_realm = {self.REALM}
  dns_lookup_realm = false
  dns_lookup_kdc = false
  dns_canonicalize_hostname = false
  rdns = false
  udp_preference_limit = 1
[realms]
  {self.REALM} = {{
    kdc = 127.0.0.1:{self.kdc_port}
    kpasswd_server = 127.0.0.1:{self.kpasswd_port}
  }}
[domain_realm]
  localhost = {self.REALM}
""")
        self.krb5_config.chmod(0o644)
        for command in (["user", "create", self.USER, self.PASSWORD], ["user", "setexpiry", self.USER, "--noexpiry"],
                        ["spn", "add", "cifs/localhost", self.HOST + "$"]):
            subprocess.run(["samba-tool", *command, "-s", str(self.config)], check=True, capture_output=True, text=True)
        self.start()

    @property
    def environment(self):
        return {**os.environ, "KRB5_CONFIG": str(self.krb5_config)}

    def url(self, share="share"):
        return f"smb://localhost:{self.smb_port}/{share}"

    def start(self):
        assert subprocess.run(["wbinfo", "-p"], capture_output=True).returncode != 0, \
            "a winbindd already answers at /run/samba/winbindd: the realm's own could not"
        # samba -i ends when its standard input closes: a test run that dies takes it along.
        self.process = subprocess.Popen(
            ["samba", "-i", "-M", "single", "-s", str(self.config)], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            assert self.process.poll() is None, "samba exited at start:\n" + self.log()
            if all(self._listens(port) for port in (self.smb_port, self.kdc_port)) and subprocess.run(
                    ["wbinfo", "-p"], capture_output=True).returncode == 0:
                return
            assert time.monotonic() < deadline, "samba was not ready within 30 s:\n" + self.log()
            time.sleep(0.1)

    @staticmethod
    def _listens(port):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    def log(self):
        try:
            return (self.base / "log" / "samba.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def kinit(self, cache, uid=None):
        """A ticket for the realm's user in the file `cache`, owned by `uid` (mode 0600)."""
        subprocess.run(["kinit", f"{self.USER}@{self.REALM}"], input=self.PASSWORD + "\n", text=True, check=True,
                       capture_output=True, env={**self.environment, "KRB5CCNAME": f"FILE:{cache}"})
        if uid is not None:
            os.chown(cache, uid, uid)
        os.chmod(cache, 0o600)

    def stop(self):
        if self.process is None:
            return
        self.process.stdin.close()
        end_session(self.process)
        self.process = None
