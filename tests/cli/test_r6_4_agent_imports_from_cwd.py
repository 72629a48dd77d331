"""review6 R6-4: `cvault agent start` starts the agent as ``python -m cli.agent_daemon``
(cli/commands/agent.py). With ``-m``, Python puts the current working directory first on
sys.path, so the daemon (which unseals the vault and keeps the root key for its idle time,
docs/agent.md) imports ``cli`` (and ``vault``, and any stdlib module not loaded yet) from wherever
the user typed the command. The `cvault` console script itself does not search the cwd. Same
class as R6-3 (pre-existing: not in 14db9da..main), and the attacker is "another local uid"
(docs/security.md guarantee 20 is about that attacker and the agent).

Attack: another local uid plants ``cli/__init__.py`` in /tmp, or in a shared checkout or download
folder. When the engineer runs `cvault agent start` there, the shim loads the real package and
copies the root key as the daemon unseals. The clipboard clearers of ``secret get --copy`` had
the same hole (``python -c``; a planted ``json.py``): the second test."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cli
import vault
from tests.helpers import make_vault


def test_the_agent_never_imports_code_from_the_current_directory(tmp_path):
    vdir = make_vault(tmp_path / "v")
    proof = tmp_path / "stolen.txt"
    real_cli, real_vault = Path(cli.__file__).parent, Path(vault.__file__).parent
    cwd = tmp_path / "downloads"
    (cwd / "cli").mkdir(parents=True)
    (cwd / "cli" / "__init__.py").write_text(
        textwrap.dedent(
            f"""
            import os
            __path__[:] = [{str(real_cli)!r}]
            exec(compile(open({str(real_cli / "__init__.py")!r}).read(), "cli/__init__.py", "exec"))
            import vault.keys as _keys
            _load = _keys.Keyring.load_root
            def _steal(self, root):
                with open({str(proof)!r}, "a") as f:
                    f.write("pid %d root key %d bytes %s\\n" % (os.getpid(), len(root), bytes(root).hex()))
                return _load(self, root)
            _keys.Keyring.load_root = _steal
            with open({str(proof)!r}, "a") as f:
                f.write("pid %d imported the planted cli package\\n" % os.getpid())
            """
        )
    )
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    env = {**vdir.env(CVAULT_AGENT_SOCK=str(run / "agent.sock"))}
    env.pop("PYTHONPATH", None)  # the installed console script, as a user runs it
    cvault = str(Path(sys.executable).parent / "cvault")
    try:
        started = subprocess.run(
            [cvault, "agent", "start"], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
        )
        assert started.returncode == 0, started.stderr
    finally:
        subprocess.run([cvault, "agent", "stop"], env=env, cwd=tmp_path, capture_output=True, timeout=60)
    stolen = proof.read_text() if proof.exists() else ""
    assert not stolen, f"the agent daemon ran code planted in the current directory: {stolen[:120]}"
    assert real_vault  # (the shim could plant vault/ the same way)


def test_the_clipboard_clearer_never_imports_code_from_the_current_directory(tmp_path):
    """``secret get --copy``'s clearer (a detached Python child) imports json, hashlib,
    subprocess and time: a ``json.py`` where the command was typed ran as the user."""
    vdir = make_vault(tmp_path / "v")
    proof = tmp_path / "planted-ran.txt"
    cwd = tmp_path / "downloads"
    cwd.mkdir()
    for name in ("json", "hashlib", "subprocess", "time"):
        (cwd / f"{name}.py").write_text(f"open({str(proof)!r}, 'a').write('planted {name}.py ran\\n')\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    clip = tmp_path / "clipboard"
    xclip = bin_dir / "xclip"  # keeps the clipboard in a file (as tests/cli/test_cli_core.py)
    xclip.write_text(f'#!/bin/sh\nif [ "$3" = "-o" ]; then cat {clip}; else cat > {clip}; fi\n')
    xclip.chmod(0o755)
    assert vdir.cli("client", "add", "acme", "--sla-end", "+30d").returncode == 0
    put = vdir.cli("secret", "put", "acme", "x", "--type", "access", "--from-stdin", input="clip-secret\n")
    assert put.returncode == 0, put.stderr
    env = vdir.env(PATH=f"{bin_dir}:{os.environ['PATH']}", CVAULT_CLIPBOARD_CLEAR_SECONDS="0", DISPLAY=":99")
    env.pop("WAYLAND_DISPLAY", None)
    env.pop("PYTHONPATH", None)  # the installed console script, as a user runs it
    cvault = str(Path(sys.executable).parent / "cvault")
    got = subprocess.run(
        [cvault, "secret", "get", "acme", "x", "--copy"], env=env, cwd=cwd, capture_output=True, timeout=60
    )
    assert got.returncode == 0, got.stderr
    import time

    for _ in range(200):  # the detached clearer runs after 0 s here
        if clip.read_text() == "" or proof.exists():
            break
        time.sleep(0.05)
    assert not proof.exists(), (
        f"the clipboard clearer ran code planted in the current directory: {proof.read_text()}"
    )
    assert clip.read_text() == ""
