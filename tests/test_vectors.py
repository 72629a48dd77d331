"""The checked-in format vectors (docs/format.md section 6): the file is what
tests/vectors/generate.py builds, cvault's code re-derives or opens every construction in it, and
every invalid blob fails at the step docs/format.md names."""

import base64
import json
from pathlib import Path

import pytest

from tests.vectors import generate
from vault import blob, crypto, keys
from vault.backup import container
from vault.custody import local as local_custody
from vault.errors import CryptoError, IntegrityFailure, VaultSealed
from vault.identity import codes
from vault.identity.sessions import token_hash

FILE = Path(__file__).parent / "vectors" / "format_v1.json"
VECTORS = json.loads(FILE.read_text(encoding="utf-8"))
IN = VECTORS["inputs"]
VAULT_ID = bytes.fromhex(IN["vault_id"])
CID = IN["client_id_hex"]


def _ring() -> keys.Keyring:
    ring = keys.Keyring(VAULT_ID)
    ring.load_root(bytes.fromhex(IN["root_key"]))
    return ring


def _custody() -> tuple[int, bytes]:
    return IN["custody_version"], bytes.fromhex(IN["custody_secret"])


def _client_keys() -> keys.ClientKeys:
    return keys.ClientKeys(_ring(), CID, IN["key_version"], bytes.fromhex(IN["client_key"]))


def test_the_file_is_what_generate_builds():
    """A change of construction that is not also a change of the vectors fails here."""
    assert generate.build() == VECTORS


def _expect(e):
    return dict(
        vault_id=bytes.fromhex(e["vault_id"]),
        client_id=bytes.fromhex(e["client_id"]),
        record_id=e["record_id"],
        record_version=e["record_version"],
    )


def _open_blob(vec) -> dict:
    """Steps 1-3 and 5-6 of docs/format.md section 3 (step 4, the DEK unwrap, has its own vector)."""
    dek = bytes.fromhex(vec.get("dek", VECTORS["blob"]["valid"][0]["dek"]))
    plaintext = blob.decrypt_record(bytes.fromhex(vec["blob"]), dek, **_expect(vec["expect"]))
    return blob.open_document(plaintext, vec["expect"]["kind"])


@pytest.mark.parametrize("vec", VECTORS["blob"]["valid"], ids=lambda v: v["name"])
def test_valid_blob_vectors_generate_and_open(vec):
    dek, nonce = bytes.fromhex(vec["dek"]), bytes.fromhex(vec["nonce"])
    made = blob.encrypt_record(dek, vec["document"].encode(), nonce=nonce, **_expect(vec["expect"]))
    assert made.hex() == vec["blob"]
    assert _open_blob(vec) == json.loads(vec["document"])["fields"]


@pytest.mark.parametrize("vec", VECTORS["blob"]["invalid"], ids=lambda v: v["name"])
def test_invalid_blob_vectors_fail_at_their_step_with_the_one_error(vec):
    data, expect = bytes.fromhex(vec["blob"]), vec["expect"]
    step = vec["fails_at"]
    if step == 1:
        assert len(data) < blob.HEADER_LEN + crypto.TAG_LEN
    if step >= 3:  # the header parses: magic, version and type are right
        blob.parse_header(data)
    if step == 6:  # decrypts, but is not this record's document
        dek = bytes.fromhex(vec["dek"])
        blob.decrypt_record(data, dek, **_expect(expect))
    with pytest.raises(CryptoError):
        _open_blob(vec)


def test_no_vector_called_valid_fails_any_step():
    assert all("fails_at" not in v for v in VECTORS["blob"]["valid"])
    assert {v["fails_at"] for v in VECTORS["blob"]["invalid"]} == {1, 2, 3, 5, 6}


def test_header_layout_matches_the_spec_table():
    vec = VECTORS["blob"]["valid"][0]
    data = bytes.fromhex(vec["blob"])
    assert data[0:4] == b"CVLT" and data[4] == 1 and data[5] == 1
    assert data[6:22].hex() == vec["expect"]["vault_id"]
    assert data[22:38].hex() == vec["expect"]["client_id"]
    assert int.from_bytes(data[38:46], "big") == 7
    assert int.from_bytes(data[46:50], "big") == 3
    assert data[50:62].hex() == vec["nonce"]
    assert len(data) == 62 + len(vec["document"]) + crypto.TAG_LEN


