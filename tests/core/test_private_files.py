"""Review R8: ``write_private_file`` (session token, completion cache, self-signed TLS key, SLA
certificate file) must not follow anything planted in its folder, and the session token is never
written into a folder another user may write."""

from __future__ import annotations

import json
import os
import stat

import pytest

from cli import session_file
from vault.errors import InsecurePermissions
from vault.home import write_private_file


def _shared(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    loot = shared / "attacker-owned.txt"
    loot.write_text("")
    os.chmod(loot, 0o666)
    return shared, loot


def test_a_symlink_planted_at_the_old_temporary_name_receives_nothing(tmp_path):
    shared, loot = _shared(tmp_path)
    target = shared / "session.json"
    # the replayed attack: the name the previous build used (.NAME.tmp-PID), plus a few guesses
    for name in (f".{target.name}.tmp-{os.getpid()}", f".{target.name}.tmp", f"{target.name}.tmp"):
        os.symlink(loot, shared / name)
    write_private_file(target, b'{"token": "cvs1_the-victims-session-token"}')
    assert loot.read_text() == ""
    assert not target.is_symlink()
    assert stat.S_IMODE(os.lstat(target).st_mode) == 0o600
    assert target.read_bytes() == b'{"token": "cvs1_the-victims-session-token"}'
    leftovers = {p.name for p in shared.iterdir()} - {"attacker-owned.txt", "session.json"}
    assert all((shared / n).is_symlink() for n in leftovers)  # only the planted links, no temporary left


def test_replacing_a_file_keeps_it_private(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir(mode=0o700)
    target = folder / "cache.json"
    target.write_text("old")
    os.chmod(target, 0o644)
    write_private_file(target, b"new")
    assert target.read_bytes() == b"new" and stat.S_IMODE(os.lstat(target).st_mode) == 0o600


def test_the_session_token_is_not_written_in_a_folder_others_may_write(tmp_path, monkeypatch):
    shared, _ = _shared(tmp_path)
    monkeypatch.setenv("CVAULT_SESSION_FILE", str(shared / "session.json"))
    with pytest.raises(InsecurePermissions, match="not owned by this user or others may write it"):
        session_file.save_token("v1", "eve", "cvs1_the-victims-session-token", "2030-01-01T00:00:00Z")
    assert not (shared / "session.json").exists()
    assert all("cvs1_" not in p.read_text() for p in shared.iterdir() if p.is_file())


def test_the_session_token_is_written_in_a_private_folder(tmp_path, monkeypatch):
    folder = tmp_path / "cfg"
    monkeypatch.setenv("CVAULT_SESSION_FILE", str(folder / "session.json"))
    path = session_file.save_token("v1", "eve", "cvs1_token", "2030-01-01T00:00:00Z")
    assert stat.S_IMODE(os.lstat(folder).st_mode) == 0o700
    assert json.loads(path.read_text())["token"] == "cvs1_token"
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
