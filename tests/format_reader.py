"""An independent reader of a cvault vault, written from docs/format.md alone.

It imports nothing of cvault (``vault``, ``cli``): only ``cryptography`` (AES-GCM, HKDF, HMAC,
Argon2id), ``hashlib``, ``sqlite3``, ``unicodedata`` and general standard-library modules (json,
base64, argparse). ``tests/test_format_independent.py`` runs it in a subprocess on a vault the
CLI made and compares what it decrypts with ``cvault secret get --json`` and ``cvault audit log
--json``. Each step names the docs/format.md section it follows; when this reader and cvault
disagree, one of them does not follow that document.

    python tests/format_reader.py --home DIR --custody-file FILE (--key-file F | --passphrase-file F)

prints ``{"records": [{"client", "path", "kind", "version", "fields"}...], "audit": [{"seq",
"detail"}...], "row_macs": N}`` (N: the rows whose section-8 MAC it checked).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sqlite3
import sys
import unicodedata
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# --- section 1: encodings ----------------------------------------------------------------------


def lp(field: bytes | str | int) -> bytes:
    if isinstance(field, int):
        return (8).to_bytes(4, "big") + field.to_bytes(8, "big")
    if isinstance(field, str):
        field = field.encode("utf-8")
    return len(field).to_bytes(4, "big") + field


def aad(label: str, *fields: bytes | str | int) -> bytes:
    return b"cvault/v1/" + label.encode("ascii") + b"".join(lp(f) for f in fields)


def hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    mac = crypto_hmac.HMAC(key, hashes.SHA256())
    mac.update(message)
    return mac.finalize()


def unseal(key: bytes, sealed: bytes, associated: bytes) -> bytes:
    """``seal(K, P, A) = N || AES-256-GCM(K, N, P, A)``; raises cryptography's InvalidTag."""
    sealed = bytes(sealed)
    return AESGCM(key).decrypt(sealed[:12], sealed[12:], associated)


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- section 2.1: the root key from an unseal slot -----------------------------------------------


def slot_inputs(kind: str, secret: bytes | str, kdf_params: dict | None) -> list[bytes]:
    if kind != "passphrase":
        return [secret]  # type: ignore[list-item]
    assert isinstance(secret, str)
    nfc = unicodedata.normalize("NFC", secret).encode("utf-8")
    if (kdf_params or {}).get("normalize") == "NFC":
        return [nfc]
    # a slot from before normalisation: the typed bytes, then NFC, then NFD
    out: list[bytes] = []
    for candidate in (secret.encode("utf-8"), nfc, unicodedata.normalize("NFD", secret).encode("utf-8")):
        if candidate not in out:
            out.append(candidate)
    return out


def slot_kek(kind: str, secret: bytes, salt: bytes, kdf_params: dict | None) -> bytes:
    if kind == "passphrase":
        assert kdf_params is not None and kdf_params["memory_kib"] >= 65536
        return Argon2id(
            salt=salt,
            length=32,
            iterations=kdf_params["iterations"],
            lanes=kdf_params["lanes"],
            memory_cost=kdf_params["memory_kib"],
        ).derive(secret)
    return hkdf(secret, salt, b"cvault/v1/slot/" + kind.encode("ascii"))


def root_key(db: sqlite3.Connection, vault_id: bytes, kind: str, secret: bytes | str) -> bytes:
    rows = db.execute(
        "SELECT id, kdf_params, salt, wrapped_root FROM unseal_slots WHERE kind = ? ORDER BY id", (kind,)
    ).fetchall()
    for slot_id, params, salt, wrapped in rows:
        kdf_params = json.loads(params) if params else None
        for candidate in slot_inputs(kind, secret, kdf_params):
            kek = slot_kek(kind, candidate, bytes(salt), kdf_params)
            try:
                return unseal(kek, wrapped, aad("slot", vault_id, slot_id, kind))
            except InvalidTag:  # the tag did not verify: try the next one
                continue
    raise SystemExit("no unseal slot opened")


def key_file_secret(text: str) -> bytes:
    text = text.strip()
    prefix = "cvault-keyfile-v1:"
    assert text.startswith(prefix), "not a key file"
    secret = b64url_decode(text[len(prefix) :])
    assert len(secret) == 32
    return secret


# --- section 2.3: custody ------------------------------------------------------------------------


def read_custody_file(path: Path, vault_id: bytes) -> dict[tuple[str, int], bytes]:
    data = path.read_bytes()
    body, _, end = data.rstrip(b"\n").rpartition(b"\n")
    body += b"\n"
    assert end.startswith(b"end ") and end[4:].decode("ascii") == hashlib.sha256(body).hexdigest(), (
        "torn file"
    )
    lines = body.decode("ascii").splitlines()
    assert lines[0] == "cvault-custody-v1" and lines[1] == "vault " + vault_id.hex()
    assert lines[2].startswith("generation ")
    secrets = {}
    for line in lines[3:]:
        parts = line.split(" ")
        if parts[0] == "k":
            secrets[(parts[1], int(parts[2]))] = b64url_decode(parts[3])
        else:
            assert parts[0] == "x", line
    return secrets


