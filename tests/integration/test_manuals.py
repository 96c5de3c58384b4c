"""Manual pages and shell completions come from the argument parsers and work."""
import os
import subprocess

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
