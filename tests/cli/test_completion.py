"""``cvault completion bash|zsh|fish`` (issue 16 item 7): commands, client names and record paths
for the logged-in user, from a short-lived 0600 cache that holds no value; logout deletes it."""

from __future__ import annotations

import json
import stat

import pytest

from tests.factories import assign


def _complete(vd, env, words: str, cache_dir):
    """What bash completion offers for ``cvault WORDS`` (the last word being completed)."""
    parts = words.split(" ")
    env = {
        **env,
        "_CVAULT_COMPLETE": "bash_complete",
        "COMP_WORDS": "cvault " + words,
        "COMP_CWORD": str(len(parts)),
        "XDG_CACHE_HOME": str(cache_dir),
    }
    proc = vd.cli(*[], env=env)
    assert proc.returncode == 0, proc.stderr
    items = [line.split(",", 1) for line in proc.stdout.splitlines() if "," in line]  # "type,value"
    return [value for kind, value in items if kind == "plain"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_script_for_each_shell(vdir, shell):
    proc = vdir.cli("completion", shell)
    assert proc.returncode == 0 and "_CVAULT_COMPLETE" in proc.stdout


def test_commands_clients_and_paths_complete_from_a_private_cache(staff, tmp_path):
    from tests.helpers import cli_login

    vd = staff.vdir
    v = vd.open()
    amy = staff.amy.principal(v)
    for name in ("acorn", "acumen"):
        v.clients.add(amy, name, sla_end=v.ctx.now().replace(year=v.ctx.now().year + 1))
    assign(v, staff.bob, "acorn")  # acme: assigned already; acumen: not
    bob = staff.bob.principal(v)
    v.secrets.put(bob, "acme", "office/firewall", "access", {"password": "cache-secret-value", "host": "h"})
    v.secrets.put(bob, "acme", "office/wifi", "network", {"wifi_key": "wifi-key-long"})
    v.secrets.put(bob, "acorn", "dc/server", "note", {"text": "t"})
    v.close()
    proc, env = cli_login(vd, staff.bob, tmp_path)
    assert proc.returncode == 0, proc.stderr
    cache = tmp_path / "cache"
    assert "secret" in _complete(vd, env, "sec", cache)
    assert _complete(vd, env, "secret get ac", cache) == ["acme", "acorn"]  # not globex: no need-to-know
    assert _complete(vd, env, "secret get acme office/", cache) == ["office/firewall", "office/wifi"]
    assert _complete(vd, env, "secret history acorn ", cache) == ["dc/server"]
    files = list((cache / "cvault").iterdir())
    assert len(files) == 1 and stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((cache / "cvault").stat().st_mode) == 0o700
    text = files[0].read_text()
    assert "cache-secret-value" not in text and json.loads(text)["user"] == "bob"
    # the cache answers (no new audited listing) until its TTL passes
    v = vd.open()
    before = v.ctx.db.scalar("SELECT count(*) FROM audit_events WHERE action = 'secret.list'")
    v.close()
    _complete(vd, env, "secret get acme ", cache)
    v = vd.open()
    assert v.ctx.db.scalar("SELECT count(*) FROM audit_events WHERE action = 'secret.list'") == before
    v.close()
    assert _complete(vd, {**env, "CVAULT_COMPLETION_TTL": "0"}, "secret get acme ", cache)  # refreshed
    # logout deletes it; without a session nothing completes (and nothing is written)
    assert vd.cli("logout", env={**env, "XDG_CACHE_HOME": str(cache)}).returncode == 0
    assert not files[0].exists()
    assert _complete(vd, env, "secret get ac", cache) == []
    assert not files[0].exists()