@pytest.mark.parametrize("vec", VECTORS["slots"], ids=lambda v: v["kind"])
def test_slot_vectors_open_with_the_unseal_secret(vec):
    kind, salt = vec["kind"], bytes.fromhex(vec["salt"])
    if kind == "passphrase":
        secret = vec["typed"].encode("utf-8")  # as typed: NFD here; the slot takes NFC
        assert keys.passphrase_bytes(vec["typed"]).hex() == vec["kdf_input"] != vec["typed_utf8"]
    elif kind == "keyfile":
        secret = keys.parse_key_file_text(vec["file_text"])
    else:
        secret = keys.parse_recovery_key(vec["recovery_key"])
    if kind != "passphrase":
        assert secret.hex() == vec["kdf_input"]
    assert keys.slot_kek(kind, bytes.fromhex(vec["kdf_input"]), salt, vec["kdf_params"]).hex() == vec["kek"]
    assert keys.slot_aad(VAULT_ID, vec["slot_id"], kind).hex() == vec["aad"]
    root = keys.open_slot(
        kind,
        secret,
        salt=salt,
        kdf_params=vec["kdf_params"],
        wrapped=bytes.fromhex(vec["sealed"]),
        vault_id=VAULT_ID,
        slot_id=vec["slot_id"],
    )
    assert root.hex() == IN["root_key"]
    with pytest.raises(CryptoError):  # the slot id is bound
        keys.unwrap_root(
            bytes.fromhex(vec["sealed"]), bytes.fromhex(vec["kek"]), VAULT_ID, vec["slot_id"] + 1, kind
        )


def test_purpose_key_vectors():
    ring = _ring()
    assert set(VECTORS["purpose_keys"]) == keys.PURPOSES
    for purpose, key in VECTORS["purpose_keys"].items():
        assert ring.purpose_key(purpose).hex() == key
        assert (
            crypto.hkdf_sha256(ring.root(), salt=VAULT_ID, info=b"cvault/v1/" + purpose.encode()).hex() == key
        )


def test_aad_encoding_vectors():
    ring = _ring()
    first, second = VECTORS["aad_encoding"]
    assert keys.slot_aad(VAULT_ID, 2, "passphrase").hex() == first["aad"]
    assert ring.client_key_aad(CID, 1).hex() == second["aad"]
    # vault_id raw (16 bytes), client_id as its 32 hex characters, integers as u64
    assert bytes.fromhex(second["aad"]) == (
        b"cvault/v1/client-key"
        + (16).to_bytes(4, "big")
        + VAULT_ID
        + (32).to_bytes(4, "big")
        + CID.encode("ascii")
        + (8).to_bytes(4, "big")
        + (1).to_bytes(8, "big")
    )


def test_custody_wrap_vector():
    v = VECTORS["custody_wrap"]
    ring = _ring()
    n, secret = _custody()
    assert ring.purpose_key(keys.PURPOSE_CLIENT_KEY_WRAP).hex() == v["client_key_wrap_purpose_key"]
    assert ring.custody_wrap_key(CID, n, secret).hex() == v["k_wrap"]
    assert (
        crypto.hkdf_sha256(bytes.fromhex(v["ikm"]), salt=VAULT_ID, info=bytes.fromhex(v["info"])).hex()
        == v["k_wrap"]
    )
    assert crypto.key_fingerprint(secret) == v["fingerprint"]


def test_client_key_and_audit_key_wrap_vectors():
    ring = _ring()
    v = VECTORS["client_key_wrap"]
    assert ring.client_key_aad(CID, v["key_version"]).hex() == v["aad"]
    key = ring.unwrap_client_key(bytes.fromhex(v["sealed"]), CID, v["key_version"], "x", custody=_custody())
    assert key.hex() == v["client_key"] and crypto.key_fingerprint(key) == v["fingerprint"]
    n, secret = _custody()
    with pytest.raises(IntegrityFailure):  # another custody version opens nothing
        ring.unwrap_client_key(
            bytes.fromhex(v["sealed"]), CID, v["key_version"], "x", custody=(n + 1, secret)
        )
    with pytest.raises(VaultSealed):  # and there is no fallback to the root key alone
        ring.unwrap_client_key(bytes.fromhex(v["sealed"]), CID, v["key_version"], "x")
    a = VECTORS["client_audit_key_wrap"]
    assert ring.client_audit_key_aad(CID).hex() == a["aad"]
    assert (
        ring.unwrap_client_audit_key(bytes.fromhex(a["sealed"]), CID, custody=_custody()).hex()
        == a["audit_detail_key"]
    )