def custody_wrap_key(
    k_client_key_wrap: bytes, secret: bytes, vault_id: bytes, client_id: str, n: int
) -> bytes:
    return hkdf(
        k_client_key_wrap + secret, vault_id, b"cvault/v1/client-key-wrap/custody" + lp(client_id) + lp(n)
    )


# --- section 3: the record blob ------------------------------------------------------------------


def open_blob(
    data: bytes, dek: bytes, vault_id: bytes, client_id: str, record_id: int, version: int, kind: str
):
    assert len(data) >= 78  # step 1
    assert data[0:4] == b"CVLT" and data[4] == 1 and data[5] == 1  # step 2
    header = data[:62]
    assert header[6:22] == vault_id and header[22:38] == bytes.fromhex(client_id)  # step 3
    assert (
        int.from_bytes(header[38:46], "big") == record_id and int.from_bytes(header[46:50], "big") == version
    )
    document = json.loads(AESGCM(dek).decrypt(header[50:62], data[62:], header))  # step 5
    assert isinstance(document, dict) and document["kind"] == kind  # step 6
    assert isinstance(document["fields"], dict)
    return document["fields"]


# --- section 8: row MACs -------------------------------------------------------------------------

ROW_MAC_COLUMNS = {
    "meta": "key, value",
    "users": "id, name, disabled, locked_until, training_valid_until, password_hash IS NULL",
    "user_roles": "user_id, role, granted_at, granted_by",
    "sessions": "token_hash, user_id, created_at, last_seen, stepup_at, ended_at, token_mac",
    "assignments": "id, client_id, user_id, created_at, created_by, ends_at, ended_at",
    "clients": "id, name, sla_end, grace_days, current_key_version, shred_state",
    "records": "id, client_id, path_tag, current_version",
    "record_versions": "record_id, version, wrapped_dek IS NULL, blob_name, size, created_at, created_by,"
    " pack_offset",
    "teams": "id, name, removed_at",
    "team_members": "id, team_id, user_id, added_at, removed_at",
    "team_assignments": "id, client_id, team_id, created_at, created_by, ends_at, ended_at",
    "shred_requests": "id, client_id, requested_by, requested_at, reason, approved_by, approved_at,"
    " orig_sla_end, orig_grace_days, cancelled_by, cancelled_at, cancel_reason, executed_at",
    "setting_requests": "id, name, value, requested_by, requested_at, approved_by, approved_at, cancelled_at",
    "account_requests": "id, user_id, kind, requested_by, requested_at, approved_by, approved_at, mode,"
    " confirmed_by, confirmed_at",
    "integrations": "id, name, secret_sealed, created_at, created_by, disabled_at",  # coverage 2
    "shred_jobs": "client_id, step, trigger, request_id, performed_by, sla_end, grace_days, manifest,"
    " result",  # coverage 3
    # coverage 4
    "custodians": "id, kind, config, created_at, retired_at",
    "client_custody": "client_id, version, custodian_id, state, fingerprint, key_id, wrapped,"
    " destroyed_at, receipt",
    "custody_jobs": "client_id, reason, from_version, to_version, rotate_client_key, step",
    "import_origins": "record_id, version, source",  # coverage 6
}


def row_mac_message(table: str, values) -> bytes:
    if table == "record_versions" and values[-1] is None:  # section 8: a NULL pack_offset is left out
        values = values[:-1]
    out = b"cvault/v1/row-mac" + len(table).to_bytes(4, "big") + table.encode("ascii")
    for v in values:
        if v is None:
            out += b"\x00"
        elif isinstance(v, int):
            out += b"\x01" + v.to_bytes(8, "big", signed=True)
        elif isinstance(v, str):
            data = v.encode("utf-8")
            out += b"\x02" + len(data).to_bytes(4, "big") + data
        else:
            data = bytes(v)
            out += b"\x03" + len(data).to_bytes(4, "big") + data
    return out


def check_row_macs(db: sqlite3.Connection, root: bytes, vault_id: bytes) -> int:
    """Every row of section 8's tables carries the MAC of its covered columns; returns how many."""
    k_row = hkdf(root, vault_id, b"cvault/v1/row-mac")
    checked = 0
    for table, columns in ROW_MAC_COLUMNS.items():
        where = (
            " WHERE key IN ('settings', 'single_operator', 'row_macs', 'remote.onedrive', 'custody_format',"
            " 'custody_migrated_at')"
            if table == "meta"
            else ""
        )
        for row in db.execute(f"SELECT {columns}, mac FROM {table}{where}"):
            assert hmac_sha256(k_row, row_mac_message(table, row[:-1])) == row[-1], (table, row[0])
            checked += 1
    return checked


