"""Issue 12 attack 6: ``meta.audit_public_key`` replaced by someone who can write vault.db.

The key reviewers get is derived from the sealed private key when the vault is unsealed (CLI and
``/v1/audit/public-key``); a sealed ``audit pubkey`` says it is unverified and exits 8 unless
``--unverified``; an export re-signed with the attacker's key does not verify against the real
key, and ``--file`` without ``--pubkey`` is refused unless ``--trust-embedded-key``.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3

import pytest

from tests.factories import person
from tests.helpers import ROOT, run_cli, sealed_or_unsealed_env
from vault import crypto
from vault.audit.signing import fingerprint
from vault.audit.verify import Trailer, sha256_hex

pytestmark = pytest.mark.slow


@pytest.fixture
def world(vdir, tmp_path):
    v = vdir.open()
    rita = person(v, "rita", "security_reviewer")
    session = rita.session_file(tmp_path, vault=v)
    real = bytes(v.ctx.db.one("SELECT value FROM meta WHERE key = 'audit_public_key'")[0])
    v.close()
    attacker_private, attacker_public = crypto.ed25519_generate()

    def cli(*args: str, sealed: bool = False, who: bool = True):
        env = sealed_or_unsealed_env(vdir, tmp_path, session if who else None, sealed=sealed)
        return run_cli(*args, env=env)

    return vdir, cli, real, (attacker_private, attacker_public), rita


def _text(key: bytes) -> str:
    return "ed25519:" + base64.b64encode(key).decode()


def swap_key(vdir, public: bytes) -> None:
    conn = sqlite3.connect(vdir.home / "vault.db", isolation_level=None)
    try:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'audit_public_key'", (public,))
    finally:
        conn.close()


def resign(lines: list[str], private: bytes, public: bytes) -> list[str]:
    """The attacker's export: every checkpoint and the trailer re-signed, their key in the header."""
    from vault.audit.checkpoints import Checkpoint

    out = []
    header = json.loads(lines[0])
    header["public_key"] = _text(public)
    header["public_key_fingerprint"] = fingerprint(public)
    header_line = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    out.append(header_line)
    for line in lines[1:-1]:
        item = json.loads(line)
        if item["type"] == "checkpoint":
            cp = Checkpoint.from_dict(item)
            cp = cp._replace(signature=crypto.ed25519_sign(private, cp.signing_input()))
            line = cp.to_json()
        out.append(line)
    t = json.loads(lines[-1])
    trailer = Trailer(
        bytes.fromhex(t["vault_id"]),
        t["head_seq"],
        t["entries"],
        sha256_hex(header_line),
        t["details_sha256"],
    )
    out.append(
        json.dumps(
            trailer.signed(crypto.ed25519_sign(private, trailer.signing_input())),
            sort_keys=True,
            separators=(",", ":"),
        )
    )
    return out


def test_a_swapped_key_is_not_what_reviewers_get(world, tmp_path):
    vdir, cli, real, (attacker_private, attacker_public), _ = world
    init_fingerprint = fingerprint(real)
    export = tmp_path / "audit.jsonl"
    assert cli("audit", "export", "--format", "jsonl", "--out", str(export)).returncode == 0
    header = json.loads(export.read_text().splitlines()[0])
    assert header["public_key_fingerprint"] == init_fingerprint
    swap_key(vdir, attacker_public)

    # unsealed: the key derived from the sealed private key, and a warning about the clear copy
    pub = cli("audit", "pubkey", "--json")
    assert pub.returncode == 0, pub.stderr
    data = json.loads(pub.stdout)
    assert data["public_key"] == _text(real) and data["fingerprint"] == init_fingerprint
    assert data["verified"] is True and data["stored_key_matches"] is False
    human = cli("audit", "pubkey")
    assert human.stdout.strip() == _text(real) and "replaced" in human.stderr

    # sealed: unverified, exit 8, one line; --unverified prints the (swapped) clear copy
    sealed = cli("audit", "pubkey", sealed=True, who=False)
    assert sealed.returncode == 8 and len(sealed.stderr.strip().splitlines()) == 1
    assert "unverified" in sealed.stderr and sealed.stdout == ""
    loose = cli("audit", "pubkey", "--unverified", "--json", sealed=True, who=False)
    assert loose.returncode == 0 and json.loads(loose.stdout)["verified"] is False

    # doctor and audit verify fail on the replaced key
    assert cli("doctor", who=False).returncode == 6
    verify = cli("audit", "verify")
    assert verify.returncode == 6 and "stored audit public key" in verify.stderr

    # an export re-signed with the attacker's key verifies only against that key
    forged = tmp_path / "forged.jsonl"
    forged.write_text(
        "\n".join(resign(export.read_text().splitlines(), attacker_private, attacker_public)) + "\n"
    )
    nowhere = str(tmp_path / "nowhere")
    against_real = run_cli(
        "--home",
        nowhere,
        "audit",
        "verify",
        "--file",
        str(forged),
        "--pubkey",
        _text(real),
        env={"PYTHONPATH": str(ROOT)},
    )
    assert against_real.returncode == 6, against_real.stderr
    no_key = run_cli(
        "--home", nowhere, "audit", "verify", "--file", str(forged), env={"PYTHONPATH": str(ROOT)}
    )
    assert no_key.returncode == 2 and "--trust-embedded-key" in no_key.stderr
    embedded = run_cli(
        "--home",
        nowhere,
        "audit",
        "verify",
        "--file",
        str(forged),
        "--trust-embedded-key",
        env={"PYTHONPATH": str(ROOT)},
    )
    # it "verifies" with its own key, and says which: not the fingerprint noted at init
    assert embedded.returncode == 0
    assert fingerprint(attacker_public) in embedded.stderr and init_fingerprint not in embedded.stderr
    genuine = run_cli(
        "--home",
        nowhere,
        "audit",
        "verify",
        "--file",
        str(export),
        "--pubkey",
        _text(real),
        env={"PYTHONPATH": str(ROOT)},
    )
    assert genuine.returncode == 0, genuine.stderr


def test_the_service_gives_the_derived_key(world, tmp_path):
    from tests.server.harness import start_service

    vdir, _, real, (_, attacker_public), _ = world
    swap_key(vdir, attacker_public)
    service = start_service(vdir, tmp_path / "service")
    try:
        status, body = service.client().request("POST", "/v1/audit/public-key")
        assert status == 200, body
        assert body["public_key"] == _text(real) and body["verified"] is True
        assert body["stored_key_matches"] is False and body["fingerprint"] == fingerprint(real)
    finally:
        service.stop()


def test_init_prints_the_fingerprint(tmp_path):
    home, key = tmp_path / "v", tmp_path / "key"
    env = {"PYTHONPATH": str(ROOT), "HOME": str(tmp_path), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    done = run_cli("--home", str(home), "--json", "init", "--key-file", str(key), env=env)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)["audit_key_fingerprint"]
    env.update(CVAULT_HOME=str(home), CVAULT_KEY_FILE=str(key))
    pub = json.loads(run_cli("audit", "pubkey", "--json", env=env).stdout)
    assert printed == pub["fingerprint"] and printed.startswith("SHA256:")