def test_legacy_client_key_wrap_vector():
    """The pre-custody construction (format 1 before custody): kept only to migrate old vaults."""
    v = VECTORS["client_key_wrap_legacy"]
    ring = _ring()
    ring.legacy_client_wrap = True
    assert ring.purpose_key(keys.PURPOSE_CLIENT_KEY_WRAP).hex() == v["purpose_key"]
    key = ring.unwrap_client_key(bytes.fromhex(v["wrapped"]), v["client_id"], v["key_version"], "x")
    assert key.hex() == v["client_key"]
    with pytest.raises(IntegrityFailure):
        ring.unwrap_client_key(bytes.fromhex(v["wrapped"]), v["client_id"], 2, "x")
    with pytest.raises(IntegrityFailure):
        ring.unwrap_client_key(bytes.fromhex(v["wrapped"]), "00" * 16, 1, "x")


def test_record_key_meta_tag_and_blob_name_vectors():
    ck, ring = _client_keys(), _ring()
    r = VECTORS["record_key_wrap"]
    assert ck._dek_aad(r["record_id"], r["record_version"]).hex() == r["aad"]
    assert ck.unwrap_dek(bytes.fromhex(r["sealed"]), r["record_id"], r["record_version"]).hex() == r["dek"]
    with pytest.raises(CryptoError):  # another record version
        ck.unwrap_dek(bytes.fromhex(r["sealed"]), r["record_id"], r["record_version"] + 1)
    m = VECTORS["record_meta"]
    assert ck.unseal_meta(bytes.fromhex(m["sealed"]), m["record_id"]) == json.loads(m["plaintext"])
    assert (
        crypto.unseal(
            bytes.fromhex(IN["client_key"]),
            ck.seal_record_meta("office/firewall", "access", 7),
            bytes.fromhex(m["aad"]),
        )
        == m["plaintext"].encode()
    )
    t = VECTORS["path_tag"]
    assert ck.path_tag(t["path"]).hex() == t["tag"]
    assert crypto.hmac_sha256(bytes.fromhex(t["tag_key"]), t["path"].encode()).hex() == t["tag"]
    b = VECTORS["blob_name"]
    assert ring.blob_name(CID, b["record_id"], b["record_version"]) == b["name"]
    assert (
        crypto.hmac_sha256(bytes.fromhex(b["blob_name_key"]), bytes.fromhex(b["message"])).hex()[:40]
        == b["name"]
    )
    assert b["local_path"] == f"blobs/{b['name'][:2]}/{b['name']}"
    p = VECTORS["pack_name"]  # docs/format.md section 9, "Name"
    assert ring.pack_name(CID, p["first_record_id"], p["count"], p["length"]) == p["name"]
    assert ring.pack_name_v1(CID, p["first_record_id"]) == p["name_v1"]
    key = bytes.fromhex(b["blob_name_key"])
    for message, name in ((p["message"], p["name"]), (p["message_v1"], p["name_v1"])):
        assert crypto.hmac_sha256(key, bytes.fromhex(message)).hex()[:40] == name


def test_vectors_of_what_purpose_keys_seal():
    ring = _ring()
    t = VECTORS["totp_seal"]
    assert (
        ring.unseal_for("totp-seal", bytes.fromhex(t["sealed"]), "user", t["user_id"]).decode() == t["secret"]
    )
    a = VECTORS["audit_signing_key"]
    private = ring.unseal_for(keys.PURPOSE_AUDIT, bytes.fromhex(a["sealed"]), "audit-signing-key")
    assert private.hex() == a["private"] and crypto.ed25519_public_key(private).hex() == a["public"]
    for c in VECTORS["token_cache_seal"]:
        assert (
            ring.unseal_for(keys.PURPOSE_TOKEN_CACHE_SEAL, bytes.fromhex(c["sealed"]), c["context"]).decode()
            == c["plaintext"]
        )
    h = VECTORS["auth_code_hash"]
    assert codes.hash_key(ring).hex() == h["hash_key"]
    assert codes.code_hash(codes.hash_key(ring), h["kind"], h["user_id"], h["code"]).hex() == h["hash"]
    assert crypto.hmac_sha256(bytes.fromhex(h["hash_key"]), bytes.fromhex(h["message"])).hex() == h["hash"]
    s = VECTORS["session_token_hash"]
    assert token_hash(s["token"]) == s["token_hash"]
    m = VECTORS["session_token_mac"]
    assert ring.session_token_mac(m["token"], m["user_id"]).hex() == m["token_mac"]
    assert (
        crypto.hmac_sha256(bytes.fromhex(m["session_key"]), bytes.fromhex(m["message"])).hex()
        == m["token_mac"]
    )