# --- section 5: reading a vault, step by step ----------------------------------------------------


def read_vault(home: Path, custody_file: Path, kind: str, secret: bytes | str) -> dict:
    db = sqlite3.connect(f"file:{home / 'vault.db'}?mode=ro", uri=True)  # step 1
    vault_id = bytes(db.execute("SELECT value FROM meta WHERE key = 'vault_id'").fetchone()[0])
    root = root_key(db, vault_id, kind, secret)  # step 2
    row_macs = check_row_macs(db, root, vault_id)  # section 8
    k_ckw = hkdf(root, vault_id, b"cvault/v1/client-key-wrap")  # step 3
    custody = read_custody_file(custody_file, vault_id)  # step 4
    records, audit_keys = [], {}
    for client_id, name, current_key_version in db.execute(
        "SELECT id, name, current_key_version FROM clients WHERE shred_state IS NULL ORDER BY name"
    ).fetchall():
        (n,) = db.execute(
            "SELECT version FROM client_custody WHERE client_id = ? AND state = 'current'", (client_id,)
        ).fetchone()
        k_wrap = custody_wrap_key(k_ckw, custody[(client_id, n)], vault_id, client_id, n)
        client_keys = {  # step 5
            v: unseal(k_wrap, wrapped, aad("client-key", vault_id, client_id, v))
            for v, wrapped in db.execute(
                "SELECT version, wrapped FROM client_keys WHERE client_id = ?", (client_id,)
            )
        }
        row = db.execute("SELECT wrapped FROM client_audit_keys WHERE client_id = ?", (client_id,)).fetchone()
        if row is not None:
            audit_keys[client_id] = unseal(k_wrap, row[0], aad("client-audit-key", vault_id, client_id))
        ck = client_keys[current_key_version]
        tag_key = hkdf(ck, vault_id, b"cvault/v1/name-tag")
        for record_id, path_tag, meta_sealed, current in db.execute(  # step 6
            "SELECT id, path_tag, meta_sealed, current_version FROM records WHERE client_id = ? ORDER BY id",
            (client_id,),
        ).fetchall():
            meta = json.loads(
                unseal(
                    ck, meta_sealed, aad("record-meta", vault_id, client_id, record_id, current_key_version)
                )
            )
            assert hmac_sha256(tag_key, meta["path"].encode("utf-8")) == bytes(path_tag)
            key_version, wrapped_dek, blob_name, pack_offset, size = db.execute(
                "SELECT key_version, wrapped_dek, blob_name, pack_offset, size FROM record_versions"
                " WHERE record_id = ? AND version = ?",
                (record_id, current),
            ).fetchone()
            if wrapped_dek is None:
                continue  # a delete marker
            dek = unseal(
                client_keys[key_version],
                wrapped_dek,
                aad("record-key", vault_id, client_id, record_id, current, key_version),
            )
            data = (home / "blobs" / blob_name[:2] / blob_name).read_bytes()
            if pack_offset is not None:  # section 9: a packed version, a record blob inside a pack
                assert data[0:4] == b"CVPK" and data[4] == 1
                assert data[5:21] == vault_id and data[21:37] == bytes.fromhex(client_id)
                data = data[pack_offset : pack_offset + size]
                assert len(data) == size
            fields = open_blob(data, dek, vault_id, client_id, record_id, current, meta["kind"])
            records.append(
                {
                    "client": name,
                    "path": meta["path"],
                    "kind": meta["kind"],
                    "version": current,
                    "fields": fields,
                }
            )
    audit = []
    for seq, detail_sealed, detail_key in db.execute(  # step 7
        "SELECT seq, detail_sealed, detail_key FROM audit_events WHERE detail_sealed IS NOT NULL ORDER BY seq"
    ):
        client_id = detail_key.removeprefix("audit:")
        if detail_key.startswith("audit:") and client_id in audit_keys:
            detail = unseal(audit_keys[client_id], detail_sealed, aad("audit-detail", vault_id, client_id))
            audit.append({"seq": seq, "detail": detail.decode("utf-8")})
    db.close()
    return {"records": records, "audit": audit, "row_macs": row_macs}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--custody-file", type=Path, required=True)
    unseal_with = parser.add_mutually_exclusive_group(required=True)
    unseal_with.add_argument("--key-file", type=Path)
    unseal_with.add_argument("--passphrase-file", type=Path)
    args = parser.parse_args(argv)
    if args.key_file:
        kind, secret = "keyfile", key_file_secret(args.key_file.read_text())
    else:
        kind, secret = "passphrase", args.passphrase_file.read_text(encoding="utf-8").splitlines()[0]
    result = read_vault(args.home, args.custody_file, kind, secret)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in {"vault", "cli", "tests"})
    assert not loaded, f"the independent reader imported cvault: {loaded}"
    json.dump(result, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
