"""Runs a command with a private smbd up, for the backend conformance suite:
NETUSE_TEST_SMB, NETUSE_TEST_SMB_USER and NETUSE_TEST_SMB_PASSWORD name its user share.
smbd is stopped and its directory removed however the command ends."""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from netuse_harness import Samba


def main():
    base = Path(tempfile.mkdtemp(prefix="netuse-samba-"))
    base.chmod(0o755)
    samba = None
    try:
        samba = Samba(base)
        environment = dict(os.environ, NETUSE_TEST_SMB=samba.url("user"),
                           NETUSE_TEST_SMB_USER=Samba.USER, NETUSE_TEST_SMB_PASSWORD=Samba.PASSWORD)
        return subprocess.run(sys.argv[1:], env=environment).returncode
    finally:
        if samba:
            samba.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
