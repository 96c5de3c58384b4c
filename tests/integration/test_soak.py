"""make soak, short: mixed load on a local and two SMB drives while smbd stalls and
restarts; no wrong byte, no operation past its bound, nothing growing after warm-up."""
import os
import subprocess
import sys

from conftest import BIN, REPO


def test_a_short_soak_passes():
    result = subprocess.run([sys.executable, str(REPO / "tools" / "soak.py"), "--duration", "30", "--seed", "7"],
                            capture_output=True, text=True, timeout=240, env={**os.environ, "NETUSE_BIN": str(BIN)})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