def test_row_mac_vectors():
    """docs/format.md section 8: the encoding byte for byte, the MAC, and a changed value fails."""
    from vault.store import rowmac

    v = VECTORS["row_mac"]
    key = bytes.fromhex(v["row_mac_key"])
    assert _ring().purpose_key(keys.PURPOSE_ROW_MAC) == key
    macer = crypto.Mac(key)
    for row in v["rows"]:
        assert list(rowmac.TABLES[row["table"]].columns) == row["columns"]
        values = [
            bytes.fromhex(x) if row["table"] == "records" and i == 2 else x
            for i, x in enumerate(row["values"])
        ]
        message = rowmac.encode(row["table"], values)
        assert message.hex() == row["message"]
        assert crypto.hmac_sha256(key, message).hex() == row["mac"]
        assert macer.verify(message, bytes.fromhex(row["mac"]))
        changed = list(values)
        changed[0] = changed[0] + 1 if isinstance(changed[0], int) else changed[0] + "x"
        assert not macer.verify(rowmac.encode(row["table"], changed), bytes.fromhex(row["mac"]))


def test_audit_detail_vector():
    d = VECTORS["audit_detail"]
    ring = _ring()
    assert ring.audit_detail_aad(CID).hex() == d["aad"]
    key = bytes.fromhex(d["audit_detail_key"])
    assert crypto.unseal(key, bytes.fromhex(d["sealed"]), ring.audit_detail_aad(CID)).decode() == d["detail"]
    assert d["detail_key"] == "audit:" + CID


def test_custody_file_vector_parses_as_the_local_custodian_reads_it():
    text = VECTORS["custody_file"]["text"].encode("ascii")
    state = local_custody._parse(text)
    assert state.vault_hex == IN["vault_id"] and state.generation == 5
    n, secret = _custody()
    assert base64.urlsafe_b64decode(state.live[(CID, n)] + "=") == secret
    assert set(state.destroyed) == {(CID, 1)}
    assert state.encode() == text  # the writer's own bytes
    with pytest.raises(ValueError):  # an edited file is refused
        local_custody._parse(text.replace(b"generation 5", b"generation 6"))


def test_backup_frame_vector():
    f = VECTORS["backup_frame"]
    key = container.file_key(
        bytes.fromhex(f["backup_key"]), bytes.fromhex(f["salt"]), bytes.fromhex(f["backup_id"])
    )
    assert key.hex() == f["file_key"]
    assert _ring().purpose_key(keys.PURPOSE_BACKUP).hex() == f["backup_key"]
    header = f["header"].encode("ascii")
    assert crypto.sha256(header).hex() == f["header_sha256"]
    aad = container.frame_aad(VAULT_ID, bytes.fromhex(f["backup_id"]), crypto.sha256(header), 0, True)
    assert aad.hex() == f["aad"] and container.frame_nonce(0).hex() == f["nonce"]
    frame = bytes.fromhex(f["frame"])
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    assert crypto.aead_decrypt(key, container.frame_nonce(0), frame[4:], aad).hex() == f["plaintext"]
    with pytest.raises(CryptoError):  # the same frame as a non-final one
        crypto.aead_decrypt(
            key,
            container.frame_nonce(0),
            frame[4:],
            container.frame_aad(VAULT_ID, bytes.fromhex(f["backup_id"]), crypto.sha256(header), 0, False),
        )


def test_the_kinds_table_of_docs_format_is_the_fields_table():
    """docs/format.md section 3 lists each kind's fields as vault/records/__init__.py has them."""
    import re

    from tests.helpers import ROOT
    from vault.records import FIELDS

    text = (ROOT / "docs" / "format.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([a-z]+)` \| (.+) \|$", text, re.MULTILINE))
    documented = {kind: re.findall(r"`([a-z_]+)`", rows[kind]) for kind in FIELDS}
    assert documented == {kind: [f.name for f in fields] for kind, fields in FIELDS.items()}
    for kind, fields in FIELDS.items():
        secret = set(re.findall(r"\*\*`([a-z_]+)`\*\*", rows[kind]))
        assert secret == {f.name for f in fields if f.secret}, kind
