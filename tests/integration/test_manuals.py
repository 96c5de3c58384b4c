"""Manual pages and shell completions come from the argument parsers and work."""
import os
import subprocess
import time

from conftest import BIN, REPO


def test_completion_scripts_load(tmp_path):
    for shell in ("bash", "zsh", "fish"):
        script = subprocess.run([str(BIN / "netusectl"), "--generate-completion-script", shell],
                                capture_output=True, text=True, check=True).stdout
        assert "netusectl" in script and "delete" in script, shell
    (tmp_path / "netusectl.bash").write_text(subprocess.run(
        [str(BIN / "netusectl"), "--generate-completion-script", "bash"], capture_output=True, text=True, check=True).stdout)
    loaded = subprocess.run(["bash", "-c", f"source {tmp_path / 'netusectl.bash'} && complete -p netusectl"],
                            capture_output=True, text=True)
    assert loaded.returncode == 0 and "netusectl" in loaded.stdout, loaded.stderr


def test_manual_pages_render():
    subprocess.run(["make", "-C", str(REPO), "man"], capture_output=True, text=True, check=True, timeout=600)
    for page, title in (("man1/netusectl.1", "NETUSECTL"), ("man8/netused.8", "NETUSED")):
        rendered = subprocess.run(["man", "-l", str(REPO / ".build" / "generated" / page)], capture_output=True, text=True,
                                  env={**os.environ, "MANPAGER": "cat", "MANWIDTH": "100"})
        assert rendered.returncode == 0 and title in rendered.stdout, rendered.stderr
    helped = subprocess.run([str(BIN / "netusectl"), "--help"], capture_output=True, text=True).stdout
    assert "2404" in helped and "2401" in helped and "/delete" in helped


def test_the_debian_package_installs_and_works(tmp_path):
    """make deb, unpacked into a clean tree: the programs there report one version, and a
    daemon started from it maps and deletes a drive."""
    built = subprocess.run(["make", "-C", str(REPO), "deb", f"BIN={BIN}"], capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    package = next((REPO / ".build" / "generated").glob("netuse_*.deb"))
    fields = subprocess.run(["dpkg-deb", "-f", str(package), "Package", "Version"], capture_output=True, text=True, check=True).stdout
    assert "Package: netuse" in fields
    tree = tmp_path / "tree"
    subprocess.run(["dpkg-deb", "-x", str(package), str(tree)], check=True)
    for path in ("usr/lib/systemd/system/netused.service", "usr/share/man/man8/netused.8",
                 "usr/share/bash-completion/completions/netusectl", "usr/libexec/netuse/netuse-smb-worker"):
        assert (tree / path).exists(), path
    assert "ExecStart=/usr/bin/netused" in (tree / "usr/lib/systemd/system/netused.service").read_text()
    versions = {subprocess.run([str(tree / "usr/bin" / name), "--version"], capture_output=True, text=True, check=True).stdout.strip()
                for name in ("netused", "netusectl")}
    assert len(versions) == 1 and fields.split("Version: ")[1].strip() in versions
    share, root = tmp_path / "share", tmp_path / "root"
    share.mkdir()
    (share / "hello.txt").write_text("from the package")
    daemon = subprocess.Popen([str(tree / "usr/bin/netused"), "--root", str(root), "--foreground", "--log-level", "warning"])
    try:
        ctl = [str(tree / "usr/bin/netusectl")]
        for _ in range(100):
            if (root / "control.sock").exists():
                break
            time.sleep(0.05)
        used = subprocess.run(ctl + ["use", "q", str(share), "--socket", str(root / "control.sock")], capture_output=True, text=True)
        assert used.returncode == 0, used.stderr
        assert (root / "0" / "q" / "hello.txt").read_text() == "from the package"
        assert subprocess.run(ctl + ["use", "q:", "/delete", "--socket", str(root / "control.sock")]).returncode == 0
    finally:
        daemon.terminate()
        daemon.wait(timeout=20)
